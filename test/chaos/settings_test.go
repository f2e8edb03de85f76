//go:build chaos

package chaos

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// settings are the suite's knobs, read once from HERALD_CHAOS_* variables
// (docs/chaos.md lists them). They never reach the relays: every HERALD_*
// variable is taken out of the environment the herald processes get.
type settings struct {
	// dir keeps each scenario's logs and config (HERALD_CHAOS_DIR); empty:
	// a temporary directory per scenario, removed afterwards.
	dir string
	// report, when set, gets every scenario's figures appended as one JSON
	// line (HERALD_CHAOS_REPORT).
	report string

	natsServer string // HERALD_CHAOS_NATS_SERVER
	pgBin      string // HERALD_CHAOS_PG_BIN: the directory of initdb and pg_ctl

	sigkillEvents   int           // HERALD_CHAOS_SIGKILL_EVENTS
	sigkillKeys     int           // HERALD_CHAOS_SIGKILL_KEYS
	sigkillRelays   int           // HERALD_CHAOS_SIGKILL_RELAYS
	sigkillFor      time.Duration // HERALD_CHAOS_SIGKILL_FOR
	sigkillRate     float64       // HERALD_CHAOS_SIGKILL_RATE
	failoverTarget  time.Duration // HERALD_CHAOS_FAILOVER_TARGET
	shortOutage     time.Duration // HERALD_CHAOS_SHORT_OUTAGE
	shortRate       float64       // HERALD_CHAOS_SHORT_RATE
	longOutage      time.Duration // HERALD_CHAOS_LONG_OUTAGE
	longRate        float64       // HERALD_CHAOS_LONG_RATE
	drainTarget     time.Duration // HERALD_CHAOS_DRAIN_TARGET
	restartRate     float64       // HERALD_CHAOS_RESTART_RATE
	webhookEvents   int           // HERALD_CHAOS_WEBHOOK_EVENTS
	webhookKeys     int           // HERALD_CHAOS_WEBHOOK_KEYS
	webhookDelay    time.Duration // HERALD_CHAOS_WEBHOOK_DELAY
	sustained       time.Duration // HERALD_CHAOS_SUSTAINED
	sustainedRate   float64       // HERALD_CHAOS_SUSTAINED_RATE
	sustainedP99    time.Duration // HERALD_CHAOS_SUSTAINED_P99
	drainTimeout    time.Duration // HERALD_CHAOS_DRAIN_TIMEOUT
	sigkillDeadline time.Duration // HERALD_CHAOS_SIGKILL_DEADLINE
}

func defaultSettings() settings {
	return settings{
		natsServer:     "/usr/sbin/nats-server",
		pgBin:          "/usr/local/bin",
		sigkillEvents:  100_000,
		sigkillKeys:    1000,
		sigkillRelays:  4,
		sigkillFor:     time.Minute,
		sigkillRate:    200,
		failoverTarget: 5 * time.Second,
		shortOutage:    30 * time.Second,
		shortRate:      500,
		longOutage:     10 * time.Minute,
		longRate:       20,
		drainTarget:    30 * time.Second,
		restartRate:    500,
		webhookEvents:  100,
		webhookKeys:    100,
		webhookDelay:   10 * time.Second,
		sustained:      3 * time.Minute,
		sustainedRate:  1000,
		// Issue 18 recorded p99 22 ms here as behaviour that must keep
		// holding, and issue 13's target is 25 ms: the suite judges by it.
		sustainedP99:    25 * time.Millisecond,
		drainTimeout:    10 * time.Minute,
		sigkillDeadline: 20 * time.Minute,
	}
}

// loadSettings reads the environment over the defaults and reports every
// variable it cannot parse.
func loadSettings(getenv func(string) string) (settings, error) {
	s := defaultSettings()
	var errs []error
	str := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	num := func(name string, dst *int) {
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				errs = append(errs, fmt.Errorf("%s: want a positive integer (got %q)", name, v))
				return
			}
			*dst = n
		}
	}
	rate := func(name string, dst *float64) {
		if v := getenv(name); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f <= 0 {
				errs = append(errs, fmt.Errorf("%s: want events per second above 0 (got %q)", name, v))
				return
			}
			*dst = f
		}
	}
	dur := func(name string, dst *time.Duration) {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("%s: want a duration such as 90s or 10m (got %q)", name, v))
				return
			}
			*dst = d
		}
	}
	str("HERALD_CHAOS_DIR", &s.dir)
	str("HERALD_CHAOS_REPORT", &s.report)
	str("HERALD_CHAOS_NATS_SERVER", &s.natsServer)
	str("HERALD_CHAOS_PG_BIN", &s.pgBin)
	num("HERALD_CHAOS_SIGKILL_EVENTS", &s.sigkillEvents)
	num("HERALD_CHAOS_SIGKILL_KEYS", &s.sigkillKeys)
	num("HERALD_CHAOS_SIGKILL_RELAYS", &s.sigkillRelays)
	dur("HERALD_CHAOS_SIGKILL_FOR", &s.sigkillFor)
	rate("HERALD_CHAOS_SIGKILL_RATE", &s.sigkillRate)
	dur("HERALD_CHAOS_FAILOVER_TARGET", &s.failoverTarget)
	dur("HERALD_CHAOS_SHORT_OUTAGE", &s.shortOutage)
	rate("HERALD_CHAOS_SHORT_RATE", &s.shortRate)
	dur("HERALD_CHAOS_LONG_OUTAGE", &s.longOutage)
	rate("HERALD_CHAOS_LONG_RATE", &s.longRate)
	dur("HERALD_CHAOS_DRAIN_TARGET", &s.drainTarget)
	rate("HERALD_CHAOS_RESTART_RATE", &s.restartRate)
	num("HERALD_CHAOS_WEBHOOK_EVENTS", &s.webhookEvents)
	num("HERALD_CHAOS_WEBHOOK_KEYS", &s.webhookKeys)
	dur("HERALD_CHAOS_WEBHOOK_DELAY", &s.webhookDelay)
	dur("HERALD_CHAOS_SUSTAINED", &s.sustained)
	rate("HERALD_CHAOS_SUSTAINED_RATE", &s.sustainedRate)
	dur("HERALD_CHAOS_SUSTAINED_P99", &s.sustainedP99)
	dur("HERALD_CHAOS_DRAIN_TIMEOUT", &s.drainTimeout)
	dur("HERALD_CHAOS_SIGKILL_DEADLINE", &s.sigkillDeadline)
	if s.sigkillRelays < 2 {
		errs = append(errs, fmt.Errorf("HERALD_CHAOS_SIGKILL_RELAYS: at least 2, so that a survivor can take over (got %d)", s.sigkillRelays))
	}
	return s, errors.Join(errs...)
}

// checkTools reports the server binaries the suite cannot find.
func (s settings) checkTools() error {
	var errs []error
	if _, err := exec.LookPath(s.natsServer); err != nil {
		errs = append(errs, fmt.Errorf("nats-server (HERALD_CHAOS_NATS_SERVER=%s): %w", s.natsServer, err))
	}
	for _, tool := range []string{"initdb", "pg_ctl"} {
		if _, err := os.Stat(s.pgBin + "/" + tool); err != nil {
			errs = append(errs, fmt.Errorf("%s (HERALD_CHAOS_PG_BIN=%s): %w", tool, s.pgBin, err))
		}
	}
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("runuser"); err != nil {
			errs = append(errs, fmt.Errorf("runuser, to run PostgreSQL as the postgres user (it refuses root): %w", err))
		}
	}
	return errors.Join(errs...)
}

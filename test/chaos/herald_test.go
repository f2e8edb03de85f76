//go:build chaos

package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// heraldConfig is the YAML every herald process of a scenario reads: the
// suite's database and broker, JSON logs (the suite reads them), and the
// relay defaults with per-key ordering spelled out, as the reference
// config has it. extra is appended verbatim: more top-level blocks.
func heraldConfig(dsn, natsURL, extra string) string {
	return fmt.Sprintf(`database:
  driver: postgres
  dsn: %q
adapter: nats
nats:
  url: %q
  stream: HERALD
relay:
  ordering: true
log:
  level: info
  format: json
%s`, dsn, natsURL, extra)
}

// heraldEnv is the environment of a herald process: the suite's own,
// without any HERALD_* variable. Herald refuses variables it does not know
// (the suite's HERALD_CHAOS_*), and a developer's HERALD_DATABASE_DSN
// would point the relays at the machine's shared database.
func heraldEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// runHerald runs a one-shot herald command (migrate, webhooks add).
func runHerald(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, herald, args...)
	cmd.Env = heraldEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("herald %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// relay is one `herald serve` process.
type relay struct {
	slot, generation int
	cmd              *exec.Cmd
	log              *logWatch
	// HTTP is the process's /readyz and /metrics address.
	HTTP    string
	started time.Time
	exited  chan struct{}
	waitErr error // set once exited is closed
	killed  bool  // by the suite; any other exit is a finding
}

// Name is the relay's lease owner name for the main destination, as it
// logged it when it started.
func (r *relay) Name() string { return r.log.relayName() }

// Pid is the process id.
func (r *relay) Pid() int { return r.cmd.Process.Pid }

func (r *relay) running() bool {
	select {
	case <-r.exited:
		return false
	default:
		return true
	}
}

// readyz returns the status code of GET /readyz, 0 when it does not answer.
func (r *relay) readyz(ctx context.Context) int {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.HTTP+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// relays runs a scenario's `herald serve` processes, one per slot; a slot
// whose process was killed gets a new one, its next generation.
type relays struct {
	t           *testing.T
	config, dir string

	mu    sync.Mutex
	slots []*relay
	all   []*relay
	kills int
}

func newRelays(t *testing.T, config, dir string, n int) *relays {
	rs := &relays{t: t, config: config, dir: dir, slots: make([]*relay, n)}
	t.Cleanup(rs.killAll)
	return rs
}

// startAll starts a process in every slot, all at once so that none has
// the backlog to itself for long, and waits for each to run its main relay.
func (rs *relays) startAll() {
	rs.t.Helper()
	errs := make([]error, len(rs.slots))
	var wg sync.WaitGroup
	for i := range rs.slots {
		wg.Go(func() { _, errs[i] = rs.start(i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		rs.t.Fatal(err)
	}
}

// start runs a new process in the slot and returns once its main relay
// has started (it logs "relay started" with its name).
func (rs *relays) start(slot int) (*relay, error) {
	port, err := freeTCPPort()
	if err != nil {
		return nil, err
	}
	rs.mu.Lock()
	gen := 0
	for _, r := range rs.all {
		if r.slot == slot {
			gen++
		}
	}
	rs.mu.Unlock()
	logPath := filepath.Join(rs.dir, fmt.Sprintf("relay-%d.%03d.log", slot, gen))
	w, err := newLogWatch(logPath)
	if err != nil {
		return nil, err
	}
	r := &relay{slot: slot, generation: gen, log: w, HTTP: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), exited: make(chan struct{})}
	r.cmd = exec.Command(herald, "serve", "-c", rs.config)
	r.cmd.Env = heraldEnv("HERALD_HTTP_LISTEN=" + r.HTTP)
	r.cmd.Stdout, r.cmd.Stderr = w, w
	// Dies with the suite, even when a -timeout panic skips the cleanup.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	r.started = time.Now()
	if err := r.cmd.Start(); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("start herald serve: %w", err)
	}
	go func() {
		r.waitErr = r.cmd.Wait()
		_ = w.Close()
		close(r.exited)
	}()
	rs.mu.Lock()
	rs.slots[slot] = r
	rs.all = append(rs.all, r)
	rs.mu.Unlock()
	select {
	case <-w.started:
		return r, nil
	case <-r.exited:
		return nil, fmt.Errorf("herald serve (slot %d) exited at start: %w\n%s", slot, r.waitErr, tail(logPath, 30))
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("herald serve (slot %d) logged no \"relay started\" within 60s\n%s", slot, tail(logPath, 30))
	}
}

// current is the process now in the slot.
func (rs *relays) current(slot int) *relay {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.slots[slot]
}

// kill SIGKILLs the slot's process, the relay fault: no shutdown, no lease
// handed back, acks in flight never recorded.
func (rs *relays) kill(slot int) *relay {
	r := rs.current(slot)
	if r == nil {
		return nil
	}
	rs.mu.Lock()
	// One that already exited by itself stays a finding.
	if r.running() {
		r.killed = true
		rs.kills++
	}
	rs.mu.Unlock()
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.exited
	return r
}

// stopAll asks every running process to stop (SIGTERM: drain in-flight
// acks, hand the buckets back) and returns the longest time one took.
func (rs *relays) stopAll() (time.Duration, error) {
	rs.mu.Lock()
	running := slices.DeleteFunc(slices.Clone(rs.slots), func(r *relay) bool { return r == nil || !r.running() })
	for _, r := range running {
		r.killed = true // its exit is asked for
	}
	rs.mu.Unlock()
	var longest time.Duration
	var errs []error
	for _, r := range running {
		start := time.Now()
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
			longest = max(longest, time.Since(start))
			if r.waitErr != nil {
				errs = append(errs, fmt.Errorf("relay %d.%d exited on SIGTERM with %w", r.slot, r.generation, r.waitErr))
			}
		case <-time.After(60 * time.Second):
			_ = r.cmd.Process.Signal(syscall.SIGKILL)
			<-r.exited
			errs = append(errs, fmt.Errorf("relay %d.%d did not stop within 60s of SIGTERM; killed", r.slot, r.generation))
		}
	}
	return longest, errors.Join(errs...)
}

func (rs *relays) killAll() {
	rs.mu.Lock()
	all := slices.Clone(rs.all)
	rs.mu.Unlock()
	for _, r := range all {
		if r.running() {
			_ = r.cmd.Process.Signal(syscall.SIGKILL)
			<-r.exited
		}
	}
}

// unexpectedExits describes every process that ended without the suite
// asking it to: a relay that gave up by itself.
func (rs *relays) unexpectedExits() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var out []string
	for _, r := range rs.all {
		if !r.killed && !r.running() {
			out = append(out, fmt.Sprintf("relay %d.%d exited by itself (%v): %s", r.slot, r.generation, r.waitErr,
				strings.TrimSpace(tail(r.log.path, 3))))
		}
	}
	return out
}

// logSummary counts the WARN and ERROR lines of every process, by message.
func (rs *relays) logSummary() []logCount {
	rs.mu.Lock()
	all := slices.Clone(rs.all)
	rs.mu.Unlock()
	byMsg := map[string]*logCount{}
	for _, r := range all {
		for _, c := range r.log.summary() {
			sum := byMsg[c.Key]
			if sum == nil {
				sum = &logCount{Key: c.Key, Example: c.Example}
				byMsg[c.Key] = sum
			}
			sum.N += c.N
		}
	}
	out := make([]logCount, 0, len(byMsg))
	for _, c := range byMsg {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b logCount) int { return b.N - a.N })
	return out
}

// logWatch writes a process's output to its log file and reads the JSON
// lines as they pass: the main relay's name, the messages the suite waits
// for, and a count of warnings and errors.
type logWatch struct {
	path    string
	f       *os.File
	started chan struct{} // closed at the main relay's "relay started"

	mu      sync.Mutex
	partial []byte
	name    string
	counts  map[string]*logCount
	seen    map[string]chan struct{} // by message: closed once logged
}

// logCount is how often one "LEVEL message" was logged, with one line.
type logCount struct {
	Key     string
	N       int
	Example string
}

func newLogWatch(path string) (*logWatch, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &logWatch{path: path, f: f, started: make(chan struct{}), counts: map[string]*logCount{}, seen: map[string]chan struct{}{}}, nil
}

func (w *logWatch) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.line(w.partial[:i])
		w.partial = w.partial[i+1:]
	}
	return n, err
}

func (w *logWatch) line(b []byte) {
	var l struct {
		Level, Msg, Relay, Destination string
	}
	if json.Unmarshal(b, &l) != nil {
		return // a panic's stack, or anything else not from slog
	}
	if l.Msg == "relay started" && l.Destination == "main" && w.name == "" {
		w.name = l.Relay
		close(w.started)
	}
	switch ch, ok := w.seen[l.Msg]; {
	case !ok:
		ch = make(chan struct{})
		close(ch)
		w.seen[l.Msg] = ch
	case !isClosed(ch):
		close(ch)
	}
	if l.Level == "WARN" || l.Level == "ERROR" {
		key := l.Level + " " + l.Msg
		c := w.counts[key]
		if c == nil {
			c = &logCount{Key: key, Example: truncate(string(b), 400)}
			w.counts[key] = c
		}
		c.N++
	}
}

// waitFor returns a channel closed once a line with the message has been
// logged.
func (w *logWatch) waitFor(msg string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch, ok := w.seen[msg]
	if !ok {
		ch = make(chan struct{})
		w.seen[msg] = ch
	}
	return ch
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (w *logWatch) relayName() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.name
}

func (w *logWatch) summary() []logCount {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]logCount, 0, len(w.counts))
	for _, c := range w.counts {
		out = append(out, *c)
	}
	return out
}

func (w *logWatch) Close() error { return w.f.Close() }

// freeTCPPort asks the kernel for a port on 127.0.0.1 that is free now.
func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := freeTCPPort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// rssKiB reads a process's resident set size from /proc.
func rssKiB(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
}

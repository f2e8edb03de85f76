package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Report is what one run measured. A phase that did not run (the run failed
// or was interrupted before it) is nil.
type Report struct {
	Setup Setup `json:"setup"`
	// Load is writing the backlog the drain ceiling then drains; the relay
	// phase's backlog is written the same way.
	Load           *Throughput `json:"load,omitempty"`
	DrainCeiling   *Throughput `json:"drain_ceiling,omitempty"`
	PublishCeiling *Throughput `json:"publish_ceiling,omitempty"`
	Relay          *Relay      `json:"relay,omitempty"`
	Latency        *Latency    `json:"latency,omitempty"`
	Resources      Resources   `json:"resources"`
	Checks         *Checks     `json:"checks,omitempty"`
}

// Setup is what was measured.
type Setup struct {
	Database      string    `json:"database"`
	Broker        string    `json:"broker"`
	Stream        string    `json:"stream"`
	Relays        int       `json:"relays"`
	BatchSize     int       `json:"batch_size"`
	Ordering      bool      `json:"ordering"`
	KeepDelivered bool      `json:"keep_delivered"`
	PartitionKeys int       `json:"partition_keys"`
	EventBytes    int       `json:"event_bytes"`
	Wakeup        string    `json:"wakeup"`
	CPUs          int       `json:"cpus"`
	GOMAXPROCS    int       `json:"gomaxprocs"`
	GoVersion     string    `json:"go_version"`
	Started       time.Time `json:"started"`
}

// Throughput is a number of events handled in a time.
type Throughput struct {
	Events          int     `json:"events"`
	Seconds         float64 `json:"seconds"`
	EventsPerSecond float64 `json:"events_per_second"`
}

func throughput(n int, d time.Duration) *Throughput {
	return &Throughput{Events: n, Seconds: d.Seconds(), EventsPerSecond: float64(n) / d.Seconds()}
}

// Relay is the relays draining a backlog.
type Relay struct {
	Throughput
	// PercentOfCeiling compares with the lower of the two ceilings, named
	// by Ceiling ("drain" or "publish").
	PercentOfCeiling float64 `json:"percent_of_ceiling"`
	Ceiling          string  `json:"ceiling"`
	// Batches is the relays' Publish calls; PublishShare the percentage of
	// the relays' time spent inside them, the rest going to claiming,
	// recording outcomes and checking payloads.
	Batches      int64   `json:"batches"`
	MeanBatch    float64 `json:"mean_batch"`
	PublishShare float64 `json:"publish_share_percent"`
	Acked        int64   `json:"acked"`
	Duplicates   int64   `json:"duplicates"`
	Failed       int64   `json:"failed"`
	DeadLettered int64   `json:"dead_lettered"`
	Lost         int     `json:"lost"`
}

// Latency is commit→ack latency at a fixed offered rate: from the moment
// the producer's commit returned to the moment the relay's Publish call
// returned with the event's ack.
type Latency struct {
	OfferedRate int `json:"offered_rate"`
	// Producers is the number of goroutines committing the events.
	Producers    int     `json:"producers"`
	Seconds      float64 `json:"seconds"`
	Committed    int     `json:"committed"`
	AchievedRate float64 `json:"achieved_rate"`
	Acked        int     `json:"acked"`
	Lost         int     `json:"lost"`
	// Batches is the relays' Publish calls, MeanPublishMs how long one took.
	Batches       int     `json:"batches"`
	MeanBatch     float64 `json:"mean_batch"`
	MeanPublishMs float64 `json:"mean_publish_ms"`
	P50Ms         float64 `json:"p50_ms"`
	P95Ms         float64 `json:"p95_ms"`
	P99Ms         float64 `json:"p99_ms"`
	MaxMs         float64 `json:"max_ms"`
	// AckedBeforeCommitReturned counts events whose ack came back before
	// the producer's goroutine saw its commit return (it had not been
	// scheduled yet); they count as 0ms.
	AckedBeforeCommitReturned int `json:"acked_before_commit_returned"`
}

// Resources are the whole process's: relays, the producer goroutine and, when
// embedded, the JetStream server. Zero where the platform cannot tell.
type Resources struct {
	// RelayPhaseCPUCores is user+system CPU time per wall time while the
	// relays drained the backlog: 1.0 is one core busy.
	RelayPhaseCPUCores float64 `json:"relay_phase_cpu_cores"`
	// LatencyPhaseCPUCores is the same while the producer offered its rate.
	LatencyPhaseCPUCores float64 `json:"latency_phase_cpu_cores"`
	// SteadyRSSMiB is the median of VmRSS samples taken during the latency
	// phase, after the earlier phases' memory was returned to the OS.
	SteadyRSSMiB     float64 `json:"steady_rss_mib"`
	MaxSampledRSSMiB float64 `json:"max_sampled_rss_mib"`
	RSSSamples       int     `json:"rss_samples"`
	// PeakRSSMiB is the process's peak (getrusage maxrss) over the whole
	// run, the throughput phases' backlogs included.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
}

// Checks compare what reached the broker with what was acked.
type Checks struct {
	StreamMessages uint64 `json:"stream_messages"`
	// Expected is the publish ceiling's, the relay phase's and the latency
	// phase's events: each is published once with its own id.
	Expected uint64 `json:"expected"`
}

// WriteText prints the report as a table.
func (r Report) WriteText(w io.Writer) error {
	s := r.Setup
	p := &printer{w: w}
	p.f("Herald bench, %s\n", s.Started.Format(time.RFC3339))
	p.f("  database  %s\n", s.Database)
	p.f("  broker    %s, stream %s\n", s.Broker, s.Stream)
	keys := "no partition key"
	if s.PartitionKeys > 0 {
		keys = group(s.PartitionKeys) + " partition keys"
	}
	p.f("  relays    %d; relay.batch_size %d, ordering %s, keep_delivered %t; %s; %d-byte events\n",
		s.Relays, s.BatchSize, onOff(s.Ordering), s.KeepDelivered, keys, s.EventBytes)
	p.f("  wake-up   %s\n", s.Wakeup)
	p.f("  machine   %d CPUs (GOMAXPROCS %d), %s\n\n", s.CPUs, s.GOMAXPROCS, s.GoVersion)

	type line struct {
		name string
		t    *Throughput
		note string
	}
	lines := []line{
		{"load: write backlog, 500 events per transaction", r.Load, "setup of 1 and 3, not a ceiling"},
		{"1 ceiling: database drain (claim + complete)", r.DrainCeiling, ""},
		{fmt.Sprintf("2 ceiling: broker publish (batches of %d)", s.BatchSize), r.PublishCeiling, ""},
		{"3 herald relay", nil, ""},
	}
	if r.Relay != nil {
		lines[3].t = &r.Relay.Throughput
		lines[3].note = fmt.Sprintf("%.0f%% of the lower ceiling (%s)", r.Relay.PercentOfCeiling, r.Relay.Ceiling)
	}
	width := 0
	for _, l := range lines {
		width = max(width, len(l.name))
	}
	p.f("%-*s  %8s  %8s  %9s\n", width, "phase", "events", "time", "events/s")
	for _, l := range lines {
		if l.t == nil {
			p.f("%-*s  %8s  %8s  %9s\n", width, l.name, "-", "-", "-")
			continue
		}
		p.f("%-*s  %8s  %7.2fs  %9s  %s\n", width, l.name, group(l.t.Events), l.t.Seconds, group(int(l.t.EventsPerSecond+0.5)), l.note)
	}

	if rl := r.Relay; rl != nil && rl.Batches > 0 {
		p.f("  3: %s batches of %.1f events on average; %.0f%% of the relays' time inside Publish, the rest claiming and recording\n",
			group(int(rl.Batches)), rl.MeanBatch, rl.PublishShare)
	}

	if l := r.Latency; l != nil {
		p.f("\n4 latency at %s events/s offered for %.0fs by %d producers, one event per transaction:\n",
			group(l.OfferedRate), l.Seconds, l.Producers)
		p.f("  %s committed (%.1f events/s achieved), %s acked, %d lost\n",
			group(l.Committed), l.AchievedRate, group(l.Acked), l.Lost)
		p.f("  commit→ack  p50 %s  p95 %s  p99 %s  max %s\n", ms(l.P50Ms), ms(l.P95Ms), ms(l.P99Ms), ms(l.MaxMs))
		if l.Batches > 0 {
			p.f("  relays: %s batches of %.1f events on average, %s per Publish\n", group(l.Batches), l.MeanBatch, ms(l.MeanPublishMs))
		}
		if l.AckedBeforeCommitReturned > 0 {
			p.f("  (%d acked before the producer saw its commit return, counted as 0ms)\n", l.AckedBeforeCommitReturned)
		}
	} else {
		p.f("\n4 latency: not run\n")
	}

	res := r.Resources
	p.f("\n5 resources of the whole process (relays, producer goroutines%s)\n", embeddedNote(s.Broker))
	var cpu []string
	if r.Relay != nil {
		cpu = append(cpu, fmt.Sprintf("%.2f cores while relaying the backlog", res.RelayPhaseCPUCores))
	}
	if r.Latency != nil {
		cpu = append(cpu, fmt.Sprintf("%.2f cores at the offered rate", res.LatencyPhaseCPUCores))
	}
	if len(cpu) > 0 {
		p.f("  CPU  %s (of %d)\n", strings.Join(cpu, ", "), s.CPUs)
	}
	if res.RSSSamples > 0 {
		p.f("  RSS  steady %.1f MiB (median of %d samples during 4, max %.1f MiB); peak over the run %.1f MiB\n",
			res.SteadyRSSMiB, res.RSSSamples, res.MaxSampledRSSMiB, res.PeakRSSMiB)
	} else {
		p.f("  RSS  peak over the run %.1f MiB\n", res.PeakRSSMiB)
	}

	if c := r.Checks; c != nil {
		p.f("\nchecks: stream %s holds %s messages, %s published and acked; no event lost or duplicated\n",
			Stream, group(int(c.StreamMessages)), group(int(c.Expected)))
	}
	return p.err
}

func embeddedNote(broker string) string {
	if strings.HasPrefix(broker, "in-process") {
		return ", in-process JetStream server"
	}
	return ""
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func ms(v float64) string {
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 2, 64) + "ms"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + "ms"
}

// group writes n with thousands separators: 20,000.
func group(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// printer keeps the first write error so the report is written without a
// check after every line.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

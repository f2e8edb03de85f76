package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Report is what one run measured. A phase that did not run (the run failed
// or was interrupted before it) is nil or empty.
type Report struct {
	Setup Setup `json:"setup"`
	// Load is writing the reference relay's backlog; Herald's relay's
	// backlogs are written the same way.
	Load          *Throughput `json:"load,omitempty"`
	BrokerCeiling *Throughput `json:"broker_ceiling,omitempty"`
	Reference     *Reference  `json:"reference_relay,omitempty"`
	// Relays has one run of Herald's relays per backlog size.
	Relays    []Relay   `json:"herald_relay,omitempty"`
	Writers   *Writers  `json:"writers,omitempty"`
	Latency   *Latency  `json:"latency,omitempty"`
	Resources Resources `json:"resources"`
	Checks    *Checks   `json:"checks,omitempty"`
}

// Setup is what was measured.
type Setup struct {
	Database      string `json:"database"`
	Broker        string `json:"broker"`
	Stream        string `json:"stream"`
	Relays        int    `json:"relays"`
	BatchSize     int    `json:"batch_size"`
	Ordering      bool   `json:"ordering"`
	KeepDelivered bool   `json:"keep_delivered"`
	DeliveryLog   bool   `json:"delivery_log"`
	PartitionKeys int    `json:"partition_keys"`
	EventBytes    int    `json:"event_bytes"`
	// ReferenceBatch is the reference relay's rows per transaction,
	// MaxPendingAcks the acks it and the broker ceiling keep outstanding.
	ReferenceBatch int       `json:"reference_batch"`
	MaxPendingAcks int       `json:"max_pending_acks"`
	Wakeup         string    `json:"wakeup"`
	CPUs           int       `json:"cpus"`
	GOMAXPROCS     int       `json:"gomaxprocs"`
	GoVersion      string    `json:"go_version"`
	Started        time.Time `json:"started"`
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

// Reference is the reference relay draining a backlog: delete a batch
// returning it, publish it straight, await the acks, commit.
type Reference struct {
	Throughput
	// Workers is the reference relays, one per lane as Herald's relays.
	Workers int `json:"workers"`
	// Transactions is the batches committed, MeanBatch their rows.
	Transactions int64   `json:"transactions"`
	MeanBatch    float64 `json:"mean_batch"`
	// Deadlocks is the batches MySQL or MariaDB rolled back to break a
	// deadlock between workers, taken again.
	Deadlocks int64 `json:"deadlocks"`
	// PublishShare is the percentage of the workers' time from a batch's
	// first publish to its last ack, the rest going to the database.
	PublishShare float64 `json:"publish_share_percent"`
	Acked        int64   `json:"acked"`
	Duplicates   int64   `json:"duplicates"`
	// CPUCores is the whole process's CPU time per wall time meanwhile.
	CPUCores float64 `json:"cpu_cores"`
}

// Relay is Herald's relays draining one backlog.
type Relay struct {
	Throughput
	MicrosPerEvent float64 `json:"us_per_event"`
	// VsReference and VsBrokerCeiling are the events/s as a multiple of
	// the reference relay's and of the broker ceiling's.
	VsReference     float64 `json:"vs_reference"`
	VsBrokerCeiling float64 `json:"vs_broker_ceiling"`
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
	// CPUCores is the whole process's CPU time per wall time meanwhile.
	CPUCores float64 `json:"cpu_cores"`
}

// Writers is the writers' commit rate, one row per transaction, into the
// outbox with its wake-up and into a copy of it without.
type Writers struct {
	Writers int `json:"writers"`
	// Seconds is how long they wrote to each table, in two turns per table
	// (outbox, copy, copy, outbox), after an unrecorded warm-up turn of a
	// quarter of it on each.
	Seconds float64 `json:"seconds"`
	// Triggers are the outbox table's triggers, as read from the catalog.
	Triggers []string  `json:"triggers"`
	Outbox   WriteRate `json:"outbox"`
	Copy     WriteRate `json:"copy"`
	// Ratio is Outbox's commit rate as a multiple of Copy's.
	Ratio float64 `json:"ratio"`
	// Listeners is the LISTEN connections held meanwhile (PostgreSQL),
	// Notifications what they heard: whether the triggers notified.
	Listeners     int   `json:"listeners"`
	Notifications int64 `json:"notifications"`
}

// WriteRate is commits to one table in a time.
type WriteRate struct {
	Table     string  `json:"table"`
	Commits   int     `json:"commits"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"tps"`
	// Turns is the commit rate of each turn, in order: their spread is
	// the run's noise.
	Turns []float64 `json:"turns_tps,omitempty"`
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

// Checks compare what reached the broker with what was acked, phase by
// phase: the stream is purged after each.
type Checks struct {
	// StreamMessages and Expected are the sums over Phases.
	StreamMessages uint64       `json:"stream_messages"`
	Expected       uint64       `json:"expected"`
	Phases         []PhaseCheck `json:"phases"`
}

// PhaseCheck is one phase's count: every event it published, each once
// with its own id.
type PhaseCheck struct {
	Phase          string `json:"phase"`
	StreamMessages uint64 `json:"stream_messages"`
	Expected       uint64 `json:"expected"`
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
	p.f("  relays    %d; relay.batch_size %d, ordering %s, keep_delivered %t, delivery_log %s; %s; %d-byte events\n",
		s.Relays, s.BatchSize, onOff(s.Ordering), s.KeepDelivered, onOff(s.DeliveryLog), keys, s.EventBytes)
	p.f("  wake-up   %s\n", s.Wakeup)
	p.f("  machine   %d CPUs (GOMAXPROCS %d), %s\n\n", s.CPUs, s.GOMAXPROCS, s.GoVersion)
	r.writePhases(p)
	r.writeWriters(p)
	r.writeLatency(p)
	r.writeResources(p)
	r.writeChecks(p)
	return p.err
}

// writePhases prints the throughput phases as one table.
func (r Report) writePhases(p *printer) {
	s := r.Setup
	type line struct {
		name string
		t    *Throughput
		note string
	}
	lines := []line{
		{"load: write backlog, 500 events per transaction", r.Load, "setup of 2 and 3, not a ceiling"},
		{fmt.Sprintf("1 broker ceiling: async publish, %s acks pending", group(s.MaxPendingAcks)), r.BrokerCeiling, ""},
		{fmt.Sprintf("2 reference relay: DELETE … RETURNING %d, publish, commit", s.ReferenceBatch), nil, ""},
	}
	if r.Reference != nil {
		lines[2].t = &r.Reference.Throughput
	}
	for _, rl := range r.Relays {
		note := fmt.Sprintf("%s × reference, %s × broker ceiling; %.1f µs/event", ratio(rl.VsReference), ratio(rl.VsBrokerCeiling), rl.MicrosPerEvent)
		lines = append(lines, line{"3 herald relay, backlog " + group(rl.Events), &rl.Throughput, note})
	}
	if len(r.Relays) == 0 {
		lines = append(lines, line{"3 herald relay", nil, ""})
	}
	width := 0
	for _, l := range lines {
		width = max(width, utf8.RuneCountInString(l.name))
	}
	pad := func(name string) string { return name + strings.Repeat(" ", width-utf8.RuneCountInString(name)) }
	p.f("%s  %8s  %8s  %9s\n", pad("phase"), "events", "time", "events/s")
	for _, l := range lines {
		if l.t == nil {
			p.f("%s  %8s  %8s  %9s\n", pad(l.name), "-", "-", "-")
			continue
		}
		note := ""
		if l.note != "" {
			note = "  " + l.note
		}
		p.f("%s  %8s  %7.2fs  %9s%s\n", pad(l.name), group(l.t.Events), l.t.Seconds, group(int(l.t.EventsPerSecond+0.5)), note)
	}
	if ref := r.Reference; ref != nil {
		deadlocks := ""
		if ref.Deadlocks > 0 {
			deadlocks = fmt.Sprintf(" (and %d rolled back by a deadlock, retried)", ref.Deadlocks)
		}
		p.f("  2: %d worker(s), %s transactions of %.1f events%s; %.0f%% of the workers' time from first publish to last ack; %.2f cores\n",
			ref.Workers, group(int(ref.Transactions)), ref.MeanBatch, deadlocks, ref.PublishShare, ref.CPUCores)
	}
	for _, rl := range r.Relays {
		if rl.Batches > 0 {
			p.f("  3: backlog %s: %s batches of %.1f events on average; %.0f%% of the relays' time inside Publish, the rest claiming and recording; %.2f cores\n",
				group(rl.Events), group(int(rl.Batches)), rl.MeanBatch, rl.PublishShare, rl.CPUCores)
		}
	}
}

func (r Report) writeWriters(p *printer) {
	wr := r.Writers
	if wr == nil {
		p.f("\n4 writers' commit rate: not run\n")
		return
	}
	p.f("\n4 writers' commit rate: %d writers, one row per transaction, %s on each table in alternate turns after a warm-up on each, no relay running\n",
		wr.Writers, seconds(wr.Seconds))
	wake := "no trigger"
	if len(wr.Triggers) > 0 {
		wake = "trigger " + strings.Join(wr.Triggers, ", ")
	}
	if wr.Listeners > 0 {
		wake += fmt.Sprintf("; %d LISTEN connection(s) heard %s notifications", wr.Listeners, group(int(wr.Notifications)))
	}
	rate := func(r WriteRate) string {
		turns := make([]string, len(r.Turns))
		for i, t := range r.Turns {
			turns[i] = group(int(t + 0.5))
		}
		s := fmt.Sprintf("%8s commits  %6s tps", group(r.Commits), group(int(r.PerSecond+0.5)))
		if len(turns) > 0 {
			s += " (turns " + strings.Join(turns, ", ") + ")"
		}
		return s
	}
	width := max(len(wr.Outbox.Table), len(wr.Copy.Table))
	p.f("  %-*s  %s  %s\n", width, wr.Outbox.Table, rate(wr.Outbox), wake)
	p.f("  %-*s  %s  copy without triggers\n", width, wr.Copy.Table, rate(wr.Copy))
	p.f("  with/without the wake-up: %s ×\n", ratio(wr.Ratio))
}

func (r Report) writeLatency(p *printer) {
	l := r.Latency
	if l == nil {
		p.f("\n5 latency: not run\n")
		return
	}
	p.f("\n5 latency at %s events/s offered for %.0fs by %d producers, one event per transaction:\n",
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
}

func (r Report) writeResources(p *printer) {
	s, res := r.Setup, r.Resources
	p.f("\n6 resources of the whole process (relays, producer goroutines%s)\n", embeddedNote(s.Broker))
	var cpu []string
	if len(r.Relays) > 0 {
		cpu = append(cpu, fmt.Sprintf("%.2f cores while relaying the backlogs", res.RelayPhaseCPUCores))
	}
	if r.Latency != nil {
		cpu = append(cpu, fmt.Sprintf("%.2f cores at the offered rate", res.LatencyPhaseCPUCores))
	}
	if len(cpu) > 0 {
		p.f("  CPU  %s (of %d)\n", strings.Join(cpu, ", "), s.CPUs)
	}
	if res.RSSSamples > 0 {
		p.f("  RSS  steady %.1f MiB (median of %d samples during 5, max %.1f MiB); peak over the run %.1f MiB\n",
			res.SteadyRSSMiB, res.RSSSamples, res.MaxSampledRSSMiB, res.PeakRSSMiB)
	} else {
		p.f("  RSS  peak over the run %.1f MiB\n", res.PeakRSSMiB)
	}
}

func (r Report) writeChecks(p *printer) {
	c := r.Checks
	if c == nil {
		return
	}
	verdict := "no event lost or duplicated"
	if c.StreamMessages != c.Expected {
		verdict = "MISMATCH"
	}
	p.f("\nchecks: stream %s, purged after each phase, holds %s messages in all, %s published and acked; %s\n",
		Stream, group(int(c.StreamMessages)), group(int(c.Expected)), verdict)
	width := 0
	for _, ph := range c.Phases {
		width = max(width, len(ph.Phase))
	}
	for _, ph := range c.Phases {
		mark := ""
		if ph.StreamMessages != ph.Expected {
			mark = "  MISMATCH"
		}
		p.f("  %-*s  %8s in the stream, %8s acked%s\n", width, ph.Phase, group(int(ph.StreamMessages)), group(int(ph.Expected)), mark)
	}
}

// ratio prints a multiple with two decimals, or "-" when it is unknown.
func ratio(v float64) string {
	if v <= 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// seconds prints a duration given in seconds without trailing zeros: 5s,
// 0.5s.
func seconds(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64) + "s"
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

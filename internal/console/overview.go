package console

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/outbox"
	"github.com/heraldhq/herald/pkg/producer"
)

// sample is one reading of a destination: its relay's published counter
// and its backlog.
type sample struct {
	At        time.Time
	Published int64
	Pending   int
}

// ring keeps the last len(buf) samples of one destination.
type ring struct {
	buf   []sample
	start int
	n     int
}

func (r *ring) add(s sample) {
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = s
		r.n++
		return
	}
	r.buf[r.start] = s
	r.start = (r.start + 1) % len(r.buf)
}

func (r *ring) all() []sample {
	out := make([]sample, r.n)
	for i := range r.n {
		out[i] = r.buf[(r.start+i)%len(r.buf)]
	}
	return out
}

// sampler holds what Run records: a bounded ring per destination and each
// checkable destination's last health check. Pages read it; only Run writes.
type sampler struct {
	size int

	mu     sync.Mutex
	series map[string]*ring
	checks map[string]checkResult
}

type checkResult struct {
	At  time.Time
	Err string // "" when it answered
}

func newSampler(size int) *sampler {
	return &sampler{size: max(size, 2), series: map[string]*ring{}, checks: map[string]checkResult{}}
}

func (s *sampler) record(dest string, smp sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.series[dest]
	if r == nil {
		r = &ring{buf: make([]sample, s.size)}
		s.series[dest] = r
	}
	r.add(smp)
}

func (s *sampler) history(dest string) []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.series[dest]; r != nil {
		return r.all()
	}
	return nil
}

func (s *sampler) setCheck(dest string, c checkResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[dest] = c
}

func (s *sampler) check(dest string) (checkResult, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.checks[dest]
	return c, ok
}

// sample takes one reading of every destination. A failed read is logged
// and skipped: the plot shows a gap rather than a made-up value.
func (c *Console) sample(ctx context.Context) {
	now := c.cfg.Now()
	backlog, err := c.backlogs(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("console: sample the backlog", "error", c.cfg.Secrets.Error(err))
		}
		return
	}
	var stats map[string]producer.Stats
	if c.cfg.Stats != nil {
		stats = c.cfg.Stats()
	}
	names, err := c.destinationNames(ctx)
	if err != nil && ctx.Err() == nil {
		c.log.Warn("console: list webhook endpoints", "error", c.cfg.Secrets.Error(err))
	}
	for _, name := range names {
		c.samples.record(name, sample{At: now, Published: stats[name].Published, Pending: backlog[name].Pending})
	}
	for _, d := range c.cfg.Destinations {
		if d.Check == nil {
			continue
		}
		// Bounded by the interval, so that a hanging broker never delays
		// the next sample.
		cctx, cancel := context.WithTimeout(ctx, min(c.cfg.SampleEvery, 5*time.Second))
		res := checkResult{At: now}
		if err := d.Check(cctx); err != nil {
			res.Err = c.cfg.Secrets.Text(err.Error())
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		c.samples.setCheck(d.Name, res)
	}
}

// backlogs sums outbox.Store.TypeStats, the query behind herald status,
// per destination.
func (c *Console) backlogs(ctx context.Context) (map[string]outbox.TypeStats, error) {
	stats, err := c.cfg.Store.TypeStats(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]outbox.TypeStats{}
	for _, s := range stats {
		t := out[s.Destination]
		t.Destination = s.Destination
		t.Add(s)
		out[s.Destination] = t
	}
	return out, nil
}

// destinationNames are the configured destinations and the stored
// endpoints' ("webhook:<name>").
func (c *Console) destinationNames(ctx context.Context) ([]string, error) {
	var names []string
	for _, d := range c.cfg.Destinations {
		names = append(names, d.Name)
	}
	if c.cfg.Endpoints == nil {
		return names, nil
	}
	eps, err := c.cfg.Endpoints.List(ctx)
	for _, e := range eps {
		names = append(names, e.Destination())
	}
	return names, err
}

// destinationView is one row of the overview.
type destinationView struct {
	Name, Adapter, Target string
	Endpoint              string // the stored endpoint's name, for its page
	Health                string // up, down, paused, failing, disabled, unknown
	Detail                string
	Pending, InFlight     int
	Dead                  int
	Oldest                string
	Plot                  plotView
}

type overviewData struct {
	Destinations []destinationView
	SampleEvery  time.Duration
	History      time.Duration
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	backlog, err := c.backlogs(ctx)
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, "read the outbox", err)
		return
	}
	now := c.cfg.Now()
	var views []destinationView
	for _, d := range c.cfg.Destinations {
		v := destinationView{Name: d.Name, Adapter: d.Adapter, Target: d.Target}
		if d.Check != nil {
			c.checkedHealth(&v)
		}
		views = append(views, v)
	}
	if c.cfg.Endpoints != nil {
		eps, err := c.cfg.Endpoints.List(ctx)
		if err != nil {
			c.fail(w, r, http.StatusInternalServerError, "list webhook endpoints", err)
			return
		}
		for _, e := range eps {
			v := destinationView{Name: e.Destination(), Adapter: "webhook (stored)", Target: e.Redacted().URL, Endpoint: e.Name}
			if !e.Enabled {
				v.Health, v.Detail = "disabled", c.cfg.Secrets.Text(e.DisabledReason)
			}
			views = append(views, v)
		}
	}
	for i := range views {
		v := &views[i]
		if v.Health == "" {
			if err := c.loggedHealth(ctx, v); err != nil {
				c.fail(w, r, http.StatusInternalServerError, "read the delivery log", err)
				return
			}
		}
		b := backlog[v.Name]
		v.Pending, v.InFlight, v.Dead, v.Oldest = b.Pending, b.InFlight, b.Dead, "-"
		if !b.OldestPending.IsZero() {
			v.Oldest = Age(now.Sub(b.OldestPending))
		}
		v.Plot = newPlot(c.samples.history(v.Name), c.cfg.History, now)
	}
	c.render(w, r, http.StatusOK, "overview", "Overview", overviewData{Destinations: views, SampleEvery: c.cfg.SampleEvery, History: c.cfg.History})
}

// checkedHealth is the sampler's last check of a broker that can tell.
func (c *Console) checkedHealth(v *destinationView) {
	res, ok := c.samples.check(v.Name)
	switch {
	case !ok:
		v.Health, v.Detail = "unknown", "not checked yet"
	case res.Err != "":
		v.Health, v.Detail = "down", res.Err+" (checked "+formatTime(res.At)+")"
	default:
		v.Health, v.Detail = "up", "answered at "+formatTime(res.At)
	}
}

// loggedHealth reads health from the delivery log's latest attempt, for a
// destination whose adapter cannot be asked without sending it something
// (herald status does not probe webhooks either), and marks a checked one
// paused when its relay found it down as a whole.
func (c *Console) loggedHealth(ctx context.Context, v *destinationView) error {
	last, err := c.cfg.Store.Attempts(ctx, outbox.AttemptFilter{Destination: v.Name, Limit: 1})
	if err != nil {
		return err
	}
	if len(last) == 0 {
		if v.Health == "" {
			v.Health, v.Detail = "unknown", "no attempt in the delivery log yet"
		}
		return nil
	}
	a := last[0]
	answer := c.cfg.Secrets.Text(a.Answer)
	switch a.Outcome {
	case outbox.AttemptDelivered:
		if v.Health == "" {
			v.Health, v.Detail = "up", "last delivery "+formatTime(a.At)
		}
	case outbox.AttemptUnavailable:
		v.Health, v.Detail = "paused", "down as a whole, the relay sends only probes: "+answer+" ("+formatTime(a.At)+")"
	default:
		if v.Health == "" {
			v.Health, v.Detail = "failing", answer+" ("+formatTime(a.At)+")"
		}
	}
	return nil
}

// plotView is a destination's last History as two polylines in a
// 300×60 SVG: backlog and throughput (events per second), each scaled to
// its own maximum.
type plotView struct {
	Backlog, Rate       string
	MaxBacklog, MaxRate string
	Samples             int
}

const plotW, plotH = 300.0, 60.0

func newPlot(samples []sample, history time.Duration, now time.Time) plotView {
	p := plotView{Samples: len(samples)}
	if len(samples) == 0 {
		return p
	}
	x := func(t time.Time) float64 {
		return plotW - plotW*min(1, max(0, float64(now.Sub(t))/float64(history)))
	}
	maxB := 1
	for _, s := range samples {
		maxB = max(maxB, s.Pending)
	}
	rates := make([]float64, len(samples))
	maxR := 0.0
	for i := 1; i < len(samples); i++ {
		dt := samples[i].At.Sub(samples[i-1].At).Seconds()
		// A counter going down is a relay started again (an endpoint's,
		// after a change): no rate for that interval.
		if d := samples[i].Published - samples[i-1].Published; dt > 0 && d > 0 {
			rates[i] = float64(d) / dt
		}
		maxR = max(maxR, rates[i])
	}
	var b, r []string
	for i, s := range samples {
		b = append(b, fmt.Sprintf("%.1f,%.1f", x(s.At), plotH-plotH*float64(s.Pending)/float64(maxB)))
		rate := 0.0
		if maxR > 0 {
			rate = rates[i] / maxR
		}
		r = append(r, fmt.Sprintf("%.1f,%.1f", x(s.At), plotH-plotH*rate))
	}
	p.Backlog, p.Rate = strings.Join(b, " "), strings.Join(r, " ")
	p.MaxBacklog, p.MaxRate = strconv.Itoa(maxB), strconv.FormatFloat(maxR, 'f', 1, 64)
	return p
}

package console

import (
	"testing"
	"time"
)

func TestRingKeepsTheLastSamples(t *testing.T) {
	s := newSampler(3)
	t0 := time.Unix(0, 0)
	for i := range 5 {
		s.record("main", sample{At: t0.Add(time.Duration(i) * time.Second), Published: int64(i * 10), Pending: i})
	}
	got := s.history("main")
	if len(got) != 3 || got[0].Pending != 2 || got[2].Pending != 4 {
		t.Fatalf("history %+v, want the last 3 samples, oldest first", got)
	}
	p := newPlot(got, time.Minute, t0.Add(4*time.Second))
	if p.Samples != 3 || p.MaxBacklog != "4" || p.MaxRate != "10.0" {
		t.Fatalf("plot %+v: want 3 samples, backlog up to 4, 10 events/s", p)
	}
}

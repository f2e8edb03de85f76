package bench

import (
	"context"
	"sync"
	"time"
)

// rssSampler records the process's resident set size at an interval, from
// its own goroutine, until stop.
type rssSampler struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	samples []int64
}

func startRSSSampler(ctx context.Context, every time.Duration) *rssSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &rssSampler{cancel: cancel}
	s.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if rss, ok := currentRSS(); ok {
					s.samples = append(s.samples, rss)
				}
			}
		}
	})
	return s
}

// stop ends the sampling and returns the samples in bytes. It may be called
// more than once.
func (s *rssSampler) stop() []int64 {
	s.cancel()
	s.wg.Wait()
	return s.samples
}

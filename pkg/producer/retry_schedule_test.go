package producer_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/producer"
)

// The schedule webhook receivers are promised; it must hold even when the
// relay also has exponential backoff configured.
var webhookSchedule = []time.Duration{
	5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute,
	30 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour,
}

func TestRetryScheduleDelaysAreNeverEarlyAndAtMostTwentyPercentLate(t *testing.T) {
	opts := []producer.Option{
		producer.WithBackoff(time.Millisecond, time.Millisecond), // replaced by the schedule
		producer.WithRetrySchedule(webhookSchedule...),
	}
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{1, 5 * time.Second},
		{2, 30 * time.Second},
		{3, 2 * time.Minute},
		{4, 10 * time.Minute},
		{5, 30 * time.Minute},
		{6, time.Hour},
		{7, 3 * time.Hour},
		{8, 6 * time.Hour},
		{9, 6 * time.Hour}, // beyond the schedule: the last delay repeats
		{50, 6 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("attempt %d waits %s", tt.attempt, tt.want), func(t *testing.T) {
			// Jitter is random: sample enough to see it, and check every draw.
			jittered := false
			for range 200 {
				got := producer.RetryDelay(tt.attempt, opts...)
				if got < tt.want || got > tt.want+tt.want/5 {
					t.Fatalf("delay %s outside [%s, %s]", got, tt.want, tt.want+tt.want/5)
				}
				jittered = jittered || got != tt.want
			}
			if !jittered {
				t.Errorf("200 delays were all exactly %s: no jitter", tt.want)
			}
		})
	}
}

func TestEmptyRetryScheduleKeepsExponentialBackoff(t *testing.T) {
	opts := []producer.Option{producer.WithBackoff(time.Second, time.Second), producer.WithRetrySchedule()}
	for range 100 {
		// Equal jitter on a 1s backoff: between half and all of it.
		if got := producer.RetryDelay(3, opts...); got < 500*time.Millisecond || got > time.Second {
			t.Fatalf("delay %s outside the backoff's [500ms, 1s]", got)
		}
	}
}

func TestRetryScheduleIsCopiedFromTheCallersSlice(t *testing.T) {
	delays := []time.Duration{time.Minute}
	opt := producer.WithRetrySchedule(delays...)
	delays[0] = time.Millisecond
	if got := producer.RetryDelay(1, opt); got < time.Minute {
		t.Fatalf("delay %s: the option followed a later change to the caller's slice", got)
	}
}

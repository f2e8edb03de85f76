package webhook

import "time"

// WithClock replaces time.Now, so tests can step over WithDisableAfter.
func WithClock(now func() time.Time) Option {
	return func(c *config) error { c.now = now; return nil }
}

// ConnectFailed is connectFailed, for the classification tests.
var ConnectFailed = connectFailed

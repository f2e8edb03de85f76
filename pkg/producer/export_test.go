package producer

import "time"

// WithPruneEvery shortens the prune interval for tests.
func WithPruneEvery(d time.Duration) Option { return func(s *settings) { s.pruneEvery = d } }

// RetryDelay is how long a relay configured with opts waits after failed
// attempt n: the delay behind each failure's retry_at, without a database.
func RetryDelay(attempt int, opts ...Option) time.Duration {
	r := &Relay{cfg: configure(opts)}
	return r.backoff(attempt)
}

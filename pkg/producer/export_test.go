package producer

import "time"

// WithPruneEvery shortens the prune interval for tests.
func WithPruneEvery(d time.Duration) Option { return func(s *settings) { s.pruneEvery = d } }

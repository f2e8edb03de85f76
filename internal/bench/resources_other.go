//go:build !linux

package bench

import "time"

// Elsewhere the bench reports no CPU or memory figures: getrusage's units
// and /proc differ by platform, and the figures that matter are Linux's.

func cpuTime() (time.Duration, bool) { return 0, false }

func peakRSS() int64 { return 0 }

func currentRSS() (int64, bool) { return 0, false }

//go:build !linux

package loadgen

import "time"

// fineSleeper falls back to time.Sleep where there is no timerfd.
type fineSleeper struct{}

func newFineSleeper() fineSleeper { return fineSleeper{} }

func (fineSleeper) sleep(d time.Duration) { time.Sleep(d) }

func (fineSleeper) close() {}

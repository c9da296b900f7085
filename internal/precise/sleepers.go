package precise

import (
	"sync/atomic"
	"time"
)

// Handoff is how long before its deadline a precise wait leaves its Go
// timer for SleepUntil: long enough to absorb the timer firing late (0.3–
// 0.7 ms at the median, ~1.1 ms at p99 on the shared 2-core VM), short
// because each sleeping thread holds a processor that polls no network
// meanwhile. faults/tcpfault/wait.go has the measurements behind 2 ms.
const Handoff = 2 * time.Millisecond

// maxSleepers caps the threads one Sleepers lets sleep at once.
const maxSleepers = 64

// Sleepers caps how many waits sleep in SleepUntil at once, so a burst of
// deadlines does not hold every processor. The zero value is ready.
type Sleepers struct{ n atomic.Int32 }

// SleepUntil blocks the calling thread until t and reports true, unless
// the cap is reached: then it returns false at once, and the caller waits
// on a Go timer instead (coarser, never early).
func (s *Sleepers) SleepUntil(t time.Time) bool {
	defer s.n.Add(-1)
	if s.n.Add(1) > maxSleepers {
		return false
	}
	SleepUntil(t)
	return true
}

// Package precise holds what cascade's timed faults share: a wait that ends
// a few tens of µs after its deadline (SleepUntil), and the accounting of
// how late past its deadline each timed release actually was (Lateness),
// which is a fault's own view of its precision, free of the client's and
// the loopback path's noise.
package precise

import (
	"fmt"
	"sync/atomic"
	"time"
)

var bounds = [...]time.Duration{50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond,
	500 * time.Microsecond, time.Millisecond, 5 * time.Millisecond, 25 * time.Millisecond}

// Bounds returns the upper bounds of the Lateness.Counts buckets.
func Bounds() [len(bounds)]time.Duration { return bounds }

// Lateness counts timed releases (a delay's end, a toxic's timed write) by
// how late past their deadline they were. The zero value is empty.
type Lateness struct {
	// Counts[i] holds the releases later than Bounds()[i-1] and at most
	// Bounds()[i]; the last bucket is everything later.
	Counts [len(bounds) + 1]uint64 `json:"counts"`
	// Max is the latest release past its deadline.
	Max time.Duration `json:"max_ns"`
}

// Releases is how many releases were counted.
func (l Lateness) Releases() uint64 {
	var n uint64
	for _, c := range l.Counts {
		n += c
	}
	return n
}

// Within reports the fraction of releases no later than d, for d one of
// Bounds() (a d between two bounds counts up to the lower one); 1 when
// there were none.
func (l Lateness) Within(d time.Duration) float64 {
	var in uint64
	for i, b := range bounds {
		if b <= d {
			in += l.Counts[i]
		}
	}
	all := l.Releases()
	if all == 0 {
		return 1
	}
	return float64(in) / float64(all)
}

// Add merges o into l (two replicas', two occurrences' counts).
func (l *Lateness) Add(o Lateness) {
	for i, c := range o.Counts {
		l.Counts[i] += c
	}
	l.Max = max(l.Max, o.Max)
}

// String says it the way a run summary does: "99.8% of 5000 within 0.5 ms
// of the asked delay, max 0.81 ms late".
func (l Lateness) String() string {
	if l.Releases() == 0 {
		return "no timed releases"
	}
	return fmt.Sprintf("%.1f%% of %d within 0.5 ms of the asked delay, max %.2f ms late",
		100*l.Within(500*time.Microsecond), l.Releases(), float64(l.Max)/1e6)
}

// Recorder is the live, lock-free form of Lateness: the data path only adds
// to atomics. The zero value is ready; a nil *Recorder records nothing.
type Recorder struct {
	counts [len(bounds) + 1]atomic.Uint64
	max    atomic.Int64
}

// Record counts one release that came late after its deadline (0 or less:
// on time).
func (r *Recorder) Record(late time.Duration) {
	if r == nil {
		return
	}
	i := 0
	for i < len(bounds) && late > bounds[i] {
		i++
	}
	r.counts[i].Add(1)
	for {
		old := r.max.Load()
		if int64(late) <= old || r.max.CompareAndSwap(old, int64(late)) {
			return
		}
	}
}

// Snapshot returns the counts so far.
func (r *Recorder) Snapshot() Lateness {
	var l Lateness
	if r == nil {
		return l
	}
	for i := range r.counts {
		l.Counts[i] = r.counts[i].Load()
	}
	l.Max = time.Duration(r.max.Load())
	return l
}

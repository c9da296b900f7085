package faults

import (
	"context"
	"runtime"
	"time"

	"github.com/cascadehq/cascade/internal/precise"
)

// SpinWindow is the tail of an injected delay that is waited by polling the
// clock instead of by a timer. A Go timer wakes its goroutine late by the
// scheduler's latency (tens of µs idle, up to a millisecond or more on a busy
// machine); sleeping until SpinWindow before the deadline and polling from
// there, yielding the processor between polls, puts the wake-up within a few
// µs of the deadline and never before it, for at most SpinWindow of yielding
// per delayed request. Measured in the README ("Faults": latency precision).
const SpinWindow = 500 * time.Microsecond

// wait blocks for d, precisely (see SpinWindow), unless ctx ends first; it
// reports whether the whole delay elapsed, and counts in late (may be nil)
// how late past the deadline it released.
func wait(ctx context.Context, d time.Duration, late *precise.Recorder) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	deadline := time.Now().Add(d)
	if coarse := d - SpinWindow; coarse > 0 {
		t := time.NewTimer(coarse)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		}
	}
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return false
		}
		runtime.Gosched()
	}
	late.Record(time.Since(deadline))
	return true
}

package faults

import (
	"context"
	"time"

	"github.com/cascadehq/cascade/internal/precise"
)

// delay waits out injected delays precisely and counts how late past its
// deadline each one ended. The zero value is ready; a nil *delay waits on
// a plain Go timer and counts nothing (for pauses whose exact end does not
// matter).
//
// It waits as faults/tcpfault does: on a Go timer until precise.Handoff
// (2 ms) before the deadline, then in the kernel's nanosleep with 1 ns
// timer slack (precise.Sleepers, capped). It replaced a Go timer until
// 500 µs before the deadline followed by yielding (runtime.Gosched) until
// it: a Go timer fires 0.3–0.7 ms late at the median and ~1.1 ms at p99 on
// Linux, so the 500 µs window was often gone before the spin began.
// Measured on the shared 2-core VM, 100 ms waits alone (no HTTP), 10 s at
// 50 and 500 per second, 2 interleaved reps, load 1.5–3.4; lateness p50,
// p99, share within 0.5 ms:
//
//	Go timer only            275–731 µs, 1.1–1.2 ms,  33–74 %
//	timer + 500 µs spin       34–231 µs, 0.67–0.99 ms, 77–93 %
//	timer + 2 ms nanosleep    15–29 µs,  0.17–0.92 ms, 98.6–99.6 %
//
// End to end (`cascade upstream --latency 100ms`, vegeta 15–20 s, 9
// interleaved pairs per rate over three runs, load 0.2–5), the client's
// p99 could not tell them apart: the paired difference had a median of
// −0.02 ms at 500/s and the pairs split 5–4 at 50/s, within ±2 ms of noise
// (±12 ms under the heaviest load). The fault's own count of releases
// within 0.5 ms was higher with the nanosleep in 13 of the 18 pairs, and
// the spin's three worst 500/s p99s (+11.6, +17.5, +18.0 ms) came under
// load, where its yielding competes for the CPU. A timerfd read through
// the netpoller was as punctual but cost more CPU (see tcpfault/wait.go).
type delay struct {
	sleepers precise.Sleepers
	late     precise.Recorder
}

// wait blocks for d unless ctx ends first; it reports whether the whole
// delay elapsed. The last precise.Handoff of it does not watch ctx.
func (w *delay) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	deadline := time.Now().Add(d)
	if w == nil {
		return timerUntil(ctx, deadline)
	}
	if !timerUntil(ctx, deadline.Add(-precise.Handoff)) {
		return false
	}
	if !w.sleepers.SleepUntil(deadline) && !timerUntil(ctx, deadline) {
		return false
	}
	w.late.Record(time.Since(deadline))
	return true
}

// timerUntil waits on a Go timer until t (late by the timer's overshoot,
// never early) unless ctx ends first, and reports whether t was reached.
func timerUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		tm.Stop()
		return false
	}
}

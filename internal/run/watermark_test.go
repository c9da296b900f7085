package run

import (
	"testing"
	"time"
)

type scriptedFrontier struct {
	now     time.Duration
	through func(now time.Duration) time.Duration
}

func (f *scriptedFrontier) DispatchedThrough() time.Duration { return f.through(f.now) }

// With a 2 s client timeout an interval is written one timeout plus one
// interval after the instant the scheduler had handed over all its
// requests. From 3 s on the scheduler runs 1.5 s late; the clock-only rule
// would then write intervals whose stragglers are still in flight.
func TestWatermark(t *testing.T) {
	const s = time.Second
	f := &scriptedFrontier{through: func(now time.Duration) time.Duration {
		if now < 3*s {
			return now
		}
		return now - 1500*time.Millisecond
	}}
	m := &watermark{timeout: 2 * s, frontier: f}
	clockOnly := &watermark{timeout: 2 * s}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	for _, c := range []struct{ now, want, clock time.Duration }{
		{1 * s, 0, 0},
		{2 * s, 0, 0},
		{3 * s, 0, 0},
		{4 * s, ms(1000), ms(1000)}, // the 1 s snapshot: on time
		{5 * s, ms(2000), ms(2000)},
		{6 * s, ms(2000), ms(3000)}, // the 3 s snapshot says 1.5 s; never backwards
		{7 * s, ms(2500), ms(4000)},
		{8 * s, ms(3500), ms(5000)},
	} {
		f.now = c.now
		if got := m.before(c.now); got != c.want {
			t.Errorf("at %s: before = %s, want %s", c.now, got, c.want)
		}
		if got := clockOnly.before(c.now); got != c.clock {
			t.Errorf("at %s: clock-only before = %s, want %s", c.now, got, c.clock)
		}
	}
}

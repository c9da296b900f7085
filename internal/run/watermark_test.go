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

// evenSchedule is an open model's schedule: rate requests a second, evenly
// spaced from 0, until end. It fails the test when asked about an earlier
// bound than before (the generator walks its schedules forward only).
type evenSchedule struct {
	t    *testing.T
	rate int64
	end  time.Duration
	last time.Duration
}

func (s *evenSchedule) ArrivalsBefore(b time.Duration) (int64, bool) {
	if b < s.last {
		s.t.Fatalf("ArrivalsBefore(%s) after ArrivalsBefore(%s)", b, s.last)
	}
	s.last = b
	b = min(b, s.end)
	gap := time.Second / time.Duration(s.rate)
	return int64((b + gap - 1) / gap), true
}

func (s *evenSchedule) End() time.Duration { return s.end }

type recordedMap map[int64]int64

func (m recordedMap) Recorded(idx int64) int64 { return m[idx] }

// With an open model, an interval is written as soon as it holds every
// request its schedule intends (and ended an interval ago), not a whole
// client timeout later: a killed run kept none of the last 30 s. One still
// missing a request holds it and every later one; the interval the load's
// end falls in is left to the end.
func TestWatermarkWritesWholeIntervals(t *testing.T) {
	const s = time.Second
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	rec := recordedMap{}
	m := &watermark{timeout: 30 * s, sched: &evenSchedule{t: t, rate: 10, end: ms(5500)}, recorded: rec}
	for _, c := range []struct {
		now  time.Duration
		set  map[int64]int64 // recorded in intervals not yet written
		want time.Duration
	}{
		{ms(1500), map[int64]int64{0: 10}, 0},               // interval 0 ended less than an interval ago
		{2 * s, map[int64]int64{1: 9}, 1 * s},               // 0 is whole; 1 has a request out
		{3 * s, map[int64]int64{2: 10}, 1 * s},              // 1 still holds 2 back: in order
		{4 * s, map[int64]int64{1: 10, 3: 10}, 3 * s},       // 1 whole: 1 and 2 go, 3 ended too late
		{8 * s, map[int64]int64{3: 10, 4: 10, 5: 5}, 5 * s}, // 5 holds the load's end (5.5 s)
		{9 * s, nil, 5 * s},
	} {
		for idx, n := range c.set {
			rec[idx] = n
		}
		if got := m.before(c.now); got != c.want {
			t.Errorf("at %s: before = %s, want %s", c.now, got, c.want)
		}
	}
	// A closed model (or a game day) cannot count: the timeout alone.
	closed := &watermark{timeout: 2 * s, sched: closedSchedule{}, recorded: recordedMap{0: 10, 1: 10}}
	for _, c := range []struct{ now, want time.Duration }{{2 * s, 0}, {4 * s, 1 * s}} {
		if got := closed.before(c.now); got != c.want {
			t.Errorf("closed model at %s: before = %s, want %s", c.now, got, c.want)
		}
	}
}

// closedSchedule is a load of closed-model executors only: nothing to
// count; its load ends at end (an hour when zero).
type closedSchedule struct{ end time.Duration }

func (closedSchedule) ArrivalsBefore(time.Duration) (int64, bool) { return 0, false }
func (c closedSchedule) End() time.Duration {
	if c.end == 0 {
		return time.Hour
	}
	return c.end
}

// With load.direct the schedule counts both paths, which two collectors
// record: an interval is whole only when their counts add up to it.
// Counted on the gateway's collector alone, no interval ever was, and a
// killed run lost a whole client timeout.
func TestWatermarkCountsTheDirectPathToo(t *testing.T) {
	const s = time.Second
	via, direct := recordedMap{0: 6, 1: 5}, recordedMap{0: 4, 1: 4}
	m := &watermark{timeout: 30 * s, sched: &evenSchedule{t: t, rate: 10, end: 5 * s}, recorded: recordedSum{via, direct}}
	if got := m.before(3 * s); got != 1*s {
		t.Fatalf("before = %s, want 1s: interval 0 holds its 10 requests over both paths, 1 has one out", got)
	}
	alone := &watermark{timeout: 30 * s, sched: &evenSchedule{t: t, rate: 10, end: 5 * s}, recorded: via}
	if got := alone.before(3 * s); got != 0 {
		t.Fatalf("the gateway's collector alone: before = %s, want 0", got)
	}
}

type oldestAt struct{ t time.Duration }

func (o *oldestAt) OldestInFlight() (time.Duration, bool) { return o.t, true }

// A closed model (VUs) writes an interval once it ends by the oldest
// request still in flight, not a client timeout later; the interval the
// load's end falls in waits for the final write.
func TestWatermarkClosedModel(t *testing.T) {
	const s = time.Second
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	o := &oldestAt{}
	m := &watermark{timeout: 30 * s, sched: closedSchedule{}, inflight: o, recorded: recordedMap{}}
	for _, c := range []struct{ now, oldest, want time.Duration }{
		{ms(2500), ms(2500), 2 * s}, // none in flight: up to the clock, whole intervals
		{ms(3500), ms(2200), 2 * s}, // a request from 2.2 s still out holds [2 s, 3 s)
		{ms(4500), ms(1000), 2 * s}, // never backwards
		{ms(5200), ms(5100), 5 * s},
	} {
		o.t = c.oldest
		if got := m.before(c.now); got != c.want {
			t.Errorf("at %s, oldest in flight %s: before = %s, want %s", c.now, c.oldest, got, c.want)
		}
	}
	end := &watermark{timeout: 30 * s, sched: closedSchedule{end: ms(7500)}, inflight: &oldestAt{t: 9 * s}, recorded: recordedMap{}}
	if got := end.before(9 * s); got != 7*s {
		t.Errorf("past the load's end (7.5 s): before = %s, want 7s: [7 s, 8 s) waits for the final write", got)
	}
}

// A stop ends the early writes. Once a stopped load's VUs retire, the
// oldest send in flight follows the clock: a flush a second after a stop
// at 3.4 s wrote [3 s, 4 s) at full width, where the final write gives it
// the 0.4 s the load ran (before the fix, this test's second step read 4s).
func TestWatermarkStopEndsEarlyWrites(t *testing.T) {
	const s = time.Second
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	o := &oldestAt{}
	stop := make(chan struct{})
	m := &watermark{timeout: 30 * s, sched: closedSchedule{}, inflight: o, recorded: recordedMap{}, stopped: stop}
	o.t = ms(3200)
	if got := m.before(ms(3300)); got != 3*s {
		t.Fatalf("running: before = %s, want 3s", got)
	}
	close(stop) // stopped at 3.4 s; the VUs retire
	o.t = ms(4500)
	if got := m.before(ms(4500)); got != 3*s {
		t.Errorf("stopped at 3.4 s, flushed at 4.5 s: before = %s, want 3s ([3 s, 4 s) is the final write's)", got)
	}
}

// A load that mixes models writes an interval once both rules hold for it:
// the open-model executors recorded every request their schedules intend
// in it, and it ends by the VUs' oldest send still in flight. Either alone
// holds it; it never moves backwards; the interval the load's end falls in
// is left for the final write. Before, a mixed load could tell neither and
// waited a whole client timeout for every interval.
func TestWatermarkMixedModels(t *testing.T) {
	const s = time.Second
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	rec := recordedMap{} // the open executor's samples only (Collector.Recorded)
	o := &oldestAt{}
	m := &watermark{timeout: 30 * s, sched: &evenSchedule{t: t, rate: 10, end: ms(5500)}, inflight: o, recorded: rec}
	for _, c := range []struct {
		what   string
		now    time.Duration
		oldest time.Duration
		set    map[int64]int64
		want   time.Duration
	}{
		{"open whole in 0, a VU's request from 0.5 s still out", 2 * s, ms(500), map[int64]int64{0: 10, 1: 9}, 0},
		{"the VU answered: 0 goes", ms(2500), ms(1700), nil, 1 * s},
		{"the VUs are past 3 s, the open executor has one out in 1", ms(3500), ms(3400), nil, 1 * s},
		{"both done with 1 and 2; 3 ended too late for the open rule", 4 * s, ms(3900), map[int64]int64{1: 10, 2: 10}, 3 * s},
		{"never backwards", ms(4500), 1 * s, nil, 3 * s},
		{"5 holds the load's end (5.5 s)", 9 * s, 9 * s, map[int64]int64{3: 10, 4: 10, 5: 5}, 5 * s},
	} {
		o.t = c.oldest
		for idx, n := range c.set {
			rec[idx] = n
		}
		if got := m.before(c.now); got != c.want {
			t.Errorf("%s: at %s, oldest in flight %s: before = %s, want %s", c.what, c.now, c.oldest, got, c.want)
		}
	}
	// With no VU in flight and the open model behind, the open model
	// alone holds it, and the other way round.
	for _, c := range []struct {
		what     string
		oldest   time.Duration
		recorded int64
		want     time.Duration
	}{
		{"open whole, VU out", ms(300), 10, 0},
		{"VUs past, open short", ms(2900), 9, 0},
		{"both", ms(2900), 10, 1 * s},
	} {
		m := &watermark{timeout: 30 * s, sched: &evenSchedule{t: t, rate: 10, end: 10 * s}, inflight: &oldestAt{t: c.oldest}, recorded: recordedMap{0: c.recorded}}
		if got := m.before(3 * s); got != c.want {
			t.Errorf("%s: before = %s, want %s", c.what, got, c.want)
		}
	}
}

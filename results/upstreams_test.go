package results

import (
	"testing"
	"time"
)

func TestLedger(t *testing.T) {
	l := NewLedger(time.Second)
	ms := time.Millisecond
	arr := func(at time.Duration, replica, method string, attempt int, budget time.Duration, hasBudget bool) Arrival {
		a := Arrival{Upstream: "api", Replica: replica, Addr: "127.0.0.1:1" + replica[4:5], Method: method, Attempt: attempt,
			Budget: budget, HasBudget: hasBudget, At: at}
		l.Arrive(a)
		return a
	}
	finish := func(a Arrival, at time.Duration) {
		a.Finished = at
		l.Finish(a)
	}
	// Second 0: three arrivals on api[0] in one millisecond, one retry of a
	// POST, one attempt sent with no budget left (it stops within the
	// slack of its deadline: no orphan).
	a1 := arr(100*ms+200*time.Microsecond, "api[0]", "GET", 1, 500*ms, true)
	finish(arr(100*ms+700*time.Microsecond, "api[0]", "GET", 1, 500*ms, true), 150*ms)
	finish(arr(100*ms+900*time.Microsecond, "api[0]", "POST", 2, 300*ms, true), 150*ms)
	finish(arr(250*ms, "api[1]", "GET", 3, 0, true), 260*ms)
	// One that the caller left at 400ms and that stopped at 420ms: not an
	// orphan (within the slack), although its advertised deadline was 200ms.
	a2 := Arrival{Upstream: "api", Replica: "api[1]", Method: "GET", Attempt: 1, Budget: 100 * ms, HasBudget: true, At: 100 * ms,
		Left: 400 * ms, HasLeft: true, Finished: 420 * ms}
	l.Arrive(a2)
	l.Finish(a2)
	l.Sample(500*ms, "api", "api[0]", "127.0.0.1:10", 4)
	l.Sample(600*ms, "api", "api[0]", "127.0.0.1:10", 2)

	// a1 is still running: second 0 waits, as its orphan counts there.
	if got := l.Take(time.Second); len(got) != 0 {
		t.Fatalf("take before 1s = %+v while a1 runs, want nothing yet", got)
	}
	// a1 finishes 700ms after its 500ms budget ran out: orphaned work,
	// counted where it arrived.
	finish(a1, 1300*ms)
	if got := l.Take(2 * time.Second); len(got) != 2 {
		t.Fatalf("take before 2s = %d records, want seconds 0 and 1", len(got))
	} else {
		r := got[0]
		if r.Arrivals != 5 || r.Retries != 2 || r.NonIdempotentRetries != 1 || r.LateArrivals != 1 || r.Finished != 4 {
			t.Errorf("second 0 = %+v", r)
		}
		if r.Orphans != 1 || r.WithBudget != 5 || r.OrphanMS < 699.7 || r.OrphanMS > 699.9 || r.OrphansRunning != 0 {
			t.Errorf("second 0 orphans %d (%vms) with budget %d: want a1's 699.8ms only (a2 stopped within the slack after its caller left)",
				r.Orphans, r.OrphanMS, r.WithBudget)
		}
		if s1 := got[1]; s1.Start != 1 || s1.Finished != 1 || s1.Orphans != 0 || s1.Arrivals != 0 {
			t.Errorf("second 1 = %+v, want a1's finish only", s1)
		}
		if len(r.PerReplica) != 2 || r.PerReplica[0].Replica != "api[0]" {
			t.Fatalf("per replica = %+v", r.PerReplica)
		}
		r0 := r.PerReplica[0]
		if got := r0.ArrivalsMS; len(got) != 2 || got[0] != 100 || got[1] != 3 {
			t.Errorf("api[0] arrivals by ms = %v, want [100 3]", got)
		}
		if r0.InFlightMean != 3 || r.InFlightMax != 4 || r.Replicas != 1 {
			t.Errorf("in flight mean %v max %v replicas %d", r0.InFlightMean, r.InFlightMax, r.Replicas)
		}
		// The millisecond [100ms, 101ms) against windows that cut it.
		cases := []struct {
			from, to time.Duration
			mode     int
			want     int64
		}{
			{100 * ms, 101 * ms, Inside, 3},
			{100*ms + 500*time.Microsecond, 200 * ms, Inside, 0},
			{100*ms + 500*time.Microsecond, 200 * ms, Overlapping, 3},
			{100*ms + 500*time.Microsecond, 200 * ms, Starting, 0},
			{0, 100*ms + 500*time.Microsecond, Starting, 3},
			{0, 100*ms + 500*time.Microsecond, Inside, 0},
		}
		for _, c := range cases {
			if n := r0.ArrivalsIn(r.Start, c.from, c.to, c.mode); n != c.want {
				t.Errorf("arrivals in [%v, %v) mode %d = %d, want %d", c.from, c.to, c.mode, n, c.want)
			}
		}
	}
}

// Work that outlives the load is orphaned where it arrived: decided at the
// end of the run for what is still running, counted until then; an
// interval waits for its unfinished arrivals at most HoldUnfinished.
func TestLedgerOrphansOutlivingTheRun(t *testing.T) {
	ms := time.Millisecond
	l := NewLedger(time.Second)
	at := func(at, budget time.Duration, has bool) Arrival {
		a := Arrival{Upstream: "api", Replica: "api[0]", Method: "GET", Attempt: 1, Budget: budget, HasBudget: has, At: at}
		l.Arrive(a)
		return a
	}
	// Three requests of second 0 whose caller gave up after 200ms, and one
	// without a deadline; one of second 2 whose deadline is after the
	// load's end at 2.5s.
	for i := range 3 {
		at(time.Duration(i)*100*ms, 200*ms, true)
	}
	at(400*ms, 0, false)
	at(2200*ms, time.Second, true)
	// One that finished in time, in second 1.
	done := at(1100*ms, 200*ms, true)
	done.Finished = 1150 * ms
	l.Finish(done)
	if got := l.Take(2 * time.Second); len(got) != 0 {
		t.Fatalf("took %+v with second 0's arrivals running", got)
	}
	// The run ends at 3s, the load at 2.5s: all five are orphans; the one
	// without a deadline since the load's end.
	l.Settle(3*time.Second, 2500*ms)
	got := l.Take(time.Hour)
	if len(got) != 3 {
		t.Fatalf("records %+v, want seconds 0, 1 and 2", got)
	}
	s0, s1, s2 := got[0], got[1], got[2]
	// 2800 + 2700 + 2600 after the deadlines at 200, 300, 400ms; 500 after
	// the load's end.
	if s0.Orphans != 4 || s0.OrphansRunning != 4 || s0.WithBudget != 3 || s0.OrphanMS != 2800+2700+2600+500 {
		t.Errorf("second 0 = %+v", s0)
	}
	if s1.Orphans != 0 || s1.WithBudget != 1 || s1.Finished != 1 {
		t.Errorf("second 1 = %+v", s1)
	}
	if s2.Orphans != 1 || s2.OrphanMS != 500 {
		t.Errorf("second 2 = %+v: its caller gave up when the load ended, 500ms before the run did", s2)
	}

	// An interval is held no longer than HoldUnfinished: then what is past
	// its deadline is settled as an orphan so far, and a late finish is
	// not counted twice.
	l = NewLedger(time.Second)
	stuck := at(100*ms, 200*ms, true)
	if got := l.Take(HoldUnfinished); len(got) != 0 {
		t.Fatalf("took %+v before the hold ran out", got)
	}
	got = l.Take(HoldUnfinished + time.Second)
	if len(got) != 1 || got[0].Orphans != 1 || got[0].OrphansRunning != 1 {
		t.Fatalf("after the hold: %+v, want second 0 with its orphan", got)
	}
	stuck.Finished = HoldUnfinished + 2*time.Second
	l.Finish(stuck)
	for _, r := range l.Take(time.Hour) {
		if r.Orphans != 0 || r.Finished != 1 {
			t.Errorf("the late finish = %+v, want counted once (as finished, not as an orphan again)", r)
		}
	}
}

// in_flight_max is the largest sum over the replicas sampled at one
// instant, the sum in_flight_mean averages: never below the mean.
func TestInFlightMaxSumsTheReplicas(t *testing.T) {
	const ms = time.Millisecond
	l := NewLedger(time.Second)
	for _, at := range []time.Duration{100 * ms, 200 * ms, 300 * ms} {
		l.Sample(at, "api", "api[0]", "127.0.0.1:10", 2)
		l.Sample(at, "api", "api[1]", "127.0.0.1:11", 3)
	}
	l.Sample(400*ms, "api", "api[0]", "127.0.0.1:10", 6)
	l.Sample(400*ms, "api", "api[1]", "127.0.0.1:11", 0)
	got := l.Take(time.Second)
	if len(got) != 1 {
		t.Fatalf("%d records", len(got))
	}
	if r := got[0]; r.InFlightMean != 5.25 || r.InFlightMax != 6 {
		t.Fatalf("in flight mean %v max %v, want 5.25 (3 + 2.25) and 6", r.InFlightMean, r.InFlightMax)
	}
	l.Sample(1100*ms, "api", "api[0]", "127.0.0.1:10", 2)
	l.Sample(1100*ms, "api", "api[1]", "127.0.0.1:11", 3)
	if r := l.Take(2 * time.Second)[0]; r.InFlightMean != 5 || r.InFlightMax != 5 {
		t.Fatalf("second 1: in flight mean %v max %v, want 5 and 5", r.InFlightMean, r.InFlightMax)
	}
}

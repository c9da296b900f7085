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
	// Second 0: three arrivals on api[0] in one millisecond, one retry of a
	// POST, one attempt sent with no budget left.
	a1 := arr(100*ms+200*time.Microsecond, "api[0]", "GET", 1, 500*ms, true)
	arr(100*ms+700*time.Microsecond, "api[0]", "GET", 1, 500*ms, true)
	arr(100*ms+900*time.Microsecond, "api[0]", "POST", 2, 300*ms, true)
	arr(250*ms, "api[1]", "GET", 3, 0, true)
	// a1 finishes 700ms after its 500ms budget ran out: orphaned work.
	a1.Finished = 1300 * ms
	l.Finish(a1)
	// One that the caller left at 400ms and that stopped at 420ms: not an
	// orphan (within the slack), although its advertised deadline was 200ms.
	a2 := Arrival{Upstream: "api", Replica: "api[1]", Method: "GET", Attempt: 1, Budget: 100 * ms, HasBudget: true, At: 100 * ms,
		Left: 400 * ms, HasLeft: true, Finished: 420 * ms}
	l.Arrive(a2)
	l.Finish(a2)
	l.Sample(500*ms, "api", "api[0]", "127.0.0.1:10", 4)
	l.Sample(600*ms, "api", "api[0]", "127.0.0.1:10", 2)

	if got := l.Take(time.Second); len(got) != 1 {
		t.Fatalf("take before 1s = %d records, want second 0 only", len(got))
	} else {
		r := got[0]
		if r.Arrivals != 5 || r.Retries != 2 || r.NonIdempotentRetries != 1 || r.LateArrivals != 1 || r.Finished != 1 {
			t.Errorf("second 0 = %+v", r)
		}
		if r.Orphans != 0 || r.WithBudget != 1 {
			t.Errorf("second 0 orphans %d with budget %d: a2 stopped within the slack after its caller left", r.Orphans, r.WithBudget)
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
	// a1: deadline 100.2ms + 500ms = 600.2ms, finished at 1.3s (counted in
	// second 1): 699.8ms of work after its caller gave up.
	rest := l.Take(time.Hour)
	if len(rest) != 1 || rest[0].Start != 1 || rest[0].Orphans != 1 || rest[0].WithBudget != 1 || rest[0].OrphanMS < 699.7 || rest[0].OrphanMS > 699.9 {
		t.Errorf("second 1 = %+v, want a1's 699.8ms of orphaned work", rest)
	}
}

package emit

import (
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/event"
)

func TestThrottle(t *testing.T) {
	var th Throttle
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at    time.Duration
		due   bool
		count int64
	}{
		{0, true, 1}, // the onset is reported at once
		{100 * time.Millisecond, false, 0},
		{900 * time.Millisecond, false, 0},
		{time.Second, true, 3}, // the two held back plus this one
		{5 * time.Second, true, 1},
	}
	for _, s := range steps {
		due, n := th.Hit(t0.Add(s.at))
		if due != s.due || n != s.count {
			t.Errorf("at %v: (%v, %d), want (%v, %d)", s.at, due, n, s.due, s.count)
		}
	}
}

func TestEmitter(t *testing.T) {
	var mem event.Memory
	e := New(&mem, event.NewClock(), "api")
	ev := e.EventFor("api[x]", "health.up", map[string]any{"k": 1})
	e.Send(ev)
	e.Emit("breaker.open", nil)
	evs := mem.Events()
	if len(evs) != 2 || evs[0].Target != "api[x]" || evs[1].Target != "api" || evs[1].Source != Source {
		t.Errorf("events = %+v", evs)
	}
	New(nil, nil, "").Emit("x", nil) // nil sink and clock are usable
}

// The options a breaker, limiter or fallback takes build its emitter: no
// options discard; both name where events go and what they are about.
func TestFromOptions(t *testing.T) {
	From(nil).Emit("breaker.open", nil) // discarded, on a clock of its own
	var mem event.Memory
	clock := event.ClockAt(time.Now().Add(-time.Hour)) // a run an hour old
	e := From([]Option{WithTarget("/api"), WithEvents(&mem, clock)})
	e.Emit("fallback.served", nil)
	evs := mem.Events()
	if len(evs) != 1 || evs[0].Target != "/api" || evs[0].Type != "fallback.served" {
		t.Fatalf("events = %+v", evs)
	}
	if evs[0].T < time.Hour {
		t.Errorf("stamped %v: not on the run's clock, which is an hour in", evs[0].T)
	}
}

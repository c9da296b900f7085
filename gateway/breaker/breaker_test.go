package breaker

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
)

// call is one step of a scripted scenario: wait, then make a call that fails
// or not and takes some time, then expect a state.
type call struct {
	sleep   time.Duration // before the call
	fail    bool
	elapsed time.Duration
	wantErr error // from Allow; nil means permitted
	want    State // after the call
}

func newTest(t *testing.T, cfg Config) (*Breaker, *event.Memory) {
	t.Helper()
	var mem event.Memory
	b, err := New(cfg, WithEvents(&mem, event.NewClock()), WithTarget("api"))
	if err != nil {
		t.Fatal(err)
	}
	return b, &mem
}

func run(t *testing.T, b *Breaker, calls []call) {
	t.Helper()
	for i, c := range calls {
		time.Sleep(c.sleep)
		tk, err := b.Allow()
		if !errors.Is(err, c.wantErr) || (c.wantErr == nil && err != nil) {
			t.Fatalf("call %d: Allow() error = %v, want %v", i, err, c.wantErr)
		}
		if err == nil {
			time.Sleep(c.elapsed)
			b.Record(tk, c.fail, c.elapsed)
		}
		if got := b.State(); got != c.want {
			t.Fatalf("call %d: state = %v, want %v", i, got, c.want)
		}
	}
}

func repeat(n int, c call) []call {
	out := make([]call, n)
	for i := range out {
		out[i] = c
	}
	return out
}

func cat(parts ...[]call) []call {
	var out []call
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func types(mem *event.Memory) string {
	var ts []string
	for _, e := range mem.Events() {
		ts = append(ts, e.Type)
	}
	return strings.Join(ts, " ")
}

func TestTransitions(t *testing.T) {
	ok := call{want: Closed}
	fail := call{fail: true, want: Closed}
	base := Config{SlidingWindowSize: 10, MinimumCalls: 4, FailureRateThreshold: 0.5,
		SlowCallDuration: units.Duration(time.Second), SlowCallRateThreshold: 0.5,
		WaitDurationInOpen: units.Duration(5 * time.Second), PermittedCallsInHalfOpen: 3}
	tests := []struct {
		name   string
		cfg    Config
		calls  []call
		events string
	}{
		{
			name:  "failure rate below threshold stays closed",
			cfg:   base,
			calls: cat(repeat(3, ok), repeat(2, fail), repeat(3, ok)), // 2/8 failed
		},
		{
			name: "opens when the failure rate reaches the threshold",
			cfg:  base,
			// ok ok fail fail: 4 calls, 50% ≥ 50%.
			calls:  cat(repeat(2, ok), []call{fail, {fail: true, want: Open}}),
			events: "breaker.open",
		},
		{
			name: "minimum calls: failures before it do not open",
			cfg:  base,
			// three failures are 100% but only 3 < 4 calls; the fourth opens.
			calls:  cat(repeat(3, fail), []call{{fail: true, want: Open}}),
			events: "breaker.open",
		},
		{
			name:   "minimum calls above the window size is capped at it",
			cfg:    Config{SlidingWindowSize: 3, MinimumCalls: 50, WaitDurationInOpen: units.Duration(time.Second)},
			calls:  cat(repeat(2, fail), []call{{fail: true, want: Open}}),
			events: "breaker.open",
		},
		{
			name: "slow-call rate opens even when every call succeeds",
			cfg:  base,
			calls: cat(repeat(2, ok), []call{{elapsed: 2 * time.Second, want: Closed},
				{elapsed: 2 * time.Second, want: Open}}),
			events: "breaker.open",
		},
		{
			name:  "a call exactly at slow_call_duration is not slow",
			cfg:   base,
			calls: repeat(6, call{elapsed: time.Second, want: Closed}),
		},
		{
			name: "open rejects until the wait has passed, then half-open probes",
			cfg:  base,
			calls: cat(repeat(4, fail)[:3], []call{{fail: true, want: Open}},
				[]call{{sleep: 4 * time.Second, wantErr: ErrOpen, want: Open}},
				[]call{{sleep: time.Second, want: HalfOpen}}),
			events: "breaker.open breaker.half_open",
		},
		{
			name: "half-open closes when the probes pass",
			cfg:  base,
			calls: cat(repeat(4, fail)[:3], []call{{fail: true, want: Open}},
				[]call{{sleep: 5 * time.Second, want: HalfOpen}, {want: HalfOpen}, {fail: true, want: Closed}}), // 1/3 failed
			events: "breaker.open breaker.half_open breaker.close",
		},
		{
			name: "half-open reopens when the probes fail",
			cfg:  base,
			calls: cat(repeat(4, fail)[:3], []call{{fail: true, want: Open}},
				[]call{{sleep: 5 * time.Second, fail: true, want: HalfOpen}, {want: HalfOpen}, {fail: true, want: Open}},
				[]call{{wantErr: ErrOpen, want: Open}}),
			events: "breaker.open breaker.half_open breaker.open",
		},
		{
			name: "half-open reopens on slow probes",
			cfg:  base,
			calls: cat(repeat(4, fail)[:3], []call{{fail: true, want: Open}},
				[]call{{sleep: 5 * time.Second, elapsed: 3 * time.Second, want: HalfOpen}, {want: HalfOpen},
					{elapsed: 3 * time.Second, want: Open}}),
			events: "breaker.open breaker.half_open breaker.open",
		},
		{
			name: "closing empties the window",
			cfg:  base,
			calls: cat(repeat(4, fail)[:3], []call{{fail: true, want: Open}},
				[]call{{sleep: 5 * time.Second, want: HalfOpen}, {want: HalfOpen}, {want: Closed}},
				repeat(3, fail), []call{{fail: true, want: Open}}),
			events: "breaker.open breaker.half_open breaker.close breaker.open",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b, mem := newTest(t, tt.cfg)
				run(t, b, tt.calls)
				if got := types(mem); got != tt.events {
					t.Errorf("events = %q, want %q", got, tt.events)
				}
			})
		})
	}
}

func TestOpenEventAttrs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, mem := newTest(t, Config{SlidingWindowSize: 4, MinimumCalls: 4, FailureRateThreshold: 0.75})
		run(t, b, []call{{want: Closed}, {fail: true, want: Closed}, {fail: true, want: Closed}, {fail: true, want: Open}})
		evs := mem.Events()
		if len(evs) != 1 {
			t.Fatalf("events: %v", evs)
		}
		e := evs[0]
		if e.Type != "breaker.open" || e.Target != "api" || e.Source != "gateway" {
			t.Errorf("event = %+v", e)
		}
		if e.Attrs["failure_rate"] != 0.75 || e.Attrs["slow_call_rate"] != 0.0 || e.Attrs["calls"] != int64(4) ||
			e.Attrs["generation"] != uint64(2) || e.Attrs["reason"] != "failure_rate" {
			t.Errorf("attrs = %v", e.Attrs)
		}
	})
}

// The open event counts the calls admitted and not yet recorded: they may
// still reach the upstream after it opened (results/verdict's Blocked).
func TestOpenEventCountsCallsInFlight(t *testing.T) {
	b, mem := newTest(t, Config{SlidingWindowSize: 4, MinimumCalls: 4, FailureRateThreshold: 0.5})
	var out []Ticket
	for range 6 {
		tk, err := b.Allow()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tk)
	}
	for _, tk := range out[:4] { // the fourth result opens it; two calls are still out
		b.Record(tk, true, time.Millisecond)
	}
	evs := mem.Events()
	if len(evs) != 1 || evs[0].Type != "breaker.open" || evs[0].Attrs["in_flight"] != int64(2) {
		t.Fatalf("events %v, want one breaker.open with in_flight 2", evs)
	}
	for _, tk := range out[4:] { // late results of the old generation
		b.Record(tk, false, time.Millisecond)
	}
	b.ForceOpen()
	if evs := mem.Events(); evs[len(evs)-1].Attrs["in_flight"] != int64(0) {
		t.Fatalf("forced open after every call ended: %v", evs[len(evs)-1])
	}
}

func TestHalfOpenProbeCounting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newTest(t, Config{SlidingWindowSize: 2, MinimumCalls: 2, PermittedCallsInHalfOpen: 3,
			WaitDurationInOpen: units.Duration(time.Second)})
		run(t, b, []call{{fail: true, want: Closed}, {fail: true, want: Open}})
		time.Sleep(time.Second)
		var tickets []Ticket
		for range 3 {
			tk, err := b.Allow()
			if err != nil {
				t.Fatalf("probe refused: %v", err)
			}
			tickets = append(tickets, tk)
		}
		if _, err := b.Allow(); !errors.Is(err, ErrHalfOpenFull) {
			t.Fatalf("4th call in half-open: err = %v, want ErrHalfOpenFull", err)
		}
		// Outcomes of the first two do not decide yet.
		b.Record(tickets[0], false, 0)
		b.Record(tickets[1], false, 0)
		if _, err := b.Allow(); !errors.Is(err, ErrHalfOpenFull) {
			t.Fatalf("probes are counted when issued, not when finished: err = %v", err)
		}
		if b.State() != HalfOpen {
			t.Fatalf("state = %v before the last probe", b.State())
		}
		b.Record(tickets[2], false, 0)
		if b.State() != Closed {
			t.Fatalf("state = %v after three passing probes", b.State())
		}
		c := b.Counters()
		if c.HalfOpenProbes != 3 || c.HalfOpenFull != 2 || c.Permitted != 5 {
			t.Errorf("counters = %+v", c)
		}
	})
}

// A released ticket records nothing: in half-open it frees the probe's
// slot and decides nothing; in the closed state the window does not see
// it; a ticket from an older generation frees no probe of the new one.
func TestRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A 100% threshold over 3 calls: three failures open it, and one
		// success among them (a release recorded as one) would not.
		b, mem := newTest(t, Config{SlidingWindowSize: 3, MinimumCalls: 3, FailureRateThreshold: 1,
			PermittedCallsInHalfOpen: 2, WaitDurationInOpen: units.Duration(time.Second)})
		old, _ := b.Allow()
		run(t, b, []call{{fail: true, want: Closed}})
		gone, _ := b.Allow()
		b.Release(gone)
		run(t, b, []call{{fail: true, want: Closed}, {fail: true, want: Open}})

		time.Sleep(time.Second)
		p1, err1 := b.Allow()
		p2, err2 := b.Allow()
		if err1 != nil || err2 != nil {
			t.Fatalf("probes refused: %v, %v", err1, err2)
		}
		if _, err := b.Allow(); !errors.Is(err, ErrHalfOpenFull) {
			t.Fatalf("3rd call in half-open: err = %v, want ErrHalfOpenFull", err)
		}
		b.Release(old) // issued while closed: frees no probe
		if _, err := b.Allow(); !errors.Is(err, ErrHalfOpenFull) {
			t.Fatalf("a stale release freed a probe: err = %v", err)
		}
		b.Release(p1)
		b.Release(p2)
		if b.State() != HalfOpen {
			t.Fatalf("state = %v after two released probes, want half_open (nothing decided)", b.State())
		}
		p3, err3 := b.Allow()
		p4, err4 := b.Allow()
		if err3 != nil || err4 != nil {
			t.Fatalf("released probe slots not free: %v, %v", err3, err4)
		}
		b.Record(p3, false, 0)
		if b.State() != HalfOpen {
			t.Fatalf("state = %v after one of two probes", b.State())
		}
		b.Record(p4, false, 0)
		if b.State() != Closed {
			t.Fatalf("state = %v after two passing probes", b.State())
		}
		if got := types(mem); got != "breaker.open breaker.half_open breaker.close" {
			t.Errorf("events = %q", got)
		}
		if c := b.Counters(); c.Released != 4 || c.Successes != 2 || c.Failures != 3 || c.Stale != 0 {
			t.Errorf("counters = %+v", c)
		}
		b.ForceOpen()
		if evs := mem.Events(); evs[len(evs)-1].Attrs["in_flight"] != int64(0) {
			t.Errorf("released calls still counted in flight: %v", evs[len(evs)-1])
		}
		b.Release(Ticket{}) // a zero ticket is nobody's
		if c := b.Counters(); c.Released != 4 {
			t.Errorf("zero ticket counted: %+v", c)
		}
	})
}

func TestMaxWaitInHalfOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, mem := newTest(t, Config{SlidingWindowSize: 1, PermittedCallsInHalfOpen: 2,
			WaitDurationInOpen: units.Duration(time.Second), MaxWaitInHalfOpen: units.Duration(10 * time.Second)})
		run(t, b, []call{{fail: true, want: Open}, {sleep: time.Second, want: HalfOpen}})
		// One probe remains out and never comes back.
		stuck, err := b.Allow()
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(9 * time.Second)
		if _, err := b.Allow(); !errors.Is(err, ErrHalfOpenFull) {
			t.Fatalf("before max wait: %v", err)
		}
		time.Sleep(time.Second)
		if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
			t.Fatalf("after max wait: err = %v, want ErrOpen", err)
		}
		b.Record(stuck, false, 0) // the late probe must not close the new open state
		if b.State() != Open {
			t.Fatalf("state = %v", b.State())
		}
		if got := types(mem); got != "breaker.open breaker.half_open breaker.open" {
			t.Errorf("events = %q", got)
		}
		if last := mem.Events()[2]; last.Attr("reason") != "max_wait_in_half_open" {
			t.Errorf("reason = %v", last.Attrs)
		}
	})
}

func TestLateTicketIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newTest(t, Config{SlidingWindowSize: 2, MinimumCalls: 2, WaitDurationInOpen: units.Duration(time.Second),
			PermittedCallsInHalfOpen: 1})
		slowOld, _ := b.Allow() // issued while closed, gen 1
		run(t, b, []call{{fail: true, want: Closed}, {fail: true, want: Open}})
		time.Sleep(time.Second)
		probe, err := b.Allow()
		if err != nil || b.State() != HalfOpen {
			t.Fatalf("probe: %v, %v", err, b.State())
		}
		// The old call fails now: it must not count as the probe's outcome.
		b.Record(slowOld, true, 0)
		if b.State() != HalfOpen {
			t.Fatalf("a late result from generation %d moved the breaker to %v", slowOld.Generation(), b.State())
		}
		b.Record(probe, false, 0)
		if b.State() != Closed {
			t.Fatalf("state = %v", b.State())
		}
		// And a probe's ticket after closing is stale too.
		b.Record(probe, true, 0)
		if c := b.Counters(); c.Stale != 2 || c.Failures != 2 {
			t.Errorf("counters = %+v", c)
		}
		b.Record(Ticket{}, true, 0)
		if c := b.Counters(); c.Stale != 3 {
			t.Errorf("zero ticket not counted stale: %+v", c)
		}
	})
}

func TestForcedOpenAndDisabled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, mem := newTest(t, Config{SlidingWindowSize: 2, MinimumCalls: 2, WaitDurationInOpen: units.Duration(time.Second)})
		b.ForceOpen()
		_, err := b.Allow()
		if !errors.Is(err, ErrForcedOpen) || !errors.Is(err, ErrOpen) {
			t.Fatalf("forced open: err = %v", err)
		}
		time.Sleep(time.Hour) // no wait ends a forced open
		if _, err := b.Allow(); !errors.Is(err, ErrOpen) || b.State() != ForcedOpen {
			t.Fatalf("forced open after an hour: %v %v", err, b.State())
		}
		b.Disable()
		for range 100 {
			tk, err := b.Allow()
			if err != nil {
				t.Fatal(err)
			}
			b.Record(tk, true, time.Hour)
		}
		if b.State() != Disabled {
			t.Fatalf("disabled breaker moved to %v", b.State())
		}
		b.Reset()
		run(t, b, []call{{fail: true, want: Closed}, {fail: true, want: Open}})
		if got := types(mem); got != "breaker.forced_open breaker.disabled breaker.close breaker.open" {
			t.Errorf("events = %q", got)
		}
	})
}

func TestTimeBasedWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _ := newTest(t, Config{SlidingWindowType: TimeBased, SlidingWindowDuration: units.Duration(10 * time.Second),
			MinimumCalls: 4, FailureRateThreshold: 0.5})
		// Three failures, then they age out of the 10s window.
		run(t, b, repeat(3, call{fail: true, want: Closed}))
		time.Sleep(11 * time.Second)
		// One more failure and one success: 1/2 but only 2 calls in the window.
		run(t, b, []call{{fail: true, want: Closed}, {want: Closed}})
		// Two successes: 1/4 < 50%.
		run(t, b, []call{{want: Closed}, {want: Closed}})
		// Two more failures within the window: 2/5 stays closed, 3/6 ≥ 50% opens.
		run(t, b, []call{{fail: true, want: Closed}, {sleep: time.Second, fail: true, want: Open}})
	})
}

func TestTimeWindowEviction(t *testing.T) {
	w := newTimeWindow(time.Second) // 10 buckets of 100ms
	ms := time.Millisecond
	w.record(0, true, false)
	w.record(50*ms, false, true)
	w.record(950*ms, true, true)
	if got := w.totals(990 * ms); got != (totals{calls: 3, failed: 2, slow: 2}) {
		t.Fatalf("totals = %+v", got)
	}
	if got := w.totals(1000 * ms); got != (totals{calls: 1, failed: 1, slow: 1}) {
		t.Fatalf("after the first bucket slid out: %+v", got)
	}
	if got := w.totals(time.Hour); got != (totals{}) {
		t.Fatalf("after an idle hour: %+v", got)
	}
	w.record(time.Hour+ms, false, false)
	if got := w.totals(time.Hour + 2*ms); got != (totals{calls: 1}) {
		t.Fatalf("after a new call: %+v", got)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		cfg   Config
		field string
	}{
		{Config{SlidingWindowType: "sliding"}, "sliding_window_type"},
		{Config{SlidingWindowSize: -1}, "sliding_window_size"},
		{Config{SlidingWindowType: TimeBased, SlidingWindowSize: 5}, "sliding_window_size"},
		{Config{SlidingWindowDuration: units.Duration(time.Second)}, "sliding_window_duration"},
		{Config{SlidingWindowType: TimeBased, SlidingWindowDuration: units.Duration(time.Microsecond)}, "sliding_window_duration"},
		{Config{FailureRateThreshold: 1.5}, "failure_rate_threshold"},
		{Config{SlowCallRateThreshold: -0.1}, "slow_call_rate_threshold"},
		{Config{MinimumCalls: -3}, "minimum_calls"},
		{Config{PermittedCallsInHalfOpen: -1}, "permitted_calls_in_half_open"},
		{Config{WaitDurationInOpen: units.Duration(-time.Second)}, "wait_duration_in_open"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tt.field+": ") {
			t.Errorf("%+v: err = %v, want one naming %s", tt.cfg, err, tt.field)
		}
		if _, nerr := New(tt.cfg); nerr == nil {
			t.Errorf("New accepted %+v", tt.cfg)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	s := Config{}.settings()
	want := settings{windowSize: 100, windowDuration: 100 * time.Second, minCalls: 100, failureRate: 0.5,
		slowRate: 1, slowCall: 60 * time.Second, waitOpen: 60 * time.Second, halfOpenCalls: 10}
	if s != want {
		t.Errorf("defaults = %+v\nwant       %+v", s, want)
	}
}

// TestConcurrent hammers one breaker from many goroutines through every
// state; run with -race. The invariant checked: successes+failures+stale
// equals the number of tickets handed back.
func TestConcurrent(t *testing.T) {
	b, err := New(Config{SlidingWindowSize: 20, MinimumCalls: 10, WaitDurationInOpen: units.Duration(time.Millisecond),
		PermittedCallsInHalfOpen: 3}, WithEvents(&event.Memory{}, nil))
	if err != nil {
		t.Fatal(err)
	}
	const workers, calls = 16, 2000
	var wg sync.WaitGroup
	var recorded sync.Map
	for w := range workers {
		wg.Go(func() {
			n := 0
			for i := range calls {
				tk, err := b.Allow()
				if err != nil {
					continue
				}
				b.Record(tk, (i+w)%3 == 0, 0)
				n++
				if w == 0 && i%500 == 0 {
					b.ForceOpen()
					b.Reset()
				}
			}
			recorded.Store(w, n)
		})
	}
	wg.Wait()
	var total uint64
	recorded.Range(func(_, v any) bool { total += uint64(v.(int)); return true })
	c := b.Counters()
	if c.Successes+c.Failures+c.Stale != total || c.Permitted != total {
		t.Errorf("counters %+v do not add up to %d recorded calls", c, total)
	}
	if c.Transitions == 0 {
		t.Errorf("no transitions under a 33%% failure rate: %+v", c)
	}
}

func BenchmarkAllowRecord(b *testing.B) {
	for _, typ := range []string{CountBased, TimeBased} {
		b.Run(typ, func(b *testing.B) {
			cfg := Config{SlidingWindowType: typ}
			if typ == TimeBased {
				cfg.SlidingWindowDuration = units.Duration(10 * time.Second)
			}
			br, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				tk, err := br.Allow()
				if err != nil {
					b.Fatal(err)
				}
				br.Record(tk, false, time.Millisecond)
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		br, _ := New(Config{})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				tk, err := br.Allow()
				if err == nil {
					br.Record(tk, false, time.Millisecond)
				}
			}
		})
	})
}

// Package breaker is a circuit breaker for one upstream, with the semantics
// of Resilience4j's CircuitBreaker:
//
//	            failure or slow-call rate ≥ threshold
//	            (over ≥ minimum_calls in the window)
//	  CLOSED ───────────────────────────────────────▶ OPEN
//	    ▲                                              │ wait_duration_in_open
//	    │ probes below both thresholds                 ▼ (on the next call)
//	    └──────────────────────────────────────── HALF_OPEN ──▶ OPEN
//	                                     probes at/above a threshold,
//	                                     or max_wait_in_half_open passed
//
//	FORCED_OPEN and DISABLED are set by hand (ForceOpen, Disable) and left
//	only by Reset.
//
// The shape is gobreaker's two steps, without its closure: Allow returns a
// Ticket (a value: nothing allocates) and the caller hands it back to Record
// with the outcome, or to Release when the call has none (its caller left). Every transition bumps a generation and a Ticket carries
// the generation it was issued in, so a slow response from before a
// transition cannot count toward the new state.
//
// Transitions are emitted as events after the lock is released.
package breaker

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascadehq/cascade/gateway/internal/emit"
	"github.com/cascadehq/cascade/internal/event"
)

// State is the breaker's state.
type State uint8

// The states.
const (
	Closed State = iota
	Open
	HalfOpen
	ForcedOpen
	Disabled
)

var stateNames = [...]string{"closed", "open", "half_open", "forced_open", "disabled"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", s)
}

// eventType is the event emitted on entering the state.
func (s State) eventType() string {
	if s == Closed {
		return "breaker.close"
	}
	return "breaker." + s.String()
}

// Errors returned by Allow. ErrForcedOpen matches ErrOpen with errors.Is, so
// a proxy that maps ErrOpen to 503 breaker_open covers both.
var (
	ErrOpen         = errors.New("circuit breaker is open")
	ErrForcedOpen   = fmt.Errorf("%w (forced)", ErrOpen)
	ErrHalfOpenFull = errors.New("circuit breaker is half-open and all its probes are taken")
)

// Ticket is a permission to make one call. Hand it back exactly once: to
// Record with the call's outcome, or to Release when the call has none. A
// zero Ticket is never valid.
type Ticket struct {
	gen uint64
}

// Generation is the breaker generation the ticket was issued in.
func (t Ticket) Generation() uint64 { return t.gen }

// Counters are cumulative counts since the breaker was made, for verdicts
// (e.g. "the breaker shed at least 30% of calls while open").
type Counters struct {
	Permitted      uint64 // calls allowed in any state (probes included)
	Rejected       uint64 // calls refused because the breaker was open or forced open
	HalfOpenFull   uint64 // calls refused because all half-open probes were taken
	HalfOpenProbes uint64 // calls allowed in half-open
	Successes      uint64 // results recorded as successes
	Failures       uint64 // results recorded as failures
	Slow           uint64 // results recorded as slow (successful or not)
	Stale          uint64 // results ignored: their ticket was from an older generation
	Released       uint64 // calls handed back without an outcome (Release)
	Transitions    uint64 // state changes
}

// Breaker is one upstream's circuit breaker. It is safe for concurrent use.
type Breaker struct {
	set  settings
	em   emit.Emitter
	base time.Time // window offsets are measured from here (monotonic)

	// word packs the generation (high bits) and the State (low 8 bits), so
	// Allow in the closed and disabled states reads both in one atomic load
	// and takes no lock.
	word atomic.Uint64

	mu           sync.Mutex // guards everything below, and every change of word
	win          window
	since        time.Time // when the current state began
	probesIssued int
	probes       totals

	permitted, rejected, halfOpenFull, halfOpenProbes atomic.Uint64
	successes, failures, slow, stale, transitions     atomic.Uint64
	released                                          atomic.Uint64
	// outstanding counts tickets given and not yet recorded. The open
	// event carries it: calls admitted before the breaker opened may still
	// reach the upstream after, and a verdict on "nothing gets through while
	// open" must not hold them against it.
	outstanding atomic.Int64
}

// Option configures a Breaker beyond its Config.
type Option = emit.Option

// WithEvents sends transitions to sink, stamped on clock.
func WithEvents(sink event.Sink, clock *event.Clock) Option { return emit.WithEvents(sink, clock) }

// WithTarget names the upstream in events.
func WithTarget(name string) Option { return emit.WithTarget(name) }

// New returns a closed breaker.
func New(cfg Config, opts ...Option) (*Breaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := cfg.settings()
	b := &Breaker{set: s, em: emit.From(opts), base: time.Now()}
	if s.timeBased {
		b.win = newTimeWindow(s.windowDuration)
	} else {
		b.win = newCountWindow(s.windowSize)
	}
	b.since = b.base
	b.word.Store(pack(1, Closed))
	return b, nil
}

func pack(gen uint64, s State) uint64 { return gen<<8 | uint64(s) }

func unpack(w uint64) (uint64, State) { return w >> 8, State(w & 0xff) }

// State is the current state. It has no side effect: an open breaker whose
// wait has passed still reads open until a call arrives, as in Resilience4j.
func (b *Breaker) State() State {
	_, s := unpack(b.word.Load())
	return s
}

// Generation is the current generation; it grows by one per transition.
func (b *Breaker) Generation() uint64 {
	g, _ := unpack(b.word.Load())
	return g
}

// Counters returns a snapshot of the counters.
func (b *Breaker) Counters() Counters {
	return Counters{
		Permitted: b.permitted.Load(), Rejected: b.rejected.Load(),
		HalfOpenFull: b.halfOpenFull.Load(), HalfOpenProbes: b.halfOpenProbes.Load(),
		Successes: b.successes.Load(), Failures: b.failures.Load(), Slow: b.slow.Load(),
		Stale: b.stale.Load(), Transitions: b.transitions.Load(), Released: b.released.Load(),
	}
}

// Allow asks to make one call. It returns ErrOpen (or ErrForcedOpen, which
// matches ErrOpen) while open, and ErrHalfOpenFull when half-open and every
// probe is out.
func (b *Breaker) Allow() (Ticket, error) {
	gen, s := unpack(b.word.Load())
	switch s {
	case Closed, Disabled:
		b.permitted.Add(1)
		b.outstanding.Add(1)
		return Ticket{gen: gen}, nil
	case ForcedOpen:
		b.rejected.Add(1)
		return Ticket{}, ErrForcedOpen
	}

	now := time.Now()
	b.mu.Lock()
	var ev event.Event
	var moved bool
	t, err := b.allowLocked(now, &ev, &moved)
	b.mu.Unlock()
	if moved {
		b.em.Send(ev)
	}
	return t, err
}

func (b *Breaker) allowLocked(now time.Time, ev *event.Event, moved *bool) (Ticket, error) {
	gen, s := unpack(b.word.Load())
	switch s {
	case Closed, Disabled: // changed since the lock-free read
		b.permitted.Add(1)
		b.outstanding.Add(1)
		return Ticket{gen: gen}, nil
	case ForcedOpen:
		b.rejected.Add(1)
		return Ticket{}, ErrForcedOpen
	case Open:
		if now.Sub(b.since) < b.set.waitOpen {
			b.rejected.Add(1)
			return Ticket{}, ErrOpen
		}
		*ev, *moved = b.transitionLocked(now, HalfOpen, "wait_elapsed", totals{}, false), true
		gen, _ = unpack(b.word.Load())
	case HalfOpen:
		if b.set.maxWaitHalf > 0 && now.Sub(b.since) >= b.set.maxWaitHalf {
			*ev, *moved = b.transitionLocked(now, Open, "max_wait_in_half_open", b.probes, true), true
			b.rejected.Add(1)
			return Ticket{}, ErrOpen
		}
	}
	if b.probesIssued >= b.set.halfOpenCalls {
		b.halfOpenFull.Add(1)
		return Ticket{}, ErrHalfOpenFull
	}
	b.probesIssued++
	b.permitted.Add(1)
	b.outstanding.Add(1)
	b.halfOpenProbes.Add(1)
	return Ticket{gen: gen}, nil
}

// Record reports the outcome of a call made with t. A call is slow when it
// took longer than slow_call_duration, whether or not it failed. Results
// from an older generation are counted as stale and otherwise ignored.
func (b *Breaker) Record(t Ticket, failed bool, elapsed time.Duration) {
	slow := elapsed > b.set.slowCall // Resilience4j: strictly above the threshold
	if t.gen != 0 {
		b.outstanding.Add(-1) // before the lock: this call is over, whatever it decides
	}
	now := time.Now()
	b.mu.Lock()
	ev, moved := b.recordLocked(now, t, failed, slow)
	b.mu.Unlock()
	if moved {
		b.em.Send(ev)
	}
}

func (b *Breaker) recordLocked(now time.Time, t Ticket, failed, slow bool) (event.Event, bool) {
	gen, s := unpack(b.word.Load())
	if t.gen != gen || t.gen == 0 {
		b.stale.Add(1)
		return event.Event{}, false
	}
	if s == Disabled || s == ForcedOpen || s == Open {
		// Disabled records nothing (Resilience4j); a ticket from forced open
		// or open cannot exist in the same generation.
		return event.Event{}, false
	}
	if failed {
		b.failures.Add(1)
	} else {
		b.successes.Add(1)
	}
	if slow {
		b.slow.Add(1)
	}
	switch s {
	case Closed:
		at := now.Sub(b.base)
		b.win.record(at, failed, slow)
		tot := b.win.totals(at)
		if tot.calls < int64(b.set.minCalls) {
			return event.Event{}, false
		}
		if fr, sr := tot.rates(); fr >= b.set.failureRate {
			return b.transitionLocked(now, Open, "failure_rate", tot, true), true
		} else if sr >= b.set.slowRate {
			return b.transitionLocked(now, Open, "slow_call_rate", tot, true), true
		}
	case HalfOpen:
		if b.set.maxWaitHalf > 0 && now.Sub(b.since) >= b.set.maxWaitHalf {
			return b.transitionLocked(now, Open, "max_wait_in_half_open", b.probes, true), true
		}
		b.probes.add(failed, slow, 1)
		if b.probes.calls < int64(b.set.halfOpenCalls) {
			return event.Event{}, false
		}
		fr, sr := b.probes.rates()
		switch {
		case fr >= b.set.failureRate:
			return b.transitionLocked(now, Open, "failure_rate", b.probes, true), true
		case sr >= b.set.slowRate:
			return b.transitionLocked(now, Open, "slow_call_rate", b.probes, true), true
		default:
			return b.transitionLocked(now, Closed, "probes_passed", b.probes, true), true
		}
	}
	return event.Event{}, false
}

// Release hands t back for a call that has no outcome: its caller left
// before the upstream answered, or the proxy never sent it. That says
// nothing about the upstream, and counting it as a success did harm: on a
// hanging upstream, half-open probes abandoned by their clients "passed"
// and closed the breaker. So Release records nothing, in any state. In
// half-open it frees the probe's slot for the next call, as Resilience4j's
// releasePermission does for a call cancelled before it produced anything
// (the reactive operators' hookOnCancel) or whose exception is ignored. In
// the closed state it only ends the call: Resilience4j's closed state
// releases nothing either, and its sliding window holds calls with an
// outcome only, so an abandoned call is neither a success nor a failure
// (nor slow: slowness is learnt from the calls that finish).
func (b *Breaker) Release(t Ticket) {
	if t.gen == 0 {
		return
	}
	b.outstanding.Add(-1)
	b.released.Add(1)
	b.mu.Lock()
	if gen, s := unpack(b.word.Load()); t.gen == gen && s == HalfOpen && b.probesIssued > 0 {
		b.probesIssued--
	}
	b.mu.Unlock()
}

// transitionLocked moves to state to, starting a new generation, and builds
// (but does not send) the event. withRates says whether tot holds the
// figures that decided the transition.
func (b *Breaker) transitionLocked(now time.Time, to State, reason string, tot totals, withRates bool) event.Event {
	gen, _ := unpack(b.word.Load())
	gen++
	b.word.Store(pack(gen, to))
	b.since = now
	b.transitions.Add(1)
	b.probesIssued, b.probes = 0, totals{}
	if to == Closed {
		// A closed breaker starts from an empty window, as in Resilience4j:
		// the failures that opened it must not reopen it at once.
		b.win.reset()
	}
	attrs := map[string]any{"reason": reason, "generation": gen, "calls": tot.calls}
	if to == Open || to == ForcedOpen {
		attrs["in_flight"] = b.outstanding.Load()
	}
	if withRates {
		fr, sr := tot.rates()
		attrs["failure_rate"], attrs["slow_call_rate"] = fr, sr
	}
	return b.em.Event(to.eventType(), attrs)
}

// ForceOpen rejects every call until Reset (Resilience4j's FORCED_OPEN).
func (b *Breaker) ForceOpen() { b.force(ForcedOpen, "forced") }

// Disable permits every call and records nothing until Reset
// (Resilience4j's DISABLED).
func (b *Breaker) Disable() { b.force(Disabled, "disabled") }

// Reset closes the breaker with an empty window, from any state.
func (b *Breaker) Reset() { b.force(Closed, "reset") }

func (b *Breaker) force(to State, reason string) {
	now := time.Now()
	b.mu.Lock()
	ev := b.transitionLocked(now, to, reason, totals{}, false)
	if to != Closed {
		b.win.reset()
	}
	b.mu.Unlock()
	b.em.Send(ev)
}

// Package emit is the one way the gateway's decision components stamp and
// send events. It exists so that every component builds an event while it
// still holds its lock (the timestamp then orders transitions correctly) and
// sends it only after unlocking: a Sink may block or call back into the
// component, and sony/gobreaker#37 shows what happens when a callback runs
// under the lock.
package emit

import (
	"sync"
	"time"

	"github.com/cascadehq/cascade/internal/event"
)

// Source is the Source of every event the gateway's components emit.
const Source = "gateway"

// Emitter stamps events on the run's clock and sends them to a sink.
type Emitter struct {
	sink   event.Sink
	clock  *event.Clock
	target string
}

// New returns an emitter; a nil sink discards and a nil clock starts now.
func New(sink event.Sink, clock *event.Clock, target string) Emitter {
	if sink == nil {
		sink = event.Discard
	}
	if clock == nil {
		clock = event.NewClock()
	}
	return Emitter{sink: sink, clock: clock, target: target}
}

// Option configures a component's emitter: where its events go and which
// upstream or route they name. The breaker, the limiters and the fallbacks
// take it under their own names (breaker.WithEvents...), so that a caller
// reads one package.
type Option func(*Emitter)

// WithEvents sends the events to sink, stamped on clock.
func WithEvents(sink event.Sink, clock *event.Clock) Option {
	return func(e *Emitter) { e.sink, e.clock = sink, clock }
}

// WithTarget names the upstream or route in the events.
func WithTarget(name string) Option { return func(e *Emitter) { e.target = name } }

// From returns the emitter opts describe (New's defaults for what they
// leave out).
func From(opts []Option) Emitter {
	var e Emitter
	for _, opt := range opts {
		opt(&e)
	}
	return New(e.sink, e.clock, e.target)
}

// Target is the default target of this emitter's events.
func (e Emitter) Target() string { return e.target }

// Event builds an event for the default target without sending it.
func (e Emitter) Event(typ string, attrs map[string]any) event.Event {
	return e.EventFor(e.target, typ, attrs)
}

// EventFor builds an event for another target (an endpoint of the upstream).
func (e Emitter) EventFor(target, typ string, attrs map[string]any) event.Event {
	return event.Event{T: e.clock.Now(), Source: Source, Type: typ, Target: target, Attrs: attrs}
}

// Send hands a built event to the sink. Never call it under a lock.
func (e Emitter) Send(ev event.Event) { e.sink.Emit(ev) }

// Emit builds and sends at once, for callers that hold no lock.
func (e Emitter) Emit(typ string, attrs map[string]any) { e.Send(e.Event(typ, attrs)) }

// Throttle thins a per-request decision (a shed request, a served fallback)
// into at most one event per period. The first occurrence after a quiet
// period is reported at once, so a timeline shows exactly when shedding
// began; later ones are counted and the count rides on the next event. A
// per-request event stream would duplicate what the response's cause header
// already records and could outgrow the samples under overload.
type Throttle struct {
	Period time.Duration // zero means one second

	mu      sync.Mutex
	last    time.Time
	pending int64
}

// Hit records one occurrence at now. When an event is due it returns true and
// the number of occurrences it stands for (this one included).
func (t *Throttle) Hit(now time.Time) (due bool, count int64) {
	p := t.Period
	if p <= 0 {
		p = time.Second
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending++
	if !t.last.IsZero() && now.Sub(t.last) < p {
		return false, 0
	}
	t.last = now
	count, t.pending = t.pending, 0
	return true, count
}

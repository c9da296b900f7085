// Package event carries what happened during a run, stamped on the run's one
// monotonic clock. Lower layers (fake upstreams, the gateway, the load
// generator) emit events into a Sink they are given; the run wires that sink
// to the results. Nothing here knows where events end up.
package event

import (
	"encoding/json"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Clock is the run's single time base. Offsets come from Go's monotonic
// clock, so wall-clock jumps during a run do not move events.
//
// The run creates the clock before it starts upstreams and the gateway (they
// stamp their setup events with it) and moves its zero to the instant the
// load starts with Reset, once, before any load or fault timeline runs; so
// setup events have small negative offsets and "fault at 5s" means 5 s into
// the load, however long setup took.
type Clock struct{ start atomic.Pointer[time.Time] }

// NewClock starts a clock now.
func NewClock() *Clock { return ClockAt(time.Now()) }

// ClockAt returns a clock whose zero is start.
func ClockAt(start time.Time) *Clock {
	c := &Clock{}
	c.start.Store(&start)
	return c
}

// Reset moves the clock's zero to t.
func (c *Clock) Reset(t time.Time) { c.start.Store(&t) }

// Start is the wall-clock instant of offset zero.
func (c *Clock) Start() time.Time { return *c.start.Load() }

// Now is the offset since the start.
func (c *Clock) Now() time.Duration { return time.Since(*c.start.Load()) }

// Offset converts an instant to an offset on this clock.
func (c *Clock) Offset(t time.Time) time.Duration { return t.Sub(*c.start.Load()) }

// At converts an offset to an instant.
func (c *Clock) At(d time.Duration) time.Time { return c.start.Load().Add(d) }

// Event is one thing that happened: a fault starting or firing, a breaker
// opening, a retry, a phase starting.
type Event struct {
	T      time.Duration  // offset on the run's clock
	Source string         // who reports it: "timeline", "upstream", "gateway", "loadgen", "run"
	Type   string         // what happened, dotted: "fault.start", "fault.apply", "breaker.open"
	Target string         // what it happened to: an upstream "api", a replica "api[1]", a route
	Attrs  map[string]any // details; values must encode as JSON
}

type wire struct {
	T      float64        `json:"t"` // seconds since the run started
	Source string         `json:"source"`
	Type   string         `json:"type"`
	Target string         `json:"target,omitempty"`
	Attrs  map[string]any `json:"attrs,omitempty"`
}

// MarshalJSON writes T as seconds with microsecond precision, which is what a
// person reading events.jsonl wants and what every chart library takes.
func (e Event) MarshalJSON() ([]byte, error) {
	return json.Marshal(wire{T: math.Round(e.T.Seconds()*1e6) / 1e6, Source: e.Source, Type: e.Type, Target: e.Target, Attrs: e.Attrs})
}

// UnmarshalJSON reads the form MarshalJSON writes.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*e = Event{T: time.Duration(math.Round(w.T * 1e9)), Source: w.Source, Type: w.Type, Target: w.Target, Attrs: w.Attrs}
	return nil
}

// Attr returns a string attribute, or "".
func (e Event) Attr(key string) string {
	s, _ := e.Attrs[key].(string)
	return s
}

// Sink receives events. Emit must be safe for concurrent use and must not
// block for long: it is called from request paths.
type Sink interface {
	Emit(Event)
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(Event)

// Emit calls f.
func (f SinkFunc) Emit(e Event) { f(e) }

// Discard drops every event.
var Discard Sink = SinkFunc(func(Event) {})

// Memory keeps events in order; tests and small runs use it.
type Memory struct {
	mu     sync.Mutex
	events []Event
}

// Emit appends e.
func (m *Memory) Emit(e Event) {
	m.mu.Lock()
	m.events = append(m.events, e)
	m.mu.Unlock()
}

// Events returns a copy of what was emitted so far.
func (m *Memory) Events() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Event(nil), m.events...)
}

// Tee sends every event to each sink in turn.
func Tee(sinks ...Sink) Sink {
	return SinkFunc(func(e Event) {
		for _, s := range sinks {
			s.Emit(e)
		}
	})
}

// Deferred holds the events emitted before the clock's zero is known (a
// run's setup: images built, containers and upstreams started), and passes
// them on at Release, moved onto the new zero; from then on it passes every
// event straight through. Without it, setup events kept their offsets from
// the clock's first zero, small positive ones, and read as if they had
// happened during the load.
type Deferred struct {
	mu       sync.Mutex
	next     Sink
	held     []Event
	released bool
}

// NewDeferred holds events for next until Release.
func NewDeferred(next Sink) *Deferred { return &Deferred{next: next} }

// Emit implements Sink.
func (d *Deferred) Emit(e Event) {
	d.mu.Lock()
	if !d.released {
		d.held = append(d.held, e)
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	d.next.Emit(e)
}

// Release passes the held events on, in order, each with shift taken off
// its offset (the old zero to the new one: they come out negative, before
// the new zero), and every later event straight through. Only the first
// call does anything.
func (d *Deferred) Release(shift time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.released {
		return
	}
	for _, e := range d.held {
		e.T -= shift
		d.next.Emit(e)
	}
	d.held, d.released = nil, true
}

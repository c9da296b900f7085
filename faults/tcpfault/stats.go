package tcpfault

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/precise"
)

// ToxicStats counts what one toxic did, over its whole life on a proxy
// (updates keep counting). A toxic whose Conns stays 0 while ConnsSeen
// grows never took effect: its toxicity, request_toxicity or attributes
// leave nothing to do, and a run should say so.
type ToxicStats struct {
	Updates      uint64 // attribute or toxicity changes after it was added
	ConnsSeen    uint64 // connections it was drawn for (once per connection and version)
	ConnsDrawn   uint64 // of those, connections the toxicity draw selected
	Conns        uint64 // connections it acted on at least once
	Requests     uint64 // messages (requests/responses, see Chunk.Msg) it acted on
	BytesDelayed uint64 // bytes it passed late (latency, bandwidth, slicer, held then released)
	BytesDropped uint64 // bytes it discarded (limit_data, reset_peer, timeout closing)
	Closes       uint64 // connections it closed or reset
	// Lag counts precise releases (latency, reset_peer, slow_close, slicer
	// gaps) by how late past their deadline they were, with the latest in
	// Lag.Max: the proxy's own view of its precision, free of the client's
	// noise. The HTTP latency faults count theirs the same way.
	Lag precise.Lateness
}

// TookEffect reports whether the toxic ever acted; a run should flag a
// fault that never did (its probabilities, attributes or the traffic left
// it nothing to do).
func (s ToxicStats) TookEffect() bool { return s.Conns > 0 || s.Closes > 0 }

func (s ToxicStats) sub(o ToxicStats) ToxicStats {
	return ToxicStats{
		Updates: s.Updates - o.Updates, ConnsSeen: s.ConnsSeen - o.ConnsSeen, ConnsDrawn: s.ConnsDrawn - o.ConnsDrawn,
		Conns: s.Conns - o.Conns, Requests: s.Requests - o.Requests, BytesDelayed: s.BytesDelayed - o.BytesDelayed,
		BytesDropped: s.BytesDropped - o.BytesDropped, Closes: s.Closes - o.Closes,
		Lag: s.Lag, // whole life: a max does not subtract
	}
}

// attrs renders the counters for an event.
func (s ToxicStats) attrs(m map[string]any) map[string]any {
	m["conns_seen"] = s.ConnsSeen
	m["conns_drawn"] = s.ConnsDrawn
	m["conns"] = s.Conns
	m["requests"] = s.Requests
	m["bytes_delayed"] = s.BytesDelayed
	m["bytes_dropped"] = s.BytesDropped
	m["closes"] = s.Closes
	m["max_lag_ms"] = float64(s.Lag.Max) / 1e6
	if s.Lag.Releases() > 0 {
		m["lag_within_500us"] = s.Lag.Within(500 * time.Microsecond)
	}
	return m
}

// counters is the live, lock-free form of ToxicStats: the data path only
// adds to atomics.
type counters struct {
	updates, seen, drawn, conns, requests, delayed, dropped, closes atomic.Uint64
	lag                                                             precise.Recorder

	hit      atomic.Bool  // a fault.apply was emitted at least once
	lastEmit atomic.Int64 // clock offset (ns) of the last fault.apply
	emitMu   sync.Mutex   // orders the snapshots below, not the Emit call
	emitted  ToxicStats   // what earlier fault.apply events covered
}

func (c *counters) snapshot() ToxicStats {
	s := ToxicStats{
		Updates: c.updates.Load(), ConnsSeen: c.seen.Load(), ConnsDrawn: c.drawn.Load(),
		Conns: c.conns.Load(), Requests: c.requests.Load(), BytesDelayed: c.delayed.Load(),
		BytesDropped: c.dropped.Load(), Closes: c.closes.Load(), Lag: c.lag.Snapshot(),
	}
	return s
}

// ProxyStats counts what a proxy did. Toxics holds each installed toxic's
// counters; a removed toxic's final counters are in its fault.stop event.
type ProxyStats struct {
	ToxicsAdded   uint64
	ToxicsUpdated uint64
	ToxicsRemoved uint64
	Accepted      uint64 // connections accepted
	DialFailures  uint64 // accepted connections closed because the upstream could not be reached
	Open          int64  // connections open now (parked ones included)
	BytesUp       uint64 // bytes written to upstreams
	BytesDown     uint64 // bytes written to clients
	Toxics        map[string]ToxicStats
}

type proxyCounters struct {
	added, updated, removed, accepted, dialFail, bytesUp, bytesDown atomic.Uint64
	open                                                            atomic.Int64
}

// applied records that slot s acted, and emits a fault.apply event when one
// is due. The first application of a toxic is reported at once (when did
// the fault first bite?); later ones are aggregated into at most one event
// per Config.ApplyEvery per toxic, carrying the counts since the previous
// one. What remains unreported is in the fault.stop event. Emitting from
// the data path rather than a ticker means an idle toxic costs nothing.
func (p *Proxy) applied(s *slot) {
	now := p.clock.Now()
	c := &s.counters
	if !c.hit.Load() {
		if !c.hit.CompareAndSwap(false, true) {
			return
		}
	} else {
		last := c.lastEmit.Load()
		if now-time.Duration(last) < p.applyEvery || !c.lastEmit.CompareAndSwap(last, int64(now)) {
			return
		}
	}
	c.lastEmit.Store(int64(now))
	p.emitApply(s, now)
}

func (p *Proxy) emitApply(s *slot, now time.Duration) {
	c := &s.counters
	c.emitMu.Lock()
	cur := c.snapshot()
	delta := cur.sub(c.emitted)
	c.emitted = cur
	c.emitMu.Unlock()
	if delta.Conns == 0 && delta.Requests == 0 && delta.BytesDelayed == 0 && delta.BytesDropped == 0 && delta.Closes == 0 {
		return
	}
	p.emit(event.Event{T: now, Type: "fault.apply", Attrs: delta.attrs(s.eventAttrs())})
}

func (p *Proxy) emit(e event.Event) {
	e.Source = "tcpfault"
	e.Target = p.name
	p.sink.Emit(e)
}

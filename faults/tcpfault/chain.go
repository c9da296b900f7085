package tcpfault

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/cascadehq/cascade/internal/event"
)

// Errors from the toxic operations of a Proxy.
var (
	ErrToxicExists   = errors.New("toxic already exists")
	ErrToxicNotFound = errors.New("toxic not found")
	ErrInvalidToxic  = errors.New("invalid toxic")
)

// ToxicSpec installs a toxic on a proxy.
type ToxicSpec struct {
	// Name identifies the toxic on its proxy; "" means "<type>_<stream>",
	// Toxiproxy's default.
	Name string
	// Stream is the direction the toxic acts on.
	Stream Direction
	// Toxicity is the probability that the toxic acts on a given connection,
	// drawn once per connection (and again when the toxic is changed), as in
	// Toxiproxy. 0 installs a toxic that never acts, as Toxiproxy does;
	// NewSpec sets 1.
	Toxicity float64
	// RequestToxicity is the probability that the toxic acts on a given
	// message of a connection it was drawn for (see Chunk.Msg for what a
	// message is). 0 means 1: every message, which is Toxiproxy's
	// behaviour. For slow_close the message is the end of the stream.
	RequestToxicity float64
	// Toxic is the fault with its attributes, built with NewToxic or as a
	// literal of a registered type such as &Latency{...}.
	Toxic Toxic
}

// NewSpec returns a spec that acts on every connection and every message.
func NewSpec(name string, stream Direction, t Toxic) ToxicSpec {
	return ToxicSpec{Name: name, Stream: stream, Toxicity: 1, RequestToxicity: 1, Toxic: t}
}

// ToxicInfo describes an installed toxic.
type ToxicInfo struct {
	Name            string
	Type            string
	Stream          Direction
	Toxicity        float64
	RequestToxicity float64
	Toxic           Toxic          // immutable; do not modify
	Attributes      map[string]any // Toxic's attributes in wire form
	Stats           ToxicStats
}

// slot is a named toxic for its whole life on a proxy; entries are its
// successive configurations.
type slot struct {
	id       uint64
	name     string
	typ      string
	dir      Direction
	counters counters
}

func (s *slot) eventAttrs() map[string]any {
	return map[string]any{"toxic": s.name, "type": s.typ, "stream": s.dir.String()}
}

// entry is one immutable configuration of a slot. stale is closed when the
// entry is replaced or removed: waits inside the toxic watch it, so a
// change reaches a blocked connection at once, and the control plane never
// waits for the data plane (Toxiproxy's hangs, #159 and #412, came from
// RemoveToxic waiting on pipeline stages that had stopped reading).
type entry struct {
	slot        *slot
	version     uint64
	toxic       Toxic
	toxicity    float64
	reqToxicity float64
	stale       chan struct{}
}

// chain is the proxy's toxics at one moment, published whole through an
// atomic pointer (copy on write); changed is closed when a newer chain
// replaces it, waking idle connections so they re-read it.
type chain struct {
	dirs       [numDirections][]*entry
	stopAccept bool
	changed    chan struct{}
}

func (c *chain) find(name string) (Direction, int, bool) {
	for d := range c.dirs {
		for i, e := range c.dirs[d] {
			if e.slot.name == name {
				return Direction(d), i, true
			}
		}
	}
	return 0, 0, false
}

func (c *chain) clone() *chain {
	n := &chain{changed: make(chan struct{})}
	for d := range c.dirs {
		n.dirs[d] = slices.Clone(c.dirs[d])
	}
	return n
}

func (c *chain) finish() *chain {
	c.stopAccept = false
	for d := range c.dirs {
		for _, e := range c.dirs[d] {
			if s, ok := e.toxic.(AcceptStopper); ok && s.StopsAccepting() {
				c.stopAccept = true
			}
		}
	}
	return c
}

func (p *Proxy) publish(n *chain) {
	old := p.chain.Swap(n.finish())
	close(old.changed)
	if n.stopAccept {
		p.kickAccept()
	}
}

func checkSpec(s ToxicSpec) (typ string, req float64, err error) {
	if s.Toxic == nil {
		return "", 0, fmt.Errorf("%w: no toxic given", ErrInvalidToxic)
	}
	typ = TypeName(s.Toxic)
	if typ == "" {
		return "", 0, fmt.Errorf("%w: Go type %T is not a registered toxic", ErrUnknownToxic, s.Toxic)
	}
	if err := validateToxic(typ, s.Toxic); err != nil {
		return "", 0, err
	}
	if s.Stream >= numDirections {
		return "", 0, fmt.Errorf("%w: %v", ErrInvalidStream, s.Stream)
	}
	if !(s.Toxicity >= 0 && s.Toxicity <= 1) || math.IsNaN(s.Toxicity) {
		return "", 0, fmt.Errorf("%w: toxicity %v is outside [0, 1]", ErrInvalidToxic, s.Toxicity)
	}
	req = s.RequestToxicity
	if req == 0 {
		req = 1
	}
	if !(req >= 0 && req <= 1) {
		return "", 0, fmt.Errorf("%w: request_toxicity %v is outside [0, 1]", ErrInvalidToxic, s.RequestToxicity)
	}
	if a, ok := s.Toxic.(AcceptStopper); ok && a.StopsAccepting() && (s.Toxicity != 1 || req != 1) {
		return "", 0, fmt.Errorf("%w: %s with no_accept acts on the listener, not on connections: toxicity and request_toxicity must be 1", ErrInvalidToxic, typ)
	}
	return typ, req, nil
}

// AddToxic installs a toxic. It takes effect on open connections too, from
// their next bytes; nothing already in flight is lost.
func (p *Proxy) AddToxic(s ToxicSpec) (ToxicInfo, error) {
	typ, req, err := checkSpec(s)
	if err != nil {
		return ToxicInfo{}, err
	}
	if s.Name == "" {
		s.Name = typ + "_" + s.Stream.String()
	}
	p.toxMu.Lock()
	cur := p.chain.Load()
	if _, _, dup := cur.find(s.Name); dup {
		p.toxMu.Unlock()
		return ToxicInfo{}, fmt.Errorf("%w: %q", ErrToxicExists, s.Name)
	}
	p.nextSlot++
	sl := &slot{id: p.nextSlot, name: s.Name, typ: typ, dir: s.Stream}
	e := &entry{slot: sl, version: 1, toxic: s.Toxic, toxicity: s.Toxicity, reqToxicity: req, stale: make(chan struct{})}
	n := cur.clone()
	n.dirs[s.Stream] = append(n.dirs[s.Stream], e)
	p.publish(n)
	p.toxMu.Unlock()

	p.counters.added.Add(1)
	info := e.info()
	p.emit(event.Event{T: p.clock.Now(), Type: "fault.start", Attrs: info.eventAttrs()})
	return info, nil
}

// UpdateToxic replaces the configuration of the toxic named s.Name: its
// attributes (s.Toxic, which must be of the same type; nil keeps them) and
// its probabilities. Connections waiting inside the toxic re-evaluate at
// once under the new configuration, keeping the bytes they hold. The
// stream cannot change.
func (p *Proxy) UpdateToxic(s ToxicSpec) (ToxicInfo, error) {
	p.toxMu.Lock()
	cur := p.chain.Load()
	d, i, ok := cur.find(s.Name)
	if !ok {
		p.toxMu.Unlock()
		return ToxicInfo{}, fmt.Errorf("%w: %q", ErrToxicNotFound, s.Name)
	}
	old := cur.dirs[d][i]
	if s.Toxic == nil {
		s.Toxic = old.toxic
	}
	s.Stream = d
	typ, req, err := checkSpec(s)
	if err == nil && typ != old.slot.typ {
		err = fmt.Errorf("%w: toxic %q is a %s, cannot become a %s", ErrInvalidToxic, s.Name, old.slot.typ, typ)
	}
	if err != nil {
		p.toxMu.Unlock()
		return ToxicInfo{}, err
	}
	e := &entry{slot: old.slot, version: old.version + 1, toxic: s.Toxic, toxicity: s.Toxicity, reqToxicity: req, stale: make(chan struct{})}
	n := cur.clone()
	n.dirs[d][i] = e
	p.publish(n)
	close(old.stale)
	p.toxMu.Unlock()

	e.slot.counters.updates.Add(1)
	p.counters.updated.Add(1)
	info := e.info()
	p.emit(event.Event{T: p.clock.Now(), Type: "fault.update", Attrs: info.eventAttrs()})
	return info, nil
}

// RemoveToxic uninstalls a toxic. Bytes it was holding or delaying go on at
// once, in order, through the remaining toxics; it never blocks on a
// connection.
func (p *Proxy) RemoveToxic(name string) error {
	p.toxMu.Lock()
	cur := p.chain.Load()
	d, i, ok := cur.find(name)
	if !ok {
		p.toxMu.Unlock()
		return fmt.Errorf("%w: %q", ErrToxicNotFound, name)
	}
	old := cur.dirs[d][i]
	n := cur.clone()
	n.dirs[d] = slices.Delete(n.dirs[d], i, i+1)
	p.publish(n)
	close(old.stale)
	p.toxMu.Unlock()
	p.stopped(old)
	return nil
}

// ResetToxics removes every toxic.
func (p *Proxy) ResetToxics() {
	p.toxMu.Lock()
	cur := p.chain.Load()
	var olds []*entry
	for d := range cur.dirs {
		olds = append(olds, cur.dirs[d]...)
	}
	if len(olds) == 0 {
		p.toxMu.Unlock()
		return
	}
	p.publish(&chain{changed: make(chan struct{})})
	for _, e := range olds {
		close(e.stale)
	}
	p.toxMu.Unlock()
	for _, e := range olds {
		p.stopped(e)
	}
}

func (p *Proxy) stopped(e *entry) {
	p.counters.removed.Add(1)
	now := p.clock.Now()
	p.emitApply(e.slot, now) // flush what the last fault.apply did not cover
	info := e.info()
	attrs := info.Stats.attrs(info.eventAttrs())
	attrs["took_effect"] = info.Stats.TookEffect()
	p.emit(event.Event{T: now, Type: "fault.stop", Attrs: attrs})
}

// Toxics lists the installed toxics, upstream first, each in chain order
// (the order they were added, which is the order bytes go through them).
func (p *Proxy) Toxics() []ToxicInfo {
	cur := p.chain.Load()
	var out []ToxicInfo
	for d := range cur.dirs {
		for _, e := range cur.dirs[d] {
			out = append(out, e.info())
		}
	}
	return out
}

// Toxic returns the installed toxic with this name.
func (p *Proxy) Toxic(name string) (ToxicInfo, bool) {
	cur := p.chain.Load()
	d, i, ok := cur.find(name)
	if !ok {
		return ToxicInfo{}, false
	}
	return cur.dirs[d][i].info(), true
}

func (e *entry) info() ToxicInfo {
	return ToxicInfo{
		Name: e.slot.name, Type: e.slot.typ, Stream: e.slot.dir,
		Toxicity: e.toxicity, RequestToxicity: e.reqToxicity,
		Toxic: e.toxic, Attributes: Attributes(e.toxic), Stats: e.slot.counters.snapshot(),
	}
}

func (i ToxicInfo) eventAttrs() map[string]any {
	return map[string]any{
		"toxic": i.Name, "type": i.Type, "stream": i.Stream.String(),
		"toxicity": i.Toxicity, "request_toxicity": i.RequestToxicity, "attributes": i.Attributes,
	}
}

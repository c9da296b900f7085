package tcpfault

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	// errInterrupted: the toxic being waited in was changed or removed.
	errInterrupted = errors.New("tcpfault: toxic changed")
	// errClosing: the connection is being torn down.
	errClosing = errors.New("tcpfault: connection closing")
	// ErrNoChunk is returned by Pipe.Pass outside Toxic.Pipe.
	ErrNoChunk = errors.New("tcpfault: Pass called outside Pipe")
)

// endConn asks the writer to tear the connection down.
type endConn struct {
	reset bool
	slot  *slot // the toxic that decided it; nil for a peer's reset
}

func (e *endConn) Error() string {
	if e.reset {
		return "tcpfault: connection reset"
	}
	return "tcpfault: connection closed"
}

// Pipe is one direction of one connection as its toxics see it: the chunk
// in hand goes on with Pass, time passes with Sleep or Hold, and the
// connection ends with Close or Reset. A Pipe is used by one goroutine.
type Pipe struct {
	c     *conn
	dir   Direction
	dst   *net.TCPConn
	q     *queue
	rng   *rand.Rand
	bytes *atomic.Uint64

	states  map[*slot]*slotState
	synced  *chain
	stages  []*entry // the chain the current chunk runs through
	cur     frame    // the toxic running now
	top     []byte   // the current chunk's bytes as read
	written int      // of top, bytes written to dst

	intrPassed []*slot // toxics the interrupted piece had passed
	pending    *Chunk  // remainder of an interrupted chunk, to run again

	timer  *time.Timer
	alarms []alarm
	atimer *time.Timer
}

type frame struct {
	e   *entry
	st  *slotState
	c   *Chunk
	i   int
	msg uint64
}

type slotState struct {
	e         *entry // version the draw below was made for
	active    bool   // per-connection draw
	user      any    // Stateful state
	msg       uint64
	msgSet    bool
	msgActive bool
	hitConn   bool
	hitMsg    uint64
	hitMsgSet bool
}

type alarm struct {
	at    time.Time
	reset bool
	e     *entry
	st    *slotState
}

func (c *conn) newPipe(dir Direction, dst *net.TCPConn, q *queue, bytes *atomic.Uint64) *Pipe {
	return &Pipe{
		c: c, dir: dir, dst: dst, q: q, bytes: bytes,
		rng:    rand.New(rand.NewPCG(c.seed, 0x70697065+uint64(dir))),
		states: map[*slot]*slotState{},
	}
}

// Direction is the direction this pipe carries.
func (p *Pipe) Direction() Direction { return p.dir }

// Rand is this pipe's random source, derived from the proxy's seeded Rand.
func (p *Pipe) Rand() *rand.Rand { return p.rng }

// State returns the running toxic's per-connection state (see Stateful).
func (p *Pipe) State() any {
	if p.cur.st == nil {
		return nil
	}
	return p.cur.st.user
}

// PerRequest reports whether the running toxic picks messages
// (request_toxicity < 1) rather than whole connections. Toxics whose effect
// has a start (timeout, limit_data) count it from the message's first byte
// then, and from when they took hold of the connection otherwise.
func (p *Pipe) PerRequest() bool { return p.cur.e != nil && p.cur.e.reqToxicity < 1 }

// Hit records that the running toxic acted on this connection and message.
func (p *Pipe) Hit() {
	f := p.cur
	if f.st == nil {
		return
	}
	s := f.e.slot
	if !f.st.hitConn {
		f.st.hitConn = true
		s.counters.conns.Add(1)
	}
	if !f.st.hitMsgSet || f.st.hitMsg != f.msg {
		f.st.hitMsgSet, f.st.hitMsg = true, f.msg
		s.counters.requests.Add(1)
	}
	p.c.p.applied(s)
}

// Delayed records that the running toxic passed n bytes late.
func (p *Pipe) Delayed(n int) {
	if p.cur.st == nil {
		return
	}
	p.cur.e.slot.counters.delayed.Add(uint64(n))
	p.Hit()
}

// Close ends the connection gracefully (FIN to both peers); return its
// error from Pipe. Bytes not yet passed are dropped and counted.
func (p *Pipe) Close() error { return p.end(false) }

// Reset ends the connection with RST to both peers; return its error from
// Pipe.
func (p *Pipe) Reset() error { return p.end(true) }

func (p *Pipe) end(reset bool) error {
	if p.cur.e == nil {
		return &endConn{reset: reset}
	}
	p.Hit()
	return &endConn{reset: reset, slot: p.cur.e.slot}
}

// Pass sends the first n bytes of c through the rest of the chain and, once
// they are written, advances c past them.
func (p *Pipe) Pass(c *Chunk, n int) error {
	if p.cur.e == nil || p.cur.c == nil {
		return ErrNoChunk
	}
	n = min(max(n, 0), len(c.Data))
	if n == 0 {
		return nil
	}
	piece := &Chunk{Data: c.Data[:n], Arrival: c.Arrival, Msg: c.Msg, Start: c.Start,
		passed: append(c.passed[:len(c.passed):len(c.passed)], p.cur.e.slot)}
	if err := p.pass(p.cur.i+1, piece); err != nil {
		return err
	}
	c.Data = c.Data[n:]
	c.Start = false
	return nil
}

// SetAlarm ends the connection at t (reset: with RST) unless the running
// toxic is changed or removed first. Attach uses it to close idle
// connections on time.
func (p *Pipe) SetAlarm(t time.Time, reset bool) {
	if p.cur.e == nil {
		return
	}
	p.alarms = slices.DeleteFunc(p.alarms, func(a alarm) bool { return a.e.slot == p.cur.e.slot })
	p.alarms = append(p.alarms, alarm{at: t, reset: reset, e: p.cur.e, st: p.cur.st})
	p.armAlarm()
}

func (p *Pipe) armAlarm() {
	if len(p.alarms) == 0 {
		if p.atimer != nil {
			p.atimer.Stop()
		}
		return
	}
	first := slices.MinFunc(p.alarms, func(a, b alarm) int { return a.at.Compare(b.at) })
	d := time.Until(first.at)
	if p.atimer == nil {
		p.atimer = time.NewTimer(d)
	} else {
		p.atimer.Reset(d)
	}
}

func (p *Pipe) alarmC() <-chan time.Time {
	if len(p.alarms) == 0 {
		return nil
	}
	return p.atimer.C
}

// alarmFired turns the earliest alarm into the end of the connection.
func (p *Pipe) alarmFired() error {
	first := slices.MinFunc(p.alarms, func(a, b alarm) int { return a.at.Compare(b.at) })
	p.alarms = nil
	saved := p.cur
	p.cur = frame{e: first.e, st: first.st}
	err := p.end(first.reset)
	p.cur = saved
	return err
}

func (p *Pipe) run() {
	defer func() {
		if p.timer != nil {
			p.timer.Stop()
		}
		if p.atimer != nil {
			p.atimer.Stop()
		}
	}()
	for {
		c, err := p.next()
		if err == nil {
			if c.end {
				if err = p.eof(c); err == nil {
					return
				}
			} else if err = p.process(c); err == nil {
				continue
			}
		}
		p.fail(err)
		return
	}
}

// next returns the chunk to process: the remainder of an interrupted one,
// or the next from the reader. While idle it follows chain changes (so
// Attach and alarms happen without traffic).
func (p *Pipe) next() (*Chunk, error) {
	if c := p.pending; c != nil {
		p.pending = nil
		return c, nil
	}
	for {
		ch := p.c.p.chain.Load()
		p.sync(ch)
		if c := p.q.popOrIdle(); c != nil {
			return c, nil
		}
		select {
		case <-p.q.ready:
		case <-ch.changed:
		case <-p.alarmC():
			return nil, p.alarmFired()
		case <-p.c.ctx.Done():
			return nil, errClosing
		}
	}
}

// sync brings per-toxic state in line with chain ch: states of removed
// toxics go, new or changed toxics are drawn for (and attached).
func (p *Pipe) sync(ch *chain) {
	if ch == p.synced {
		return
	}
	p.synced = ch
	live := ch.dirs[p.dir]
	for s := range p.states {
		if !slices.ContainsFunc(live, func(e *entry) bool { return e.slot == s }) {
			delete(p.states, s)
		}
	}
	n := len(p.alarms)
	p.alarms = slices.DeleteFunc(p.alarms, func(a alarm) bool { return !slices.Contains(live, a.e) })
	if len(p.alarms) != n {
		p.armAlarm()
	}
	for _, e := range live {
		p.stateFor(e)
	}
}

func (p *Pipe) stateFor(e *entry) *slotState {
	st := p.states[e.slot]
	if st == nil {
		st = &slotState{}
		if s, ok := e.toxic.(Stateful); ok {
			st.user = s.NewState()
		}
		p.states[e.slot] = st
	}
	if st.e != e {
		st.e, st.msgSet = e, false
		st.active = p.c.drawConn(e)
		e.slot.counters.seen.Add(1)
		if st.active {
			e.slot.counters.drawn.Add(1)
			if a, ok := e.toxic.(Attacher); ok {
				saved := p.cur
				p.cur = frame{e: e, st: st}
				a.Attach(p)
				p.cur = saved
			}
		}
	}
	return st
}

func (p *Pipe) activeFor(st *slotState, msg uint64) bool {
	if !st.active {
		return false
	}
	if st.e.reqToxicity >= 1 {
		return true
	}
	if !st.msgSet || st.msg != msg {
		st.msg, st.msgSet = msg, true
		st.msgActive = p.c.drawMsg(st.e, msg)
	}
	return st.msgActive
}

// process runs one chunk through the chain as it is now. If a toxic it was
// waiting in changes, the bytes not yet written are kept and run again
// through the new chain, skipping toxics they had already been through.
func (p *Pipe) process(c *Chunk) error {
	ch := p.c.p.chain.Load()
	p.sync(ch)
	p.stages = ch.dirs[p.dir]
	p.top, p.written, p.intrPassed = c.Data, 0, nil
	err := p.pass(0, c)
	if errors.Is(err, errInterrupted) {
		if p.written < len(p.top) {
			p.pending = &Chunk{Data: p.top[p.written:], Arrival: c.Arrival, Msg: c.Msg,
				Start: c.Start && p.written == 0, passed: p.intrPassed, buf: c.buf}
			p.top = nil
			return nil
		}
		err = nil
	}
	if err == nil {
		p.top = nil
		if c.buf != nil {
			p.c.p.bufs.Put(c.buf)
		}
	}
	return err
}

func (p *Pipe) pass(i int, c *Chunk) error {
	for ; i < len(p.stages); i++ {
		e := p.stages[i]
		if c.has(e.slot) {
			continue
		}
		st := p.stateFor(e)
		if !p.activeFor(st, c.Msg) {
			continue
		}
		saved := p.cur
		p.cur = frame{e: e, st: st, c: c, i: i, msg: c.Msg}
		err := e.toxic.Pipe(p, c)
		if err == nil && len(c.Data) > 0 {
			err = p.Pass(c, len(c.Data))
		}
		p.cur = saved
		return err
	}
	n, err := p.dst.Write(c.Data)
	p.written += n
	p.bytes.Add(uint64(n))
	c.Data = c.Data[n:]
	return err
}

// eof passes the end of stream on, after any EOFHandler toxics (slow_close)
// let it; the connection closes once both directions have ended.
func (p *Pipe) eof(end *Chunk) error {
	if end.err != nil && !errors.Is(end.err, io.EOF) {
		if p.c.ctx.Err() != nil {
			return errClosing
		}
		return &endConn{reset: errors.Is(end.err, syscall.ECONNRESET)}
	}
	for {
		ch := p.c.p.chain.Load()
		p.sync(ch)
		err := p.runEOF(ch.dirs[p.dir], end.Arrival)
		if errors.Is(err, errInterrupted) {
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	p.dst.CloseWrite()
	if p.c.ended.Add(1) == int32(numDirections) {
		p.c.close(false)
	}
	return nil
}

func (p *Pipe) runEOF(stages []*entry, at time.Time) error {
	for i, e := range stages {
		h, ok := e.toxic.(EOFHandler)
		if !ok {
			continue
		}
		st := p.stateFor(e)
		if !p.activeFor(st, 0) {
			continue
		}
		saved := p.cur
		p.cur = frame{e: e, st: st, i: i}
		err := h.OnEOF(p, at)
		p.cur = saved
		if err != nil {
			return err
		}
	}
	return nil
}

// fail ends the connection after an error in this direction and counts the
// bytes that will now never be delivered against the toxic that decided it.
func (p *Pipe) fail(err error) {
	var end *endConn
	switch {
	case errors.As(err, &end):
		if end.slot != nil {
			dropped := p.q.held()
			if p.top != nil {
				dropped += len(p.top) - p.written
			}
			if p.pending != nil {
				dropped += len(p.pending.Data)
			}
			end.slot.counters.dropped.Add(uint64(dropped))
			end.slot.counters.closes.Add(1)
			p.c.p.applied(end.slot)
		}
		p.c.close(end.reset)
	case errors.Is(err, errClosing):
	default: // a write failed: the peer is gone; pass that on as a reset
		p.c.close(true)
	}
}

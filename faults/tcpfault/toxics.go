package tcpfault

import (
	"errors"
	"math"
	"time"
)

// The toxics. Attribute names, units and defaults are Toxiproxy's, so its
// clients and files work unchanged; where behaviour differs it is said at
// the type and summed up in the package documentation.

func init() {
	Register("latency", func() Toxic { return &Latency{} })
	Register("bandwidth", func() Toxic { return &Bandwidth{} })
	Register("slow_close", func() Toxic { return &SlowClose{} })
	Register("timeout", func() Toxic { return &Timeout{} })
	Register("reset_peer", func() Toxic { return &ResetPeer{} })
	Register("slicer", func() Toxic { return &Slicer{} })
	Register("limit_data", func() Toxic { return &LimitData{} })
	Register("blackhole", func() Toxic { return &Blackhole{} })
}

var (
	_ Toxic         = (*Latency)(nil)
	_ Stateful      = (*Latency)(nil)
	_ Toxic         = (*Bandwidth)(nil)
	_ Stateful      = (*Bandwidth)(nil)
	_ EOFHandler    = (*SlowClose)(nil)
	_ Attacher      = (*Timeout)(nil)
	_ Stateful      = (*Timeout)(nil)
	_ Toxic         = (*ResetPeer)(nil)
	_ Validator     = (*Slicer)(nil)
	_ Stateful      = (*LimitData)(nil)
	_ ConnHolder    = (*Blackhole)(nil)
	_ AcceptStopper = (*Blackhole)(nil)
)

// Latency delays data by Latency ± Jitter (uniform). The delay is drawn once
// per message (see Chunk.Msg) and counted from each chunk's arrival, so a
// response that arrives in several chunks is shifted as a whole, not
// delayed once per chunk, and its first byte leaves exactly Latency after
// it came in. Toxiproxy draws per chunk and lands ~1–2 ms late; this waits
// precisely (see Pipe.Sleep).
type Latency struct {
	Latency time.Duration `attr:"latency,ms"`
	Jitter  time.Duration `attr:"jitter,ms"`
}

type latencyState struct {
	msg   uint64
	t     *Latency
	delay time.Duration
}

// NewState implements Stateful.
func (*Latency) NewState() any { return &latencyState{} }

// Pipe implements Toxic.
func (t *Latency) Pipe(p *Pipe, c *Chunk) error {
	st := p.State().(*latencyState)
	if st.t != t || st.msg != c.Msg {
		st.t, st.msg, st.delay = t, c.Msg, t.Latency
		if t.Jitter > 0 {
			st.delay = addSat(st.delay, spread(p, int64(t.Jitter)))
		}
		st.delay = max(st.delay, 0)
	}
	if st.delay == 0 {
		return nil
	}
	if err := p.Sleep(c.Arrival.Add(st.delay)); err != nil {
		return err
	}
	p.Delayed(len(c.Data))
	return nil
}

// Bandwidth limits throughput to Rate kilobytes (1000 bytes) per second, in
// slices of 10 ms worth of data. Rate 0 means no limit, as in Toxiproxy.
// It models a slow link: a byte leaves no earlier than it arrived and no
// sooner than the link is free, so a late timer wake-up is caught up on by
// the next slices instead of lowering the rate.
type Bandwidth struct {
	Rate int64 `attr:"rate"`
}

type bandwidthState struct{ free time.Time }

// NewState implements Stateful.
func (*Bandwidth) NewState() any { return &bandwidthState{} }

// Pipe implements Toxic.
func (t *Bandwidth) Pipe(p *Pipe, c *Chunk) error {
	if t.Rate <= 0 {
		return nil
	}
	st := p.State().(*bandwidthState)
	perSec := float64(t.Rate) * 1000
	// A slice is 10 ms of data, at least a byte. Compared as a float: for
	// a rate near MaxInt64 perSec/100 does not fit an int, and converting
	// it gave MinInt64, so slices of one byte throttled "no limit" hard.
	quantum := len(c.Data)
	if q := perSec / 100; q < float64(quantum) {
		quantum = max(int(q), 1)
	}
	for len(c.Data) > 0 {
		n := min(len(c.Data), quantum)
		start := st.free
		if start.Before(c.Arrival) {
			start = c.Arrival
		}
		st.free = start.Add(time.Duration(float64(n) / perSec * float64(time.Second)))
		if err := p.SleepCoarse(st.free); err != nil {
			return err
		}
		p.Delayed(n)
		if err := p.Pass(c, n); err != nil {
			return err
		}
	}
	return nil
}

// SlowClose delays passing on the end of the stream (the FIN) by Delay.
// The proxy keeps half-closes: the other direction goes on meanwhile.
type SlowClose struct {
	Delay time.Duration `attr:"delay,ms"`
}

// Pipe implements Toxic: data passes untouched.
func (t *SlowClose) Pipe(p *Pipe, c *Chunk) error { return nil }

// OnEOF implements EOFHandler.
func (t *SlowClose) OnEOF(p *Pipe, at time.Time) error {
	if t.Delay <= 0 {
		return nil
	}
	p.Hit()
	return p.Sleep(at.Add(t.Delay))
}

// Timeout stops all data in its direction and closes the connection (FIN
// both ways) Timeout after it took hold: when the connection started or the
// toxic was added (every message selected), or at the first byte of a
// selected message (request_toxicity < 1). Timeout 0 holds forever. Unlike
// Toxiproxy, which drops the data and so must close the connection when the
// toxic is removed, held data is kept: removing the toxic lets it through,
// as TCP retransmission would after a network stall.
type Timeout struct {
	Timeout time.Duration `attr:"timeout,ms"`
}

type timeoutState struct{ msg uint64 }

// NewState implements Stateful.
func (*Timeout) NewState() any { return &timeoutState{} }

// Attach implements Attacher.
func (t *Timeout) Attach(p *Pipe) {
	if t.Timeout > 0 && !p.PerRequest() {
		p.SetAlarm(time.Now().Add(t.Timeout), false)
	}
}

// Pipe implements Toxic.
func (t *Timeout) Pipe(p *Pipe, c *Chunk) error {
	st := p.State().(*timeoutState)
	if p.PerRequest() && t.Timeout > 0 && st.msg != c.Msg {
		st.msg = c.Msg
		p.SetAlarm(c.Arrival.Add(t.Timeout), false)
	}
	p.Hit()
	return p.Hold()
}

// ResetPeer resets the connection (RST to both peers, "connection reset by
// peer") Timeout after the first byte it sees (of a selected message, with
// request_toxicity < 1). Nothing passes meanwhile. Timeout 0 resets at once.
type ResetPeer struct {
	Timeout time.Duration `attr:"timeout,ms"`
}

// Pipe implements Toxic.
func (t *ResetPeer) Pipe(p *Pipe, c *Chunk) error {
	p.Hit()
	if t.Timeout > 0 {
		if err := p.Sleep(c.Arrival.Add(t.Timeout)); err != nil {
			return err
		}
	}
	return p.Reset()
}

// Slicer writes data in small pieces: AverageSize ± SizeVariation bytes
// (uniform), with Delay (microseconds, as in Toxiproxy) between pieces, as a
// fragmenting network or a slow sender would. TCP_NODELAY is on, so each
// piece leaves as its own segment.
type Slicer struct {
	AverageSize   int64         `attr:"average_size"`
	SizeVariation int64         `attr:"size_variation"`
	Delay         time.Duration `attr:"delay,us"`
}

// Validate implements Validator.
func (t *Slicer) Validate() error {
	if t.AverageSize < 1 {
		return errors.New("average_size must be at least 1 byte")
	}
	if t.SizeVariation >= t.AverageSize {
		return errors.New("size_variation must be smaller than average_size")
	}
	return nil
}

// Pipe implements Toxic.
func (t *Slicer) Pipe(p *Pipe, c *Chunk) error {
	for len(c.Data) > 0 {
		n := t.AverageSize
		if t.SizeVariation > 0 {
			n = int64(addSat(time.Duration(n), spread(p, t.SizeVariation)))
		}
		p.Delayed(int(min(n, int64(len(c.Data)))))
		if err := p.Pass(c, int(min(n, int64(len(c.Data))))); err != nil {
			return err
		}
		if len(c.Data) > 0 && t.Delay > 0 {
			if err := p.Sleep(time.Now().Add(t.Delay)); err != nil {
				return err
			}
		}
	}
	return nil
}

// LimitData closes the connection once Bytes bytes have passed in its
// direction since it took hold (per message with request_toxicity < 1: a
// truncated response). The count survives updates, as in Toxiproxy.
type LimitData struct {
	Bytes int64 `attr:"bytes"`
}

type limitState struct {
	msg    uint64
	passed int64
}

// NewState implements Stateful.
func (*LimitData) NewState() any { return &limitState{} }

// Pipe implements Toxic.
func (t *LimitData) Pipe(p *Pipe, c *Chunk) error {
	st := p.State().(*limitState)
	if p.PerRequest() && st.msg != c.Msg {
		st.msg, st.passed = c.Msg, 0
	}
	room := max(t.Bytes-st.passed, 0)
	n := int(min(room, int64(len(c.Data))))
	if err := p.Pass(c, n); err != nil {
		return err
	}
	st.passed += int64(n)
	if st.passed >= t.Bytes {
		return p.Close()
	}
	return nil
}

// Blackhole lets nothing through in its direction, ever (until removed),
// and never closes. In the upstream direction it also stops new connections
// before the proxy dials the upstream for them: accepted but never read or
// answered, which is what an overloaded or hung host looks like. With
// NoAccept the proxy stops accepting at all: the kernel's accept queue fills
// (Config.Backlog sets its size) and then clients time out connecting.
// Removing the toxic lets everything held through, in order.
type Blackhole struct {
	NoAccept bool `attr:"no_accept"`
}

// Pipe implements Toxic.
func (t *Blackhole) Pipe(p *Pipe, c *Chunk) error {
	p.Hit()
	return p.Hold()
}

// HoldsNewConnections implements ConnHolder.
func (t *Blackhole) HoldsNewConnections() bool { return !t.NoAccept }

// StopsAccepting implements AcceptStopper.
func (t *Blackhole) StopsAccepting() bool { return t.NoAccept }

// spread draws uniformly from [-v, v] for v >= 0. The draw is made in
// uint64: 2v+1 passes int64 from v = 2^62 (a jitter of 146 years, which
// the API and a scenario accept), and Int64N panicked on the wrapped
// bound, taking the proxy down mid-run.
func spread(p *Pipe, v int64) time.Duration {
	return time.Duration(p.Rand().Uint64N(2*uint64(v)+1) - uint64(v))
}

// addSat adds d to a non-negative delay (or size), stopping at the largest.
func addSat(delay, d time.Duration) time.Duration {
	if d > 0 && delay > math.MaxInt64-d {
		return math.MaxInt64
	}
	return delay + d
}

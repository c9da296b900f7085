package h1

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Pool lends up to a fixed number of connections to one address to any
// number of goroutines: the open-model shape, where requests are started on
// schedule whether or not earlier ones have finished. A caller that finds
// every connection busy waits (bounded by its context and timeout) or, with
// Options.FailFast, fails at once. Connections are dialed lazily and
// re-dialed transparently after the server closes them.
type Pool struct {
	addr  string
	opts  Options
	base  time.Time
	conns []*Conn
	free  chan *Conn // idle connections; capacity len(conns), so put never blocks

	closed    atomic.Bool
	done      chan struct{}
	closeOnce sync.Once

	waits, rejected atomic.Int64
}

// NewPool returns a pool of at most maxConns connections to addr
// (host:port).
func NewPool(addr string, maxConns int, opts Options) (*Pool, error) {
	if maxConns < 1 {
		return nil, fmt.Errorf("h1: pool needs at least one connection, got %d", maxConns)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	a, err := dialAddr(addr, opts.AllowRemote)
	if err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	p := &Pool{addr: a, opts: opts, base: opts.Clock.Start(),
		conns: make([]*Conn, maxConns), free: make(chan *Conn, maxConns), done: make(chan struct{})}
	for i := range p.conns {
		p.conns[i] = newConn(a, opts)
		p.free <- p.conns[i]
	}
	return p, nil
}

// Do borrows a connection, sends p on it and returns it to the pool. The
// client timeout counts from the call, so time spent waiting for a
// connection is part of the request's latency and of its timeout.
func (p *Pool) Do(ctx context.Context, pr *Prepared, r *Result) error {
	start := time.Since(p.base)
	r.reset(start)
	c, waited, err := p.get(ctx, pr, start)
	if err != nil {
		r.End = time.Since(p.base)
		r.Err, r.Cause = classify(err)
		return r.Err
	}
	err = c.roundTrip(ctx, pr, r, c.deadline(ctx, pr, start), waited)
	p.put(c)
	return c.finish(r, err)
}

func (p *Pool) get(ctx context.Context, pr *Prepared, start time.Duration) (c *Conn, waited bool, err error) {
	if p.closed.Load() {
		return nil, false, ErrClosed
	}
	select {
	case c = <-p.free:
	default:
		if p.opts.FailFast {
			p.rejected.Add(1)
			return nil, false, ErrPoolExhausted
		}
		p.waits.Add(1)
		waited = true
		var expired <-chan time.Time
		if dl := min(timeoutDeadline(pr, p.opts, start), ctxDeadline(ctx, p.base)); dl != noDeadline {
			t := time.NewTimer(dl - time.Since(p.base))
			defer t.Stop()
			expired = t.C
		}
		select {
		case c = <-p.free:
		case <-ctx.Done():
			return nil, true, ctxErr(ctx)
		case <-expired:
			return nil, true, ErrTimeout
		case <-p.done:
			return nil, true, ErrClosed
		}
	}
	if p.closed.Load() {
		p.put(c)
		return nil, waited, ErrClosed
	}
	return c, waited, nil
}

func (p *Pool) put(c *Conn) {
	p.free <- c
	if p.closed.Load() {
		p.drain()
	}
}

// drain closes the idle connections.
func (p *Pool) drain() {
	for {
		select {
		case c := <-p.free:
			c.Close()
		default:
			return
		}
	}
}

// Close closes the idle connections now and the busy ones when they are
// returned; Do fails with ErrClosed afterwards and waiting callers wake up.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		close(p.done)
		p.drain()
	})
	return nil
}

// Stats sums the counters of every connection in the pool.
func (p *Pool) Stats() Stats {
	var s Stats
	for _, c := range p.conns {
		s.add(c.stats.snapshot())
	}
	s.Waits, s.Rejected = p.waits.Load(), p.rejected.Load()
	return s
}

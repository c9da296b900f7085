package loadgen

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/evloop"
	"github.com/cascadehq/cascade/loadgen/h1"
)

// H1Transport sends plain-http HTTP/1.1 requests with loadgen/h1: requests
// serialized once, one write and one read syscall per request, no
// allocation (net/http costs ~25 µs of CPU and ~50 allocations a request,
// more than the servers a load generator measures). HTTP/2, TLS and h2c
// stay with HTTPTransport.
//
// Each worker (an open-model worker or a VU) gets its own connection
// through Worker, like wrk's connections: no pool on the hot path, and the
// number of connections follows the concurrency the load needs. With a
// connection cap the workers share an h1.Pool of that size instead.
type H1Transport struct {
	addr   string
	opts   h1.Options
	capped bool     // MaxConns set: workers share pool
	pool   *h1.Pool // the cap, or the fallback for RoundTrip without a worker
	static []*h1.Prepared
	set    *requestSet
	target string
	spare  sync.Pool // *h1Worker for RoundTrip without a worker (no connection of its own)
}

// fallbackConns sizes the shared pool of an uncapped transport, used only
// by callers that do not take a worker.
const fallbackConns = 64

// NewH1Transport prepares cfg's requests for its http:// target.
func NewH1Transport(cfg Config) (*H1Transport, error) {
	u, err := url.Parse(cfg.Target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("loadgen: h1 needs an http:// target, got %q", cfg.Target)
	}
	set, err := compileRequests(cfg.Requests, cfg.Data, cfg.Seed)
	if err != nil {
		return nil, err
	}
	timeout := cfg.ClientTimeout
	if timeout <= 0 {
		timeout = DefaultClientTimeout
	}
	// A cap at or above the most requests the executor can have in flight
	// (its VUs, or its in-flight cap) caps nothing: workers keep their own.
	most := cfg.MaxInFlight
	if cfg.Kind == VUs {
		most = int(NewPacer(cfg.Stages).peak())
	}
	t := &H1Transport{addr: u.Host, set: set, target: cfg.Target, capped: cfg.MaxConns > 0 && (most <= 0 || cfg.MaxConns < most),
		// The run checked the target (loopback unless --allow-remote).
		opts: h1.Options{Timeout: timeout, DisableKeepAlive: !cfg.KeepAlive, AllowRemote: true}}
	size := fallbackConns
	if t.capped {
		size = cfg.MaxConns
	}
	if t.pool, err = h1.NewPool(t.addr, size, t.opts); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	t.spare.New = func() any { return &h1Worker{t: t, dyn: h1.Prepared{}} }
	for i, r := range cfg.Requests {
		if !set.reqs[i].static {
			t.static = append(t.static, nil)
			continue
		}
		var h [][2]string
		for k, vs := range r.Header {
			for _, v := range vs {
				h = append(h, [2]string{k, v})
			}
		}
		if err := CheckPath(r.Path); err != nil {
			t.pool.Close()
			return nil, fmt.Errorf("loadgen: request %q: %w", r.Name, err)
		}
		p, err := h1.Prepare(t.request(i, r.Path, h, r.Body))
		if err != nil {
			t.pool.Close()
			return nil, fmt.Errorf("loadgen: request %q: %w", r.Name, err)
		}
		t.static = append(t.static, p)
	}
	return t, nil
}

func (t *H1Transport) request(i int, path string, header [][2]string, body []byte) h1.Request {
	u := t.target
	if len(u) > 0 && u[len(u)-1] == '/' {
		u = u[:len(u)-1]
	}
	req := h1.Request{Method: t.set.reqs[i].method, URL: u + path, Header: header, Body: body, AllowRemote: true}
	req.Host, req.Header = hostHeader(header)
	return req
}

// hostHeader takes a Host header out of header: a request may name a
// virtual host behind the target's address (wrk -H, hey -host), which the
// client writes as the Host line instead of the target's.
func hostHeader(header [][2]string) (string, [][2]string) {
	for i, h := range header {
		if strings.EqualFold(h[0], "Host") {
			rest := append(append([][2]string(nil), header[:i]...), header[i+1:]...)
			return h[1], rest
		}
	}
	return "", header
}

// Worker implements WorkerTransport: a sender for one goroutine, with its
// own connection (unless the transport is capped), result and buffers.
func (t *H1Transport) Worker() Transport { return t.worker(nil) }

// worker is Worker for a generator whose clock is clock (nil: none). The
// worker's connection then keeps time on that clock, the generator hands it
// its reading of the send time and takes the end from the connection: two
// clock reads fewer per request.
func (t *H1Transport) worker(clock *event.Clock) *h1Worker {
	w := &h1Worker{t: t, clocked: clock != nil}
	if !t.capped {
		c, err := h1.NewConn(t.addr, t.connOpts(clock))
		if err == nil {
			w.conn = c
		}
	}
	return w
}

// LoopWorker is Worker for a VU that runs as a task of an event loop: its
// connection waits in the loop. clock is the generator's (nil: none; see
// worker).
func (t *H1Transport) LoopWorker(task *evloop.Task, clock *event.Clock) Transport {
	w := &h1Worker{t: t, clocked: clock != nil}
	if c, err := h1.NewLoopConn(task, t.addr, t.connOpts(clock)); err == nil {
		w.conn = c
	}
	return w
}

func (t *H1Transport) connOpts(clock *event.Clock) h1.Options {
	o := t.opts
	if clock != nil {
		o.Clock = clock
	}
	return o
}

// RoundTrip implements Transport for callers without a worker, through the
// shared pool.
func (t *H1Transport) RoundTrip(ctx context.Context, i int, s *Sample) {
	w := t.spare.Get().(*h1Worker)
	w.RoundTrip(ctx, i, s)
	t.spare.Put(w)
}

// FirstRequestError is the first templated request the client refused.
func (t *H1Transport) FirstRequestError() *RequestError { return t.set.firstBad.Load() }

// FirstClientErrors is the first error of each client-side cause.
func (t *H1Transport) FirstClientErrors() []*ClientError { return t.set.failures.list() }

// CloseIdle closes the shared pool's connections.
func (t *H1Transport) CloseIdle() { t.pool.Close() }

type h1Worker struct {
	t    *H1Transport
	conn *h1.Conn // nil: use the shared pool
	res  h1.Result
	dyn  h1.Prepared // rebuilt per templated request
	r    rendering
	body []byte // the start of an answer's body, for a request that checks it
	// clocked: conn keeps time on the generator's clock (see worker).
	clocked bool
}

func (w *h1Worker) RoundTrip(ctx context.Context, i int, s *Sample) {
	t := w.t
	p := t.static[i]
	if p == nil {
		t.set.render(i, s.Seq, &w.r)
		var body []byte
		if t.set.reqs[i].body != nil {
			body = w.r.body
		}
		err := CheckPath(w.r.path)
		if err == nil {
			err = w.dyn.Rebuild(t.request(i, string(w.r.path), w.r.header, body))
		}
		if err != nil {
			t.set.refused(i, s.Seq, err)
			s.Cause = cause.RequestError
			return
		}
		p = &w.dyn
	}
	if t.set.reqs[i].expect.checksBody() {
		if w.body == nil {
			w.body = make([]byte, 0, MaxCheckedBody)
		}
		w.res.Body = w.body[:0]
	} else {
		w.res.Body = nil // nothing of the body kept: no copy
	}
	var err error
	switch {
	case w.conn != nil && w.clocked:
		err = w.conn.DoAt(ctx, p, &w.res, s.sent)
		s.end = w.res.End
	case w.conn != nil:
		err = w.conn.Do(ctx, p, &w.res)
	default:
		err = t.pool.Do(ctx, p, &w.res)
	}
	s.Status, s.Cause = w.res.Status, w.res.Cause
	if w.res.WriteStart > w.res.Start {
		s.ConnWait = w.res.WriteStart - w.res.Start
	}
	if err != nil {
		if runEnded(ctx) {
			s.Cause = cause.Aborted // the run ended, not the target's doing
		} else {
			s.fdLimit = t.set.failed(s.Cause, i, s.Seq, err)
		}
		return
	}
	s.Cause = t.set.check(i, s.Seq, s.Status, s.Cause, w.res.Body)
}

// Close closes the worker's connection.
func (w *h1Worker) Close() error {
	if w.conn != nil {
		return w.conn.Close()
	}
	return nil
}

// runEnded reports whether the run's context is over, including a deadline
// that has passed but whose timer has not yet marked the context (a socket
// deadline armed from it can fire first).
func runEnded(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

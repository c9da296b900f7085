// Package gateway is cascade's reverse proxy: the system whose resilience a
// scenario verifies. It routes by path prefix to upstreams, balances over
// their replicas, and enforces connect, response-header and total timeouts.
//
// Every response the gateway produces itself carries the termination cause
// (cause.Header), decided in one place (classify), so the load generator can
// tell a gateway 504 from an upstream's own 504, and a verdict can say which
// layer of the timeout cascade fired.
//
//	client ─▶ route (longest prefix) ─▶ pick replica ─▶ headerTimeout ─▶ http.Transport ─▶ replica
//	                                        │ error
//	                                        ▼
//	                                 classify ─▶ status + X-Cascade-Cause + event
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
)

// HeaderDeadline carries the caller's remaining budget in milliseconds to the
// upstream, so it can stop work nobody will wait for.
const HeaderDeadline = "X-Cascade-Deadline-Ms"

// Options are the gateway's library knobs (not part of the config file).
type Options struct {
	Sink  event.Sink
	Clock *event.Clock
}

// Gateway is a running reverse proxy.
type Gateway struct {
	cfg    Config
	opts   Options
	routes []*route // longest prefix first
	pools  map[string]*pool
	srv    *http.Server
	ln     net.Listener
}

type route struct {
	cfg      Route
	timeouts Timeouts
	pool     *pool
	proxy    *httputil.ReverseProxy
}

// pool is the set of replicas of one upstream, replaceable at run time
// (autoscaling, replicas coming back).
type pool struct {
	name    string
	targets atomic.Pointer[[]*url.URL]
	next    atomic.Uint64
}

// pick is round robin over the current targets; nil when there are none.
func (p *pool) pick() *url.URL {
	ts := *p.targets.Load()
	if len(ts) == 0 {
		return nil
	}
	return ts[(p.next.Add(1)-1)%uint64(len(ts))]
}

func (p *pool) set(targets []string) error {
	us := make([]*url.URL, 0, len(targets))
	for _, t := range targets {
		u, err := url.Parse(t)
		if err != nil || u.Host == "" {
			return fmt.Errorf("upstream %s: bad target %q", p.name, t)
		}
		us = append(us, u)
	}
	p.targets.Store(&us)
	return nil
}

// New builds a gateway. Every route's upstream must be in cfg.Upstreams.
func New(cfg Config, opts Options) (*Gateway, error) {
	if opts.Sink == nil {
		opts.Sink = event.Discard
	}
	if opts.Clock == nil {
		opts.Clock = event.NewClock()
	}
	if errs := cfg.Validate(nil); len(errs) > 0 {
		return nil, fmt.Errorf("gateway config: %w", errors.Join(fieldErrs(errs)...))
	}
	g := &Gateway{cfg: cfg, opts: opts, pools: map[string]*pool{}}
	for _, u := range cfg.Upstreams {
		p := &pool{name: u.Name}
		if err := p.set(u.Targets); err != nil {
			return nil, err
		}
		g.pools[u.Name] = p
	}
	for _, rc := range cfg.Routes {
		rt := &route{cfg: rc, timeouts: rc.Timeouts.Effective(), pool: g.pools[rc.Upstream]}
		rt.proxy = g.newProxy(rt)
		g.routes = append(g.routes, rt)
	}
	sort.SliceStable(g.routes, func(i, j int) bool { return len(g.routes[i].cfg.Path) > len(g.routes[j].cfg.Path) })
	g.srv = &http.Server{Handler: g, ReadHeaderTimeout: 30 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	return g, nil
}

func fieldErrs[E error](in []E) []error {
	out := make([]error, len(in))
	for i, e := range in {
		out[i] = e
	}
	return out
}

// SetTargets replaces the replicas of an upstream (autoscaling, restarts).
func (g *Gateway) SetTargets(upstream string, targets []string) error {
	p, ok := g.pools[upstream]
	if !ok {
		return fmt.Errorf("gateway has no upstream %q", upstream)
	}
	return p.set(targets)
}

// Start listens and serves in the background until Close.
func (g *Gateway) Start() error {
	addr := g.cfg.Listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("gateway: listen %s: %w", addr, err)
	}
	g.ln = ln
	go func() { _ = g.srv.Serve(ln) }()
	return nil
}

// Addr is the listening address (after Start).
func (g *Gateway) Addr() string { return g.ln.Addr().String() }

// URL is the gateway's base URL (after Start).
func (g *Gateway) URL() string { return "http://" + g.Addr() }

// Close stops the gateway and its connections.
func (g *Gateway) Close() error {
	err := g.srv.Close()
	for _, rt := range g.routes {
		if t, ok := rt.proxy.Transport.(*headerTimeout); ok {
			t.next.CloseIdleConnections()
		}
	}
	return err
}

type ctxKey int

const (
	keyTarget ctxKey = iota
	keyStart
)

var (
	// errTotalTimeout is the cause of a request context whose total timeout fired.
	errTotalTimeout = errors.New("gateway total timeout")
	// errHeaderTimeout is returned when the response-header timeout fires.
	errHeaderTimeout = errors.New("gateway response-header timeout")
)

// ServeHTTP routes one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := g.match(r.URL.Path)
	if rt == nil {
		g.fail(w, r, nil, cause.NoRoute, "no route for "+r.URL.Path)
		return
	}
	target := rt.pool.pick()
	if target == nil {
		g.fail(w, r, rt, cause.NoHealthyUpstream, "upstream "+rt.cfg.Upstream+" has no replicas")
		return
	}
	ctx, cancel := context.WithTimeoutCause(r.Context(), rt.timeouts.Total.D(), errTotalTimeout)
	defer cancel()
	ctx = context.WithValue(ctx, keyTarget, target)
	ctx = context.WithValue(ctx, keyStart, time.Now())
	rt.proxy.ServeHTTP(w, r.WithContext(ctx))
}

func (g *Gateway) match(path string) *route {
	for _, rt := range g.routes {
		if len(path) >= len(rt.cfg.Path) && path[:len(rt.cfg.Path)] == rt.cfg.Path {
			return rt
		}
	}
	return nil
}

func (g *Gateway) newProxy(rt *route) *httputil.ReverseProxy {
	tr := &http.Transport{
		DialContext: (&net.Dialer{Timeout: rt.timeouts.Connect.D(), KeepAlive: 30 * time.Second}).DialContext,
		// Go's default of 2 idle connections per host makes a proxy open a new
		// connection for most requests under load (see bench/BASELINE.md: 3×
		// the CPU and 10× the p99). Keep plenty.
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			target := pr.In.Context().Value(keyTarget).(*url.URL)
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			if dl, ok := pr.Out.Context().Deadline(); ok {
				pr.Out.Header.Set(HeaderDeadline, strconv.FormatInt(time.Until(dl).Milliseconds(), 10))
			}
		},
		Transport: &headerTimeout{next: tr, timeout: rt.timeouts.ResponseHeader.D()},
		ModifyResponse: func(res *http.Response) error {
			// An upstream error without a cause of its own is still the
			// upstream's decision, not ours: say so.
			if res.StatusCode >= 400 && res.Header.Get(cause.Header) == "" {
				res.Header.Set(cause.Header, cause.UpstreamError.String())
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			c, detail := classify(r.Context(), err)
			g.fail(w, r, rt, c, detail)
		},
		ErrorLog:      log.New(io.Discard, "", 0),
		FlushInterval: -1,
	}
}

// classify is the gateway's one map from a failed proxy attempt to a
// termination cause. Order matters: a timeout that fired explains the
// cancellation and connection errors it caused.
func classify(ctx context.Context, err error) (cause.Cause, string) {
	switch {
	case errors.Is(context.Cause(ctx), errTotalTimeout):
		return cause.GatewayTimeout, "total timeout"
	case errors.Is(err, errHeaderTimeout):
		return cause.GatewayTimeout, "response_header timeout"
	case ctx.Err() != nil:
		return cause.ClientGone, "client closed the connection"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		if op.Timeout() {
			return cause.UpstreamConnectFailure, "connect timeout"
		}
		return cause.UpstreamConnectFailure, op.Err.Error()
	}
	if isReset(err) {
		return cause.UpstreamReset, err.Error()
	}
	// net/http exports no error type for an unparsable response ("malformed
	// HTTP response", bad status line or headers); anything left after the
	// cases above came from a connection that was up and answered something.
	return cause.UpstreamMalformed, err.Error()
}

func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, rt *route, c cause.Cause, detail string) {
	attrs := map[string]any{"cause": c.String(), "detail": detail, "path": r.URL.Path}
	target := ""
	if rt != nil {
		target = rt.cfg.Upstream
		attrs["route"] = rt.cfg.Path
	}
	if t, ok := r.Context().Value(keyTarget).(*url.URL); ok {
		attrs["replica"] = t.Host
	}
	if st, ok := r.Context().Value(keyStart).(time.Time); ok {
		attrs["elapsed_ms"] = float64(time.Since(st).Microseconds()) / 1000
	}
	g.opts.Sink.Emit(event.Event{T: g.opts.Clock.Now(), Source: "gateway", Type: "gateway." + c.String(), Target: target, Attrs: attrs})
	if c == cause.ClientGone {
		// Nobody is listening; the 499 is for logs only (nginx's convention).
		w.WriteHeader(499)
		return
	}
	h := w.Header()
	h.Set(cause.Header, c.String())
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(c.Status())
	_, _ = io.WriteString(w, c.String()+": "+detail+"\n")
}

// headerTimeout bounds the wait for response headers. net/http has the same
// knob (Transport.ResponseHeaderTimeout) but reports it only as an error
// string; enforcing it here lets classify name the timeout that fired.
type headerTimeout struct {
	next    *http.Transport
	timeout time.Duration
}

func (h *headerTimeout) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(h.timeout, func() { cancel(errHeaderTimeout) })
	res, err := h.next.RoundTrip(req.WithContext(ctx))
	if !timer.Stop() {
		// The timer fired: even if headers arrived at the same instant, the
		// context is cancelled and the body unreadable. Report the timeout.
		if res != nil {
			res.Body.Close()
		}
		cancel(nil)
		return nil, errHeaderTimeout
	}
	if err != nil {
		cancel(nil)
		return nil, err
	}
	res.Body = &cancelOnClose{ReadCloser: res.Body, cancel: cancel}
	return res, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel(nil)
	return err
}

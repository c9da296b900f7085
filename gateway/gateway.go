package gateway

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascadehq/cascade/gateway/balance"
	"github.com/cascadehq/cascade/gateway/breaker"
	"github.com/cascadehq/cascade/gateway/fallback"
	"github.com/cascadehq/cascade/gateway/health"
	"github.com/cascadehq/cascade/gateway/internal/emit"
	"github.com/cascadehq/cascade/gateway/limit"
	"github.com/cascadehq/cascade/gateway/retry"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/evloop"
	"github.com/cascadehq/cascade/internal/upstreamheader"
)

// Headers the gateway sets on every attempt it sends upstream.
const (
	// HeaderDeadline carries the attempt's budget in milliseconds (the
	// time left of the route's total timeout, or the per-try timeout if
	// that is shorter), so the upstream can stop work nobody will wait for.
	HeaderDeadline = upstreamheader.Deadline
	// HeaderAttempt numbers the attempts of one request, from 1 (Envoy's
	// x-envoy-attempt-count).
	HeaderAttempt = upstreamheader.Attempt
	// HeaderRequestID identifies a request end to end: propagated when the
	// client sent one, generated otherwise; sent upstream, echoed to the
	// client and written to the access log.
	HeaderRequestID = "X-Request-Id"
)

// Options are the gateway's library knobs (not part of the config file).
type Options struct {
	// Sink receives every decision as an event (see the package doc).
	Sink event.Sink
	// Clock stamps events and access-log lines (the run's clock).
	Clock *event.Clock
	// Seed seeds every random choice: balancing, retry jitter, request IDs.
	// Default 1.
	Seed uint64
	// AccessLog receives one JSON line per request; nil: no access log.
	AccessLog io.Writer
	// Dial replaces, per upstream name, how connections to its replicas
	// (and its health checks) are made: a run dials an upstream behind a
	// packet link from inside the link's network namespace. Upstreams not
	// named use a net.Dialer.
	Dial map[string]DialFunc
	// Loops, when above 0, serves plain HTTP/1.1 on that many event loops
	// (internal/evloop) instead of a goroutine per client connection; see
	// server.go for why and when. Linux only; not with Dial.
	Loops int
}

// DialFunc opens a connection to addr, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Gateway is a running reverse proxy.
type Gateway struct {
	cfg    Config
	opts   Options
	routes []*route // longest prefix first
	ups    map[string]*upstream
	upList []*upstream // config order

	idPrefix []byte
	idSeq    atomic.Uint64
	active   atomic.Int64

	alog    *accessLog
	metrics *metrics
	srv     *server
	admin   *http.Server
	adminLn net.Listener

	ctx    context.Context // ends at Close: health checks, waits
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

// upstream is one upstream's live state.
type upstream struct {
	g        *Gateway
	name     string
	cfg      Upstream
	bal      *balance.Balancer
	brk      *breaker.Breaker // nil: no breaker
	lim      *limit.Limiter   // nil: no bulkhead
	maxConns int64
	conns    atomic.Int64
	chk      *health.Checker  // nil: no active checks
	det      *health.Detector // nil: no ejection
	budget   *retry.Budget    // shared by the policies of its routes
	dial     DialFunc         // nil: net.Dialer (Options.Dial)

	mu     sync.Mutex                                      // serialises SetTargets
	eps    atomic.Pointer[map[*balance.Endpoint]*endpoint] // live endpoints
	stats  map[string]*replicaStats                        // every replica ever seen, by address
	order  []string                                        // addresses in first-seen order
	events emit.Emitter
	thrMax emit.Throttle

	requests, attempts, maxConnsOverflows, opened atomic.Uint64
}

// endpoint is one replica: the balancer's view, its connections, its counts.
type endpoint struct {
	ep        *balance.Endpoint
	addr      string
	pool      connPool   // goroutines' connections
	loopPools []connPool // each event loop's (Options.Loops)
	stats     *replicaStats
}

type replicaStats struct {
	attempts, failures atomic.Uint64
}

// route is one route's live state.
type route struct {
	cfg       Route
	path      string
	up        *upstream
	total     time.Duration
	header    time.Duration
	connect   time.Duration
	idle      time.Duration
	perTry    time.Duration
	policy    *retry.Policy // nil: one attempt
	rate      *limit.RateLimiter
	cache     *fallback.Cache
	static    *fallback.Static
	fbOn      uint8 // bit per fallback condition
	prop      propagation
	capMax    int64 // largest body the cache keeps
	maxBody   int64 // largest request body buffered (and so replayable)
	events    emit.Emitter
	thr       [cause.Count]emit.Throttle // termination events
	thrTry    [cause.Count]emit.Throttle // failed-attempt events
	causes    [cause.Count]atomic.Uint64
	fallbacks atomic.Uint64
	hist      histogram
}

// fallback condition bits.
const (
	fbBreaker uint8 = 1 << iota
	fbUnavailable
	fbTimeout
	fbError
)

// defaultMaxBody is the largest request body the gateway buffers when the
// route has no retry policy saying otherwise (retry's own default).
const defaultMaxBody = retry.DefaultMaxReplayBody

// New builds a gateway from a complete config: every upstream lists its
// targets (the run fills them in from the scenario's replicas).
func New(cfg Config, opts Options) (*Gateway, error) {
	if opts.Sink == nil {
		opts.Sink = event.Discard
	}
	if opts.Clock == nil {
		opts.Clock = event.NewClock()
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if errs := cfg.Validate(nil); len(errs) > 0 {
		return nil, fmt.Errorf("gateway config: %w", errors.Join(fieldErrs(errs)...))
	}
	if opts.Loops < 0 {
		return nil, fmt.Errorf("gateway: %d event loops: expected 0 (goroutines) or more", opts.Loops)
	}
	if opts.Loops > 0 && len(opts.Dial) > 0 {
		// A run's dialer enters a packet link's network namespace; a loop
		// dials its own sockets.
		return nil, errors.New("gateway: event loops cannot use Options.Dial")
	}
	g := &Gateway{cfg: cfg, opts: opts, ups: map[string]*upstream{}}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.idPrefix = fmt.Appendf(nil, "%08x-", g.rand("request-id").Uint32())
	if opts.AccessLog != nil {
		g.alog = newAccessLog(opts.AccessLog)
	}
	for _, uc := range cfg.Upstreams {
		u, err := g.newUpstream(uc)
		if err != nil {
			g.cancel()
			return nil, fmt.Errorf("upstream %s: %w", uc.Name, err)
		}
		g.ups[uc.Name] = u
		g.upList = append(g.upList, u)
	}
	for _, rc := range cfg.Routes {
		rt, err := g.newRoute(rc)
		if err != nil {
			g.cancel()
			return nil, fmt.Errorf("route %s: %w", rc.Path, err)
		}
		g.routes = append(g.routes, rt)
	}
	sort.SliceStable(g.routes, func(i, j int) bool { return len(g.routes[i].path) > len(g.routes[j].path) })
	g.metrics = newMetrics(g)
	g.srv = newServer(g)
	return g, nil
}

// rand returns a source seeded by the gateway's seed and a name, so each
// component draws its own repeatable sequence.
func (g *Gateway) rand(name string) *rand.Rand {
	h := fnv.New64a()
	_, _ = io.WriteString(h, name)
	return rand.New(rand.NewPCG(g.opts.Seed, h.Sum64()))
}

func (g *Gateway) newUpstream(uc Upstream) (*upstream, error) {
	sink, clock := g.opts.Sink, g.opts.Clock
	u := &upstream{g: g, name: uc.Name, cfg: uc, stats: map[string]*replicaStats{},
		events: emit.New(sink, clock, uc.Name), dial: g.opts.Dial[uc.Name]}
	var err error
	if u.bal, err = balance.New(uc.Balance, g.rand("balance/"+uc.Name), balance.WithEvents(sink, clock), balance.WithTarget(uc.Name)); err != nil {
		return nil, err
	}
	if uc.Breaker != nil {
		// Count openings on the way to the sink: the summary reports them.
		count := event.SinkFunc(func(e event.Event) {
			if e.Type == "breaker.open" {
				u.opened.Add(1)
			}
			sink.Emit(e)
		})
		if u.brk, err = breaker.New(*uc.Breaker, breaker.WithEvents(count, clock), breaker.WithTarget(uc.Name)); err != nil {
			return nil, err
		}
	}
	if uc.Limits != nil {
		if u.lim, err = limit.New(uc.Limits.Config, limit.WithEvents(sink, clock), limit.WithTarget(uc.Name)); err != nil {
			return nil, err
		}
		u.maxConns = int64(uc.Limits.MaxConnections)
	}
	if uc.HealthCheck != nil {
		hopts := []health.Option{health.WithEvents(sink, clock), health.WithTarget(uc.Name)}
		if u.dial != nil {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.DialContext = u.dial
			tr.Proxy = nil // the dialer decides where connections go, not $HTTP_PROXY
			hopts = append(hopts, health.WithClient(&http.Client{Transport: tr}))
		}
		if u.chk, err = health.NewChecker(*uc.HealthCheck, u.bal, hopts...); err != nil {
			return nil, err
		}
	}
	if uc.Outlier != nil {
		if u.det, err = health.NewDetector(*uc.Outlier, u.bal, health.WithEvents(sink, clock), health.WithTarget(uc.Name)); err != nil {
			return nil, err
		}
	}
	u.eps.Store(&map[*balance.Endpoint]*endpoint{})
	if _, err := u.setTargets(uc.Targets); err != nil {
		return nil, err
	}
	return u, nil
}

func (g *Gateway) newRoute(rc Route) (*route, error) {
	t := rc.Timeouts.Effective()
	u := g.ups[rc.Upstream]
	rt := &route{cfg: rc, path: rc.Path, up: u, total: t.Total.D(), header: t.ResponseHeader.D(), connect: t.Connect.D(),
		idle: t.Idle.D(), perTry: rc.perTry().D(), maxBody: defaultMaxBody, events: emit.New(g.opts.Sink, g.opts.Clock, rc.Upstream)}
	sink, clock := g.opts.Sink, g.opts.Clock
	if rc.Retries != nil {
		var err error
		if u.budget == nil {
			if u.budget, err = retry.NewBudget(*rc.Retries); err != nil {
				return nil, err
			}
		}
		if rt.policy, err = retry.New(*rc.Retries, g.rand("retry/"+rc.Path), retry.WithEvents(sink, clock),
			retry.WithTarget(rc.Path), retry.WithBudget(u.budget)); err != nil {
			return nil, err
		}
		rt.maxBody = rt.policy.MaxReplayBody()
	}
	if rc.RateLimit != nil {
		var err error
		if rt.rate, err = limit.NewRate(*rc.RateLimit, limit.WithEvents(sink, clock), limit.WithTarget(rc.Path)); err != nil {
			return nil, err
		}
	}
	if f := rc.Fallback; f != nil {
		var err error
		if f.Cache != nil {
			if rt.cache, err = fallback.NewCache(*f.Cache, fallback.WithEvents(sink, clock), fallback.WithTarget(rc.Path)); err != nil {
				return nil, err
			}
			rt.capMax = f.Cache.MaxEntrySize.Bytes()
			if rt.capMax == 0 {
				rt.capMax = min(fallback.DefaultMaxEntrySize, orInt64(f.Cache.MaxBytes.Bytes(), fallback.DefaultMaxBytes))
			}
		}
		if f.Static != nil {
			if rt.static, err = fallback.NewStatic(*f.Static, fallback.WithEvents(sink, clock), fallback.WithTarget(rc.Path)); err != nil {
				return nil, err
			}
		}
		on := f.On
		if len(on) == 0 {
			on = fallbackConditions
		}
		for _, c := range on {
			switch c {
			case OnBreakerOpen:
				rt.fbOn |= fbBreaker
			case OnUnavailable:
				rt.fbOn |= fbUnavailable
			case OnTimeout:
				rt.fbOn |= fbTimeout
			case OnError:
				rt.fbOn |= fbError
			}
		}
	}
	rt.prop = newPropagation(rc.Propagate)
	rt.hist.init()
	return rt, nil
}

// propagation is a route's Propagate as bits.
type propagation uint8

// propagationOf is rt's propagation; a request without a route (answered
// 404, never sent) takes the default.
func propagationOf(rt *route) propagation {
	if rt == nil {
		return propAll
	}
	return rt.prop
}

const (
	propRequestID propagation = 1 << iota
	propForwardedFor
	propAttempt
	propDeadline
)

const propAll = propRequestID | propForwardedFor | propAttempt | propDeadline

func newPropagation(names []string) propagation {
	if len(names) == 0 {
		return propAll
	}
	var p propagation
	for _, n := range names {
		switch n {
		case PropagateRequestID:
			p |= propRequestID
		case PropagateForwardedFor:
			p |= propForwardedFor
		case PropagateAttempt:
			p |= propAttempt
		case PropagateDeadline:
			p |= propDeadline
		}
	}
	return p
}

func orInt64(v, d int64) int64 {
	if v == 0 {
		return d
	}
	return v
}

func fieldErrs[E error](in []E) []error {
	out := make([]error, len(in))
	for i, e := range in {
		out[i] = e
	}
	return out
}

// SetTargets replaces the replicas of an upstream at run time (autoscaling,
// restarts). New replicas join the balancer (unhealthy until their first
// passing check when the upstream has active health checks); removed ones
// stop receiving requests, requests already sent to them finish, and the
// outlier detector forgets them.
func (g *Gateway) SetTargets(upstream string, targets []string) error {
	u, ok := g.ups[upstream]
	if !ok {
		return fmt.Errorf("gateway has no upstream %q", upstream)
	}
	added, err := u.setTargets(targets)
	if err != nil {
		return err
	}
	if added && u.chk != nil && g.srv.started.Load() && !g.closed.Load() {
		g.wg.Go(func() { u.chk.CheckAll(g.ctx) })
	}
	return nil
}

// setTargets diffs targets against the current endpoints; it reports
// whether any endpoint was added.
func (u *upstream) setTargets(targets []string) (bool, error) {
	addrs := make([]string, 0, len(targets))
	want := map[string]int{}
	for i, t := range targets {
		a, err := targetAddr(t)
		if err != nil {
			return false, fmt.Errorf("upstream %s: %w", u.name, err)
		}
		if _, dup := want[a]; dup {
			return false, fmt.Errorf("upstream %s: target %s is listed twice", u.name, t)
		}
		w := 1
		if i < len(u.cfg.Weights) {
			w = u.cfg.Weights[i]
		}
		want[a] = w
		addrs = append(addrs, a)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	old := *u.eps.Load()
	next := make(map[*balance.Endpoint]*endpoint, len(addrs))
	have := map[string]*endpoint{}
	for _, e := range old {
		have[e.addr] = e
	}
	var gone []*endpoint
	for addr, e := range have {
		if _, keep := want[addr]; keep {
			next[e.ep] = e
		} else {
			gone = append(gone, e)
		}
	}
	var fresh []*balance.Endpoint
	for _, addr := range addrs {
		if _, ok := have[addr]; ok {
			continue
		}
		be := balance.NewEndpoint(addr, want[addr])
		if u.chk != nil {
			// Envoy: a new host is unhealthy until its first check passes,
			// so no request meets a replica that is not up yet.
			be.SetHealthy(false)
		}
		st := u.stats[addr]
		if st == nil {
			st = &replicaStats{}
			u.stats[addr] = st
			u.order = append(u.order, addr)
		}
		e := &endpoint{ep: be, addr: addr, stats: st}
		e.pool = connPool{addr: addr, up: u}
		if n := u.g.opts.Loops; n > 0 {
			dialAddr := addr
			if ta, err := net.ResolveTCPAddr("tcp", addr); err == nil && ta.IP != nil {
				dialAddr = ta.AddrPort().String()
			}
			e.loopPools = make([]connPool, n)
			for i := range e.loopPools {
				e.loopPools[i] = connPool{addr: addr, up: u, loop: i + 1, dialAddr: dialAddr}
			}
		}
		next[be] = e
		fresh = append(fresh, be)
	}
	// The balancer's set and this map change in separate steps; a request
	// may pick from either version. Publish old and new together first, so
	// whatever it picks is found (and try picks again if it still is not).
	union := make(map[*balance.Endpoint]*endpoint, len(old)+len(fresh))
	for k, v := range old {
		union[k] = v
	}
	for k, v := range next {
		union[k] = v
	}
	u.eps.Store(&union)
	if len(fresh) > 0 {
		if err := u.bal.Add(fresh...); err != nil {
			u.eps.Store(&old)
			return false, err
		}
	}
	for _, e := range gone {
		u.bal.Remove(e.addr)
		if u.det != nil {
			u.det.Forget(e.ep)
		}
		e.pool.closeIdle(true)
		for i := range e.loopPools {
			// A loop's sockets are closed on the loop. A loop that is not
			// running any more has closed them.
			p := &e.loopPools[i]
			u.g.srv.onLoop(p.loop, func() { p.closeIdle(true) })
		}
	}
	u.eps.Store(&next)
	return len(fresh) > 0, nil
}

func (u *upstream) lookup(e *balance.Endpoint) *endpoint { return (*u.eps.Load())[e] }

// Start listens, runs the first health checks, and serves in the
// background until Close.
func (g *Gateway) Start() error {
	addr := g.cfg.Listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var lls []*evloop.Listener
	var err error
	if g.opts.Loops > 0 {
		lls, err = listenLoops(addr, g.opts.Loops)
	} else {
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("gateway: listen %s: %w", addr, err)
	}
	closeLn := func() {
		if ln != nil {
			ln.Close()
		}
		for _, l := range lls {
			l.Close()
		}
	}
	if g.cfg.AdminListen != "" {
		if err := g.startAdmin(); err != nil {
			closeLn()
			return err
		}
	}
	// Active health checks: a verdict on every replica before traffic.
	for _, u := range g.upList {
		if u.chk == nil {
			continue
		}
		u.chk.CheckAll(g.ctx)
		g.wg.Go(func() { _ = u.chk.Run(g.ctx) })
	}
	if lls != nil {
		if err := g.srv.startLoops(lls); err != nil {
			closeLn()
			return err
		}
	} else {
		g.srv.start(ln)
	}
	attrs := map[string]any{"addr": g.Addr(), "routes": len(g.routes), "upstreams": len(g.upList)}
	if g.opts.Loops > 0 {
		attrs["loops"] = g.opts.Loops
	}
	if g.adminLn != nil {
		attrs["admin"] = g.adminLn.Addr().String()
	}
	g.opts.Sink.Emit(event.Event{T: g.opts.Clock.Now(), Source: emit.Source, Type: "gateway.start", Attrs: attrs})
	return nil
}

// Addr is the listening address (after Start).
func (g *Gateway) Addr() string { return g.srv.addr.String() }

// URL is the gateway's base URL (after Start).
func (g *Gateway) URL() string { return "http://" + g.Addr() }

// AdminAddr is the admin listener's address, or "" when there is none.
func (g *Gateway) AdminAddr() string {
	if g.adminLn == nil {
		return ""
	}
	return g.adminLn.Addr().String()
}

// Close stops the gateway: listeners, client and upstream connections,
// health checks, pending waits; the access log is flushed.
func (g *Gateway) Close() error {
	if g.closed.Swap(true) {
		return nil
	}
	g.cancel()
	// Upstream connections first: exchanges blocked on one return at once.
	// (Those of loops end when the loops shut down, in srv.close.)
	for _, u := range g.upList {
		for _, e := range *u.eps.Load() {
			e.pool.abort()
		}
		if u.det != nil {
			u.det.Close()
		}
	}
	err := g.srv.close()
	for _, u := range g.upList {
		for _, e := range *u.eps.Load() {
			for i := range e.loopPools {
				e.loopPools[i].closeIdle(true) // the loops closed the sockets: this counts them
			}
		}
	}
	if g.admin != nil {
		_ = g.admin.Close()
	}
	g.wg.Wait()
	if g.alog != nil {
		if ferr := g.alog.flush(); err == nil {
			err = ferr
		}
	}
	return err
}

// InFlight is the number of requests read whole (head and buffered body)
// whose answer is not written yet.
func (g *Gateway) InFlight() int { return int(max(g.srv.inFlight.Load(), 0)) }

// DrainStats is what a graceful shutdown did.
type DrainStats struct {
	InFlight int           // requests in flight when the drain began
	Ended    int           // requests that ended during the drain (answered, or failed on their own)
	Cut      int           // requests still in flight when the drain ended: Close cut them
	Elapsed  time.Duration // from the drain's start to the end of Close
}

// Shutdown stops the gateway gracefully, as nginx on SIGQUIT, Envoy's drain
// or HAProxy's soft-stop: it closes the listeners (new connections are
// refused), closes the client connections that wait between requests, and
// lets the requests in flight finish, each answer with Connection: close.
// Once none is left, or when ctx ends (a drain timeout, a second signal),
// it Closes the gateway, which cuts what is left. A ctx already ended
// drops everything at once, as Close. It returns Close's error.
func (g *Gateway) Shutdown(ctx context.Context) (DrainStats, error) {
	start := time.Now()
	ended0 := g.srv.ended.Load()
	st := DrainStats{InFlight: int(g.srv.inFlight.Load())}
	if g.srv.started.Load() && !g.closed.Load() {
		g.opts.Sink.Emit(event.Event{T: g.opts.Clock.Now(), Source: emit.Source, Type: "gateway.drain",
			Attrs: map[string]any{"in_flight": st.InFlight}})
		if ctx.Err() == nil {
			_ = g.srv.drain(ctx)
		}
	}
	st.Ended = int(g.srv.ended.Load() - ended0)
	st.Cut = int(max(g.srv.inFlight.Load(), 0))
	err := g.Close()
	st.Elapsed = time.Since(start)
	g.opts.Sink.Emit(event.Event{T: g.opts.Clock.Now(), Source: emit.Source, Type: "gateway.stop",
		Attrs: map[string]any{"in_flight": st.InFlight, "ended": st.Ended, "cut": st.Cut, "elapsed_ms": st.Elapsed.Milliseconds()}})
	return st, err
}

// FlushAccessLog writes out the access log's buffered lines and returns the
// first error its writes met (a full disk), which the log keeps; nil
// without an access log. Close flushes it too, and returns that error among
// others.
func (g *Gateway) FlushAccessLog() error {
	if g.alog == nil {
		return nil
	}
	return g.alog.flush()
}

// match returns the route with the longest prefix of path, or nil.
func (g *Gateway) match(path []byte) *route {
	for _, rt := range g.routes {
		if len(path) >= len(rt.path) && string(path[:len(rt.path)]) == rt.path {
			return rt
		}
	}
	return nil
}

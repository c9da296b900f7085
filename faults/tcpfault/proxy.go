package tcpfault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/precise"
)

// Errors from the proxy's lifecycle.
var (
	ErrNotLoopback    = errors.New("listen address is not a loopback address")
	ErrRemoteUpstream = errors.New("the upstream is not a loopback address")
	ErrAlreadyStarted = errors.New("proxy already started")
	ErrClosed         = errors.New("proxy closed")
)

// Config describes a proxy. Zero values are the documented defaults.
type Config struct {
	// Name names the proxy in events and in the HTTP API. Default: Listen.
	Name string
	// Listen is the address to accept clients on: a loopback IP (or
	// "localhost") and a port; port 0 lets the kernel choose (see Addr).
	// Other addresses are refused: a fault proxy is a test instrument and
	// must not be reachable from the network.
	Listen string
	// Upstream is dialed for each accepted client: host:port, or a URL
	// (see HostPort). It must be on loopback unless AllowRemote.
	Upstream string
	// AllowRemote permits an upstream off loopback (cascade faultproxy
	// --allow-remote): cascade sends traffic to 127.0.0.0/8 and ::1 only
	// unless its user says otherwise.
	AllowRemote bool
	// Rand is the source of every probability and every random draw of the
	// proxy (connection seeds are drawn from it in accept order), so a run
	// with the same seed and the same connection order repeats. Required.
	Rand *rand.Rand
	// Events receives fault.start, fault.update, fault.apply and fault.stop
	// events. Default: discarded.
	Events event.Sink
	// Clock stamps events. Default: a clock started by New.
	Clock *event.Clock
	// Disabled starts the proxy "down": nothing listens, so clients are
	// refused, until SetEnabled(true).
	Disabled bool
	// Backlog is the listen backlog (Linux only). The kernel completes
	// handshakes for up to this many connections that nobody accepts; only
	// then do further clients see connect timeouts. Set it small to make a
	// blackhole with no_accept bite at once. Default: the kernel's
	// somaxconn.
	Backlog int
	// DialTimeout bounds connecting to the upstream. Default: 5s.
	DialTimeout time.Duration
	// ApplyEvery is the least time between two fault.apply events of one
	// toxic. Default: 1s.
	ApplyEvery time.Duration
	// ReadAhead is how many bytes per direction the proxy reads ahead of
	// what its toxics have let through; beyond it, it stops reading and TCP
	// flow control pushes back on the sender, as a slow link would.
	// Default: 1 MiB.
	ReadAhead int
}

// Proxy is a TCP proxy that injects connection faults (toxics) between its
// clients and one upstream.
//
//	client ──► [reader] ─► queue ─► [writer: toxic, toxic, …] ──► upstream   (upstream stream)
//	client ◄── [writer: toxic, toxic, …] ◄─ queue ◄─ [reader] ◄── upstream   (downstream stream)
//
// Per connection and direction a reader stamps each chunk with its arrival
// time and queues it (bounded, so a stalled direction stops reading rather
// than buffering without limit), and a writer runs the chunk through the
// direction's toxics in one goroutine: no stage can wedge another, and a
// toxic change never waits for a connection. Toxics, probabilities and
// counters are per proxy; the proxy knows nothing about the HTTP API that
// may drive it.
type Proxy struct {
	name        string
	backlog     int
	dialTimeout time.Duration
	applyEvery  time.Duration
	readAhead   int
	sink        event.Sink
	clock       *event.Clock
	allowRemote bool // an upstream off loopback (SetAddrs checks it too)

	rngMu sync.Mutex
	rng   *rand.Rand

	toxMu    sync.Mutex // serialises toxic changes
	nextSlot uint64
	chain    atomic.Pointer[chain]

	upstream atomic.Pointer[string]

	mu         sync.Mutex // lifecycle
	listenAddr string
	enabled    bool
	started    bool
	closed     bool
	ctx        context.Context
	cancel     context.CancelFunc
	ln         net.Listener
	lnStop     chan struct{}
	acceptDone chan struct{}

	connsMu sync.Mutex
	gen     uint64 // listener generation; disabling bumps it, cutting older connections
	conns   map[*conn]struct{}

	wg       sync.WaitGroup
	bufs     sync.Pool
	counters proxyCounters
	sleepers precise.Sleepers // waits in their final nanosleep, see wait.go
}

// New checks cfg and returns a proxy that is not yet listening; see Start.
func New(cfg Config) (*Proxy, error) {
	listen, err := LoopbackAddr(cfg.Listen)
	if err != nil {
		return nil, err
	}
	upstream, err := upstreamAddr(cfg.Upstream, cfg.AllowRemote)
	if err != nil {
		return nil, err
	}
	cfg.Upstream = upstream
	if cfg.Rand == nil {
		return nil, errors.New("tcpfault.Config.Rand is required: every probability comes from the run's seeded source")
	}
	if cfg.Backlog < 0 || cfg.DialTimeout < 0 || cfg.ApplyEvery < 0 || cfg.ReadAhead < 0 {
		return nil, errors.New("tcpfault.Config: Backlog, DialTimeout, ApplyEvery and ReadAhead must not be negative")
	}
	p := &Proxy{
		name: cfg.Name, backlog: cfg.Backlog, dialTimeout: cfg.DialTimeout, applyEvery: cfg.ApplyEvery,
		readAhead: cfg.ReadAhead, sink: cfg.Events, clock: cfg.Clock, rng: cfg.Rand, allowRemote: cfg.AllowRemote,
		listenAddr: listen, enabled: !cfg.Disabled, conns: map[*conn]struct{}{},
	}
	if p.name == "" {
		p.name = listen
	}
	if p.dialTimeout == 0 {
		p.dialTimeout = 5 * time.Second
	}
	if p.applyEvery == 0 {
		p.applyEvery = time.Second
	}
	if p.readAhead == 0 {
		p.readAhead = 1 << 20
	}
	if p.sink == nil {
		p.sink = event.Discard
	}
	if p.clock == nil {
		p.clock = event.NewClock()
	}
	up := cfg.Upstream
	p.upstream.Store(&up)
	p.chain.Store(&chain{changed: make(chan struct{})})
	p.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	return p, nil
}

// LoopbackAddr checks that addr is host:port with a loopback host and
// returns it normalised ("localhost" becomes 127.0.0.1).
func LoopbackAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("listen address %q: expected host:port such as 127.0.0.1:0", addr)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("%w: %q (use 127.0.0.1 or another 127.0.0.0/8 or ::1 address)", ErrNotLoopback, addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n > 65535 {
		return "", fmt.Errorf("listen address %q: invalid port %q", addr, port)
	}
	return net.JoinHostPort(host, port), nil
}

// upstreamAddr is HostPort, refused off loopback unless allowed.
func upstreamAddr(s string, allowRemote bool) (string, error) {
	a, err := HostPort(s)
	if err != nil || allowRemote {
		return a, err
	}
	host, _, _ := net.SplitHostPort(a)
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", fmt.Errorf("%w: %q (cascade sends traffic to 127.0.0.0/8 and ::1 only, unless you pass --allow-remote)", ErrRemoteUpstream, s)
	}
	return a, nil
}

// HostPort returns the host:port to dial for an upstream given as host:port
// or as a URL ("http://127.0.0.1:8080/" → 127.0.0.1:8080; without a port,
// http means 80 and https 443), so a scenario's upstream URL can be used
// as is.
func HostPort(s string) (string, error) {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("upstream %q: not a valid URL", s)
		}
		if u.Port() != "" {
			return u.Host, nil
		}
		switch u.Scheme {
		case "http":
			return net.JoinHostPort(u.Hostname(), "80"), nil
		case "https":
			return net.JoinHostPort(u.Hostname(), "443"), nil
		}
		return "", fmt.Errorf("upstream %q: no port", s)
	}
	if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
		return "", fmt.Errorf("upstream %q: expected host:port or a URL", s)
	}
	return s, nil
}

// Name returns the proxy's name.
func (p *Proxy) Name() string { return p.name }

// Addr returns the listen address; after Start with port 0, the port the
// kernel chose (kept across disable and enable).
func (p *Proxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.listenAddr
}

// Upstream returns the upstream address.
func (p *Proxy) Upstream() string { return *p.upstream.Load() }

// Enabled reports whether the proxy is up (listening, when started).
func (p *Proxy) Enabled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.enabled
}

// Start binds the listener (unless the proxy is disabled) and serves in the
// background until ctx is done or Close is called. It returns once the
// listener is bound, so Addr is final.
func (p *Proxy) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.started {
		return ErrAlreadyStarted
	}
	p.ctx, p.cancel = context.WithCancel(ctx)
	if p.enabled {
		if err := p.bindLocked(); err != nil {
			p.cancel()
			return err
		}
	}
	p.started = true
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		<-p.ctx.Done()
		p.mu.Lock()
		p.closed = true
		p.unbindLocked()
		p.mu.Unlock()
	}()
	return nil
}

// Close stops the proxy: the listener closes, every connection is cut, and
// Close returns when all of the proxy's goroutines have ended.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if !p.started {
		p.closed = true
		p.mu.Unlock()
		return nil
	}
	p.cancel()
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// SetEnabled takes the proxy down (false: the listener closes so new
// clients are refused, and open connections are cut) or back up (true: it
// listens again on the same address). This is Toxiproxy's "enabled".
func (p *Proxy) SetEnabled(on bool) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	if on == p.enabled {
		p.mu.Unlock()
		return nil
	}
	typ := "fault.start"
	if on {
		if p.started {
			if err := p.bindLocked(); err != nil {
				p.mu.Unlock()
				return err
			}
		}
		typ = "fault.stop"
	} else {
		p.unbindLocked()
	}
	p.enabled = on
	p.mu.Unlock()
	// Outside the lock: the sink is the caller's code.
	p.emit(event.Event{T: p.clock.Now(), Type: typ, Attrs: map[string]any{"type": "down"}})
	return nil
}

// SetAddrs changes the listen and upstream addresses. As in Toxiproxy, a
// change restarts the proxy: open connections are cut.
func (p *Proxy) SetAddrs(listen, upstream string) error {
	l, err := LoopbackAddr(listen)
	if err != nil {
		return err
	}
	upstream, err = upstreamAddr(upstream, p.allowRemote)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if l == p.listenAddr && upstream == p.Upstream() {
		return nil
	}
	running := p.enabled && p.started
	oldListen, oldUpstream := p.listenAddr, p.Upstream()
	if running {
		p.unbindLocked()
	}
	p.listenAddr = l
	p.upstream.Store(&upstream)
	if !running {
		return nil
	}
	if err := p.bindLocked(); err != nil {
		// The new address is taken: the change fails as a whole, and the
		// proxy goes on where it was. Left as it was, it said "enabled"
		// at an address it never bound, listening nowhere.
		p.listenAddr = oldListen
		p.upstream.Store(&oldUpstream)
		if p.bindLocked() != nil {
			p.enabled = false
		}
		return err
	}
	return nil
}

func (p *Proxy) bindLocked() error {
	ln, err := listen(p.ctx, p.listenAddr, p.backlog)
	if err != nil {
		return fmt.Errorf("proxy %s: %w", p.name, err)
	}
	p.ln = ln
	p.listenAddr = ln.Addr().String()
	p.lnStop = make(chan struct{})
	p.acceptDone = make(chan struct{})
	p.connsMu.Lock()
	gen := p.gen
	p.connsMu.Unlock()
	p.wg.Add(1)
	go p.acceptLoop(ln, gen, p.lnStop, p.acceptDone)
	return nil
}

// unbindLocked closes the listener, waits for the accept loop (which never
// takes p.mu), and cuts every connection of the old generation.
func (p *Proxy) unbindLocked() {
	if p.ln != nil {
		close(p.lnStop)
		p.ln.Close()
		<-p.acceptDone
		p.ln = nil
	}
	p.connsMu.Lock()
	p.gen++
	cut := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		cut = append(cut, c)
	}
	p.connsMu.Unlock()
	for _, c := range cut {
		c.close(false)
	}
}

// kickAccept wakes a blocked Accept so the loop sees a no_accept toxic.
func (p *Proxy) kickAccept() {
	p.mu.Lock()
	ln := p.ln
	p.mu.Unlock()
	if tl, ok := ln.(*net.TCPListener); ok {
		tl.SetDeadline(time.Now())
	}
}

func (p *Proxy) acceptLoop(ln net.Listener, gen uint64, stop, done chan struct{}) {
	defer p.wg.Done()
	defer close(done)
	for {
		for ch := p.chain.Load(); ch.stopAccept; ch = p.chain.Load() {
			select {
			case <-ch.changed:
			case <-stop:
				return
			}
		}
		cl, err := ln.Accept()
		if err != nil {
			select {
			case <-stop:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if tl, ok := ln.(*net.TCPListener); ok {
					tl.SetDeadline(time.Time{})
				}
				continue
			}
			// Out of file descriptors and the like: back off briefly
			// rather than spin, and keep serving.
			select {
			case <-time.After(5 * time.Millisecond):
				continue
			case <-stop:
				return
			}
		}
		p.counters.accepted.Add(1)
		c := p.newConn(cl.(*net.TCPConn))
		if !p.track(c, gen) {
			cl.Close()
			continue
		}
		p.wg.Add(1)
		go c.serve()
	}
}

func (p *Proxy) track(c *conn, gen uint64) bool {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	if gen != p.gen {
		return false
	}
	p.conns[c] = struct{}{}
	p.counters.open.Add(1)
	return true
}

func (p *Proxy) untrack(c *conn) {
	p.connsMu.Lock()
	delete(p.conns, c)
	p.connsMu.Unlock()
	p.counters.open.Add(-1)
}

func (p *Proxy) nextSeed() uint64 {
	p.rngMu.Lock()
	defer p.rngMu.Unlock()
	return p.rng.Uint64()
}

// Stats returns the proxy's counters and those of each installed toxic.
func (p *Proxy) Stats() ProxyStats {
	s := ProxyStats{
		ToxicsAdded: p.counters.added.Load(), ToxicsUpdated: p.counters.updated.Load(),
		ToxicsRemoved: p.counters.removed.Load(), Accepted: p.counters.accepted.Load(),
		DialFailures: p.counters.dialFail.Load(), Open: p.counters.open.Load(),
		BytesUp: p.counters.bytesUp.Load(), BytesDown: p.counters.bytesDown.Load(),
		Toxics: map[string]ToxicStats{},
	}
	for _, t := range p.Toxics() {
		s.Toxics[t.Name] = t.Stats
	}
	return s
}

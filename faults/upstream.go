package faults

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cascadehq/cascade/faults/packet"
	"github.com/cascadehq/cascade/faults/tcpfault"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/precise"
	"github.com/cascadehq/cascade/internal/units"
)

// Headers a fake upstream sets on every answer, so a client or a gateway log
// can tell which replica answered.
const (
	HeaderUpstream = "X-Cascade-Upstream"
	HeaderReplica  = "X-Cascade-Replica"
)

// Behaviour is how a healthy replica answers. The zero value answers 200 with
// a 64-byte body at once.
type Behaviour struct {
	// Latency before answering: a duration or a distribution.
	Latency dist.Latency `yaml:"latency,omitempty" json:"latency,omitempty"`
	// Status of a normal answer (default 200).
	Status int `yaml:"status,omitempty" json:"status,omitempty"`
	// BodySize of a normal answer (default 64 bytes).
	BodySize units.Size `yaml:"body_size,omitempty" json:"body_size,omitempty"`
}

// Validate checks the behaviour.
func (b Behaviour) Validate() error {
	if b.Status != 0 {
		if err := finalStatus(b.Status); err != nil {
			return err
		}
	}
	if b.BodySize > MaxBodySize {
		return fmt.Errorf("body_size %s is too large: at most %s", b.BodySize, MaxBodySize)
	}
	if !b.Latency.IsZero() {
		return b.Latency.Validate()
	}
	return nil
}

// MaxBodySize bounds a normal answer's body. Each replica keeps its body in
// memory, built once, so the bound is the memory a typo (1PiB for 1KiB)
// may take; a larger answer is what the slow_body fault and a real
// container upstream are for.
const MaxBodySize units.Size = 64 << 20

// UpstreamConfig declares one fake upstream.
type UpstreamConfig struct {
	Name      string
	Replicas  int      // default 1
	Listen    []string // fixed host:port per replica; empty means 127.0.0.1 on a kernel-chosen port
	Behaviour Behaviour
	// Concurrency is each replica's worker pool: at most this many requests
	// are worked on at once, the rest queue (0: unlimited). Latency then
	// grows with load, which is what an autoscaler reacts to.
	Concurrency int
	// IgnoreCancel keeps working on a request after its caller left, like a
	// handler that does not watch its context: the orphaned work a verdict
	// measures. Bounded by MaxOrphanWork and by Close.
	IgnoreCancel bool
	// Kind is UpstreamHTTP (default) or UpstreamDatabase.
	Kind string
	// Database configures a database upstream: each replica serves from its
	// own pool (faults/slowdb) instead of Behaviour.
	Database *DatabaseConfig
	// Container runs each replica as a process in a container instead of in
	// this process. The run turns it into Spawn (faults knows no Docker).
	Container *ContainerConfig
	// Spawn starts replica i as an outside process; set by the run when
	// Container is set. Instance faults act on the process through it.
	Spawn Spawn `yaml:"-" json:"-"`
	// FirstIndex numbers the replicas from here: a replica served on its
	// own (`cascade upstream --index 2`) keeps the name it has in its run.
	FirstIndex int `yaml:"-" json:"-"`
	// FaultProxy puts a TCP fault proxy (faults/tcpfault) in front of each
	// replica for the whole run, so connection-layer faults can act on its
	// connections; the replica's Listen address becomes the proxy's. Set by
	// the plan when the timeline has connection faults on the upstream.
	FaultProxy bool `yaml:"-" json:"-"`
	// PacketFaults marks an upstream whose timeline has packet faults: the
	// run creates a Link for it (root only). Set by the plan.
	PacketFaults bool `yaml:"-" json:"-"`
	// Link, set by the run, makes the replicas listen inside the link's
	// upstream namespace, so packet-layer faults act on their traffic. The
	// run closes it after the upstream.
	Link *packet.Link `yaml:"-" json:"-"`
}

// Process is a replica that runs outside cascade's process (a container).
// Instance faults act on it through these calls.
type Process interface {
	// Addr is host:port where it serves.
	Addr() string
	// Kill stops it hard: its connections reset, its port refuses.
	Kill(ctx context.Context) error
	// Start brings it back after Kill, on the same address, and waits until
	// it serves.
	Start(ctx context.Context) error
	// Pause freezes it: connections complete in the kernel, nothing answers.
	Pause(ctx context.Context) error
	// Resume thaws it.
	Resume(ctx context.Context) error
	// Close removes it for good.
	Close(ctx context.Context) error
}

// Spawn starts replica index (named name, e.g. "api[0]") as a process.
type Spawn func(ctx context.Context, index int, name string) (Process, error)

// ContainerConfig runs an upstream's replicas in containers: cascade's own
// binary in a FROM scratch image serving the upstream's behaviour (`cascade
// upstream`), or an image you name. Containers use host networking and must
// listen on 127.0.0.1.
type ContainerConfig struct {
	// Image is a local image (there is no registry: build or load it
	// first). Empty: cascade's own binary, serving Behaviour.
	Image string `yaml:"image,omitempty" json:"image,omitempty"`
	// Port the image listens on. With one port, the upstream has one
	// replica; or give PortEnv and cascade picks a port per replica.
	Port int `yaml:"port,omitempty" json:"port,omitempty"`
	// PortEnv names an environment variable the image reads its listen port
	// from; cascade sets it to a free port per replica.
	PortEnv string `yaml:"port_env,omitempty" json:"port_env,omitempty"`
	// Cmd overrides the image's command.
	Cmd []string `yaml:"cmd,omitempty" json:"cmd,omitempty"`
	// Env is passed to the process.
	Env map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	// Ready is an HTTP path that answers below 400 once the replica serves
	// (default: / for an image; cascade's own health path otherwise).
	Ready string `yaml:"ready,omitempty" json:"ready,omitempty"`
}

// Validate checks the settings that do not need Docker.
func (c *ContainerConfig) Validate(replicas int) error {
	if c.Image == "" {
		if c.Port != 0 || c.PortEnv != "" || len(c.Cmd) > 0 {
			return fmt.Errorf("port, port_env and cmd are for an image you name; cascade's own image picks its ports")
		}
		return nil
	}
	switch {
	case c.Port != 0 && c.PortEnv != "":
		return fmt.Errorf("give port (one replica on a fixed port) or port_env (a port per replica), not both")
	case c.Port == 0 && c.PortEnv == "":
		return fmt.Errorf("image %s needs port (the port it listens on) or port_env (the variable it reads its port from)", c.Image)
	case c.Port < 0 || c.Port > 32767:
		return fmt.Errorf("port %d: give 1-32767 (ports from 32768 are the load generator's ephemeral range)", c.Port)
	case c.Port != 0 && replicas > 1:
		return fmt.Errorf("a fixed port serves one replica, not %d: use port_env for more", replicas)
	}
	if c.Ready != "" && !strings.HasPrefix(c.Ready, "/") {
		return fmt.Errorf("ready %q must be a path starting with /", c.Ready)
	}
	return nil
}

// Options are what every upstream shares within a run.
type Options struct {
	Seed  uint64
	Sink  event.Sink
	Clock *event.Clock
	// Observer, when set, sees every request every replica receives.
	Observer Observer
}

func (o *Options) defaults() {
	if o.Sink == nil {
		o.Sink = event.Discard
	}
	if o.Clock == nil {
		o.Clock = event.NewClock()
	}
}

// Upstream is a named group of replicas with one behaviour.
type Upstream struct {
	cfg  UpstreamConfig
	opts Options

	mu       sync.Mutex
	replicas []*Replica
	life     lifetime // ends IgnoreCancel work on Close
	packetOn string   // the packet fault active on the link (one at a time)
}

// NewUpstream prepares an upstream; Start binds its replicas.
func NewUpstream(cfg UpstreamConfig, opts Options) *Upstream {
	opts.defaults()
	if cfg.Replicas <= 0 {
		cfg.Replicas = max(1, len(cfg.Listen))
	}
	return &Upstream{cfg: cfg, opts: opts}
}

// Name of the upstream.
func (u *Upstream) Name() string { return u.cfg.Name }

// Kind is UpstreamHTTP or UpstreamDatabase.
func (u *Upstream) Kind() string {
	if u.cfg.Kind == "" {
		return UpstreamHTTP
	}
	return u.cfg.Kind
}

// Containerised reports whether the replicas run as outside processes.
func (u *Upstream) Containerised() bool { return u.cfg.Spawn != nil }

// Start binds every replica. On error, replicas already started are closed.
func (u *Upstream) Start() error { return u.StartContext(context.Background()) }

// MaxConcurrentSpawns bounds how many replicas of one upstream start at
// once when they run as outside processes (Spawn): each is a container
// create, start and readiness wait, which the daemon serves side by side,
// but not without bound.
const MaxConcurrentSpawns = 8

// StartContext is Start with a context that bounds the setup (opening and
// seeding databases, starting containers). Replicas that run as outside
// processes start concurrently (at most MaxConcurrentSpawns at once): one
// after another, ten containerised replicas took ten readiness waits. The
// first failure stops the starts not yet begun, and every replica that did
// start is closed again.
func (u *Upstream) StartContext(ctx context.Context) error {
	if u.cfg.Spawn == nil || u.cfg.Replicas <= 1 {
		// In-process replicas bind in microseconds, and a database
		// upstream's replicas may seed one shared database: in order.
		for i := 0; i < u.cfg.Replicas; i++ {
			if _, err := u.AddReplica(ctx); err != nil {
				u.Close()
				return err
			}
		}
		return nil
	}
	u.mu.Lock()
	first := len(u.replicas)
	u.mu.Unlock()
	started := make([]*Replica, u.cfg.Replicas)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(MaxConcurrentSpawns)
	for i := range started {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err // another failed first: start nothing more
			}
			r, err := u.startReplica(gctx, first+i)
			started[i] = r
			return err
		})
	}
	err := g.Wait()
	u.mu.Lock()
	for _, r := range started {
		if r != nil {
			u.replicas = append(u.replicas, r) // in index order, as AddReplica would
		}
	}
	u.mu.Unlock()
	if err != nil {
		u.Close()
		return err
	}
	return nil
}

// AddReplica starts one more replica (autoscaling, or a restarted instance).
func (u *Upstream) AddReplica(ctx context.Context) (*Replica, error) {
	u.mu.Lock()
	i := len(u.replicas)
	u.mu.Unlock()
	r, err := u.startReplica(ctx, i)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	u.replicas = append(u.replicas, r)
	u.mu.Unlock()
	return r, nil
}

// startReplica starts replica i; the caller adds it to u.replicas.
func (u *Upstream) startReplica(ctx context.Context, i int) (*Replica, error) {
	addr := "127.0.0.1:0"
	if i < len(u.cfg.Listen) {
		addr = u.cfg.Listen[i]
	}
	addr, front := u.replicaAddrs(addr)
	r := newReplica(u, i, addr)
	r.name = fmt.Sprintf("%s[%d]", u.cfg.Name, u.cfg.FirstIndex+i)
	if err := r.start(ctx); err != nil {
		return nil, fmt.Errorf("upstream %s replica %d: %w", u.cfg.Name, i, err)
	}
	if front != "" {
		if err := r.startProxy(front); err != nil {
			_ = r.close(context.Background())
			return nil, fmt.Errorf("upstream %s replica %d: %w", u.cfg.Name, i, err)
		}
	}
	return r, nil
}

// Replicas returns the replicas in index order.
func (u *Upstream) Replicas() []*Replica {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*Replica(nil), u.replicas...)
}

// Close stops every replica and resets their connections.
func (u *Upstream) Close() error { return u.CloseContext(context.Background()) }

// CloseContext is Close with ctx bounding the waits for work in flight (a
// replica's requests, a container's graceful stop): once ctx ends, the
// replicas are closed without waiting. They are closed either way, side by
// side (containers at most MaxConcurrentSpawns at once), as they start:
// one after another, each replica's wait for its work in flight (up to 1 s
// in process, a container's stop) added up, 1–1.5 s for 12 containers.
func (u *Upstream) CloseContext(ctx context.Context) error {
	u.life.end()
	rs := u.Replicas()
	errs := make([]error, len(rs))
	var g errgroup.Group
	if u.cfg.Spawn != nil {
		g.SetLimit(MaxConcurrentSpawns)
	}
	for i, r := range rs {
		g.Go(func() error {
			errs[i] = r.close(ctx) // every one, whatever the others did
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}

// seedFor derives a stable random stream for a named thing from the run seed,
// so adding a fault does not change the delays drawn by another one.
func seedFor(seed uint64, parts ...string) *rand.Rand {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// Replica is one listening instance of an upstream.
type Replica struct {
	up    *Upstream
	index int
	name  string // "api[0]"

	srv     *http.Server
	base    http.Handler                 // the healthy behaviour, built once so its random stream continues
	handler atomic.Pointer[http.Handler] // base wrapped in the active HTTP faults
	backend Backend                      // what serves instead of Behaviour (a database); nil otherwise
	proc    Process                      // the outside process, for a containerised replica
	// proxy is the fault proxy in front (UpstreamConfig.FaultProxy), nil
	// otherwise. Atomic: it is set after the replica already serves (the
	// proxy needs the replica's address), and handlers read it.
	proxy atomic.Pointer[tcpfault.Proxy]

	// ctx ends every wait of the replica (a paused accept, a paused
	// request, a restart's delay, a container operation) when it closes.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	addr      string // host:port; fixed after the first bind so a restart comes back on it
	ln        net.Listener
	conns     map[net.Conn]struct{}
	active    []activeFault
	closed    bool
	down      bool          // killed or down: not serving
	lnStop    chan struct{} // closed when the current listener stops
	resumeCh  chan struct{} // non-nil while paused; closed on resume
	proxyDown int           // tcp_down faults active on the fault proxy

	slots chan struct{} // the Concurrency worker pool; nil when unlimited

	Received atomic.Int64 // requests that reached this replica
	InFlight atomic.Int64 // requests being handled now

	delay delay // the Behaviour's latency
}

// Lateness is how late past the Behaviour's drawn latency the replica
// answered each request it delayed (not counting its faults' delays, which
// their reports carry): its own precision, free of the client's noise.
func (r *Replica) Lateness() precise.Lateness { return r.delay.late.Snapshot() }

type activeFault struct {
	id    string
	fault Fault
	fx    *Effect
}

// Backend serves a replica's requests in place of its Behaviour (a
// database-backed service); the replica closes it.
type Backend interface {
	http.Handler
	Close() error
}

func newReplica(u *Upstream, index int, addr string) *Replica {
	r := &Replica{up: u, index: index, name: fmt.Sprintf("%s[%d]", u.cfg.Name, index), addr: addr,
		conns: map[net.Conn]struct{}{}, slots: replicaSlots(u.cfg.Concurrency)}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.srv = &http.Server{
		Handler:           http.HandlerFunc(r.serve),
		ReadHeaderTimeout: time.Minute,
		ConnState:         r.trackConn,
		ErrorLog:          discardLog,
	}
	return r
}

// start opens the replica's backend and listener, or spawns its process.
func (r *Replica) start(ctx context.Context) error {
	if spawn := r.up.cfg.Spawn; spawn != nil {
		p, err := spawn(ctx, r.index, r.name)
		if err != nil {
			return err
		}
		r.proc = p
		r.mu.Lock()
		r.addr = p.Addr()
		r.mu.Unlock()
		return nil
	}
	if db := r.up.cfg.Database; db != nil {
		b, err := openDatabase(ctx, r, *db)
		if err != nil {
			return err
		}
		r.backend, r.base = b, b
	} else {
		r.base = r.baseHandler()
	}
	h := r.base
	r.handler.Store(&h)
	if err := r.startListening(); err != nil {
		if r.backend != nil {
			_ = r.backend.Close()
		}
		return err
	}
	return nil
}

// Backend is what serves the replica instead of its Behaviour (for a
// database upstream, the *slowdb.Upstream), or nil.
func (r *Replica) Backend() Backend { return r.backend }

// Process is the replica's outside process (a container), or nil.
func (r *Replica) Process() Process { return r.proc }

// Upstream is the upstream the replica belongs to.
func (r *Replica) Upstream() *Upstream { return r.up }

// Name is "upstream[index]".
func (r *Replica) Name() string { return r.name }

// Index is the replica's position in its upstream.
func (r *Replica) Index() int { return r.index }

// Addr is the replica's host:port: where clients reach it (its fault
// proxy, when it has one).
func (r *Replica) Addr() string {
	if p := r.proxy.Load(); p != nil {
		return p.Addr()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr
}

// URL is the replica's base URL.
func (r *Replica) URL() string { return "http://" + r.Addr() }

func (r *Replica) serve(w http.ResponseWriter, req *http.Request) {
	if !r.waitResumed(req.Context().Done()) {
		return
	}
	r.Received.Add(1)
	r.InFlight.Add(1)
	defer r.InFlight.Add(-1)
	req, done, err := r.admit(req)
	defer done()
	if err != nil {
		return // the caller left while the request queued for a worker
	}
	h := w.Header()
	h.Set(HeaderUpstream, r.up.cfg.Name)
	h.Set(HeaderReplica, r.name)
	(*r.handler.Load()).ServeHTTP(w, req)
}

func (r *Replica) baseHandler() http.Handler {
	b := r.up.cfg.Behaviour
	status := b.Status
	if status == 0 {
		status = http.StatusOK
	}
	size := b.BodySize.Bytes()
	if size == 0 {
		size = 64
	}
	body := make([]byte, size)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	body[len(body)-1] = '\n'
	length := strconv.Itoa(len(body))
	var sample func() time.Duration
	if !b.Latency.IsZero() {
		var mu sync.Mutex
		s := dist.NewSampler(b.Latency, seedFor(r.up.opts.Seed, "behaviour", r.name))
		sample = func() time.Duration { mu.Lock(); defer mu.Unlock(); return s.Sample() }
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if sample != nil && !r.delay.wait(req.Context(), sample()) {
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/plain")
		h.Set("Content-Length", length)
		if status >= 400 {
			h.Set(cause.Header, cause.UpstreamError.String())
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
	})
}

// Activate starts a fault on this replica under id (unique per timeline entry).
func (r *Replica) Activate(id string, f Fault, fx *Effect) error {
	r.mu.Lock()
	for _, a := range r.active {
		if a.id == id {
			r.mu.Unlock()
			return fmt.Errorf("fault %s already active on %s", id, r.name)
		}
	}
	r.active = append(r.active, activeFault{id: id, fault: f, fx: fx})
	r.rebuildLocked()
	r.mu.Unlock()
	if rf, ok := f.(ReplicaFault); ok {
		return rf.Apply(r, fx)
	}
	return nil
}

// Deactivate ends the fault started under id; unknown ids are ignored.
func (r *Replica) Deactivate(id string) error {
	r.mu.Lock()
	var removed Fault
	for i, a := range r.active {
		if a.id == id {
			removed = a.fault
			r.active = append(r.active[:i:i], r.active[i+1:]...)
			break
		}
	}
	r.rebuildLocked()
	r.mu.Unlock()
	if rf, ok := removed.(ReplicaFault); ok {
		return rf.Revert(r)
	}
	return nil
}

// rebuildLocked wraps the base handler in the active HTTP faults; the first
// activated fault is the outermost, so "latency then error" reads in order.
func (r *Replica) rebuildLocked() {
	h := r.base
	for i := len(r.active) - 1; i >= 0; i-- {
		if hf, ok := r.active[i].fault.(HTTPFault); ok {
			inner, fx := h, r.active[i].fx
			wrapped := hf.Wrap(inner, fx)
			if fx == nil || fx.over == nil {
				h = wrapped
				continue
			}
			// Past its planned end, a request goes by the fault although
			// the timeline has not removed it yet: with the stop's timer
			// late, the first request of the "after" phase got the fault's
			// 500, and "after: error_rate == 0%" failed.
			h = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if fx.Over() {
					inner.ServeHTTP(w, req)
					return
				}
				wrapped.ServeHTTP(w, req)
			})
		}
	}
	r.handler.Store(&h)
}

func (r *Replica) trackConn(c net.Conn, s http.ConnState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch s {
	case http.StateNew:
		r.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(r.conns, c)
	}
}

// startListening binds the replica's address (again) and serves on it.
func (r *Replica) startListening() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("replica is closed")
	}
	if r.ln != nil {
		return nil
	}
	var ln net.Listener
	var err error
	// A restart may race a socket still closing on the same port; retry briefly.
	for attempt := 0; attempt < 50; attempt++ {
		ln, err = r.listen(r.addr)
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("listen %s: %w", r.addr, err)
	}
	r.ln = ln
	r.addr = ln.Addr().String()
	r.down = false
	r.lnStop = make(chan struct{})
	go func(stop chan struct{}) { _ = r.srv.Serve(&pausableListener{Listener: ln, r: r, stop: stop}) }(r.lnStop)
	return nil
}

// stopListening closes the listener and resets every open connection, like a
// process that died: new connections are refused, in-flight ones see RST.
func (r *Replica) stopListening() error {
	r.mu.Lock()
	ln := r.ln
	r.ln = nil
	r.down = true
	if r.lnStop != nil {
		close(r.lnStop)
		r.lnStop = nil
	}
	conns := make([]net.Conn, 0, len(r.conns))
	for c := range r.conns {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	var err error
	if ln != nil {
		err = ln.Close()
	}
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
	return err
}

// close stops the replica; ctx bounds the waits for its work in flight.
func (r *Replica) close(ctx context.Context) error {
	r.cancel()
	if p := r.proxy.Load(); p != nil {
		_ = p.Close()
	}
	if r.proc != nil {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		return r.proc.Close(ctx)
	}
	err := r.stopListening()
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
	_ = r.srv.Close()
	if r.backend != nil {
		err = errors.Join(err, r.backend.Close())
	}
	return err
}

// Down reports whether the replica is not serving (killed, down, or never
// started).
func (r *Replica) Down() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.down
}

// Paused reports whether the replica is paused.
func (r *Replica) Paused() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resumeCh != nil
}

// pause stops the replica accepting and answering: connections complete in
// the kernel's backlog and requests wait, as under SIGSTOP.
func (r *Replica) pause() {
	r.mu.Lock()
	if r.resumeCh == nil {
		r.resumeCh = make(chan struct{})
	}
	r.mu.Unlock()
}

// resume lets every waiting connection and request go on.
func (r *Replica) resume() {
	r.mu.Lock()
	if r.resumeCh != nil {
		close(r.resumeCh)
		r.resumeCh = nil
	}
	r.mu.Unlock()
}

// waitResumed blocks while the replica is paused; false if stop or the
// replica's close came first.
func (r *Replica) waitResumed(stop <-chan struct{}) bool {
	r.mu.Lock()
	ch := r.resumeCh
	r.mu.Unlock()
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	case <-stop:
		return false
	case <-r.ctx.Done():
		return false
	}
}

// pausableListener holds each connection it accepts while the replica is
// paused: the kernel has completed the handshake, so the client's connect
// succeeds and its request waits, the way a frozen process looks.
type pausableListener struct {
	net.Listener
	r    *Replica
	stop chan struct{} // the listener stopped (kill, down): held connections reset
}

func (l *pausableListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if !l.r.waitResumed(l.stop) {
		abort(c)
		return nil, net.ErrClosed
	}
	return c, nil
}

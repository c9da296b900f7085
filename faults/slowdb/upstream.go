package slowdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/event"
)

// Headers.
const (
	// DeadlineHeader carries the caller's remaining budget in milliseconds
	// (decimals allowed). The upstream caps its work at that budget, and
	// counts work that finishes after it as orphaned.
	DeadlineHeader = "X-Cascade-Deadline-Ms"
	// CodeHeader carries the database's error code on a failed answer: a
	// SQLSTATE (55P03, 57014), a SQLite code name (SQLITE_BUSY) or an errno
	// name (ECONNREFUSED).
	CodeHeader = "X-Cascade-DB-Code"
	// StageHeader says where a failed request was: "pool" (waiting for a
	// connection), "connect" (the pool opening a connection for it), "lock"
	// (waiting for the lock its update takes) or "query".
	StageHeader = "X-Cascade-DB-Stage"
)

// Upstream is the order-history service. It is an http.Handler: GET any
// path, optional ?customer=N (1..customers; otherwise drawn from the seeded
// generator). All methods are safe for concurrent use.
type Upstream struct {
	name  string
	cfg   Config // defaults filled
	b     backend
	sink  event.Sink
	clock *event.Clock

	rngMu sync.Mutex
	rng   *rand.Rand

	// Live fault state read on the request path.
	slow   atomic.Pointer[slowFault]
	stmtTO atomic.Int64 // statement timeout override in ns; 0: the configured one
	// lock is the lock_contention fault's hold while it holds the lock.
	lock atomic.Pointer[lockHold]
	// The faults in force that count their effects when a request ends:
	// nil when none is.
	poolInj, stmtInj, refInj atomic.Pointer[Injection]
	// poolLast is the pool fault that stopped last, and when: a wait that
	// began before then overlapped it.
	poolLast atomic.Pointer[poolStop]

	mu     sync.Mutex // guards active and closed
	active map[string]*Injection
	closed bool

	c   counters
	rec *recorder

	stopSampler context.CancelFunc
	samplerDone chan struct{}
	closeOnce   sync.Once
	closeErr    error
}

type counters struct {
	requests, ok, badRequests, clientGone atomic.Uint64
	dbTimeouts, dbErrors, upTimeouts      atomic.Uint64
	poolTimeouts, poolWaits, orphaned     atomic.Uint64
	lockTimeouts, stmtTimeouts, refuse    atomic.Uint64
	effects                               [numKinds]atomic.Uint64
}

// Kinds indexed for the effect counters.
const (
	kSlow = iota
	kLock
	kPool
	kStmt
	kRefused
	numKinds
)

var kindIndex = map[string]int{
	KindSlowQuery: kSlow, KindLockContention: kLock, KindPoolExhaustion: kPool,
	KindStatementTimeout: kStmt, KindConnectionRefused: kRefused,
}

// Option sets a library knob of New.
type Option func(*options)

type options struct {
	sink  event.Sink
	clock *event.Clock
	rng   *rand.Rand
}

// WithSink sends events to s. Default: discarded.
func WithSink(s event.Sink) Option { return func(o *options) { o.sink = s } }

// WithClock stamps events and samples on c, the run's clock. Default: a
// clock started by New.
func WithClock(c *event.Clock) Option { return func(o *options) { o.clock = c } }

// WithRand draws customers and probabilistic faults from r, which the
// upstream then owns. Default: a generator with a fixed seed, so runs repeat.
func WithRand(r *rand.Rand) Option { return func(o *options) { o.rng = r } }

// New opens (and for sqlite creates) the database, seeds it, and starts the
// pool sampler. name identifies the upstream in events; on postgres it also
// names the schema, cascade_<name>. cfg must pass Validate. ctx bounds the
// setup only.
func New(ctx context.Context, name string, cfg Config, opts ...Option) (*Upstream, error) {
	if name == "" {
		return nil, errors.New("slowdb: an upstream needs a name")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("slowdb: upstream %q: %w", name, err)
	}
	o := options{sink: event.Discard}
	for _, opt := range opts {
		opt(&o)
	}
	if o.clock == nil {
		o.clock = event.NewClock()
	}
	if o.rng == nil {
		o.rng = rand.New(rand.NewPCG(1, 2))
	}
	if o.sink == nil {
		o.sink = event.Discard
	}
	cfg = cfg.WithDefaults()
	u := &Upstream{
		name:   name,
		cfg:    cfg,
		sink:   o.sink,
		clock:  o.clock,
		rng:    o.rng,
		active: map[string]*Injection{},
	}
	var err error
	switch cfg.Driver {
	case SQLite:
		u.b, err = openSQLite(ctx, cfg, u.poolWaited)
	case Postgres:
		u.b, err = openPostgres(ctx, name, cfg, u.poolWaited)
	}
	if err != nil {
		return nil, fmt.Errorf("slowdb: upstream %q: %w", name, err)
	}
	u.rec = newRecorder(u)
	sctx, cancel := context.WithCancel(context.Background())
	u.stopSampler, u.samplerDone = cancel, make(chan struct{})
	go u.rec.run(sctx, u.samplerDone)
	return u, nil
}

// Name is the upstream's name.
func (u *Upstream) Name() string { return u.name }

// Config is the configuration in force, defaults filled.
func (u *Upstream) Config() Config { return u.cfg }

// Close stops every active fault and the sampler, closes the pool and, for
// a temporary SQLite file, removes it. It waits for the fault goroutines.
func (u *Upstream) Close() error {
	u.closeOnce.Do(func() {
		u.mu.Lock()
		u.closed = true
		act := make([]*Injection, 0, len(u.active))
		for _, inj := range u.active {
			act = append(act, inj)
		}
		u.mu.Unlock()
		for _, inj := range act {
			inj.Stop()
		}
		u.stopSampler()
		<-u.samplerDone
		u.closeErr = u.b.close()
	})
	return u.closeErr
}

// Order is one row of a customer's order history.
type Order struct {
	ID         int64     `json:"id"`
	CreatedAt  time.Time `json:"created_at"`
	TotalCents int64     `json:"total_cents"`
	Status     string    `json:"status"`
}

// historyResponse is the body of a successful answer.
type historyResponse struct {
	Customer int64   `json:"customer"`
	Orders   []Order `json:"orders"`
}

// work is one request's database work, with the fault state drawn for it.
type work struct {
	customer    int64
	limit       int
	slow        time.Duration
	stmtTimeout time.Duration
	lockTimeout time.Duration
	lockWait    lockWait
	// held is when the request got its connection: the database's
	// timers (statement_timeout, lock_timeout) start after it, so a
	// db_timeout reaches its caller that much after the request arrived
	// (a pool wait, a connect), which the timeout cascade's band allows.
	held    time.Time
	arrived time.Time // when the request came in
}

// ServeHTTP runs one order-history request.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	u.c.requests.Add(1)

	wk := work{arrived: arrived, limit: u.cfg.HistoryLimit, lockTimeout: u.cfg.LockTimeout.D(), stmtTimeout: u.cfg.StatementTimeout.D(),
		lockWait: lockWait{holds: &u.lock}}
	defer wk.lockWait.end()
	if v := u.stmtTO.Load(); v > 0 {
		wk.stmtTimeout = time.Duration(v)
	}

	budget := u.cfg.UpstreamTimeout.D()
	var callerDeadline time.Time
	if h := r.Header.Get(DeadlineHeader); h != "" {
		ms, err := strconv.ParseFloat(h, 64)
		if err != nil || ms < 0 || math.IsNaN(ms) || math.IsInf(ms, 0) {
			u.badRequest(w, fmt.Sprintf("%s: expected a non-negative number of milliseconds, got %q", DeadlineHeader, h))
			return
		}
		d := time.Duration(ms * float64(time.Millisecond))
		callerDeadline = arrived.Add(d)
		budget = min(budget, d)
	}
	if s := r.URL.Query().Get("customer"); s != "" {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil || id < 1 || id > int64(u.cfg.Customers) {
			u.badRequest(w, fmt.Sprintf("customer: expected 1..%d, got %q", u.cfg.Customers, s))
			return
		}
		wk.customer = id
	}

	u.rngMu.Lock()
	if wk.customer == 0 {
		wk.customer = 1 + u.rng.Int64N(int64(u.cfg.Customers))
	}
	u.rngMu.Unlock()
	if sf := u.slow.Load(); sf != nil {
		if wk.slow = sf.draw(); wk.slow > 0 {
			u.effect(kSlow, sf.inj)
		}
	}

	// The work outlives a client that disconnects unless PropagateCancel is
	// set: that is what a service whose queries ignore the request context
	// does, and it is the waste the cascade causes.
	base := r.Context()
	if !u.cfg.PropagateCancel {
		base = context.WithoutCancel(base)
	}
	ctx, cancel := context.WithDeadline(base, arrived.Add(budget))
	defer cancel()

	orders, err := u.b.history(ctx, &wk)
	finished := time.Now()

	// Orphaned: the database did the whole job, and nobody was waiting
	// for the answer any more.
	if err == nil {
		gone := r.Context().Err() != nil || (!callerDeadline.IsZero() && finished.After(callerDeadline))
		if gone {
			u.c.orphaned.Add(1)
		}
	}
	if err != nil {
		u.fail(w, ctx, &wk, err)
		return
	}
	u.c.ok.Add(1)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set(cause.Header, cause.OK.String())
	_ = json.NewEncoder(w).Encode(historyResponse{Customer: wk.customer, Orders: orders})
}

func (u *Upstream) badRequest(w http.ResponseWriter, msg string) {
	u.c.badRequests.Add(1)
	w.Header().Set(cause.Header, cause.UpstreamError.String())
	http.Error(w, msg, http.StatusBadRequest)
}

// fail maps a database failure to the answer, in one place: the layer whose
// deadline fired decides the cause.
func (u *Upstream) fail(w http.ResponseWriter, ctx context.Context, wk *work, err error) {
	var de *dbError
	if !errors.As(err, &de) {
		de = &dbError{kind: errOther, stage: stageQuery, err: err}
	}
	// lock_contention took effect when a request waited on its lock until
	// a timeout ended the wait: the lock's own, or an outer one (the
	// statement's, the service's deadline, the caller's) that fired first.
	// The wait is the fault's when it began while the fault held the lock,
	// even if it ended after the fault stopped, or when the fault holds
	// the lock as it ends.
	lockWait := de.kind == errLockTimeout ||
		(de.stage == stageLock && (de.kind == errStatementTimeout || ctx.Err() != nil))
	if lockWait {
		h := wk.lockWait.hold()
		if h == nil {
			h = u.lock.Load()
		}
		if h != nil {
			u.effect(kLock, h.inj)
		}
	}
	wk.lockWait.end() // after the count: the fault's stop waits for it
	var c cause.Cause
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		// propagate_cancel and the client left: nobody reads this answer,
		// but the count says why the work stopped.
		c = cause.ClientGone
		u.c.clientGone.Add(1)
	case de.kind == errPoolTimeout || ctx.Err() != nil:
		// The service's own deadline (or the caller's budget) fired first:
		// whatever the database said afterwards is a consequence.
		c = cause.UpstreamTimeout
		u.c.upTimeouts.Add(1)
		if de.stage == stagePool {
			u.c.poolTimeouts.Add(1)
		}
	case de.kind == errLockTimeout || de.kind == errStatementTimeout:
		c = cause.DBTimeout
		u.c.dbTimeouts.Add(1)
		var before time.Duration
		if !wk.held.IsZero() {
			before = wk.held.Sub(wk.arrived)
		}
		u.rec.dbTimeout(de.code, before)
		if de.kind == errLockTimeout {
			u.c.lockTimeouts.Add(1)
		} else {
			u.c.stmtTimeouts.Add(1)
			u.effect(kStmt, u.stmtInj.Load())
		}
	default:
		c = cause.DBError
		u.c.dbErrors.Add(1)
		if de.kind == errRefused {
			u.c.refuse.Add(1)
			u.effect(kRefused, u.refInj.Load())
		}
	}
	h := w.Header()
	h.Set(cause.Header, c.String())
	if de.code != "" {
		h.Set(CodeHeader, de.code)
	}
	h.Set(StageHeader, string(de.stage))
	http.Error(w, c.String()+": "+de.Error(), c.Status())
}

// poolWaited is called by the backends when a request had to wait for a
// connection another holds: a wait of at least waitThreshold, the time
// spent opening a new connection left out, counts as one. It is the
// pool fault's effect when the wait overlapped the fault: still on, or
// stopped after the wait began. (Judged at the end alone, the waits that
// the fault's own release ended all missed it: 4 of 80 counted.)
func (u *Upstream) poolWaited(began time.Time) {
	u.c.poolWaits.Add(1)
	if last := u.poolLast.Load(); last != nil && began.UnixNano() < last.at {
		u.effect(kPool, last.inj)
		return
	}
	u.effect(kPool, u.poolInj.Load())
}

// poolStop is a pool fault that stopped, and when (Unix ns).
type poolStop struct {
	inj *Injection
	at  int64
}

// effect counts one effect of a fault of kind k: in the upstream's totals
// and in inj's own count, which keeps counting after inj stopped (a wait
// it caused can end later). inj nil: no fault of the kind was in force.
func (u *Upstream) effect(k int, inj *Injection) {
	if inj == nil {
		return
	}
	u.c.effects[k].Add(1)
	inj.n.Add(1)
}

// settlePoolWaits gives the requests a pool fault kept waiting, now handed
// the connections it released, up to max to finish their wait before the
// fault reports: the tally is read as it stops, and those waits would
// otherwise land just after it (4 of 80 counted).
func (u *Upstream) settlePoolWaits(max time.Duration) {
	for end := time.Now().Add(max); u.b.pool().Waiting > 0 && time.Now().Before(end); {
		time.Sleep(100 * time.Microsecond)
	}
}

// waitThreshold separates a pool wait from a pool hit: taking an idle
// connection costs microseconds. The time to open a new one is not counted
// against it (acquire leaves it out): on PostgreSQL that took 1.9 to 9 ms
// here, and every connection the pool opened was counted as a wait.
const waitThreshold = 2 * time.Millisecond

// slowFault is the live state of slow_query.
type slowFault struct {
	inj     *Injection
	mu      sync.Mutex
	rng     *rand.Rand
	sampler *dist.Sampler
	prob    float64
}

func (s *slowFault) draw() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prob < 1 && s.rng.Float64() >= s.prob {
		return 0
	}
	return s.sampler.Sample()
}

// Stats is a snapshot of what the upstream has seen since New.
type Stats struct {
	Requests         uint64 // answered or in flight
	OK               uint64 // 200s
	BadRequests      uint64 // 400s (bad customer or deadline header)
	DBTimeouts       uint64 // 503 db_timeout
	DBErrors         uint64 // 503 db_error
	UpstreamTimeouts uint64 // 504 upstream_timeout
	ClientGone       uint64 // work cancelled because the client left (propagate_cancel)
	PoolTimeouts     uint64 // of those, still waiting for a connection at the deadline
	PoolWaits        uint64 // requests that had to wait for a connection another held (opening one is no wait)
	LockTimeouts     uint64 // 55P03 / SQLITE_BUSY
	StmtTimeouts     uint64 // 57014 / statement deadline (sqlite)
	Refused          uint64 // requests failed because the database refused connections
	Orphaned         uint64 // completed after the caller stopped waiting
	// FaultEffects counts, per fault kind, how often a fault actually took
	// effect: statements slowed, waits on the fault's lock that a timeout
	// ended (the lock's own or an outer one; a wait that began while the
	// fault held the lock counts even when it ended after the fault
	// stopped), statement timeouts, refusals and pool waits that happened
	// while the fault was active.
	FaultEffects map[string]uint64
	Pool         PoolStats
}

// PoolStats is the connection pool now.
type PoolStats struct {
	Size    int // configured maximum
	Open    int // connections open, in use or idle
	InUse   int // handed out, including those a pool_exhaustion fault holds
	Idle    int
	Waiting int // requests waiting for a connection now (not those opening one)
	Held    int // taken by pool_exhaustion
	// WaitCount and WaitTime are the pool's own cumulative counters of
	// acquisitions that found no idle connection, and their total wait.
	WaitCount int64
	WaitTime  time.Duration
}

// Stats returns a snapshot.
func (u *Upstream) Stats() Stats {
	s := Stats{
		Requests:         u.c.requests.Load(),
		OK:               u.c.ok.Load(),
		BadRequests:      u.c.badRequests.Load(),
		DBTimeouts:       u.c.dbTimeouts.Load(),
		DBErrors:         u.c.dbErrors.Load(),
		UpstreamTimeouts: u.c.upTimeouts.Load(),
		ClientGone:       u.c.clientGone.Load(),
		PoolTimeouts:     u.c.poolTimeouts.Load(),
		PoolWaits:        u.c.poolWaits.Load(),
		LockTimeouts:     u.c.lockTimeouts.Load(),
		StmtTimeouts:     u.c.stmtTimeouts.Load(),
		Refused:          u.c.refuse.Load(),
		Orphaned:         u.c.orphaned.Load(),
		FaultEffects:     make(map[string]uint64, numKinds),
		Pool:             u.b.pool(),
	}
	for k, i := range kindIndex {
		s.FaultEffects[k] = u.c.effects[i].Load()
	}
	return s
}

package slowdb

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// backend is one database's half of the upstream: the pool, the request's
// queries and the database side of the faults.
type backend interface {
	// history runs one request's work: acquire a connection (bounded by
	// ctx), read the customer's orders and update the customer row in a
	// transaction. Failures are *dbError.
	history(ctx context.Context, w *work) ([]Order, error)
	// hold takes one connection from the pool and keeps it until release
	// (pool_exhaustion). It waits for a free connection until ctx ends.
	hold(ctx context.Context) (release func(), err error)
	// lock starts a transaction outside the pool that locks the rows of
	// customers 1..rows (sqlite: the whole file) and returns once the locks
	// are held; release rolls it back and waits for that.
	lock(ctx context.Context, rows int64) (release func(), err error)
	// setRefused makes new connections fail and closes idle ones.
	setRefused(bool)
	pool() PoolStats
	close() error
}

// errKind classifies a database failure for the error map.
type errKind uint8

const (
	errOther            errKind = iota
	errPoolTimeout              // the work's deadline ended the wait for a connection
	errLockTimeout              // 55P03, SQLITE_BUSY
	errStatementTimeout         // 57014 from statement_timeout, sqlite statement deadline
	errRefused                  // the database refused the connection
	errClosed                   // the pool is closed
)

// stage says where the request was when it failed.
type stage string

const (
	stagePool stage = "pool"
	// stageConnect is an acquisition that ended while the pool was
	// opening a new connection for it: a deadline that fires then cut a
	// slow connection setup, not a wait for a connection another holds.
	stageConnect stage = "connect"
	// stageLock is the step that takes the lock the request's update
	// needs (sqlite's BEGIN IMMEDIATE, postgres's row UPDATE): quick unless
	// a lock_contention fault holds that lock, so a timeout there is a
	// wait on the lock, whichever layer's timeout ended it.
	stageLock  stage = "lock"
	stageQuery stage = "query"
)

// dbError is a database failure classified by the backend that saw it.
type dbError struct {
	kind  errKind
	stage stage
	code  string // SQLSTATE, SQLite code name or errno name; may be empty
	err   error
}

func (e *dbError) Error() string {
	if e.code != "" {
		return e.code + ": " + e.err.Error()
	}
	return e.err.Error()
}

func (e *dbError) Unwrap() error { return e.err }

// refusedCode names a connection error by its errno, if it has one.
func refusedCode(err error) (string, bool) {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "ECONNREFUSED", true
	case errors.Is(err, syscall.ECONNRESET):
		return "ECONNRESET", false
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "EHOSTUNREACH", false
	}
	return "", false
}

// gauge is the pool state the backends keep themselves, because neither
// pool reports how many callers wait right now.
type gauge struct {
	waiting atomic.Int64 // acquisitions waiting for a connection now, not those opening one
	held    atomic.Int64
	onWait  func(began time.Time) // called once per acquisition that waited, with when it began
}

// acquire wraps a pool acquisition with the waiting gauge and the wait
// counter. A wait is time spent waiting for a connection another caller
// holds: the time the pool spends opening a new connection for this
// acquisition (the backends' connect hooks report it through ctx, see
// setupOf) is not part of it. On PostgreSQL that takes a few ms, a
// fork on the server and a round trip or more, and every connection the
// pool opened counted as a wait.
//
// It returns the stage a failure happened in: stageConnect when the
// acquisition ended while a connect for it was still in progress,
// stagePool otherwise.
func acquire[C any](ctx context.Context, g *gauge, get func(context.Context) (C, error)) (C, stage, error) {
	start := time.Now()
	setup := &connSetup{g: g}
	g.waiting.Add(1)
	c, err := get(context.WithValue(ctx, connSetupKey{}, setup))
	now := time.Now()
	spent, connecting := setup.done(now)
	if now.Sub(start)-spent >= waitThreshold {
		g.onWait(start)
	}
	g.waiting.Add(-1) // after onWait: a count of 0 means every wait so far is counted
	st := stagePool
	if connecting {
		st = stageConnect
	}
	return c, st, err
}

// connSetup is one acquisition's time spent opening connections for it.
type connSetup struct {
	g     *gauge
	mu    sync.Mutex
	began time.Time     // a connect in progress began then; zero when none is
	spent time.Duration // connects finished
	over  bool          // the acquisition has returned
}

type connSetupKey struct{}

// setupOf is the acquisition a backend's connect hook is opening a
// connection for: the pool passes the acquiring context's values on to its
// connect. nil when the pool connects for itself or for a hold (whose
// acquisitions are not acquire's).
func setupOf(ctx context.Context) *connSetup {
	s, _ := ctx.Value(connSetupKey{}).(*connSetup)
	return s
}

// begin marks the start of a connect for the acquisition: the time until
// end is setup, not waiting, and the acquisition is off the waiting gauge
// meanwhile. The pool may go on connecting after the acquisition gave up
// (its deadline passed); that is no longer its business.
func (s *connSetup) begin() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.over || !s.began.IsZero() {
		return
	}
	s.began = time.Now()
	s.g.waiting.Add(-1)
}

// end marks the connect done. A connect that fails may never call it: done
// closes the account.
func (s *connSetup) end() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.over || s.began.IsZero() {
		return
	}
	s.spent += time.Since(s.began)
	s.began = time.Time{}
	s.g.waiting.Add(1)
}

// done ends the acquisition's bookkeeping and returns its setup time, a
// connect still in progress counted up to now (it is back on the gauge,
// which acquire then leaves), and whether one was.
func (s *connSetup) done(now time.Time) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.over = true
	d, connecting := s.spent, !s.began.IsZero()
	if connecting {
		d += now.Sub(s.began)
		s.began = time.Time{}
		s.g.waiting.Add(1)
	}
	return d, connecting
}

package faults

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascadehq/cascade/internal/upstreamheader"
)

// HeaderAttempt is the attempt number (1 for the first try) a gateway puts
// on each request it sends upstream; a replica records it so a verdict can
// count retries where they land, not where they were decided.
const HeaderAttempt = upstreamheader.Attempt

// HeaderDeadline is the caller's remaining budget in milliseconds. A
// replica records it to tell work nobody waits for any more (orphaned work)
// from work that was still awaited.
const HeaderDeadline = upstreamheader.Deadline

// MaxOrphanWork bounds how long a replica with IgnoreCancel keeps working on
// a request whose caller left: the run must stop by itself even if a fault
// would otherwise hang forever.
const MaxOrphanWork = time.Minute

// Arrival is what a replica saw of one request. The replica fills it in at
// arrival; Finished is set just before Observer.Finish.
type Arrival struct {
	Upstream string
	Replica  string // "api[0]"
	Addr     string // the replica's host:port, how the gateway names it
	Method   string
	// Attempt is HeaderAttempt's value, 0 when the request had none.
	Attempt int
	// Direct is set on the load's requests that bypass the gateway
	// (upstreamheader.Direct): load the replica serves, but no attempt of
	// the gateway's.
	Direct bool
	// Budget is HeaderDeadline's value: how long the caller still waited
	// when it sent the request. HasBudget is false without the header.
	Budget    time.Duration
	HasBudget bool
	At        time.Duration // arrival, on the run's clock
	Finished  time.Duration // when the replica was done with it
	// Left is when the caller went away (closed the connection: a gateway
	// that gave up) while the replica was still working; HasLeft is false
	// when it waited to the end.
	Left    time.Duration
	HasLeft bool
}

// Observer sees every request a replica receives. Implementations must be
// safe for concurrent use and quick: they run on the request path. The run
// wires one (results.Ledger) that records arrivals per millisecond, so a
// verdict can count what reached an upstream while a breaker was open, how
// many attempts each client request cost, and the work that outlived its
// caller.
type Observer interface {
	Arrive(a *Arrival)
	Finish(a *Arrival)
}

// HealthCheckObserver is an Observer that also wants the gateway's active
// health checks (requests marked with upstreamheader.HealthCheck). Arrive
// and Finish never see them: a probe is not traffic, and a replica the
// gateway ejected keeps being probed (as in Envoy), so counting probes as
// arrivals would blame the gateway for requests it never routed. A health
// check by a third-party gateway carries no mark and is an arrival like any
// other.
type HealthCheckObserver interface {
	HealthCheck(a *Arrival)
}

// lifetime ends work that ignores its caller when the upstream closes, so a
// run with IgnoreCancel still stops by itself.
type lifetime struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
}

func (l *lifetime) get() context.Context {
	l.once.Do(func() { l.ctx, l.cancel = context.WithCancel(context.Background()) })
	return l.ctx
}

func (l *lifetime) end() {
	l.get()
	l.cancel()
}

var errCallerLeft = errors.New("the caller left while the request queued")

// admit runs first in serve: it records the arrival (a health check
// apart), lets the request wait for a worker when the upstream has a
// Concurrency, and, for an upstream with IgnoreCancel, detaches the request
// from its caller's cancellation (bounded by MaxOrphanWork and by the
// replica closing). done must be called when the handler returns; when err
// is non-nil the request must not be served (the caller left while it
// queued).
func (r *Replica) admit(req *http.Request) (_ *http.Request, done func(), err error) {
	u := r.up
	var a *Arrival
	switch obs := u.opts.Observer; {
	case obs == nil:
	case req.Header.Get(upstreamheader.HealthCheck) != "":
		if hc, ok := obs.(HealthCheckObserver); ok {
			hc.HealthCheck(&Arrival{Upstream: u.cfg.Name, Replica: r.name, Addr: r.Addr(), Method: req.Method, At: u.opts.Clock.Now()})
		}
	default:
		a = &Arrival{Upstream: u.cfg.Name, Replica: r.name, Addr: r.Addr(), Method: req.Method, At: u.opts.Clock.Now(),
			Direct: req.Header.Get(upstreamheader.Direct) != ""}
		if v := req.Header.Get(HeaderAttempt); v != "" {
			a.Attempt, _ = strconv.Atoi(v)
		}
		if v := req.Header.Get(HeaderDeadline); v != "" {
			if ms, perr := strconv.ParseInt(v, 10, 64); perr == nil {
				a.Budget, a.HasBudget = time.Duration(ms)*time.Millisecond, true
			}
		}
		obs.Arrive(a)
	}
	// When did the caller leave? Its context is cancelled when the
	// connection closes; after the handler returns it is cancelled anyway,
	// which Finish tells apart by time.
	var leftAt atomic.Int64
	var stopLeft func() bool = func() bool { return true }
	if a != nil {
		clock := u.opts.Clock
		stopLeft = context.AfterFunc(req.Context(), func() { leftAt.Store(int64(clock.Now()) + 1) })
	}
	var cancel context.CancelFunc = func() {}
	if u.cfg.IgnoreCancel {
		// A handler that does not watch its context: the work runs on after
		// the caller gave up, which is the orphaned work a verdict measures.
		ctx, cf := context.WithTimeout(context.WithoutCancel(req.Context()), MaxOrphanWork)
		stop := context.AfterFunc(u.life.get(), cf)
		cancel = func() { stop(); cf() }
		req = req.WithContext(ctx)
	}
	release := func() {}
	if r.slots != nil {
		select {
		case r.slots <- struct{}{}:
			release = func() { <-r.slots }
		case <-req.Context().Done():
			err = errCallerLeft
		}
	}
	return req, func() {
		release()
		cancel()
		if a != nil {
			a.Finished = u.opts.Clock.Now()
			stopLeft()
			if v := leftAt.Load(); v != 0 && time.Duration(v-1) <= a.Finished {
				a.Left, a.HasLeft = time.Duration(v-1), true
			}
			u.opts.Observer.Finish(a)
		}
	}, err
}

// replicaSlots makes a replica's worker pool: nil (unlimited) for n <= 0.
func replicaSlots(n int) chan struct{} {
	if n <= 0 {
		return nil
	}
	return make(chan struct{}, n)
}

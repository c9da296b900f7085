// Package limit sheds load before it reaches an upstream: a bulkhead (Envoy's
// circuit-breaker thresholds: at most max_requests in flight, at most
// max_pending waiting for a slot, each for at most max_pending_wait) whose
// overflow the proxy answers with 503 overflow, and a per-route token bucket
// whose refusal the proxy answers with 429 rate_limited.
//
//	request ─▶ TryAcquire ─ slot free ─────────────────────────▶ upstream
//	               │ full                                          │
//	               ▼                                              Release
//	          pending < max_pending? ─ no ─▶ ErrPendingFull (503 overflow)
//	               │ yes: wait FIFO, up to max_pending_wait
//	               ├─ slot handed over ───────────────────────▶ upstream
//	               └─ wait over ─▶ ErrPendingTimeout (503 overflow)
//
// The waiting itself is golang.org/x/sync/semaphore: FIFO, context-aware,
// and correct about a slot freed just as a waiter gives up.
package limit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/cascadehq/cascade/gateway/internal/emit"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

// ErrOverflow matches (errors.Is) every refusal of the bulkhead; the proxy
// maps it to 503 with cause overflow.
var ErrOverflow = errors.New("overflow")

// The refusals, each matching ErrOverflow.
var (
	ErrMaxRequests    = fmt.Errorf("%w: max_requests in flight and no pending queue", ErrOverflow)
	ErrPendingFull    = fmt.Errorf("%w: max_requests in flight and max_pending waiting", ErrOverflow)
	ErrPendingTimeout = fmt.Errorf("%w: waited max_pending_wait for a slot", ErrOverflow)
)

// Config is an upstream's bulkhead as a scenario writes it.
type Config struct {
	// MaxRequests is the number of requests in flight to the upstream.
	// Default 1024 (Envoy's max_requests).
	MaxRequests int `yaml:"max_requests" zero:"default"`
	// MaxPending is the number of requests that may wait for a slot. Zero
	// (the default) waits for none: a request that finds every slot taken
	// overflows at once, like Resilience4j's bulkhead with no wait.
	MaxPending int `yaml:"max_pending"`
	// MaxPendingWait bounds one wait. Zero (the default) waits as long as
	// the request's own context allows (its route's total timeout).
	MaxPendingWait units.Duration `yaml:"max_pending_wait"`
}

// DefaultMaxRequests is Envoy's default.
const DefaultMaxRequests = 1024

// Validate reports every problem at once, each naming its field.
func (c Config) Validate() error {
	var errs yamlfile.Errors
	if c.MaxRequests < 0 {
		errs = append(errs, &yamlfile.Error{Path: "max_requests", Msg: fmt.Sprintf("must be at least 1, got %d", c.MaxRequests)})
	}
	if c.MaxPending < 0 {
		errs = append(errs, &yamlfile.Error{Path: "max_pending", Msg: fmt.Sprintf("must not be negative, got %d", c.MaxPending)})
	}
	if c.MaxPendingWait < 0 {
		errs = append(errs, &yamlfile.Error{Path: "max_pending_wait", Msg: fmt.Sprintf("must not be negative, got %v", c.MaxPendingWait)})
	}
	if c.MaxPendingWait > 0 && c.MaxPending == 0 {
		errs = append(errs, &yamlfile.Error{Path: "max_pending_wait", Msg: "has no effect with max_pending 0 (no request ever waits): set max_pending"})
	}
	return errs.Err()
}

// Counters are cumulative counts since the limiter was made.
type Counters struct {
	Admitted       uint64 // slots granted, at once or after a wait
	Waited         uint64 // of those, granted after waiting
	Overflows      uint64 // all refusals (the three below added up)
	MaxRequests    uint64 // refused at once, no queue
	PendingFull    uint64 // refused at once, queue full
	PendingTimeout uint64 // refused after max_pending_wait
	Canceled       uint64 // gave up waiting because the request's context ended
}

// Limiter is one upstream's bulkhead. It is safe for concurrent use.
type Limiter struct {
	sem        *semaphore.Weighted
	max        int64
	maxPending int64
	wait       time.Duration
	em         emit.Emitter
	throttle   emit.Throttle

	inflight, pending                                                     atomic.Int64
	admitted, waited, overflows, maxReq, pendFull, pendTimeout, cancelled atomic.Uint64
}

// Option configures a limiter beyond its Config.
type Option = emit.Option

// WithEvents sends overflow events to sink, stamped on clock.
func WithEvents(sink event.Sink, clock *event.Clock) Option { return emit.WithEvents(sink, clock) }

// WithTarget names the upstream or route in events.
func WithTarget(name string) Option { return emit.WithTarget(name) }

// New returns a bulkhead.
func New(cfg Config, opts ...Option) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := int64(cfg.MaxRequests)
	if n == 0 {
		n = DefaultMaxRequests
	}
	return &Limiter{sem: semaphore.NewWeighted(n), max: n, maxPending: int64(cfg.MaxPending),
		wait: cfg.MaxPendingWait.D(), em: emit.From(opts)}, nil
}

// TryAcquire takes a slot if one is free and nobody is waiting for one
// (waiters are served first, FIFO). It never blocks and does not allocate.
// Its refusals are not counted as overflows: the proxy should call Acquire,
// which costs the same when a slot is free and counts and reports refusals.
func (l *Limiter) TryAcquire() bool {
	if !l.sem.TryAcquire(1) {
		return false
	}
	l.inflight.Add(1)
	l.admitted.Add(1)
	return true
}

// Acquire takes a slot, waiting in the pending queue if the configuration
// allows. It returns an error matching ErrOverflow when refused, or the
// context's error when ctx ended first. Call Release after a nil return.
func (l *Limiter) Acquire(ctx context.Context) error {
	if l.TryAcquire() {
		return nil
	}
	if l.maxPending == 0 {
		return l.overflow(ErrMaxRequests, &l.maxReq)
	}
	if l.pending.Add(1) > l.maxPending {
		l.pending.Add(-1)
		return l.overflow(ErrPendingFull, &l.pendFull)
	}
	wctx := ctx
	if l.wait > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, l.wait)
		defer cancel()
	}
	err := l.sem.Acquire(wctx, 1)
	l.pending.Add(-1)
	if err == nil {
		l.inflight.Add(1)
		l.admitted.Add(1)
		l.waited.Add(1)
		return nil
	}
	if ctx.Err() != nil {
		l.cancelled.Add(1)
		return ctx.Err()
	}
	return l.overflow(ErrPendingTimeout, &l.pendTimeout)
}

func (l *Limiter) overflow(err error, c *atomic.Uint64) error {
	c.Add(1)
	l.overflows.Add(1)
	if due, n := l.throttle.Hit(time.Now()); due {
		l.em.Emit("limit.overflow", map[string]any{"reason": reason(err), "count": n,
			"in_flight": l.inflight.Load(), "pending": l.pending.Load(), "max_requests": l.max, "max_pending": l.maxPending})
	}
	return err
}

func reason(err error) string {
	switch err {
	case ErrMaxRequests:
		return "max_requests"
	case ErrPendingFull:
		return "max_pending"
	default:
		return "max_pending_wait"
	}
}

// Release frees a slot taken by TryAcquire or Acquire, handing it to the
// longest waiter if any.
func (l *Limiter) Release() {
	l.inflight.Add(-1)
	l.sem.Release(1)
}

// Queues reports whether Acquire may wait (max_pending is set): without a
// queue it answers at once.
func (l *Limiter) Queues() bool { return l.maxPending > 0 }

// InFlight is the number of slots taken.
func (l *Limiter) InFlight() int64 { return l.inflight.Load() }

// Pending is the number of requests waiting for a slot.
func (l *Limiter) Pending() int64 { return l.pending.Load() }

// Counters returns a snapshot.
func (l *Limiter) Counters() Counters {
	return Counters{Admitted: l.admitted.Load(), Waited: l.waited.Load(), Overflows: l.overflows.Load(),
		MaxRequests: l.maxReq.Load(), PendingFull: l.pendFull.Load(), PendingTimeout: l.pendTimeout.Load(),
		Canceled: l.cancelled.Load()}
}

// Package retry decides whether a failed attempt is tried again, after how
// long, and whether the upstream can afford it. It decides only: the proxy
// makes the attempts, sleeps the backoff (watching its context) and reports
// back. The semantics are Envoy's route retry policy and retry budget:
//
//	attempt fails ─▶ condition matches? ─▶ attempts left? ─▶ idempotent (or
//	nothing was sent)? ─▶ body replayable? ─▶ backoff ends before the total
//	deadline? ─▶ budget has room? ─▶ retry after backoff
//
// The first "no" on that path is the decision's reason, and every "no" after
// a matching condition is an event (retry.denied, retry.budget_exhausted), as
// is every retry (retry.attempt).
package retry

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascadehq/cascade/gateway/internal/emit"
	"github.com/cascadehq/cascade/internal/event"
)

// Kind is how an attempt ended.
type Kind uint8

// The kinds of attempt outcome.
const (
	// Response: the upstream answered with Outcome.Status.
	Response Kind = iota
	// ConnectFailure: no connection could be made; nothing was sent.
	ConnectFailure
	// Reset: the connection was reset or closed before a full answer.
	Reset
	// Timeout: the per-try timeout, or the response-header one, fired.
	Timeout
	// Local: the gateway itself refused the attempt (breaker open, overflow).
	// Envoy does not retry these, and neither does cascade: retrying into a
	// shedding layer only adds load to it.
	Local
)

// Outcome is how one attempt ended.
type Outcome struct {
	Kind   Kind
	Status int // for Response
	// RetryAfter is the wait a Response's Retry-After header asked for,
	// when HasRetryAfter (see Config.RetryAfterMax).
	RetryAfter    time.Duration
	HasRetryAfter bool
}

// retryAfter is the wait o's Retry-After imposes on its retry: for a 503
// or a 429 (RFC 9110 10.2.3 names those two), when it is within bounds.
func (s *settings) retryAfter(o Outcome) (time.Duration, bool) {
	if o.Kind != Response || !o.HasRetryAfter || (o.Status != 503 && o.Status != 429) || o.RetryAfter > s.retryAfterMax {
		return 0, false
	}
	return max(o.RetryAfter, 0), true
}

// Status is a Response outcome.
func Status(code int) Outcome { return Outcome{Kind: Response, Status: code} }

// Request is what the policy needs to know about the request.
type Request struct {
	Method string
	// Replayable says the body can be sent again: there is none, or it was
	// buffered (see PrepareBody).
	Replayable bool
}

// Reasons a Decision gives, besides the matching condition's name.
const (
	ReasonNotRetriable      = "not_retriable" // no condition matched (a success, a 404): no event
	ReasonMaxAttempts       = "max_attempts"
	ReasonNotIdempotent     = "not_idempotent"
	ReasonBodyNotReplayable = "body_not_replayable"
	ReasonDeadline          = "deadline"
	ReasonBudgetExhausted   = "budget_exhausted"
)

// Decision is the answer to one failed attempt.
type Decision struct {
	Retry   bool
	Backoff time.Duration // sleep this long before the next attempt
	// Reason is the condition that matched when Retry is true (such as
	// "gateway_error" or "503"), and why not otherwise (a Reason constant).
	Reason string
}

// Policy is one route's retry policy. It is safe for concurrent use.
type Policy struct {
	set    settings
	em     emit.Emitter
	budget *Budget

	mu  sync.Mutex // guards rng, which is not safe for concurrent use
	rng *rand.Rand

	retries, denied, exhausted, hedges atomic.Uint64
}

type options struct {
	sink   event.Sink
	clock  *event.Clock
	target string
	budget *Budget
}

// Option configures a Policy beyond its Config.
type Option func(*options)

// WithEvents sends decisions to sink, stamped on clock.
func WithEvents(sink event.Sink, clock *event.Clock) Option {
	return func(o *options) { o.sink, o.clock = sink, clock }
}

// WithTarget names the route or upstream in events.
func WithTarget(name string) Option { return func(o *options) { o.target = name } }

// WithBudget shares one upstream's budget between the policies of the
// routes that send to it (Envoy keeps the budget per cluster). Without it
// the policy has a budget of its own built from its Config.
func WithBudget(b *Budget) Option { return func(o *options) { o.budget = b } }

// New returns a policy drawing its jitter from rng, which the policy guards
// with its own lock; the caller must not use rng afterwards.
func New(cfg Config, rng *rand.Rand, opts ...Option) (*Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	s := cfg.settings()
	if o.budget == nil {
		o.budget = newBudget(s.budgetPercent, s.minRetries)
	}
	if rng == nil {
		return nil, errors.New("retry: New needs a seeded *rand.Rand (the run's seed keeps jitter repeatable)")
	}
	return &Policy{set: s, em: emit.New(o.sink, o.clock, o.target), budget: o.budget, rng: rng}, nil
}

// MaxAttempts is the number of attempts allowed, the first included.
func (p *Policy) MaxAttempts() int { return p.set.maxAttempts }

// PerTryTimeout bounds one attempt; zero means none (the total timeout
// governs). The proxy uses min(PerTryTimeout, time left).
func (p *Policy) PerTryTimeout() time.Duration { return p.set.perTry }

// MaxReplayBody is the largest body PrepareBody buffers.
func (p *Policy) MaxReplayBody() int64 { return p.set.maxReplay }

// Budget is the budget the policy draws from.
func (p *Policy) Budget() *Budget { return p.budget }

// Hedges reports hedge_on_per_try_timeout: a per-try timeout starts the
// next attempt (see DecideHedge) and does not end the one that timed out.
func (p *Policy) Hedges() bool { return p.set.hedge }

// Counters are cumulative counts of decisions.
type Counters struct {
	Retries         uint64 // decisions to retry
	Denied          uint64 // retriable failures not retried (attempts, idempotency, body, deadline)
	BudgetExhausted uint64 // retriable failures not retried for lack of budget
	// Hedges are attempts started beside one whose per-try timeout fired
	// (DecideHedge); they are not counted in Retries.
	Hedges uint64
}

// Counters returns a snapshot.
func (p *Policy) Counters() Counters {
	return Counters{Retries: p.retries.Load(), Denied: p.denied.Load(), BudgetExhausted: p.exhausted.Load(),
		Hedges: p.hedges.Load()}
}

// idempotent methods per RFC 9110 §9.2.2.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// match returns the condition that makes o retriable, or "".
func (s *settings) match(o Outcome) string {
	c := &s.conds
	switch o.Kind {
	case ConnectFailure:
		switch {
		case c.connectFailure:
			return OnConnectFailure
		case c.reset:
			return OnReset
		case c.gatewayError:
			return OnGatewayError
		case c.any5xx:
			return On5xx
		}
	case Reset, Timeout:
		// Envoy's reset, 5xx and gateway-error all cover an upstream that
		// did not answer, a per-try timeout included.
		switch {
		case c.reset:
			return OnReset
		case c.gatewayError:
			return OnGatewayError
		case c.any5xx:
			return On5xx
		}
	case Response:
		switch {
		case c.hasStatus(o.Status):
			return statusName(o.Status)
		case c.gatewayError && (o.Status == 502 || o.Status == 503 || o.Status == 504):
			return OnGatewayError
		case c.any5xx && o.Status >= 500 && o.Status <= 599:
			return On5xx
		}
	}
	return ""
}

// statusName avoids strconv's allocation for the codes that matter.
func statusName(code int) string {
	if code >= 100 && code <= 599 {
		return statusNames[code-100]
	}
	return ""
}

var statusNames = func() [500]string {
	var a [500]string
	for i := range a {
		c := i + 100
		a[i] = string([]byte{byte('0' + c/100), byte('0' + c/10%10), byte('0' + c%10)})
	}
	return a
}()

// Retriable reports whether o matches a retry_on condition, deciding
// nothing: a hedged exchange drops such an answer while another attempt
// is in flight.
func (p *Policy) Retriable(o Outcome) bool { return p.set.match(o) != "" }

// MayResend reports whether a request may be sent again after it reached
// the upstream: an idempotent method (or retry_non_idempotent) and a
// replayable body. Hedging sends nothing else.
func (p *Policy) MayResend(req Request) bool {
	return req.Replayable && (idempotent(req.Method) || p.set.nonIdempotent)
}

// Backoff draws the full-jitter backoff before retry number n (n ≥ 1):
// uniform in [0, min(backoff_max, backoff_base × 2^(n-1))). Full jitter
// (AWS Architecture Blog, "Exponential Backoff and Jitter") spreads retries
// from many clients best; Envoy's own formula is the same for base 2.
func (p *Policy) Backoff(n int) time.Duration {
	ceil := p.set.backoffMax
	if n < 1 {
		n = 1
	}
	if n-1 < 62 {
		if c := p.set.backoffBase << (n - 1); c > 0 && c < ceil {
			ceil = c
		}
	}
	if ceil <= 0 {
		return 0
	}
	p.mu.Lock()
	d := time.Duration(p.rng.Int64N(int64(ceil)))
	p.mu.Unlock()
	return d
}

// Decide answers for the attempt number attempt (1 for the first) that ended
// with o, when remaining is the time left before the request's total
// deadline. A retry decision holds one slot of the budget: the caller must
// call RetryDone exactly once when that retry attempt has ended (or was
// abandoned during the backoff), and before it asks Decide about that
// attempt. A request then holds one slot at most, as in Envoy, and never
// counts against itself.
func (p *Policy) Decide(attempt int, req Request, o Outcome, remaining time.Duration) Decision {
	cond := p.set.match(o)
	if cond == "" {
		return Decision{Reason: ReasonNotRetriable}
	}
	var why string
	var backoff time.Duration
	var asked bool // backoff is the answer's Retry-After
	switch {
	case attempt >= p.set.maxAttempts:
		why = ReasonMaxAttempts
	case o.Kind != ConnectFailure && !idempotent(req.Method) && !p.set.nonIdempotent:
		// A connect failure sent nothing, so even a POST is safe to retry
		// (nginx's proxy_next_upstream makes the same exception).
		why = ReasonNotIdempotent
	case !req.Replayable:
		why = ReasonBodyNotReplayable
	default:
		if backoff, asked = p.set.retryAfter(o); !asked {
			backoff = p.Backoff(attempt)
		}
		if backoff >= remaining {
			// With a Retry-After too: retrying sooner than the upstream
			// asked would only draw the same answer.
			// Never after the total deadline: the retry would start with no
			// time to finish, and answering the timeout now is more honest.
			why = ReasonDeadline
		}
	}
	if why != "" {
		p.denied.Add(1)
		p.em.Emit("retry.denied", map[string]any{"attempt": attempt, "condition": cond, "reason": why,
			"method": req.Method})
		return Decision{Reason: why}
	}
	if inflight, limit, ok := p.budget.acquire(); !ok {
		p.exhausted.Add(1)
		p.em.Emit("retry.budget_exhausted", map[string]any{"attempt": attempt, "condition": cond,
			"reason": ReasonBudgetExhausted, "retries_in_flight": inflight, "active": p.budget.Active(), "limit": limit})
		return Decision{Reason: ReasonBudgetExhausted}
	}
	p.retries.Add(1)
	attrs := map[string]any{"attempt": attempt + 1, "reason": cond, "backoff_ms": float64(backoff) / float64(time.Millisecond)}
	if asked {
		attrs["retry_after"] = true
	}
	p.em.Emit("retry.attempt", attrs)
	return Decision{Retry: true, Backoff: backoff, Reason: cond}
}

// DecideHedge answers whether attempt, whose per-try timeout has just
// fired and which stays in flight, gets a hedge: attempt+1, started now.
// Unlike Decide it matches no retry_on condition: as in Envoy
// (RetryStateImpl::shouldHedgeRetryPerTryTimeout), a hedge is sent
// whenever retries are left, because nothing failed. The rest is a retry's
// path: max_attempts counts the hedge, the method must be idempotent (or
// retry_non_idempotent), the body replayable, time left before the total
// deadline, and the budget must have room: a granted hedge holds a slot,
// handed back with RetryDone when that attempt ends. There is no backoff:
// the per-try timeout was the wait, and a hedge exists to answer sooner.
// A refusal is counted and reported as Decide's are (condition
// "per_try_timeout").
func (p *Policy) DecideHedge(attempt int, req Request, remaining time.Duration) Decision {
	const cond = "per_try_timeout"
	var why string
	switch {
	case attempt >= p.set.maxAttempts:
		why = ReasonMaxAttempts
	case !idempotent(req.Method) && !p.set.nonIdempotent:
		why = ReasonNotIdempotent
	case !req.Replayable:
		why = ReasonBodyNotReplayable
	case remaining <= 0:
		why = ReasonDeadline
	}
	if why != "" {
		p.denied.Add(1)
		p.em.Emit("retry.denied", map[string]any{"attempt": attempt, "condition": cond, "reason": why,
			"method": req.Method, "hedge": true})
		return Decision{Reason: why}
	}
	if inflight, limit, ok := p.budget.acquire(); !ok {
		p.exhausted.Add(1)
		p.em.Emit("retry.budget_exhausted", map[string]any{"attempt": attempt, "condition": cond,
			"reason": ReasonBudgetExhausted, "retries_in_flight": inflight, "active": p.budget.Active(), "limit": limit,
			"hedge": true})
		return Decision{Reason: ReasonBudgetExhausted}
	}
	p.hedges.Add(1)
	p.em.Emit("retry.hedge", map[string]any{"attempt": attempt + 1, "reason": cond})
	return Decision{Retry: true, Reason: cond}
}

// HedgeNotSent hands back a granted hedge that could not be sent (the
// breaker, the bulkhead or the balancer refused it): its budget slot, and
// its place in the hedges count, which counts hedges sent.
func (p *Policy) HedgeNotSent() {
	p.hedges.Add(^uint64(0))
	p.budget.Release()
}

// Begin counts a request as active on the budget; call End when it is over.
func (p *Policy) Begin() { p.budget.Begin() }

// End ends what Begin started.
func (p *Policy) End() { p.budget.End() }

// RetryDone releases the budget slot a retry decision took.
func (p *Policy) RetryDone() { p.budget.Release() }

// Budget is Envoy's retry budget for one upstream: retries in flight may not
// exceed budget_percent of the active requests, with min_retry_concurrency
// as a floor. It is safe for concurrent use and does not allocate.
type Budget struct {
	percent float64
	min     int64
	active  atomic.Int64
	retries atomic.Int64
}

// NewBudget returns a budget; zero arguments take the defaults of Config.
func NewBudget(cfg Config) (*Budget, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := cfg.settings()
	return newBudget(s.budgetPercent, s.minRetries), nil
}

func newBudget(percent float64, min int64) *Budget { return &Budget{percent: percent, min: min} }

// Begin counts one more active request (the original request, whatever its
// number of attempts, as Envoy counts active requests).
func (b *Budget) Begin() { b.active.Add(1) }

// End counts one fewer.
func (b *Budget) End() { b.active.Add(-1) }

// Active is the number of active requests.
func (b *Budget) Active() int64 { return b.active.Load() }

// RetriesInFlight is the number of retries holding a slot.
func (b *Budget) RetriesInFlight() int64 { return b.retries.Load() }

// Limit is the number of retries allowed in flight now.
func (b *Budget) Limit() int64 {
	// Envoy truncates: (active × percent) rounded down, floored at min.
	return max(b.min, int64(float64(b.active.Load())*b.percent))
}

func (b *Budget) acquire() (inflight, limit int64, ok bool) {
	for {
		cur := b.retries.Load()
		limit = b.Limit()
		if cur >= limit {
			return cur, limit, false
		}
		if b.retries.CompareAndSwap(cur, cur+1) {
			return cur + 1, limit, true
		}
	}
}

// Release frees a retry slot.
func (b *Budget) Release() { b.retries.Add(-1) }

package gateway

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cascadehq/cascade/internal/evloop"
)

// Request hedging (retries.hedge_on_per_try_timeout, Envoy's hedge_policy
// of the same name). When an attempt's per-try timeout fires it is not
// cancelled: the next attempt starts beside it, on another replica as a
// retry would (Pick(prev)), and the first answer that is not itself
// retriable is forwarded; the others are cancelled.
//
//	attempt 1 ──────────────┬──────────────────────▶ (cancelled)
//	          per-try fires └▶ attempt 2 ───▶ answer ▶ forwarded
//
// Each attempt runs on its own exchange (hedgeTry.sub: its own response
// head, request bytes and connection) on a goroutine, or on an event loop
// as a task of the client's loop, so that the loop's pools and epoll set
// serve it. The client's exchange (the coordinator) only waits, starts
// hedges, and takes the attempts' results, one at a time, through
// hedgeGroup: whoever takes an attempt's result owns its connection and
// its accounting. The coordinator alone writes to the client.
//
// Accounting follows Envoy:
//   - a hedge is a retry for max_attempts and the budget (it holds a slot
//     while in flight) but is counted apart (hedges), is sent without
//     backoff (the per-try timeout was the wait), and needs no retry_on
//     condition (RetryStateImpl::shouldHedgeRetryPerTryTimeout);
//   - the per-try timeout tells the outlier detector that the replica was
//     slow, as Envoy's onSoftPerTryTimeout records a local-origin timeout,
//     but not the breaker nor the replica's failure count: the attempt may
//     still answer, and its answer then decides those;
//   - an attempt cancelled because another answered first has no outcome:
//     Envoy resets that stream without telling the outlier detector, and
//     cascade releases its breaker ticket (as for a client that left)
//     instead of recording a failure. A replica is not failing because a
//     faster one answered the same request.
//   - a retriable answer (a 503 under retry_on 503, a reset) while another
//     attempt is in flight is dropped and the others are waited for, as
//     Envoy does; the last attempt's failure is retried or passed on as
//     without hedging.
//
// Unlike the one-attempt path, a hedged exchange allocates (its attempts,
// their exchanges and request bytes): hedging is for routes whose tail is
// worth more than that.

// hedgeable reports whether the exchange runs hedged: the route hedges
// and the request may be sent again (an idempotent method, or
// retry_non_idempotent, and a replayable body). Others keep a per-try
// timeout that ends the attempt.
func (ex *exchange) hedgeable() bool {
	p := ex.rt.policy
	return p != nil && p.Hedges() && ex.rt.perTry > 0 && p.MaxAttempts() > 1 && ex.stream == nil &&
		p.MayResend(ex.retryRequest())
}

// hedgeGroup hands the attempts' results to the coordinator.
type hedgeGroup struct {
	ex *exchange
	// head and body are the request, copied: on the fast path they point
	// into the client connection's buffer, which the next request reuses,
	// and a cancelled attempt may still be writing when it does.
	head, body []byte
	wake       chan struct{} // goroutines: done grew (the loop wakes the coordinator's task)

	mu   sync.Mutex
	done []*hedgeTry // ended, not yet taken
	over bool        // decided: attempts that end now settle themselves (hedgeTry.lose)
}

// hedgeTry is one attempt of a hedged exchange.
type hedgeTry struct {
	grp *hedgeGroup
	at  attempt
	sub exchange // the attempt's own: head, request bytes, connection
	// slot: a hedge holds a budget slot until it ends.
	slot bool
	// perTry is when the attempt's per-try timeout fires; fired once the
	// coordinator acted on it.
	perTry time.Time
	fired  bool

	c   *upConn // its result, once ended
	err error

	// ctx ends the attempt's dial when it is cancelled: a dial has no
	// connection yet for cancel to close. Made by dialContext, only when
	// the attempt dials: most take a pooled connection, and a context
	// costs two allocations and a registration with the gateway's.
	ctx  context.Context
	stop context.CancelFunc

	mu        sync.Mutex
	cancelled bool
	cut       bool         // cancel closed the attempt's socket
	nc        net.Conn     // the connection it waits on, for cancel
	lc        *evloop.Conn // the same, on a loop
}

// hedged runs a hedged exchange's attempts: handle's attemptLoop for
// routes that hedge.
func (ex *exchange) hedged() {
	rt, p := ex.rt, ex.rt.policy
	grp := &hedgeGroup{ex: ex, head: append([]byte(nil), ex.head...), body: append([]byte(nil), ex.body...)}
	if ex.task == nil {
		grp.wake = make(chan struct{}, 1)
	}
	var live []*hedgeTry // started, not taken
	var lost []*hedgeTry // taken, ended after the winner or with it: settled last
	// over decides the exchange: attempts still in flight are cancelled,
	// and those that end from now on settle themselves. settle calls it
	// (ex.decided) before it forwards the winner: left until the winner's
	// body had been streamed, the losers held their bulkhead slots,
	// breaker tickets and upstream work for the whole transfer.
	over := func() {
		grp.mu.Lock()
		grp.over = true
		lost = append(lost, grp.done...)
		grp.done = nil
		grp.mu.Unlock()
		for _, a := range live {
			a.cancel()
		}
		live = nil
	}
	ex.decided = over
	defer func() {
		over()
		for _, a := range lost {
			if a.c != nil && a.c.lc != nil {
				a.c.lc.Attach(ex.task)
			}
			a.lose()
		}
	}()
	n := 0
	start := func(queue, slot bool) error {
		at, err := ex.admit(n+1, queue)
		if err != nil {
			return err
		}
		n++
		a := &hedgeTry{grp: grp, at: at, slot: slot, perTry: at.t0.Add(rt.perTry)}
		a.sub = exchange{g: ex.g, rt: rt, resp: noClient{}, loop: ex.loop, method: ex.method, head: grp.head, body: grp.body,
			sendLen: ex.sendLen, start: ex.start, deadline: ex.deadline, hedge: a}
		live = append(live, a)
		if ex.task == nil {
			go a.run()
		} else {
			ex.task.Go(func(t *evloop.Task) {
				a.sub.task = t
				a.run()
			})
		}
		return nil
	}
	if err := start(true, false); err != nil {
		ex.fail(err)
		return
	}
	for {
		// Results first: an answer that came in time wins over a timer
		// that fired meanwhile.
		grp.mu.Lock()
		done := grp.done
		grp.done = nil
		grp.mu.Unlock()
		for i, a := range done {
			live = without(live, a)
			if a.slot {
				p.RetryDone()
				a.slot = false
			}
			if a.c != nil && a.c.lc != nil {
				a.c.lc.Attach(ex.task)
			}
			if a.c != nil {
				ex.rh, a.sub.rh = a.sub.rh, ex.rh // settle reads ex.rh (and discards with it)
			}
			fin, backoff := ex.settle(&a.at, a.c, a.err, len(live) == 0)
			if fin {
				lost = append(lost, done[i+1:]...)
				return
			}
			if len(live) > 0 {
				continue
			}
			// The last attempt failed and is retried as without hedging:
			// after its backoff, holding the slot decide took.
			if err := ex.sleep(backoff); err != nil {
				ex.fail(err)
				return
			}
			if err := start(true, false); err != nil {
				ex.fail(err)
				return
			}
		}
		now := time.Now()
		switch {
		case ex.g.ctx.Err() != nil:
			ex.fail(errShutdown)
			return
		case !now.Before(ex.deadline):
			// The attempts end at the same deadline; do not wait for them.
			ex.fail(errTotalTimeout)
			return
		case ex.resp.gone():
			ex.fail(errClientGone)
			return
		}
		// Per-try timeouts: each attempt's, once, may start a hedge.
		wait := earliest(ex.deadline, now.Add(pollEvery))
		for _, a := range live {
			if a.fired {
				continue
			}
			if now.Before(a.perTry) {
				wait = earliest(wait, a.perTry)
				continue
			}
			a.fired = true
			if u := rt.up; u.det != nil {
				u.det.ObserveFailure(a.at.be) // slow, as Envoy's local-origin timeout (see above)
			}
			d := p.DecideHedge(n, ex.retryRequest(), ex.deadline.Sub(now))
			if !d.Retry {
				continue
			}
			// A hedge does not queue in the bulkhead: waiting there for a
			// slot would defeat its point, and the first attempt goes on.
			if err := start(false, true); err != nil {
				p.HedgeNotSent()
				continue
			}
			ex.hedges++
			wait = earliest(wait, live[len(live)-1].perTry)
		}
		grp.wait(wait)
	}
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func without(l []*hedgeTry, a *hedgeTry) []*hedgeTry {
	for i, b := range l {
		if b == a {
			return append(l[:i], l[i+1:]...)
		}
	}
	return l
}

// wait returns when an attempt ended, at until, or earlier.
func (grp *hedgeGroup) wait(until time.Time) {
	ex := grp.ex
	if ex.task != nil {
		ex.task.Park(until) // woken by hedgeTry.run
		return
	}
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	select {
	case <-grp.wake:
	case <-t.C:
	case <-ex.g.ctx.Done():
	}
}

// run makes the attempt and hands its result to the coordinator, or, when
// the exchange was decided meanwhile, settles it as lost.
func (a *hedgeTry) run() {
	c, err := a.sub.roundTrip(a.at.ep, a.at.n, a.at.t0)
	a.mu.Lock()
	a.nc, a.lc = nil, nil // handed on: cancel must not close it now
	// Only the dial used the context: released now, or every attempt's
	// stayed registered under the gateway's until Close.
	if a.stop != nil {
		a.stop()
	}
	a.mu.Unlock()
	a.c, a.err = c, err
	grp := a.grp
	grp.mu.Lock()
	if grp.over {
		grp.mu.Unlock()
		a.lose()
		return
	}
	if c != nil && c.lc != nil {
		c.lc.Detach() // the coordinator's task takes it; this task ends
	}
	grp.done = append(grp.done, a)
	grp.mu.Unlock()
	if grp.wake != nil {
		select {
		case grp.wake <- struct{}{}:
		default:
		}
	} else {
		grp.ex.task.Wake()
	}
}

// lose settles an attempt whose result nobody uses: no outcome for the
// breaker or the outlier detector (see the top of the file), the
// connection kept when its answer came whole, as a discarded retry's.
func (a *hedgeTry) lose() {
	ex, u := &a.sub, a.sub.rt.up
	a.at.be.Done(time.Since(a.at.t0))
	if u.brk != nil {
		u.brk.Release(a.at.ticket)
	}
	a.mu.Lock()
	cut := a.cut
	a.mu.Unlock()
	switch {
	case a.c == nil:
	case cut:
		a.c.close() // cancel closed its socket: not one to pool
	default:
		ex.discard(a.c)
	}
	ex.release()
	if a.slot {
		ex.rt.policy.RetryDone()
	}
}

// watch registers the connection the attempt is about to use; false when
// the attempt was cancelled already.
func (a *hedgeTry) watch(c *upConn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cancelled {
		return false
	}
	a.nc, a.lc = c.nc, c.lc
	return true
}

// lost reports that the attempt was cancelled.
func (a *hedgeTry) lost() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cancelled
}

// cancel stops an attempt in flight. On goroutines it closes the socket
// (the attempt's close accounts for it, as after pool.abort): a deadline
// could be re-armed by the attempt between its check and its read. On a
// loop the attempt cannot run while this does, so a deadline in the past
// suffices: the loop resumes the attempt, which sees it lost.
//
// An attempt still dialling has no connection yet: its context ends the
// dial (on a loop, once its task is woken to see it). Left to its connect
// timeout, it held its bulkhead slot, breaker ticket and in-flight count
// for seconds after the exchange ended.
func (a *hedgeTry) cancel() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cancelled {
		return // a wake must not resume the task twice
	}
	a.cancelled = true
	if a.stop != nil {
		a.stop() // ends its dial
	}
	switch {
	case a.lc != nil:
		_ = a.lc.SetDeadline(time.Unix(1, 0))
	case a.nc != nil:
		_ = a.nc.Close()
		a.cut = true
	case a.sub.task != nil:
		a.sub.task.Wake()
	}
}

// dialContext is the context a dial of this exchange ends with: the
// gateway's, or a hedged attempt's own.
func (ex *exchange) dialContext() context.Context {
	if ex.hedge != nil {
		return ex.hedge.dialContext()
	}
	return ex.g.ctx
}

// dialContext makes the attempt's context, which cancel ends, for its
// dial. Made under mu, as cancel reads it: an attempt cancelled before it
// dials gets one already ended.
func (a *hedgeTry) dialContext() context.Context {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ctx == nil {
		a.ctx, a.stop = context.WithCancel(a.sub.g.ctx)
		if a.cancelled {
			a.stop()
		}
	}
	return a.ctx
}

// noClient is an attempt's responder: the coordinator watches the client
// and writes to it; an attempt never does.
type noClient struct{}

func (noClient) forward(*exchange, *upConn) (error, error) {
	panic("gateway: a hedged attempt forwards nothing")
}
func (noClient) writer() http.ResponseWriter { panic("gateway: a hedged attempt writes nothing") }
func (noClient) gone() bool                  { return false }
func (noClient) context() context.Context    { return context.Background() }

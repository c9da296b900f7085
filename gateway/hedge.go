package gateway

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
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
// The group, its attempts with their exchanges and buffers, and the
// request's copy are pooled (hedgeGroups), so that a hedging route costs
// no allocation per request while no hedge is sent (on goroutines; on a
// loop, the attempt's task still costs the loop's allocations for a task).
// A group goes back to the pool only when nothing can use it any more:
// the coordinator has returned and every attempt's run has returned too
// (hedgeGroup.refs). An attempt cancelled because another answered may
// still be running, writing its request bytes or settling itself (lose),
// after the client has its answer and has sent the next request.

// hedgeable reports whether the exchange runs hedged: the route hedges
// and the request may be sent again (an idempotent method, or
// retry_non_idempotent, and a replayable body). Others keep a per-try
// timeout that ends the attempt.
func (ex *exchange) hedgeable() bool {
	p := ex.rt.policy
	return p != nil && p.Hedges() && ex.rt.perTry > 0 && p.MaxAttempts() > 1 && ex.stream == nil &&
		p.MayResend(ex.retryRequest())
}

// hedgeGroup hands the attempts' results to the coordinator. Groups are
// pooled with their attempts and buffers (hedgeGroups).
type hedgeGroup struct {
	ex   *exchange
	task *evloop.Task // the coordinator's, on a loop: woken when done grows
	// head and body are the request, copied: on the fast path they point
	// into the client connection's buffer, which the next request reuses,
	// and a cancelled attempt may still be writing when it does.
	head, body []byte
	wake       chan struct{} // on goroutines: done grew
	timer      *time.Timer   // on goroutines: the coordinator's wait

	// The coordinator's own.
	tries   []*hedgeTry // the group's attempts, kept for the next exchange: the first n started
	n       int
	live    []*hedgeTry // started, not taken
	lost    []*hedgeTry // taken, ended after the winner or with it: settled last
	taken   []*hedgeTry // the batch of done being worked through
	decided func()      // end, bound once: ex.decided

	mu   sync.Mutex
	done []*hedgeTry // ended, not yet taken
	over bool        // decided: attempts that end now settle themselves (hedgeTry.lose)

	// refs counts the coordinator and each attempt whose run has not
	// returned: the last one puts the group back (release). An attempt
	// cancelled when another answered may still be running after the
	// answer is out, on its request bytes and through its group.
	refs atomic.Int32
}

// hedgeGroups keeps released groups for the next hedged exchange (see the
// top of the file; BenchmarkProxy/hedging measures it).
var hedgeGroups = sync.Pool{New: func() any { return new(hedgeGroup) }}

// maxKeptBody bounds the request body a pooled group keeps its copy's
// buffer for: a large upload's stays with the garbage collector.
const maxKeptBody = 64 << 10

// hedgeTry is one attempt of a hedged exchange; it belongs to its group
// for the group's life.
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

	// run as a goroutine's function and as a loop task's, bound once: a
	// method value or closure made per attempt is an allocation.
	runFn     func()
	runOnLoop func(*evloop.Task)
}

// hedged runs a hedged exchange's attempts: handle's attemptLoop for
// routes that hedge.
func (ex *exchange) hedged() {
	rt, p := ex.rt, ex.rt.policy
	grp := newHedgeGroup(ex)
	// settle calls end (ex.decided) before it forwards the winner: left
	// until the winner's body had been streamed, the losers held their
	// bulkhead slots, breaker tickets and upstream work for the whole
	// transfer.
	ex.decided = grp.decided
	defer grp.finish()
	if err := grp.start(true, false); err != nil {
		ex.fail(err)
		return
	}
	for {
		// Results first: an answer that came in time wins over a timer
		// that fired meanwhile.
		grp.mu.Lock()
		grp.done, grp.taken = grp.taken[:0], grp.done
		grp.mu.Unlock()
		done := grp.taken
		for i, a := range done {
			grp.live = without(grp.live, a)
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
			fin, backoff := ex.settle(&a.at, a.c, a.err, len(grp.live) == 0)
			if fin {
				grp.lost = append(grp.lost, done[i+1:]...)
				return
			}
			if len(grp.live) > 0 {
				continue
			}
			// The last attempt failed and is retried as without hedging:
			// after its backoff, holding the slot decide took.
			if err := ex.sleep(backoff); err != nil {
				ex.fail(err)
				return
			}
			if err := grp.start(true, false); err != nil {
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
		for _, a := range grp.live {
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
			d := p.DecideHedge(grp.n, ex.retryRequest(), ex.deadline.Sub(now))
			if !d.Retry {
				continue
			}
			// A hedge does not queue in the bulkhead: waiting there for a
			// slot would defeat its point, and the first attempt goes on.
			if err := grp.start(false, true); err != nil {
				p.HedgeNotSent()
				continue
			}
			ex.hedges++
			wait = earliest(wait, grp.live[len(grp.live)-1].perTry)
		}
		grp.wait(wait)
	}
}

// newHedgeGroup readies a group for ex, the coordinator holding it.
func newHedgeGroup(ex *exchange) *hedgeGroup {
	grp := hedgeGroups.Get().(*hedgeGroup)
	grp.ex, grp.task = ex, ex.task
	grp.head = append(grp.head[:0], ex.head...)
	grp.body = append(grp.body[:0], ex.body...)
	if grp.task == nil && grp.wake == nil {
		grp.wake = make(chan struct{}, 1)
	}
	if grp.decided == nil {
		grp.decided = grp.end
	}
	grp.refs.Store(1)
	return grp
}

// start admits the next attempt and runs it; queue and slot as for
// admit and hedgeTry.slot.
func (grp *hedgeGroup) start(queue, slot bool) error {
	ex := grp.ex
	at, err := ex.admit(grp.n+1, queue)
	if err != nil {
		return err
	}
	if grp.n == len(grp.tries) {
		grp.tries = append(grp.tries, newHedgeTry(grp))
	}
	a := grp.tries[grp.n]
	grp.n++
	a.at, a.slot, a.perTry = at, slot, at.t0.Add(ex.rt.perTry)
	a.sub = exchange{g: ex.g, rt: ex.rt, resp: noClient{}, loop: ex.loop, method: ex.method, head: grp.head, body: grp.body,
		sendLen: ex.sendLen, start: ex.start, deadline: ex.deadline, hedge: a, out: a.sub.out, rh: respHead{hdr: a.sub.rh.hdr}}
	grp.live = append(grp.live, a)
	grp.refs.Add(1)
	if grp.task == nil {
		go a.runFn()
	} else {
		grp.task.Go(a.runOnLoop)
	}
	return nil
}

func newHedgeTry(grp *hedgeGroup) *hedgeTry {
	a := &hedgeTry{grp: grp}
	a.runFn = a.run
	a.runOnLoop = func(t *evloop.Task) {
		a.sub.task = t
		a.run()
	}
	return a
}

// end decides the exchange (ex.decided): attempts still in flight are
// cancelled, and those that end from now on settle themselves.
func (grp *hedgeGroup) end() {
	grp.mu.Lock()
	grp.over = true
	grp.lost = append(grp.lost, grp.done...)
	grp.done = grp.done[:0]
	grp.mu.Unlock()
	for _, a := range grp.live {
		a.cancel()
	}
	grp.live = grp.live[:0]
}

// finish ends the coordinator's part: it decides the exchange if no
// answer did, settles the attempts it took but did not use, and lets go of
// the group.
func (grp *hedgeGroup) finish() {
	grp.end()
	for _, a := range grp.lost {
		if a.c != nil && a.c.lc != nil {
			a.c.lc.Attach(grp.task)
		}
		a.lose()
	}
	grp.ex.decided = nil
	grp.unref()
}

// unref drops a hold on the group; the last one puts it back.
func (grp *hedgeGroup) unref() {
	if grp.refs.Add(-1) == 0 {
		grp.release()
	}
}

// release empties the group, keeping its buffers, attempts and channels,
// and pools it. Nobody holds it any more: the coordinator has returned
// and every attempt's run too.
func (grp *hedgeGroup) release() {
	for _, a := range grp.tries[:grp.n] {
		a.reset()
	}
	grp.ex, grp.task, grp.n, grp.over = nil, nil, 0, false
	grp.head = grp.head[:0]
	if cap(grp.body) > maxKeptBody {
		grp.body = nil
	} else {
		grp.body = grp.body[:0]
	}
	grp.live, grp.lost, grp.taken, grp.done = grp.live[:0], grp.lost[:0], grp.taken[:0], grp.done[:0]
	if grp.wake != nil {
		select {
		case <-grp.wake: // an attempt's, for a coordinator that had returned
		default:
		}
	}
	hedgeGroups.Put(grp)
}

// reset empties the attempt for the group's next exchange, keeping its
// request and response head buffers.
func (a *hedgeTry) reset() {
	out, hdr := a.sub.out[:0], a.sub.rh.hdr[:0]
	*a = hedgeTry{grp: a.grp, runFn: a.runFn, runOnLoop: a.runOnLoop}
	a.sub.out, a.sub.rh.hdr = out, hdr
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
	if grp.task != nil {
		grp.task.Park(until) // woken by hedgeTry.run
		return
	}
	d := time.Until(until)
	if grp.timer == nil {
		grp.timer = time.NewTimer(d)
	} else {
		grp.timer.Reset(d)
	}
	select {
	case <-grp.wake:
	case <-grp.timer.C:
	case <-grp.ex.g.ctx.Done():
	}
	grp.timer.Stop() // no stale tick for the next Reset (Go 1.23 timers)
}

// run makes the attempt and hands its result to the coordinator, or, when
// the exchange was decided meanwhile, settles it as lost. It is the
// attempt's last use of its group: after unref, the group may be another
// exchange's.
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
		grp.unref()
		return
	}
	if c != nil && c.lc != nil {
		c.lc.Detach() // the coordinator's task takes it; this task ends
	}
	grp.done = append(grp.done, a)
	grp.mu.Unlock()
	// From here a is the coordinator's: only the group is touched.
	if grp.task == nil {
		select {
		case grp.wake <- struct{}{}:
		default:
		}
	} else {
		grp.task.Wake()
	}
	grp.unref()
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

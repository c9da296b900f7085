package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"time"

	"github.com/cascadehq/cascade/gateway/balance"
	"github.com/cascadehq/cascade/gateway/breaker"
	"github.com/cascadehq/cascade/gateway/limit"
	"github.com/cascadehq/cascade/gateway/retry"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/evloop"
)

// An exchange is one client request and everything the gateway does for
// it, whichever server parsed it (the fast HTTP/1.1 path or net/http):
//
//	rate limit ─▶ for each attempt: bulkhead ─▶ pick replica ─▶ breaker ─▶ send, read head
//	                 │ refused                        │ 5xx, reset, timeout...
//	                 ▼                                ▼
//	        classify ─▶ fallback or error      retry policy: again after backoff?
//
// Per attempt: limit.Acquire → balance.Pick(prev) → breaker.Allow → the
// attempt → ep.Done, breaker.Record (or Release: the client left first),
// outlier Observe, limit.Release (the pick comes before the breaker so
// that no ticket is left unrecorded).

// responder is the client side of an exchange.
type responder interface {
	// forward sends the upstream's response head in ex.rh and its body
	// from c. upErr is an upstream failure mid-body (the client connection
	// must then be cut: the status is already out); cliErr a failed write
	// to the client.
	forward(ex *exchange, c *upConn) (upErr, cliErr error)
	// writer is where the gateway writes answers of its own.
	writer() http.ResponseWriter
	// gone reports, cheaply, whether the client has disconnected.
	gone() bool
	// context is the parent of the rare waits that need one.
	context() context.Context
}

// exchange holds one request's state; the fast path reuses one per client
// connection, so nothing here is allocated per request on the success path.
type exchange struct {
	g    *Gateway
	rt   *route
	resp responder
	// task is the event-loop task serving the client connection (nil on
	// goroutines): its waits go through the loop, its upstream
	// connections come from the loop's pools.
	task *evloop.Task
	loop int // the task's loop, from 1

	// The request.
	method  string
	uri     []byte
	host    []byte
	head    []byte // request line and headers to forward, without per-attempt ones and the blank line
	body    []byte // a buffered (replayable) body
	sendLen bool   // send Content-Length even when body is empty (the client did)
	stream  io.Reader
	sLen    int64 // length of stream, -1: unknown (sent chunked)
	once    bool  // the body is streamed once: the request cannot be sent again
	reqID   []byte

	// Progress.
	start    time.Time
	deadline time.Time
	prev     *balance.Endpoint
	attempts int
	replica  string
	status   int
	cause    cause.Cause
	detail   string
	fbKind   string
	bytes    int64
	abort    bool // the client connection must be cut
	passed   bool // cause is the upstream's, passed on with its answer: not the gateway's decision
	capture  bool // collect the body for the fallback cache
	capBuf   []byte
	key      string
	ctx      context.Context
	cancel   context.CancelFunc
	end      time.Time // when the answer was out (zero: not recorded)
	lastNow  time.Time // the latest clock reading while streaming the body

	// retrySlot: the retry decided last holds a slot of the route's retry
	// budget, until the next decision or the exchange's end (see decide).
	retrySlot bool

	// Hedging (see hedge.go). answered is the attempt whose answer was
	// forwarded, hedges the hedges started. hedge is set on an attempt's
	// own exchange only: the attempt that a per-try timeout does not end.
	answered int
	hedges   int
	hedge    *hedgeTry
	// decided, on a hedged exchange, ends its other attempts: settle calls
	// it before it forwards an answer.
	decided func()

	rh  respHead
	out []byte // the attempt's request bytes
}

// reset readies a reused exchange for the next request, keeping buffers.
func (ex *exchange) reset() {
	g, resp, task, loop, head, out, hdr, capBuf := ex.g, ex.resp, ex.task, ex.loop, ex.head[:0], ex.out[:0], ex.rh.hdr[:0], ex.capBuf[:0]
	// Clock reads are a measurable share of a request's CPU in a VM: the
	// exchange reads the clock when the request is in (start, set by the
	// server), after its answer is out (end), and where a wait needs it.
	*ex = exchange{g: g, resp: resp, task: task, loop: loop, head: head, out: out, capBuf: capBuf}
	ex.rh.hdr = hdr
}

// Errors the gateway decides on; classify maps each to its cause.
var (
	errNoRoute       = errors.New("no route")
	errNoEndpoint    = errors.New("no healthy upstream")
	errTotalTimeout  = errors.New("total timeout")
	errHeaderTimeout = errors.New("response_header timeout")
	errPerTryTimeout = errors.New("per_try timeout")
	errIdleTimeout   = errors.New("idle timeout between body reads")
	errClientGone    = errors.New("client closed the connection")
	errShutdown      = errors.New("gateway shutting down")
	errHedgeLost     = errors.New("another attempt answered first")
)

// pollEvery is how often a wait for upstream headers checks whether the
// client is still there (the fast path has no background reader).
const pollEvery = 200 * time.Millisecond

// handle runs the exchange; ex.rt is the matched route (nil: none) and
// ex.start, when set, the instant the request was read.
func (g *Gateway) handle(ex *exchange) {
	if ex.start.IsZero() {
		ex.start = time.Now()
	}
	rt := ex.rt
	if rt == nil {
		ex.fail(errNoRoute)
		ex.finish()
		return
	}
	ex.deadline = ex.start.Add(rt.total)
	rt.up.requests.Add(1)
	g.active.Add(1)
	if rt.rate != nil {
		if err := rt.rate.AllowAt(ex.start); err != nil {
			ex.fail(err)
			ex.finish()
			g.active.Add(-1)
			return
		}
	}
	if rt.cache != nil {
		ex.key = ex.method + " " + string(ex.host) + string(ex.uri)
		if rt.cache.ServeFresh(ex.resp.writer(), ex.key) {
			ex.status, ex.cause = http.StatusOK, cause.OK
			ex.finish()
			g.active.Add(-1)
			return
		}
	}
	if rt.policy != nil {
		rt.policy.Begin()
	}
	if ex.hedgeable() {
		ex.hedged()
	} else {
		ex.attemptLoop()
	}
	if rt.policy != nil {
		ex.releaseRetry()
		rt.policy.End()
	}
	if ex.cancel != nil {
		ex.cancel()
	}
	ex.finish()
	g.active.Add(-1)
}

// attemptLoop makes one attempt at a time until one answers or no retry
// is left.
func (ex *exchange) attemptLoop() {
	for n := 1; ; n++ {
		done, backoff := ex.try(n)
		if done {
			break
		}
		if err := ex.sleep(backoff); err != nil {
			ex.fail(err)
			break
		}
	}
}

// sleep waits out a retry backoff. A long one (a Retry-After's) looks
// every pollEvery whether the client is still there.
func (ex *exchange) sleep(d time.Duration) error {
	for d > pollEvery {
		end := time.Now().Add(d)
		if err := ex.nap(pollEvery); err != nil {
			return err
		}
		if ex.resp.gone() {
			return errClientGone
		}
		d = time.Until(end)
	}
	return ex.nap(d)
}

func (ex *exchange) nap(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	if ex.task != nil {
		ex.task.Sleep(ex.g.ctx, d)
		if ex.g.ctx.Err() != nil {
			return errShutdown
		}
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ex.g.ctx.Done():
		return errShutdown
	}
}

// waitCtx is a context for the bulkhead's pending queue: it ends at the
// total deadline, when the client leaves (net/http path) or at shutdown.
func (ex *exchange) waitCtx() context.Context {
	if ex.ctx == nil {
		ex.ctx, ex.cancel = context.WithDeadline(ex.resp.context(), ex.deadline)
		stop := context.AfterFunc(ex.g.ctx, ex.cancel)
		prev := ex.cancel
		ex.cancel = func() { stop(); prev() }
	}
	return ex.ctx
}

// pool is where this exchange takes connections to ep from.
func (ex *exchange) pool(ep *endpoint) *connPool {
	if ex.task == nil {
		return &ep.pool
	}
	return &ep.loopPools[ex.loop-1]
}

// acquire waits in the bulkhead's pending queue. On a loop the wait is a
// goroutine's, which wakes the task: a task blocked on the semaphore would
// stall its loop, and with it the exchanges that would free a slot.
func (ex *exchange) acquire(lim *limit.Limiter) error {
	if ex.task == nil || !lim.Queues() {
		return lim.Acquire(ex.waitCtx())
	}
	ctx, t := ex.waitCtx(), ex.task
	res := make(chan error, 1)
	go func() {
		res <- lim.Acquire(ctx)
		t.Wake()
	}()
	for {
		select {
		case err := <-res:
			return err
		default:
			t.Park(time.Time{})
		}
	}
}

// try makes attempt n. It reports done when the exchange is answered (or
// failed for good), and otherwise the backoff before the next attempt; a
// retry decision holds a budget slot (see decide).
func (ex *exchange) try(n int) (done bool, backoff time.Duration) {
	at, err := ex.admit(n, true)
	if err != nil {
		ex.fail(err)
		return true, 0
	}
	c, err := ex.roundTrip(at.ep, n, at.t0)
	return ex.settle(&at, c, err, true)
}

// attempt is what an attempt holds from admit until settle (or, for a
// hedge that lost, until hedgeTry.lose) hands it back.
type attempt struct {
	n      int
	ep     *endpoint
	be     *balance.Endpoint
	ticket breaker.Ticket
	t0     time.Time
}

// release hands back the attempt's bulkhead slot.
func (ex *exchange) release() {
	if u := ex.rt.up; u.lim != nil {
		u.lim.Release()
	}
}

// admit takes what attempt n needs before it can be sent: a bulkhead slot
// (waiting in its queue when queue is set), a replica and a breaker
// ticket. On an error everything taken is handed back.
func (ex *exchange) admit(n int, queue bool) (attempt, error) {
	u := ex.rt.up
	if u.lim != nil && !u.lim.TryAcquire() {
		if !queue {
			return attempt{}, limit.ErrOverflow
		}
		if err := ex.acquire(u.lim); err != nil {
			if ex.resp.gone() {
				err = errClientGone
			} else if ex.g.ctx.Err() != nil {
				err = errShutdown
			} else if errors.Is(err, context.DeadlineExceeded) {
				err = errTotalTimeout
			}
			return attempt{}, err
		}
	}
	// Pick before the breaker: a breaker ticket must be handed back
	// exactly once, and a pick that finds no replica would leave one
	// (in half-open, a probe slot) dangling.
	var be *balance.Endpoint
	var ep *endpoint
	for range 3 { // a replica removed between the pick and the lookup: pick again
		if be = u.bal.Pick(ex.prev); be == nil {
			break
		}
		if ep = u.lookup(be); ep != nil {
			break
		}
	}
	if ep == nil {
		ex.release()
		return attempt{}, errNoEndpoint
	}
	if u.maxConns > 0 && u.conns.Load() >= u.maxConns && ex.pool(ep).idleCount() == 0 {
		ex.release()
		u.overflowMaxConns()
		return attempt{}, errMaxConnections
	}
	var ticket breaker.Ticket
	if u.brk != nil {
		t, err := u.brk.Allow()
		if err != nil {
			ex.release()
			return attempt{}, err
		}
		ticket = t
	}
	ex.prev, ex.attempts, ex.replica = be, n, ep.addr
	u.attempts.Add(1)
	ep.stats.attempts.Add(1)
	be.Start()
	t0 := ex.start
	if n > 1 {
		t0 = time.Now()
	}
	return attempt{n: n, ep: ep, be: be, ticket: ticket, t0: t0}, nil
}

// settle ends attempt at, whose round trip gave c (its head in ex.rh) or
// err: it accounts for it (replica, breaker, outlier detector, bulkhead)
// and then retries it, answers with a fallback, or forwards the answer. A
// retry is decided for ex.attempts, the attempts started: with hedging,
// a later attempt may have started before at ended.
// Without last (a hedged exchange with other attempts still in flight) it
// neither retries nor forwards a failure another attempt may yet beat: it
// reports done false, and the caller waits for the others.
func (ex *exchange) settle(at *attempt, c *upConn, err error, last bool) (done bool, backoff time.Duration) {
	rt, u := ex.rt, ex.rt.up
	ep, be, ticket, t0, n := at.ep, at.be, at.ticket, at.t0, at.n
	if err != nil {
		elapsed := time.Since(t0)
		be.Done(elapsed)
		if errors.Is(err, errMaxConnections) {
			// Lost the race for the last connection: a local refusal. Nothing
			// reached the upstream, so the breaker has nothing to learn (as a
			// success, a refused half-open probe could close it).
			if u.brk != nil {
				u.brk.Release(ticket)
			}
			ex.release()
			u.overflowMaxConns()
			if !last {
				return false, 0
			}
			ex.fail(err)
			return true, 0
		}
		gone := errors.Is(err, errClientGone)
		switch {
		case u.brk == nil:
		case gone:
			// The client left before the upstream answered: no outcome. As a
			// success, probes abandoned on a hanging upstream closed the
			// breaker; Release frees the probe's slot instead (see there).
			u.brk.Release(ticket)
		default:
			u.brk.Record(ticket, true, elapsed)
		}
		if !gone {
			ep.stats.failures.Add(1)
			if u.det != nil {
				u.det.ObserveFailure(be)
			}
		}
		ex.release()
		if !last && !gone {
			ex.attemptFailed(at, err, 0)
			return false, 0
		}
		if gone || rt.policy == nil {
			ex.fail(err)
			return true, 0
		}
		d := ex.decide(ex.attempts, retry.Outcome{Kind: retryKind(err)})
		if !d.Retry {
			ex.fail(err)
			return true, 0
		}
		ex.attemptFailed(at, err, 0)
		return false, d.Backoff
	}
	status := ex.rh.status
	failed := status >= 500
	// A 4xx that retry_on names (429, say) is retried too, though it is
	// no failure of the replica: only a 5xx counts as one below.
	if failed || status >= 400 && rt.policy != nil && rt.policy.Retriable(retry.Status(status)) {
		if failed {
			ep.stats.failures.Add(1)
		}
		fallback := failed && rt.fbOn&fbError != 0 && ex.hasFallback()
		var d retry.Decision
		switch {
		case !last && rt.policy.Retriable(retry.Status(status)):
			// Another attempt is in flight and may answer better: Envoy
			// drops a retriable answer while hedged requests are pending.
			d.Retry = true
		case rt.policy != nil:
			o := retry.Status(status)
			o.RetryAfter, o.HasRetryAfter = ex.rh.retryAfter, ex.rh.hasRetryAfter
			d = ex.decide(ex.attempts, o)
		}
		if d.Retry || fallback {
			ex.discard(c)
			elapsed := time.Since(t0)
			be.Done(elapsed)
			if u.brk != nil {
				u.brk.Record(ticket, failed, elapsed)
			}
			if u.det != nil {
				u.det.ObserveStatus(be, status)
			}
			ex.release()
			if d.Retry {
				ex.attemptFailed(at, nil, status)
				return false, d.Backoff
			}
			ex.status = status
			up := ex.rh.outcome()
			if !ex.serveFallback(up) {
				// The cache had nothing and there is no static answer: the
				// upstream's own error is gone, say what it was (its cause
				// too: db_timeout stays db_timeout).
				ex.local(status, up, "upstream answered "+strconv.Itoa(status)+" and no fallback had an answer")
				ex.passed = true
			}
			return true, 0
		}
	}
	ex.replica, ex.answered = ep.addr, n
	ex.capture = rt.cache != nil && status == http.StatusOK && (ex.method == "GET" || ex.method == "HEAD")
	if ex.decided != nil {
		ex.decided()
	}
	upErr, cliErr := ex.resp.forward(ex, c)
	ex.end = time.Now()
	elapsed := ex.end.Sub(t0)
	be.Done(elapsed)
	if u.brk != nil {
		u.brk.Record(ticket, failed || upErr != nil, elapsed)
	}
	if u.det != nil {
		if upErr != nil && !errors.Is(upErr, errTotalTimeout) {
			u.det.ObserveFailure(be)
		} else {
			u.det.ObserveStatus(be, status)
		}
	}
	ex.release()
	ex.status = status
	switch {
	case cliErr != nil:
		ex.cause, ex.detail, ex.abort = cause.ClientGone, cliErr.Error(), true
	case upErr != nil:
		ex.cause, ex.detail = classify(upErr)
		ex.abort = true
	default:
		// The upstream's answer as it came: its cause is the one the
		// client reads from it (db_timeout, upstream_timeout, ...), which
		// the run's summary counts, not a blanket upstream_error.
		ex.cause, ex.passed = ex.rh.outcome(), true
		if ex.capture { // a 200 to a GET or HEAD
			ex.store()
		}
	}
	return true, 0
}

// retryKind maps an attempt's failure to the retry policy's outcome kind.
func retryKind(err error) retry.Kind {
	switch c, _ := classify(err); c {
	case cause.UpstreamConnectFailure:
		return retry.ConnectFailure
	case cause.GatewayTimeout, cause.PerTryTimeout:
		return retry.Timeout
	default:
		return retry.Reset
	}
}

func (ex *exchange) retryRequest() retry.Request {
	return retry.Request{Method: ex.method, Replayable: !ex.once}
}

// decide asks the route's retry policy whether attempt n, which ended with
// o, is tried again. Attempt n, when it was itself a retry, hands its
// budget slot back first: the budget counts the retries in flight, and a
// request has at most one in flight. Holding it across the decision made
// a request count against itself, so with few requests active its second
// retry was refused even at budget_percent 100%. Envoy does the same
// (RetryStateImpl::shouldRetry calls resetRetry before it asks the budget).
func (ex *exchange) decide(n int, o retry.Outcome) retry.Decision {
	ex.releaseRetry()
	d := ex.rt.policy.Decide(n, ex.retryRequest(), o, time.Until(ex.deadline))
	ex.retrySlot = d.Retry
	return d
}

// releaseRetry hands back the budget slot of the retry decided last, if
// it still holds one.
func (ex *exchange) releaseRetry() {
	if ex.retrySlot {
		ex.rt.policy.RetryDone()
		ex.retrySlot = false
	}
}

// roundTrip sends attempt n to ep and reads the response head into ex.rh.
// It sends the request once more, on a fresh connection, when a pooled one
// turns out to have been closed or reset by the upstream before the
// request reached it (see upConn.undelivered), for requests that may be
// sent twice. Never when the request may have reached the upstream (a
// reset after the upstream read it, say): that is a retry, which is the
// route's retry policy's to decide, with an attempt number and a place in
// the budget, and without one the answer is 502 upstream_reset, as Envoy
// sends a request once without a retry policy. (net/http's Transport
// re-sends an idempotent request after any failure before the answer's
// first byte on a reused connection, delivered or not: its upstream then
// handles requests that no counter saw.)
func (ex *exchange) roundTrip(ep *endpoint, n int, now time.Time) (*upConn, error) {
	rt := ex.rt
	hdrDL, hdrErr := now.Add(rt.header), errHeaderTimeout
	budget := ex.deadline
	// A hedged attempt outlives its per-try timeout: the exchange starts
	// the next attempt beside it then (hedge.go).
	if rt.perTry > 0 && ex.hedge == nil {
		if pt := now.Add(rt.perTry); pt.Before(budget) {
			budget = pt
			if !hdrDL.Before(pt) {
				hdrDL, hdrErr = pt, errPerTryTimeout
			}
		}
	}
	if !hdrDL.Before(ex.deadline) {
		hdrDL, hdrErr = ex.deadline, errTotalTimeout
	}
	ex.buildAttempt(n, budget.Sub(now))
	pool := ex.pool(ep)
	for again := 0; ; again++ {
		c := pool.get(now, ex.task)
		fresh := c == nil
		if fresh {
			dl, dlErr := now.Add(rt.connect), error(nil)
			if !dl.Before(hdrDL) {
				dl, dlErr = hdrDL, hdrErr
			}
			var err error
			if c, err = pool.dial(ex.dialContext(), dl, ex.task); err != nil {
				if dlErr != nil && isTimeout(err) {
					return nil, dlErr
				}
				return nil, err
			}
		}
		if ex.hedge != nil && !ex.hedge.watch(c) {
			c.close() // lost while it dialed
			return nil, errHedgeLost
		}
		c.nread, c.nwritten = 0, 0
		err := ex.send(c, hdrDL)
		if err == nil {
			err = ex.readHead(c, hdrDL, hdrErr, now)
		}
		if err == nil {
			return c, nil
		}
		if ex.hedge != nil && ex.hedge.lost() {
			c.close()
			return nil, errHedgeLost
		}
		resend := !fresh && again == 0 && c.nread == 0 && !isTimeout(err) && !ex.once && replayableMethod(ex.method) &&
			!errors.Is(err, errClientGone) && time.Now().Before(hdrDL) && c.undelivered(err)
		c.close()
		if resend {
			continue
		}
		if errors.Is(err, errClientGone) {
			return nil, err // a client's read timeout is not the upstream's
		}
		if isTimeout(err) {
			return nil, ex.whichTimeout(hdrDL, hdrErr)
		}
		return nil, err
	}
}

// whichTimeout names the deadline that fired.
func (ex *exchange) whichTimeout(hdrDL time.Time, hdrErr error) error {
	if !time.Now().Before(ex.deadline) {
		return errTotalTimeout
	}
	return hdrErr
}

// replayableMethod: what net/http's Transport resends on a fresh
// connection after a stale one failed (RFC 9110 idempotent, minus the
// ones with side effects a retry could double).
func replayableMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// buildAttempt assembles attempt n's request bytes in ex.out.
func (ex *exchange) buildAttempt(n int, budget time.Duration) {
	b := append(ex.out[:0], ex.head...)
	if ex.rt.prop&propAttempt != 0 {
		b = append(b, "X-Cascade-Attempt: "...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, "\r\n"...)
	}
	if ex.rt.prop&propDeadline != 0 {
		b = append(b, "X-Cascade-Deadline-Ms: "...)
		// Rounded up: 0 means the caller has given up (the upstreams count
		// such an attempt as late), which 0.4 ms left is not.
		b = strconv.AppendInt(b, max(int64((budget+time.Millisecond-1)/time.Millisecond), 0), 10)
		b = append(b, "\r\n"...)
	}
	switch {
	case ex.stream != nil && ex.sLen < 0:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case ex.stream != nil:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, ex.sLen, 10)
		b = append(b, "\r\n"...)
	case len(ex.body) > 0 || ex.sendLen:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(ex.body)), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	if len(ex.body) <= 16<<10 {
		b = append(b, ex.body...)
	}
	ex.out = b
}

// send writes the request (and its body) on c. The common request, head
// and small body in ex.out, is left pending: the first read of the answer
// writes it (upConn.fill).
func (ex *exchange) send(c *upConn, dl time.Time) error {
	if len(ex.body) <= 16<<10 && ex.stream == nil {
		c.pending = ex.out
		return nil
	}
	if err := c.write(ex.out, dl); err != nil {
		return err
	}
	if len(ex.body) > 16<<10 {
		if err := c.write(ex.body, dl); err != nil {
			return err
		}
	}
	if ex.stream == nil {
		return nil
	}
	// A body streamed once (larger than max_replay_body, or of unknown
	// length): after this the request cannot be retried.
	w := &deadlineWriter{c: c, dl: dl}
	src := clientBody{ex.stream}
	var err error
	if ex.sLen < 0 {
		cw := httputil.NewChunkedWriter(w)
		if _, err = io.Copy(cw, src); err == nil {
			err = cw.Close()
		}
		if err == nil {
			_, err = w.Write([]byte("\r\n"))
		}
	} else {
		_, err = io.Copy(w, io.LimitReader(src, ex.sLen))
	}
	ex.stream = nil
	ex.sLen = 0
	return err
}

// clientBody marks a failed read of the client's streamed body as the
// client's leaving (errClientGone), not the upstream's failure: the
// breaker, the outlier detector and the replica's counters must not be
// charged for a client that stopped sending.
type clientBody struct{ r io.Reader }

func (b clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		err = clientBodyError{err}
	}
	return n, err
}

type clientBodyError struct{ err error }

func (e clientBodyError) Error() string        { return "reading the client's body: " + e.err.Error() }
func (e clientBodyError) Unwrap() error        { return e.err }
func (e clientBodyError) Is(target error) bool { return target == errClientGone }

type deadlineWriter struct {
	c  *upConn
	dl time.Time
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	if err := w.c.write(p, w.dl); err != nil {
		return 0, err
	}
	return len(p), nil
}

// readHead reads the response head, skipping 1xx answers; while it waits
// it checks every pollEvery that the client is still there.
func (ex *exchange) readHead(c *upConn, dl time.Time, dlErr error, now time.Time) error {
	interim := 0
	for first := true; ; first = false {
		if end := headEnd(c.buf[c.r:c.w]); end >= 0 {
			if err := parseResponse(c.buf[c.r:c.r+end], ex.method, &ex.rh); err != nil {
				return err
			}
			if ex.rh.status >= 200 {
				ex.rh.headEnd = end
				return nil
			}
			if ex.rh.status == http.StatusSwitchingProtocols {
				return errMalformed // nobody asked to switch
			}
			if interim++; interim > maxInterim {
				return errMalformed
			}
			c.r += end
			continue
		}
		wait := dl
		if !first {
			now = time.Now()
		}
		if poll := now.Add(pollEvery); poll.Before(dl) {
			wait = poll
		}
		err := c.fill(wait, now, maxHeadBytes)
		if err == nil {
			continue
		}
		if isTimeout(err) {
			if ex.hedge != nil && ex.hedge.lost() {
				return errHedgeLost // another attempt answered (see hedgeTry.cancel)
			}
			if now := time.Now(); now.Before(wait) {
				c.rdl = time.Time{} // armed early for an earlier request
				continue
			}
			if wait.Before(dl) {
				if ex.resp.gone() {
					return errClientGone
				}
				continue
			}
			return err
		}
		if errors.Is(err, errMalformed) {
			return err
		}
		return resetError{err}
	}
}

// resetError marks a connection that died before a complete head.
type resetError struct{ err error }

func (e resetError) Error() string {
	if e.err == io.EOF || e.err == io.ErrNoProgress {
		return "upstream closed the connection before answering"
	}
	return e.err.Error()
}
func (e resetError) Unwrap() error { return e.err }

// discard drops a response that will not be forwarded (it is retried,
// replaced by a fallback, or lost to a hedge), keeping the connection when
// its whole body is already in the buffer, as a small error body written
// with its head is. A body still to come is not waited for: the connection
// is closed, as Envoy resets a retried stream. Waiting (it was up to a
// second, for a connection a loopback dial replaces in microseconds)
// delayed the retry, the answer of a hedge beside it, and the client's
// next request behind a lost hedge.
func (ex *exchange) discard(c *upConn) {
	h := &ex.rh
	c.r += h.headEnd
	left := int64(0)
	if !h.noBody {
		left = h.clen // -1: chunked or to the close, never whole here
	}
	if h.keep && left >= 0 && left <= int64(c.unread()) {
		c.r += int(left)
		if c.unread() == 0 {
			c.pool.put(c, time.Now())
			return
		}
	}
	c.close()
}

// hasFallback reports whether the route can answer for a failure.
func (ex *exchange) hasFallback() bool { return ex.rt.cache != nil || ex.rt.static != nil }

// fail ends the exchange with the gateway's answer for err: the route's
// fallback when it covers the failure, else the error status with its cause.
func (ex *exchange) fail(err error) {
	if ex.g.ctx.Err() != nil && !errors.Is(err, errClientGone) {
		// Close cut the upstream connection (or the wait): the failure is
		// the gateway's own stop, not the upstream's. The client's
		// connection is cut too, as at the end of a drain.
		err = errShutdown
	}
	c, detail := classify(err)
	ex.cause, ex.detail = c, detail
	if c == cause.ClientGone {
		ex.status, ex.abort = 499, true
		return
	}
	if errors.Is(err, errShutdown) {
		ex.abort = true
		return
	}
	if ex.rt != nil && ex.fallbackCovers(c) && ex.serveFallback(c) {
		return
	}
	ex.local(c.Status(), c, detail)
}

// fallbackCovers reports whether the route's fallback answers for c.
func (ex *exchange) fallbackCovers(c cause.Cause) bool {
	on := ex.rt.fbOn
	switch c {
	case cause.BreakerOpen:
		return on&fbBreaker != 0
	case cause.Overflow, cause.NoHealthyUpstream:
		return on&fbUnavailable != 0
	case cause.GatewayTimeout, cause.PerTryTimeout:
		return on&fbTimeout != 0
	case cause.UpstreamConnectFailure, cause.UpstreamReset, cause.UpstreamMalformed, cause.UpstreamError:
		return on&fbError != 0
	}
	return false
}

// serveFallback answers from the cache or the static response; for is the
// failure it stands in for.
func (ex *exchange) serveFallback(failure cause.Cause) bool {
	rt := ex.rt
	w := ex.resp.writer()
	w.Header().Set(HeaderRequestID, string(ex.reqID))
	switch {
	case rt.cache != nil && (ex.method == "GET" || ex.method == "HEAD") && rt.cache.ServeStale(w, ex.cacheKey()):
		ex.fbKind = "cache"
	case rt.static != nil:
		rt.static.Serve(w, ex.method)
		ex.fbKind = "static"
	default:
		w.Header().Del(HeaderRequestID)
		return false
	}
	rt.fallbacks.Add(1)
	ex.status, ex.cause = http.StatusOK, cause.Fallback
	if rt.static != nil && ex.fbKind == "static" {
		ex.status = rt.staticStatus()
	}
	ex.detail = "instead of " + failure.String()
	return true
}

func (rt *route) staticStatus() int {
	if s := rt.cfg.Fallback.Static.Status; s != 0 {
		return s
	}
	return http.StatusOK
}

func (ex *exchange) cacheKey() string {
	if ex.key == "" {
		ex.key = ex.method + " " + string(ex.host) + string(ex.uri)
	}
	return ex.key
}

// local writes an answer of the gateway's own.
func (ex *exchange) local(status int, c cause.Cause, detail string) {
	ex.status, ex.cause, ex.detail = status, c, detail
	w := ex.resp.writer()
	h := w.Header()
	h.Set(cause.Header, c.String())
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set(HeaderRequestID, string(ex.reqID))
	body := c.String() + ": " + detail + "\n"
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if ex.method != "HEAD" {
		_, _ = io.WriteString(w, body)
	}
}

// store hands the body just forwarded to the fallback cache.
func (ex *exchange) store() {
	h := http.Header{}
	for _, line := range bytes.SplitAfter(ex.rh.hdr, []byte("\n")) {
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		h.Add(string(line[:colon]), string(bytes.TrimSpace(line[colon+1:])))
	}
	body := append([]byte(nil), ex.capBuf...)
	res := &http.Response{StatusCode: ex.rh.status, Header: h, ContentLength: int64(len(body)),
		Request: &http.Request{Method: ex.method}, Body: io.NopCloser(bytes.NewReader(body))}
	if ex.rt.cache.Capture(ex.cacheKey(), res) {
		_, _ = io.Copy(io.Discard, res.Body) // Capture stores on EOF
	}
}

// collect keeps body bytes for the fallback cache, up to its entry bound.
func (ex *exchange) collect(p []byte) {
	if !ex.capture || len(p) == 0 {
		return
	}
	if int64(len(ex.capBuf)+len(p)) > ex.rt.capMax {
		ex.capture, ex.capBuf = false, nil
		return
	}
	ex.capBuf = append(ex.capBuf, p...)
}

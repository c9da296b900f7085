package h1

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
)

// Options configure a Conn or a Pool. The zero value is usable.
type Options struct {
	// Timeout is the default client timeout of a request, counted from the
	// call to Do (a Pool's wait for a free connection included). 0 means
	// none: only the context's deadline applies. Request.Timeout overrides it.
	Timeout time.Duration
	// DisableKeepAlive sends every request with "Connection: close" and
	// closes the connection after the response.
	DisableKeepAlive bool
	// ReadBufferSize is the per-connection read buffer. 0 means 16 KiB;
	// values under 512 are raised to 512. A response head line longer than
	// the buffer grows it (up to MaxHeaderBytes) for the rest of that
	// connection; a new connection starts again at this size.
	ReadBufferSize int
	// MaxHeaderBytes bounds a response head (and trailers). 0 means 1 MiB.
	MaxHeaderBytes int
	// IdleCheck: a connection idle for at least this long is probed (a
	// non-blocking peek, one syscall) before it is reused, so a server's
	// close of an idle connection leads to a transparent reconnect rather
	// than a reset blamed on the next request. 0 means 1ms; negative never
	// probes. Connections reused back to back (a closed loop at full speed)
	// are never probed.
	IdleCheck time.Duration
	// Clock is the time base of Result's timestamps: give every Conn and
	// Pool of a run the run's clock. nil starts a new clock per Conn or Pool.
	Clock *event.Clock
	// AllowRemote permits a non-loopback address.
	AllowRemote bool
	// FailFast (Pool only): when every connection is busy, Do fails at once
	// with ErrPoolExhausted (cause Dropped) instead of waiting for one.
	FailFast bool
}

const (
	defaultReadBuffer = 16 << 10
	minReadBuffer     = 512
	defaultMaxHeader  = 1 << 20
	defaultIdleCheck  = time.Millisecond
	maxInterim        = 8 // 1xx responses accepted before the final one
	noDeadline        = time.Duration(math.MaxInt64)
)

// withDefaults fills in the documented zero-value defaults.
func (o Options) withDefaults() Options {
	if o.ReadBufferSize == 0 {
		o.ReadBufferSize = defaultReadBuffer
	}
	o.ReadBufferSize = max(o.ReadBufferSize, minReadBuffer)
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = defaultMaxHeader
	}
	if o.IdleCheck == 0 {
		o.IdleCheck = defaultIdleCheck
	}
	if o.Clock == nil {
		o.Clock = event.NewClock()
	}
	return o
}

// Validate reports options that cannot work.
func (o Options) Validate() error {
	if o.Timeout < 0 {
		return fmt.Errorf("h1: negative Timeout %v", o.Timeout)
	}
	if o.ReadBufferSize < 0 {
		return fmt.Errorf("h1: negative ReadBufferSize %d", o.ReadBufferSize)
	}
	return nil
}

// Doer sends one prepared request and fills r. Conn and Pool implement it;
// an HTTP/2 transport over net/http can implement it from p.Request().
type Doer interface {
	Do(ctx context.Context, p *Prepared, r *Result) error
}

var (
	_ Doer = (*Conn)(nil)
	_ Doer = (*Pool)(nil)
)

// Conn is one HTTP/1.1 client connection that carries one request at a
// time (no pipelining), dialing and re-dialing as needed. It is not safe
// for concurrent use: one goroutine owns it, or a Pool lends it out.
//
// Why not net/http: its client costs ~25 µs of CPU per request here (two
// goroutines per connection, ~50 allocations per request, a deadline timer
// reset per request); a load generator must cost less than the server it
// measures. Conn writes a pre-serialized request and reads the response
// with one syscall each (io.go), parses it in its own buffer without
// allocating, and arms socket deadlines lazily (see arm).
type Conn struct {
	addr string
	opts Options
	base time.Time // Clock's zero

	nc   net.Conn // nil while not connected; written under mu
	rc   syscall.RawConn
	used bool // nc has carried a request

	buf  []byte // read buffer; unread bytes are buf[r:w]
	r, w int
	wbuf []byte // a copy of the request with its sequence digits patched

	armed   time.Duration // deadline set on nc (noDeadline: none); the real one may be earlier, never later
	lastEnd time.Duration

	// The deadline (noDeadline: none) of the last context, by its Done.
	dlDone <-chan struct{}
	ctxDL  time.Duration

	// per-response scratch
	ctx       context.Context
	nread     int64
	first     time.Duration
	lastRead  time.Duration // when the last read returned bytes
	gotFirst  bool
	headBytes int

	peekFn  func(fd uintptr) bool
	peekBuf [1]byte
	peekErr error

	// Cancellation of the current context. The AfterFunc registration is
	// kept across requests and only replaced when a request comes with a
	// context that has another Done channel: registering per request would
	// cost an allocation and a lock each time.
	mu        sync.Mutex
	watchDone <-chan struct{}
	stopWatch func() bool
	cancelled atomic.Bool

	stats   connStats
	noRawIO bool // tests: exercise the net.Conn path on Linux too

	// dialer, when set, opens the connection instead of net.Dialer: an
	// event loop's task (NewLoopConn). Its errors are classified as
	// net.Dialer's.
	dialer func(ctx context.Context, addr string, dl time.Duration, base time.Time) (net.Conn, error)

	// Raw I/O (see io.go): callbacks bound once, and their in/out values.
	sendFn, readFn func(fd uintptr) bool
	out            []byte // request bytes being sent
	outN           int    // ... of which written
	outBlocked     bool   // the send buffer was full
	ioErrno        syscall.Errno
	ioEOF          bool
	pending        error // a read error seen while sending, for fill to return

	// The last final response head parsed on this Conn, byte for byte, and
	// what parsing it gave (see readResponse).
	memo     []byte
	memoHead head
	memoLen  uint8 // X-Cascade-Cause
	memoBuf  [32]byte
}

// NewConn returns a connection to addr (host:port). It dials lazily, on the
// first Do.
func NewConn(addr string, opts Options) (*Conn, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	a, err := dialAddr(addr, opts.AllowRemote)
	if err != nil {
		return nil, err
	}
	return newConn(a, opts.withDefaults()), nil
}

func newConn(addr string, opts Options) *Conn {
	c := &Conn{addr: addr, opts: opts, base: opts.Clock.Start(), armed: noDeadline}
	c.peekFn, c.sendFn, c.readFn = c.peek, c.sendCB, c.readCB
	return c
}

// Stats returns this connection's counters.
func (c *Conn) Stats() Stats { return c.stats.snapshot() }

// Close closes the network connection, if any. It must not be called
// while a Do is running on c.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.stopWatch != nil {
		c.stopWatch()
		c.stopWatch, c.watchDone = nil, nil
	}
	c.mu.Unlock()
	c.closeConn(closeLocal)
	c.buf, c.wbuf = nil, nil
	return nil
}

// Do sends p and reads its response into r. It returns r.Err: nil for any
// complete response, whatever its status.
//
// Pass a long-lived context (the run's) and set client timeouts with
// Request.Timeout or Options.Timeout: Conn registers for a context's
// cancellation once and keeps the registration while the same context comes
// back, whereas a new cancellable context per request costs a registration
// (a few allocations) per request.
func (c *Conn) Do(ctx context.Context, p *Prepared, r *Result) error {
	return c.DoAt(ctx, p, r, c.now())
}

// DoAt is Do for a caller that has just read the clock given in
// Options.Clock: start is that reading, and Do's own would be a few
// nanoseconds later. A clock read costs 40–80 ns here, a noticeable part of
// what a load generator spends per request.
func (c *Conn) DoAt(ctx context.Context, p *Prepared, r *Result, start time.Duration) error {
	r.reset(start)
	return c.finish(r, c.roundTrip(ctx, p, r, c.deadline(ctx, p, start), false))
}

func (c *Conn) now() time.Duration { return time.Since(c.base) }

// deadline is when the request must be over: its client timeout from start,
// or the context's deadline if that comes first. Only c's owner may call it
// (it caches the context's deadline).
func (c *Conn) deadline(ctx context.Context, p *Prepared, start time.Duration) time.Duration {
	// Asking a context for its deadline walks its chain of parents. A
	// context's deadline never changes, and one with another deadline has
	// its own Done channel: ask once per channel.
	if done := ctx.Done(); done == nil || done != c.dlDone {
		c.dlDone, c.ctxDL = done, ctxDeadline(ctx, c.base)
	}
	return min(timeoutDeadline(p, c.opts, start), c.ctxDL)
}

// timeoutDeadline is start plus the request's client timeout, if any.
func timeoutDeadline(p *Prepared, o Options, start time.Duration) time.Duration {
	t := p.timeout
	if t == 0 {
		t = o.Timeout
	}
	if t > 0 {
		return start + t
	}
	return noDeadline
}

// ctxDeadline is ctx's deadline on the clock whose zero is base.
func ctxDeadline(ctx context.Context, base time.Time) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return d.Sub(base)
	}
	return noDeadline
}

// finish stamps the end and turns the outcome into a cause.
func (c *Conn) finish(r *Result, err error) error {
	if r.End == 0 { // roundTrip stamps a successful response itself
		r.End = c.now()
	}
	if err != nil {
		r.Err, r.Cause = classify(err)
		return r.Err
	}
	r.Cause = cause.FromResponse(r.Status, r.causeHeader())
	return nil
}

func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != context.DeadlineExceeded {
		return err
	}
	return ErrTimeout
}

// roundTrip does the work of Do once the deadline is known.
// waited says that time may have passed since r.Start (a Pool's wait for a
// connection).
func (c *Conn) roundTrip(ctx context.Context, p *Prepared, r *Result, dl time.Duration, waited bool) error {
	if p.addr != c.addr {
		return ErrTargetMismatch
	}
	if done := ctx.Done(); done != nil {
		select {
		case <-done:
			return ctxErr(ctx)
		default:
		}
		if done != c.watchDone {
			c.watch(ctx, done)
		}
	}
	if r.Start >= dl {
		return ErrTimeout
	}
	c.ctx = ctx
	defer func() { c.ctx = nil }()

	wire := p.wire
	if c.opts.DisableKeepAlive {
		wire = p.wClose
	}
	if p.seqOff >= 0 {
		c.wbuf = append(c.wbuf[:0], wire...)
		putSeq(c.wbuf[p.seqOff:p.seqOff+seqWidth], r.Seq)
		wire = c.wbuf
	}

	for retried := false; ; retried = true {
		if c.nc != nil && c.used && c.opts.IdleCheck > 0 && r.Start-c.lastEnd >= c.opts.IdleCheck {
			waited = true
			if !c.alive(dl) {
				c.closeConn(closePeer)
			}
		}
		if c.nc == nil {
			if err := c.dial(ctx, dl); err != nil {
				return err
			}
			r.Dialed, waited = true, true
		}
		r.Reused = c.used
		// A clock read costs ~40 ns here; skip it when nothing but a few
		// instructions happened since Start.
		r.WriteStart = r.Start
		if waited || retried {
			r.WriteStart = c.now()
		}
		c.resetResponse()
		n, err := c.send(wire, dl)
		if err == nil {
			break
		}
		// A reused connection that the kernel already knows is dead took
		// none of the request: the server closed it while idle, so the
		// request was never in flight. Reconnect once. Anything else is
		// reported.
		if n == 0 && c.used && !retried && isReset(err) {
			c.closeConn(closePeer)
			c.stats.retries.Add(1)
			continue
		}
		c.closeConn(closeError)
		return err
	}
	if c.used {
		c.stats.reuses.Add(1)
	}
	c.used = true

	keep, err := c.readResponse(p, r, dl)
	r.BytesRead, r.FirstByte = c.nread, c.first
	if err != nil {
		c.closeConn(closeError)
		return err
	}
	// The response was whole when the read that completed it returned
	// (got stamps each read): no clock read of its own.
	r.End = c.lastRead
	c.lastEnd = r.End
	switch {
	case c.opts.DisableKeepAlive:
		// We asked for close. A server may still leave the connection open
		// ("Connection: close" in the answer is only a SHOULD); reusing it
		// would meet that server's close as a reset on the next request.
		c.closeConn(closeLocal)
	case !keep:
		c.closeConn(closePeer)
	}
	return nil
}

// resetResponse clears the per-response scratch.
func (c *Conn) resetResponse() {
	c.nread, c.first, c.gotFirst, c.headBytes, c.pending = 0, 0, false, 0, nil
}

// putSeq writes v as zero-padded decimal digits filling d.
func putSeq(d []byte, v uint64) {
	for i := len(d) - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
}

// watch makes a cancellation of ctx abort this connection's I/O.
func (c *Conn) watch(ctx context.Context, done <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopWatch != nil {
		c.stopWatch()
	}
	c.watchDone = done
	c.cancelled.Store(false)
	c.stopWatch = context.AfterFunc(ctx, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.watchDone != done {
			return // superseded by a later context
		}
		// Order matters: the flag first, then the deadline, so whoever
		// sees the deadline error also sees the flag (see ioErr).
		c.cancelled.Store(true)
		if c.nc != nil {
			c.nc.SetDeadline(aLongTimeAgo)
		}
	})
}

var aLongTimeAgo = time.Unix(1, 0)

func (c *Conn) dial(ctx context.Context, dl time.Duration) error {
	var nc net.Conn
	var err error
	if c.dialer != nil {
		nc, err = c.dialer(ctx, c.addr, dl, c.base)
	} else {
		d := net.Dialer{KeepAlive: -1} // loopback peers do not vanish silently; skip the probes' setsockopts
		if dl != noDeadline {
			d.Deadline = c.base.Add(dl)
		}
		nc, err = d.DialContext(ctx, "tcp", c.addr)
	}
	if err != nil {
		c.stats.dialErrors.Add(1)
		switch {
		case errors.Is(err, context.Canceled) && ctx.Err() != nil:
			return ctx.Err()
		case c.now() >= dl || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
			return ErrTimeout
		case isFDLimit(err):
			return &fdLimitError{err}
		}
		return &connectError{err}
	}
	c.stats.dials.Add(1)
	var rc syscall.RawConn
	if sc, ok := nc.(syscall.Conn); ok && rawIO && !c.noRawIO {
		rc, _ = sc.SyscallConn()
	}
	c.mu.Lock()
	c.nc, c.rc = nc, rc
	c.mu.Unlock()
	c.armed = noDeadline
	c.used = false
	c.r, c.w = 0, 0
	if len(c.buf) != c.opts.ReadBufferSize {
		// First dial, or the last connection grew its buffer for a long
		// header line (see growForHead): start again at the normal size.
		c.buf = make([]byte, c.opts.ReadBufferSize)
	}
	return nil
}

type closeReason int

const (
	closeLocal closeReason = iota // our choice: keep-alive off, Close
	closePeer                     // the server closed or asked to
	closeError                    // a request failed on it
)

func (c *Conn) closeConn(why closeReason) {
	c.mu.Lock()
	nc := c.nc
	c.nc, c.rc = nil, nil
	c.mu.Unlock()
	c.used = false
	c.r, c.w = 0, 0
	if nc == nil {
		return
	}
	nc.Close()
	c.stats.closes.Add(1)
	switch why {
	case closePeer:
		c.stats.peerCloses.Add(1)
	case closeError:
		c.stats.errorCloses.Add(1)
	}
}

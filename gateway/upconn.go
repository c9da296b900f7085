package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/cascadehq/cascade/gateway/limit"
	"github.com/cascadehq/cascade/internal/evloop"
	"golang.org/x/sys/unix"
)

// The gateway's upstream client: a pool of HTTP/1.1 keep-alive connections
// per replica, each used by one exchange at a time, read and written by
// the goroutine serving that exchange. net/http's Transport runs two
// goroutines per connection and hands every request and response across
// channels; here the exchange does its own I/O on a connection it holds,
// so a request costs a write and a read and nothing else, and every wait
// is bounded by a deadline that says which timeout it is.

const (
	// maxIdlePerReplica bounds idle connections kept per replica. Go's
	// default of 2 is the pitfall the bench measured (3× the CPU, 10× the
	// p99); a gateway keeps what its concurrency needs.
	maxIdlePerReplica = 1024
	// idleConnTimeout closes a pooled connection unused for this long.
	idleConnTimeout = 90 * time.Second
	// upBufSize is a connection's read buffer; it grows for a larger head.
	upBufSize = 8 << 10
	// aliveAfter: a connection idle longer than this is checked before it
	// is reused (see upConn.alive).
	aliveAfter = 50 * time.Millisecond
)

// errMaxConnections is the bulkhead's max_connections refusal.
var errMaxConnections = fmt.Errorf("%w: max_connections open to the upstream", limit.ErrOverflow)

// connPool holds one replica's idle connections. On event loops (see
// server.go) each loop has a pool per replica: a socket belongs to the
// epoll set of the loop that dialed it, so only that loop's tasks use it.
type connPool struct {
	addr string
	up   *upstream
	loop int // the loop whose tasks use it, from 1; 0: goroutines
	// dialAddr is addr resolved to a numeric address, for the loop's
	// dialer (which must not block on a resolver).
	dialAddr string

	mu     sync.Mutex
	idle   []*upConn            // most recently used last
	open   map[*upConn]net.Conn // every open connection, idle or in use
	closed bool
}

// get returns an idle connection, or nil. task is the loop task that
// takes it (nil on goroutines).
func (p *connPool) get(now time.Time, task *evloop.Task) *upConn {
	p.mu.Lock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if idle := now.Sub(c.idleAt); idle < idleConnTimeout {
			p.mu.Unlock()
			if idle < aliveAfter || c.alive() {
				c.reused = true
				if c.lc != nil {
					c.lc.Attach(task)
				}
				return c
			}
			c.close()
			p.mu.Lock()
			continue
		}
		p.mu.Unlock()
		c.close()
		p.mu.Lock()
	}
	p.mu.Unlock()
	return nil
}

// idleCount is the number of idle connections.
func (p *connPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// put returns a connection after a complete exchange.
func (p *connPool) put(c *upConn, now time.Time) {
	c.idleAt = now
	if c.lc != nil {
		c.lc.Detach() // the task may end; the connection stays
	}
	p.mu.Lock()
	if p.closed || len(p.idle) >= maxIdlePerReplica {
		p.mu.Unlock()
		c.close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// dial opens a new connection, unless the upstream is at max_connections.
// On a loop, task dials it there. ctx ends the dial early: the gateway's
// close, or a hedge cancelled while it dials.
func (p *connPool) dial(ctx context.Context, deadline time.Time, task *evloop.Task) (*upConn, error) {
	u := p.up
	if n := u.conns.Add(1); u.maxConns > 0 && n > u.maxConns {
		u.conns.Add(-1)
		return nil, errMaxConnections
	}
	var nc net.Conn
	var lc *evloop.Conn
	var err error
	if task != nil {
		if lc, err = task.Dial(ctx, p.dialAddr, deadline); err == nil {
			nc = lc
		}
	} else if u.dial != nil {
		dctx, cancel := context.WithDeadline(ctx, deadline)
		nc, err = u.dial(dctx, "tcp", p.addr)
		cancel()
	} else {
		d := net.Dialer{Deadline: deadline, KeepAlive: 30 * time.Second}
		nc, err = d.DialContext(ctx, "tcp", p.addr)
	}
	if err != nil {
		u.conns.Add(-1)
		return nil, err
	}
	c := &upConn{nc: nc, lc: lc, pool: p, buf: make([]byte, upBufSize)}
	c.sock.init(nc)
	p.mu.Lock()
	if p.open == nil {
		p.open = map[*upConn]net.Conn{}
	}
	p.open[c] = nc
	p.mu.Unlock()
	return c, nil
}

// closeIdle closes the idle connections; with forever, connections
// returned later are closed too (the replica left, or the gateway stops).
func (p *connPool) closeIdle(forever bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if forever {
		p.closed = true
	}
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// upConn is one connection to a replica.
type upConn struct {
	sock
	nc     net.Conn
	lc     *evloop.Conn // nc, on a loop
	pool   *connPool
	buf    []byte
	r, w   int
	reused bool
	idleAt time.Time
	rdl    time.Time // read deadline set on nc
	wdl    time.Time // write deadline set on nc
	nread  int64     // bytes read since the request was written
	// nwritten is how much of the attempt's request the kernel took.
	nwritten int64
	// pending is a request not written yet: the next fill writes it and
	// waits for the answer in one step (sock.sendRecv).
	pending []byte
}

func (c *upConn) close() {
	if c.nc != nil {
		_ = c.nc.Close()
		c.nc = nil
		c.pool.up.conns.Add(-1)
		c.pool.mu.Lock()
		delete(c.pool.open, c)
		c.pool.mu.Unlock()
	}
}

// abort closes every connection of the pool, in use or not, so exchanges
// blocked on them return at once (the gateway is closing). Not for a
// loop's pool: its loop shuts down instead (server.close).
func (p *connPool) abort() {
	p.closeIdle(true)
	p.mu.Lock()
	conns := make([]net.Conn, 0, len(p.open))
	for _, nc := range p.open {
		conns = append(conns, nc)
	}
	p.mu.Unlock()
	for _, nc := range conns {
		_ = nc.Close() // the owner's close() accounts for it
	}
}

// write sends b, bounded by dl.
func (c *upConn) write(b []byte, dl time.Time) error {
	for {
		armWrite(c.nc, &c.wdl, dl, time.Now(), 0)
		n, err := c.sock.write(b)
		c.nwritten += int64(n)
		if err == nil || !isTimeout(err) || !time.Now().Before(dl) {
			return err
		}
		b, c.wdl = b[n:], time.Time{} // armed early: re-arm, write the rest
	}
}

// fill reads more into the buffer, bounded by dl (now is a recent clock
// reading); it compacts or grows the buffer first when it is full (growing
// up to limit).
func (c *upConn) fill(dl, now time.Time, limit int) error {
	if c.r == c.w {
		c.r, c.w = 0, 0
	}
	if c.w == len(c.buf) {
		switch {
		case c.r > 0:
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		case len(c.buf) < limit:
			nb := make([]byte, min(2*len(c.buf), limit))
			c.w = copy(nb, c.buf[c.r:c.w])
			c.buf, c.r = nb, 0
		default:
			return errMalformed // a head larger than limit
		}
	}
	// The deadline may be one armed for an earlier request and fire before
	// dl (see armRead): callers treat a timeout before their deadline as
	// "go on".
	armRead(c.nc, &c.rdl, dl, now, 0)
	var n int
	var err error
	if len(c.pending) > 0 {
		var sent int
		n, sent, err = c.sock.sendRecv(c.pending, c.buf[c.w:])
		c.nwritten += int64(sent)
		if c.pending = c.pending[sent:]; len(c.pending) == 0 {
			c.pending = nil
		}
	} else {
		n, err = c.sock.read(c.buf[c.w:])
	}
	c.w += n
	c.nread += int64(n)
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// unread reports whether the buffer holds bytes not yet consumed.
func (c *upConn) unread() int { return c.w - c.r }

// headEnd returns the length of the head at the start of b (through its
// blank line), or -1 if b does not hold a whole head yet.
func headEnd(b []byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			return i + 2
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			return i + 3
		}
	}
	return -1
}

// isTimeout reports a deadline that fired on a read or write.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// overflowMaxConns counts a max_connections refusal and reports it like
// the bulkhead's own overflows.
func (u *upstream) overflowMaxConns() {
	u.maxConnsOverflows.Add(1)
	if due, n := u.thrMax.Hit(time.Now()); due {
		u.events.Emit("limit.overflow", map[string]any{"reason": "max_connections", "count": n,
			"connections": u.conns.Load(), "max_connections": u.maxConns})
	}
}

// undelivered reports, after an attempt on c failed before any byte of an
// answer with err, that the request provably never reached the upstream's
// application, so that sending it again cannot make the upstream act on it
// twice: no byte of it left this host (the write failed: the upstream had
// reset the idle connection), or the upstream had closed the connection
// before the request arrived (a stale keep-alive connection).
func (c *upConn) undelivered(err error) bool {
	return c.nwritten == 0 || errors.Is(err, io.EOF) && c.unacked()
}

// unacked reports that the upstream's TCP has not acknowledged every byte
// written on c. Asked once the upstream closed the connection without an
// answer (EOF), it tells a stale keep-alive connection from a request the
// upstream read and then dropped: the FIN of a peer that received the
// request acknowledges it (every segment carries the current ACK), while a
// peer that had closed before it arrived answers it with RST and
// acknowledges nothing. (A reset instead of EOF proves nothing either way:
// the reset fault reads the request, then resets.) False when TCP_INFO
// cannot tell: a connection that is not a socket, or a kernel older than
// 4.19 (no tcpi_bytes_sent).
func (c *upConn) unacked() bool {
	if c.rc == nil {
		return false
	}
	var ti *unix.TCPInfo
	var err error
	if cerr := c.rc.Control(func(fd uintptr) {
		ti, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); cerr != nil || err != nil {
		return false
	}
	// bytes_acked counts the SYN too, on Linux: one more than the data
	// when everything was acknowledged, and short by the request when not.
	return ti.Bytes_acked < ti.Bytes_sent-ti.Bytes_retrans
}

// alive peeks at an idle connection without blocking. The gateway has no
// goroutine watching idle connections (net/http's Transport has one per
// connection; nginx an event handler): an upstream that closed one while
// it sat in the pool, perhaps after sending a 408, is found here, before a
// request is written to it and that 408 read as its answer. A connection
// reused within aliveAfter skips the check: under load that is all of them.
func (c *upConn) alive() bool {
	if c.rc == nil {
		return true
	}
	var n int
	var e error
	err := c.rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, e = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	})
	if err != nil && isTimeout(err) {
		// A deadline armed for an earlier request has passed: clear it and
		// look again.
		c.rdl = time.Time{}
		_ = c.nc.SetReadDeadline(time.Time{})
		err = c.rc.Read(func(fd uintptr) bool {
			var b [1]byte
			n, _, e = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			return true
		})
	}
	return err == nil && n < 0 && (e == syscall.EAGAIN || e == syscall.EWOULDBLOCK)
}

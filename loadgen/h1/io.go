package h1

import (
	"errors"
	"io"
	"os"
	"syscall"
	"time"
)

// Socket I/O.
//
// The obvious loop (net.Conn.Write, then net.Conn.Read) costs three
// syscalls per request: the write, a read that answers EAGAIN because the
// server has not answered yet, and the read that gets the response; plus
// entersyscall/exitsyscall around each, which also lets the runtime's
// sysmon hand the P to another thread (futex wake-ups, context switches on
// a busy machine). wrk needs two. So on a TCP socket Conn goes through
// syscall.RawConn:
//
//   - send writes the request from inside a RawConn.Read callback and then
//     returns false, so the runtime parks the goroutine until the socket is
//     readable without trying a read first. That is safe only because the
//     read readiness is reset (RawRead's prepareRead) *before* the write: a
//     response can only arrive after the write, so its edge-triggered
//     event cannot be lost. Trying the read first is what a plain Read must
//     do, because it cannot know that.
//   - the syscalls are raw (no entersyscall): the socket is non-blocking,
//     so they never block; the scheduler does not need to know.
//   - sendto with MSG_NOSIGNAL: a write to a reset connection returns EPIPE
//     without raising SIGPIPE.
//
// A connection that is not a syscall.Conn, and every connection off Linux,
// goes through net.Conn instead.

// alive probes an idle connection with a non-blocking peek: EAGAIN means
// it is still open and quiet; EOF, an error or unsolicited bytes (a 408
// sent before closing) mean it must not be reused.
func (c *Conn) alive(dl time.Duration) bool {
	if c.rc == nil {
		return true
	}
	for range 2 {
		c.peekErr = nil
		err := c.rc.Read(c.peekFn)
		if err == nil {
			return c.peekErr == syscall.EAGAIN
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return false
		}
		// An early-armed deadline (see arm) expired while idle.
		c.setDeadline(dl)
	}
	return false
}

// arm makes sure a deadline no later than dl is set on the socket. Setting
// a deadline costs a runtime timer update (two, for read and write); at
// tens of thousands of requests per second that is measurable. So the
// socket keeps an earlier deadline as long as it has one: it may fire
// early, and ioErr then re-arms it to the request's real deadline and
// resumes. With a fixed timeout T that happens about once per T per
// connection instead of once per request, and a timeout still fires at
// its exact time.
func (c *Conn) arm(dl time.Duration) {
	if dl < c.armed {
		c.setDeadline(dl)
	}
}

func (c *Conn) setDeadline(dl time.Duration) {
	var t time.Time
	if dl != noDeadline {
		t = c.base.Add(dl)
	}
	c.nc.SetDeadline(t)
	c.armed = dl
}

// ioErr decides what an I/O error means: nil to retry the operation after
// an early deadline was re-armed, or the error to return.
func (c *Conn) ioErr(err error, dl time.Duration) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if c.cancelled.Load() {
		return ctxErr(c.ctx)
	}
	if c.now() >= dl {
		return ErrTimeout
	}
	c.setDeadline(dl)
	// A cancellation that raced with the re-arm may have had its past
	// deadline overwritten: its flag is set before its deadline, so
	// checking after our SetDeadline catches it.
	if c.cancelled.Load() {
		return ctxErr(c.ctx)
	}
	return nil
}

// send writes the request and, on a TCP socket, waits for the response and
// reads its first bytes into the buffer. It returns how many request bytes
// were written; a read error after a complete write is left in c.pending
// for fill, because the request was then in flight.
func (c *Conn) send(b []byte, dl time.Duration) (int, error) {
	c.arm(dl)
	if c.rc == nil {
		return c.writeConn(b, dl)
	}
	// The response is read from the start of the buffer. A reused
	// connection holds no unread bytes (readResponse refuses reuse when it
	// does), but the last response may have ended at the buffer's very end,
	// leaving no room for this read.
	c.r, c.w = 0, 0
	c.out, c.outN, c.outBlocked = b, 0, false
	defer func() { c.out = nil }()
	for {
		c.ioErrno, c.ioEOF = 0, false
		err := c.rc.Read(c.sendFn)
		switch {
		case err != nil:
			if err = c.ioErr(err, dl); err != nil {
				return c.outN, err
			}
		case c.outN < len(b) && c.ioErrno != 0:
			return c.outN, c.ioErrno
		case c.outBlocked:
			// The send buffer is full (a large body): finish the write the
			// ordinary way; fill will read the response.
			n, err := c.writeConn(b[c.outN:], dl)
			return c.outN + n, err
		case c.ioErrno != 0:
			c.pending = c.ioErrno
			return c.outN, nil
		case c.ioEOF:
			c.pending = io.EOF
			return c.outN, nil
		default:
			return c.outN, nil
		}
	}
}

// got accounts for n bytes just read into the buffer.
func (c *Conn) got(n int) {
	c.lastRead = c.now()
	if !c.gotFirst {
		c.first, c.gotFirst = c.lastRead, true
	}
	c.w += n
	c.nread += int64(n)
}

// writeConn writes through net.Conn (and its write readiness waits).
func (c *Conn) writeConn(b []byte, dl time.Duration) (int, error) {
	total := 0
	for {
		n, err := c.nc.Write(b[total:])
		total += n
		if err == nil {
			return total, nil
		}
		if err = c.ioErr(err, dl); err != nil {
			return total, err
		}
	}
}

// fill reads more bytes into the buffer, compacting it first when needed.
// It returns errBufferFull when the unread bytes fill the whole buffer.
func (c *Conn) fill(dl time.Duration) error {
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if c.w == len(c.buf) {
		if c.r == 0 {
			return errBufferFull
		}
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	if err := c.pending; err != nil {
		c.pending = nil
		return err
	}
	for {
		if c.rc == nil {
			n, err := c.nc.Read(c.buf[c.w:])
			if n > 0 {
				c.got(n)
				return nil // a TCP read never returns data and an error together
			}
			if err == nil {
				continue
			}
			if err == io.EOF {
				return io.EOF
			}
			if err = c.ioErr(err, dl); err != nil {
				return err
			}
			continue
		}
		c.ioErrno, c.ioEOF = 0, false
		err := c.rc.Read(c.readFn)
		switch {
		case err != nil:
			if err = c.ioErr(err, dl); err != nil {
				return err
			}
		case c.ioErrno != 0:
			return c.ioErrno
		case c.ioEOF:
			return io.EOF
		default:
			return nil
		}
	}
}

var errBufferFull = errors.New("h1: buffer full")

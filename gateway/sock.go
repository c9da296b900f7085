package gateway

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

// sock does a connection's I/O through syscall.RawConn.
//
// On loopback a proxied request costs four useful syscalls (read the
// request, write it upstream, read the answer, write it back) and, with
// net.Conn, two more: a read that answers EAGAIN before each wait. And
// every net.Conn call brackets its syscall with entersyscall/exitsyscall,
// which also lets sysmon hand the P to another thread. So:
//
//   - the syscalls are raw (no entersyscall): the sockets are non-blocking,
//     they never block;
//   - sendRecv writes the request from inside a RawConn.Read callback and
//     then reports "not ready", so the runtime parks the goroutine until the
//     socket is readable without trying a read first. That is safe only
//     because RawConn.Read resets the read readiness (prepareRead) before
//     the callback runs, so before the write: the answer can only arrive
//     after the write, so its edge-triggered event cannot be lost. (On the
//     client side the same trick is not safe: a pipelining client may have
//     sent its next request before our answer, and its event would be
//     lost; there a read that may answer EAGAIN stays.)
//   - writes use sendto with MSG_NOSIGNAL: a write to a reset connection
//     returns EPIPE instead of raising SIGPIPE.
//
// A connection that is not a syscall.Conn (tests with net.Pipe) uses the
// net.Conn methods.
type sock struct {
	nc net.Conn
	rc syscall.RawConn

	rbuf    []byte // read destination
	rn      int
	reof    bool
	rerr    syscall.Errno
	out     []byte // bytes to write
	outN    int
	blocked bool // the socket's send buffer is full: finish the write with a wait
	werr    syscall.Errno

	readFn, writeFn, sendRecvFn func(fd uintptr) bool
}

func (s *sock) init(nc net.Conn) {
	s.nc = nc
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			s.rc = rc
		}
	}
	s.readFn, s.writeFn, s.sendRecvFn = s.readCB, s.writeCB, s.sendRecvCB
}

// read reads into p, waiting (bounded by the read deadline) until data,
// EOF or an error.
func (s *sock) read(p []byte) (int, error) {
	if s.rc == nil {
		return s.nc.Read(p)
	}
	s.rbuf, s.rn, s.reof, s.rerr = p, 0, false, 0
	err := s.rc.Read(s.readFn)
	s.rbuf = nil
	return s.result(err)
}

func (s *sock) result(err error) (int, error) {
	switch {
	case err != nil:
		return 0, err
	case s.rerr != 0:
		return 0, s.rerr
	case s.reof:
		return 0, io.EOF
	}
	return s.rn, nil
}

// readCB reads once; false means EAGAIN (wait for readability).
func (s *sock) readCB(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&s.rbuf[0])), uintptr(len(s.rbuf)))
		switch e {
		case 0:
			if n == 0 {
				s.reof = true
			}
			s.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		s.rerr = e
		return true
	}
}

// write writes all of b, waiting (bounded by the write deadline) while the
// send buffer is full. It returns how much it wrote.
func (s *sock) write(b []byte) (int, error) {
	if s.rc == nil || len(b) == 0 {
		return s.nc.Write(b)
	}
	s.out, s.outN, s.werr = b, 0, 0
	err := s.rc.Write(s.writeFn)
	n := s.outN
	s.out = nil
	if err == nil && s.werr != 0 {
		err = s.werr
	}
	return n, err
}

// send writes from s.out[s.outN:]; false means the send buffer is full.
func (s *sock) send(fd uintptr) bool {
	for s.outN < len(s.out) {
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&s.out[s.outN])),
			uintptr(len(s.out)-s.outN), syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			s.outN += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			s.werr = e
			return true
		}
	}
	return true
}

func (s *sock) writeCB(fd uintptr) bool { return s.send(fd) }

// sendRecv writes req and reads the first bytes of the answer into p,
// without the read that would answer EAGAIN in between (see the type's
// doc). sent reports how much of req went out.
func (s *sock) sendRecv(req, p []byte) (n, sent int, err error) {
	if s.rc == nil {
		if sent, err = s.nc.Write(req); err != nil {
			return 0, sent, err
		}
		n, err = s.nc.Read(p)
		return n, sent, err
	}
	s.out, s.outN, s.blocked, s.werr = req, 0, false, 0
	s.rbuf, s.rn, s.reof, s.rerr = p, 0, false, 0
	err = s.rc.Read(s.sendRecvFn)
	sent = s.outN
	s.out, s.rbuf = nil, nil
	switch {
	case err != nil:
		return 0, sent, err
	case s.werr != 0:
		return 0, sent, s.werr
	case s.blocked:
		// A request larger than the send buffer: finish it the ordinary
		// way, then read.
		w, err := s.write(req[sent:])
		sent += w
		if err != nil {
			return 0, sent, err
		}
		n, err = s.read(p)
		return n, sent, err
	}
	n, err = s.result(nil)
	return n, sent, err
}

func (s *sock) sendRecvCB(fd uintptr) bool {
	if s.outN < len(s.out) {
		if !s.send(fd) {
			s.blocked = true
			return true
		}
		if s.werr != 0 {
			return true
		}
		return false // sent: wait for the answer
	}
	return s.readCB(fd)
}

package h1

import (
	"syscall"
	"unsafe"
)

// rawIO: on Linux, Conn drives the socket itself through syscall.RawConn
// (see io.go).
const rawIO = true

func (c *Conn) peek(fd uintptr) bool {
	_, _, c.peekErr = syscall.Recvfrom(int(fd), c.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return true
}

// sendCB is the RawConn.Read callback of send: write until done, then
// report "not ready" so the runtime waits for readability; once woken,
// read.
func (c *Conn) sendCB(fd uintptr) bool {
	if c.outN == len(c.out) {
		return c.readCB(fd)
	}
	for c.outN < len(c.out) {
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&c.out[c.outN])),
			uintptr(len(c.out)-c.outN), syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			c.outN += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			c.outBlocked = true
			return true
		default:
			c.ioErrno = e
			return true
		}
	}
	return false
}

// readCB reads into the free part of the buffer; false means EAGAIN.
func (c *Conn) readCB(fd uintptr) bool {
	for {
		free := c.buf[c.w:]
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&free[0])), uintptr(len(free)))
		switch e {
		case 0:
			if n == 0 {
				c.ioEOF = true
				return true
			}
			c.got(int(n))
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.ioErrno = e
		return true
	}
}

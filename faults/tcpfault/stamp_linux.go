package tcpfault

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Arrival times from the kernel. A chunk's delay counts from when its bytes
// reached the socket, not from when the proxy's reader got to run: on a
// busy or idle-clocked machine that wake-up takes 0.05–0.3 ms (more under
// load), and counting from it would add that to every injected delay.
// SO_TIMESTAMPNS makes recvmsg return the (wall-clock) time the kernel
// received the latest segment read, so the delay is never shorter than
// asked for any byte of the chunk.

const soTimestampNS = 35 // SO_TIMESTAMPNS(_OLD) = SCM_TIMESTAMPNS on Linux

type stampReader struct {
	rc  syscall.RawConn
	oob [64]byte
}

func newStampReader(c *net.TCPConn) *stampReader {
	rc, err := c.SyscallConn()
	if err != nil || enableStamps(rc) != nil {
		return nil
	}
	return &stampReader{rc: rc}
}

// enableStamps turns SO_TIMESTAMPNS on. The kernel only stamps packets
// while some socket asks for it, and switches that on asynchronously, so
// the proxy sets it on its listener (accepted sockets inherit it, and it
// stays on while the proxy listens) and on upstream sockets before they
// connect: the first bytes of a connection are stamped too.
func enableStamps(rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soTimestampNS, 1)
	}); err != nil {
		return err
	}
	return serr
}

// stampListener enables stamps on a TCP listener (best effort).
func stampListener(ln net.Listener) {
	if tl, ok := ln.(*net.TCPListener); ok {
		if rc, err := tl.SyscallConn(); err == nil {
			enableStamps(rc)
		}
	}
}

// stampDial is a net.Dialer.Control that enables stamps before connecting.
func stampDial(network, address string, c syscall.RawConn) error {
	enableStamps(c)
	return nil
}

// read reads into a buffer from pool and returns it with when the kernel
// received the bytes (now, if it cannot tell). The buffer is taken only
// once data is there, so an idle connection holds none.
func (r *stampReader) read(pool *sync.Pool) (*[]byte, int, time.Time, error) {
	var (
		bp      *[]byte
		n, oobn int
		rerr    error
	)
	err := r.rc.Read(func(fd uintptr) bool {
		if bp == nil {
			bp = pool.Get().(*[]byte)
		}
		for {
			n, oobn, _, _, rerr = syscall.Recvmsg(int(fd), *bp, r.oob[:], 0)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			pool.Put(bp)
			bp = nil
			return false
		}
		return true
	})
	now := time.Now()
	if err == nil {
		err = rerr
	}
	if err == nil && n == 0 {
		err = io.EOF
	}
	if err != nil {
		if bp != nil {
			pool.Put(bp)
		}
		return nil, 0, now, err
	}
	return bp, n, kernelTime(r.oob[:oobn], now), nil
}

// kernelTime finds the SCM_TIMESTAMPNS message and turns it into an instant
// on Go's monotonic clock (now minus how long ago it was). The kernel
// usually stamps with the wall clock, but a segment that kept the sender's
// departure time (TCP's pacing stamp, seen on loopback) carries
// CLOCK_MONOTONIC instead; both are tried. A value that is in the future or
// over a second old by either clock (a wall-clock step) is ignored.
func kernelTime(oob []byte, now time.Time) time.Time {
	const hdr = int(unsafe.Sizeof(syscall.Cmsghdr{}))
	for len(oob) >= hdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			break
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == soTimestampNS && l >= hdr+16 {
			sec := int64(binary.NativeEndian.Uint64(oob[hdr:]))
			nsec := int64(binary.NativeEndian.Uint64(oob[hdr+8:]))
			if ago := now.Sub(time.Unix(sec, nsec)); ago >= 0 && ago < time.Second {
				return now.Add(-ago)
			}
			var mono syscall.Timespec
			if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&mono)), 0); e != 0 {
				break
			}
			// Read after the monotonic clock, so "ago" is never overstated
			// and the delay never comes out short.
			now = time.Now()
			if ago := time.Duration(mono.Nano() - (sec*1e9 + nsec)); ago >= 0 && ago < time.Second {
				return now.Add(-ago)
			}
			break
		}
		oob = oob[(l+7)&^7:]
	}
	return now
}

const clockMonotonic = 1 // CLOCK_MONOTONIC

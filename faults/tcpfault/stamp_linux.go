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
	if err != nil {
		return nil
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soTimestampNS, 1)
	}); err != nil || serr != nil {
		return nil
	}
	return &stampReader{rc: rc}
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

// kernelTime finds the SCM_TIMESTAMPNS message and turns its wall-clock
// time into an instant on Go's monotonic clock (now minus how long ago it
// was). A value in the future or over a second old (a wall-clock step) is
// ignored.
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
			ago := now.Sub(time.Unix(sec, nsec))
			if ago >= 0 && ago < time.Second {
				return now.Add(-ago)
			}
			break
		}
		oob = oob[(l+7)&^7:]
	}
	return now
}

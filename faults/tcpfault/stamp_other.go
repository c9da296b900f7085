//go:build !linux

package tcpfault

import (
	"net"
	"sync"
	"syscall"
	"time"
)

func stampListener(net.Listener) {}

func stampDial(string, string, syscall.RawConn) error { return nil }

type stampReader struct{ c *net.TCPConn }

func newStampReader(c *net.TCPConn) *stampReader { return &stampReader{c} }

func (r *stampReader) read(pool *sync.Pool) (*[]byte, int, time.Time, error) {
	bp := pool.Get().(*[]byte)
	n, err := r.c.Read(*bp)
	if n == 0 {
		pool.Put(bp)
		bp = nil
	}
	return bp, n, time.Now(), err
}

//go:build !linux

package tcpfault

import (
	"net"
	"time"
)

type stampReader struct{ c *net.TCPConn }

func newStampReader(c *net.TCPConn) *stampReader { return &stampReader{c} }

func (r *stampReader) read(b []byte) (int, time.Time, error) {
	n, err := r.c.Read(b)
	return n, time.Now(), err
}

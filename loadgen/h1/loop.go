package h1

import (
	"context"
	"net"
	"time"

	"github.com/cascadehq/cascade/internal/evloop"
)

// NewLoopConn returns a Conn whose sockets t's event loop drives: it dials
// and waits through the loop (evloop), with the same code above the socket
// as a Conn on Go's netpoller. Use it from t only.
func NewLoopConn(t *evloop.Task, addr string, opts Options) (*Conn, error) {
	c, err := NewConn(addr, opts)
	if err != nil {
		return nil, err
	}
	c.dialer = func(ctx context.Context, addr string, dl time.Duration, base time.Time) (net.Conn, error) {
		var deadline time.Time
		if dl != noDeadline {
			deadline = base.Add(dl)
		}
		lc, err := t.Dial(ctx, addr, deadline)
		if err != nil {
			return nil, err // not a nil *evloop.Conn in an interface
		}
		return lc, nil
	}
	return c, nil
}

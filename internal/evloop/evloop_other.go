//go:build !linux

package evloop

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"
)

// Off Linux there is no epoll: New and Listen fail, and callers keep to
// goroutines. The types exist so that callers compile everywhere.

var errNoLoop = errors.New("evloop: event loops need Linux (epoll)")

// Loop is not available off Linux.
type Loop struct{}

// Task is not available off Linux.
type Task struct{}

// Listener is not available off Linux.
type Listener struct{}

// Conn is not available off Linux.
type Conn struct{ net.Conn }

// New fails off Linux.
func New() (*Loop, error) { return nil, errNoLoop }

// Listen fails off Linux.
func Listen(addr string, reusePort bool) (*Listener, error) { return nil, errNoLoop }

func (l *Loop) Go(fn func(*Task)) bool  { panic(errNoLoop) }
func (l *Loop) Close()                  {}
func (l *Loop) Shutdown()               {}
func (l *Loop) Run(ctx context.Context) {}

func (t *Task) Loop() *Loop                                { return nil }
func (t *Task) Go(fn func(*Task))                          { panic(errNoLoop) }
func (t *Task) Park(until time.Time)                       { panic(errNoLoop) }
func (t *Task) Wake()                                      { panic(errNoLoop) }
func (t *Task) Sleep(ctx context.Context, d time.Duration) { panic(errNoLoop) }
func (t *Task) Dial(ctx context.Context, addr string, deadline time.Time) (*Conn, error) {
	return nil, errNoLoop
}

func (ln *Listener) Addr() net.Addr                   { return nil }
func (ln *Listener) Accept(t *Task) (*Conn, error)    { return nil, errNoLoop }
func (ln *Listener) Close() error                     { return errNoLoop }
func (ln *Listener) Stop()                            {}
func (c *Conn) Attach(t *Task)                        {}
func (c *Conn) Detach()                               {}
func (c *Conn) Release() (net.Conn, error)            { return nil, errNoLoop }
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return nil, errNoLoop }

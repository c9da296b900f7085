//go:build !linux

package h1

import (
	"context"
	"errors"
	"time"
)

// Event loops are Linux-only (epoll); elsewhere NewLoop fails and callers
// keep to goroutines.

// Loop is not available off Linux.
type Loop struct{}

// Task is not available off Linux.
type Task struct{}

var errNoLoop = errors.New("h1: event loops need Linux (epoll)")

// NewLoop fails off Linux.
func NewLoop() (*Loop, error) { return nil, errNoLoop }

func (l *Loop) Go(fn func(*Task))       { panic(errNoLoop) }
func (l *Loop) Close()                  {}
func (l *Loop) Run(ctx context.Context) {}

func (t *Task) Sleep(ctx context.Context, d time.Duration) { panic(errNoLoop) }
func (t *Task) NewConn(addr string, opts Options) (*Conn, error) {
	return nil, errNoLoop
}

package h1

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/evloop"
)

// TestOnLoop runs the Conn tests again with every Conn driven by a Loop's
// task instead of by Go's netpoller: the loop must not change what any
// request does.
func TestOnLoop(t *testing.T) {
	l, err := evloop.New()
	if err != nil {
		t.Skip(err)
	}
	l.Close()
	l.Run(context.Background()) // returns at once, releasing its descriptors
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"KeepAliveReuse", TestKeepAliveReuse},
		{"KeepAliveOff", TestKeepAliveOff},
		{"Bodies", TestBodies},
		{"RawFraming", TestRawFraming},
		{"BodyUntilClose", TestBodyUntilClose},
		{"ServerConnectionClose", TestServerConnectionClose},
		{"Resets", TestResets},
		{"ResetOnReusedConnIsReported", TestResetOnReusedConnIsReported},
		{"IdleCloseReconnects", TestIdleCloseReconnects},
		{"DeadConnRetriedAtWrite", TestDeadConnRetriedAtWrite},
		{"TimeoutNeverAnswers", TestTimeoutNeverAnswers},
		{"LazyDeadlineNeverEarly", TestLazyDeadlineNeverEarly},
		{"ContextDeadlinePerContext", TestContextDeadlinePerContext},
		{"Cancel", TestCancel},
		{"ConnectRefused", TestConnectRefused},
		{"Malformed", TestMalformed},
		{"MaxHeaderBytes", TestMaxHeaderBytes},
		{"LongHeaderLine", TestLongHeaderLine},
		{"CauseHeader", TestCauseHeader},
		{"SeqHeaderAndBody", TestSeqHeaderAndBody},
		{"TargetMismatch", TestTargetMismatch},
		{"LargeRequestBody", TestLargeRequestBody},
		{"SlowDrip", TestSlowDrip},
		{"NetConnPath", TestNetConnPath},
		{"KeepAliveOffServerClosesSilently", TestKeepAliveOffServerClosesSilently},
		{"ResponseFillsBufferExactly", TestResponseFillsBufferExactly},
	} {
		t.Run(tc.name, tc.fn)
	}
}

// onLoop says whether a test runs under TestOnLoop.
func onLoop(t testing.TB) bool { return strings.HasPrefix(t.Name(), "TestOnLoop/") }

// loopTestConn drives a Conn from a task of its own Loop. The task runs the
// calls the test goroutine hands it; while it waits for the next call it
// blocks the loop, which has no other task.
type loopTestConn struct {
	c     *Conn
	calls chan func()
	ended chan struct{}
}

func newLoopTestConn(t testing.TB, addr string, opts Options) *loopTestConn {
	t.Helper()
	l, err := evloop.New()
	if err != nil {
		t.Fatal(err)
	}
	lc := &loopTestConn{calls: make(chan func()), ended: make(chan struct{})}
	go func() { l.Run(context.Background()); close(lc.ended) }()
	made := make(chan error)
	l.Go(func(task *evloop.Task) {
		c, err := NewLoopConn(task, addr, opts)
		lc.c = c
		made <- err
		if err != nil {
			return
		}
		for f := range lc.calls {
			f()
		}
		c.Close()
	})
	l.Close()
	if err := <-made; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lc.Close() })
	return lc
}

func (lc *loopTestConn) Do(ctx context.Context, p *Prepared, r *Result) error {
	var err error
	done := make(chan struct{})
	lc.calls <- func() { err = lc.c.Do(ctx, p, r); close(done) }
	<-done
	return err
}

func (lc *loopTestConn) Stats() Stats { return lc.c.Stats() }

var closeOnce sync.Map

func (lc *loopTestConn) Close() error {
	if _, again := closeOnce.LoadOrStore(lc, true); !again {
		close(lc.calls)
		<-lc.ended
	}
	return nil
}

// connOf returns the Conn behind a test connection.
func connOf(tc testConn) *Conn {
	if lc, ok := tc.(*loopTestConn); ok {
		return lc.c
	}
	return tc.(*Conn)
}

func newTestLoop(t *testing.T, ctx context.Context) (*evloop.Loop, <-chan struct{}) {
	t.Helper()
	l, err := evloop.New()
	if err != nil {
		t.Skip(err)
	}
	ended := make(chan struct{})
	go func() { l.Run(ctx); close(ended) }()
	return l, ended
}

// Many tasks share one loop, each with its own connection, and every
// request of every task is answered on it.
func TestLoopManyTasks(t *testing.T) {
	addr := helloServer(t)
	l, ended := newTestLoop(t, context.Background())
	const tasks, each = 40, 200
	var ok, dials atomic.Int64
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	for range tasks {
		l.Go(func(task *evloop.Task) {
			c, err := NewLoopConn(task, addr, Options{Timeout: 5 * time.Second})
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			var r Result
			for range each {
				if err := c.Do(context.Background(), p, &r); err == nil && r.Status == 200 && r.BodyBytes == 6 {
					ok.Add(1)
				}
			}
			dials.Add(c.Stats().Dials)
		})
	}
	l.Close()
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal("loop did not end")
	}
	if ok.Load() != tasks*each || dials.Load() != tasks {
		t.Fatalf("%d of %d requests answered over %d connections (want %d)", ok.Load(), tasks*each, dials.Load(), tasks)
	}
}

// Sleep lasts its time, and tasks sleeping side by side do not add up.
func TestLoopSleep(t *testing.T) {
	l, ended := newTestLoop(t, context.Background())
	const d = 60 * time.Millisecond
	var mu sync.Mutex
	var slept []time.Duration
	for range 5 {
		l.Go(func(task *evloop.Task) {
			start := time.Now()
			task.Sleep(context.Background(), d)
			mu.Lock()
			slept = append(slept, time.Since(start))
			mu.Unlock()
		})
	}
	start := time.Now()
	l.Close()
	<-ended
	total := time.Since(start)
	for _, s := range slept {
		if s < d {
			t.Errorf("slept %v, less than %v", s, d)
		}
	}
	if len(slept) != 5 || total > 4*d {
		t.Fatalf("%d sleeps, %v in all (sleeps of %v side by side)", len(slept), total, d)
	}
}

// Cancelling Run's context wakes a sleeping task at once, and a request in
// flight ends as cancelled, well before its timeout.
func TestLoopCancelWakes(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // never answers
	ctx, cancel := context.WithCancel(context.Background())
	l, ended := newTestLoop(t, ctx)
	var slept time.Duration
	var res Result
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	l.Go(func(task *evloop.Task) {
		start := time.Now()
		task.Sleep(ctx, time.Hour)
		slept = time.Since(start)
	})
	l.Go(func(task *evloop.Task) {
		c, err := NewLoopConn(task, addr, Options{Timeout: time.Hour})
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		c.Do(ctx, p, &res)
	})
	l.Close()
	time.AfterFunc(50*time.Millisecond, cancel)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling did not end the tasks")
	}
	if slept < 40*time.Millisecond || slept > 2*time.Second {
		t.Errorf("sleep ended after %v, want soon after the cancel at 50ms", slept)
	}
	if !errors.Is(res.Err, context.Canceled) || res.Cause != cause.TransportError {
		t.Errorf("request in flight: %v, cause %v", res.Err, res.Cause)
	}
}

// A task that returns with its connection open has it closed by the loop:
// the server sees the end of the stream.
func TestLoopClosesLeftSockets(t *testing.T) {
	gotEOF := make(chan struct{})
	addr := rawServer(t, func(c net.Conn) {
		var req []byte
		readRequest(c, &req)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			close(gotEOF)
		}
	})
	l, ended := newTestLoop(t, context.Background())
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	l.Go(func(task *evloop.Task) {
		c, err := NewLoopConn(task, addr, Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Error(err)
			return
		}
		var r Result
		if err := c.Do(context.Background(), p, &r); err != nil {
			t.Error(err)
		}
		// returns without c.Close()
	})
	l.Close()
	<-ended
	select {
	case <-gotEOF:
	case <-time.After(5 * time.Second):
		t.Fatal("the server never saw the connection end")
	}
}

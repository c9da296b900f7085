//go:build linux

package evloop

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/tcptest"
)

// runLoop starts l and returns a channel closed when Run returned.
func runLoop(t *testing.T, ctx context.Context) (*Loop, <-chan struct{}) {
	t.Helper()
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() { l.Run(ctx); close(ended) }()
	return l, ended
}

// listen is a loopback listener for one loop.
func listen(t *testing.T) *Listener {
	t.Helper()
	ln, err := Listen("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func waitEnded(t *testing.T, ended <-chan struct{}) {
	t.Helper()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not end")
	}
}

// echoServe answers each line on c with the line upper-cased, until EOF;
// on a loop's Conn or on Go's netpoller alike.
func echoServe(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := c.Write([]byte(strings.ToUpper(line))); err != nil {
			return
		}
	}
}

// acceptEcho is a task serving echoServe on every connection ln accepts,
// each in a task of its own, until the loop shuts down.
func acceptEcho(ln *Listener) func(*Task) {
	return func(task *Task) {
		for {
			c, err := ln.Accept(task)
			if err != nil {
				return
			}
			task.Go(func(st *Task) { c.Attach(st); echoServe(c) })
		}
	}
}

// TestServeAndDialOnOneLoop runs a server (an accepting task spawning a
// task per connection) and a client task holding two connections at once,
// all on one loop.
func TestServeAndDialOnOneLoop(t *testing.T) {
	ln := listen(t)
	l, ended := runLoop(t, context.Background())
	l.Go(acceptEcho(ln))
	got := make(chan string, 1)
	l.Go(func(task *Task) {
		var out []string
		defer func() { got <- strings.Join(out, ",") }()
		a, err := task.Dial(context.Background(), ln.Addr().String(), time.Now().Add(5*time.Second))
		if err != nil {
			out = append(out, err.Error())
			return
		}
		b, err := task.Dial(context.Background(), ln.Addr().String(), time.Time{})
		if err != nil {
			out = append(out, err.Error())
			return
		}
		ra, rb := bufio.NewReader(a), bufio.NewReader(b)
		for i := range 50 {
			// Interleaved: both sockets of one task are waited on.
			a.Write([]byte("a\n"))
			b.Write([]byte("b\n"))
			la, ea := rb.ReadString('\n')
			lb, eb := ra.ReadString('\n')
			if ea != nil || eb != nil {
				out = append(out, "read error", errors.Join(ea, eb).Error())
				return
			}
			if i == 0 {
				out = append(out, strings.TrimSpace(la), strings.TrimSpace(lb))
			}
		}
		a.Close()
		b.Close()
		out = append(out, "done")
	})
	if s := <-got; s != "B,A,done" {
		t.Fatalf("client saw %q, want B,A,done", s)
	}
	l.Shutdown() // ends the accepting task
	l.Close()
	waitEnded(t, ended)
}

// TestAttachHandsAConnOver passes a connection between tasks, as a pool of
// upstream connections does: the events of a detached connection wake
// nobody, and the task that ends first must not close what it handed on.
func TestAttachHandsAConnOver(t *testing.T) {
	srv := newEchoServer(t)
	l, ended := runLoop(t, context.Background())
	var pool []*Conn
	errs := make(chan error, 3)
	l.Go(func(task *Task) {
		c, err := task.Dial(context.Background(), srv, time.Time{})
		if err != nil {
			errs <- err
			return
		}
		errs <- roundTrip(c, "one")
		c.Detach()
		pool = append(pool, c)
		task.Go(func(t2 *Task) {
			t2.Sleep(context.Background(), 20*time.Millisecond) // the first task has ended by now
			c := pool[0]
			c.Attach(t2)
			errs <- roundTrip(c, "two")
			c.Close()
			if err := c.Close(); !errors.Is(err, net.ErrClosed) {
				errs <- err
			}
		})
	})
	l.Close()
	waitEnded(t, ended)
	close(errs)
	n := 0
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d round trips, want 2", n)
	}
}

func roundTrip(c *Conn, s string) error {
	if _, err := c.Write([]byte(s + "\n")); err != nil {
		return err
	}
	b := make([]byte, len(s)+1)
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	if want := strings.ToUpper(s) + "\n"; string(b) != want {
		return errors.New("got " + string(b) + ", want " + want)
	}
	return nil
}

// newEchoServer is an upper-casing line server on Go's netpoller.
func newEchoServer(t *testing.T) string { return tcptest.Serve(t, echoServe) }

// TestWakeFromAnotherGoroutine parks a task until a goroutine finishes a
// wait that is not a socket's.
func TestWakeFromAnotherGoroutine(t *testing.T) {
	l, ended := runLoop(t, context.Background())
	var mu sync.Mutex
	var waited time.Duration
	l.Go(func(task *Task) {
		done := make(chan struct{})
		start := time.Now()
		go func() {
			time.Sleep(50 * time.Millisecond)
			close(done)
			task.Wake()
		}()
		for {
			select {
			case <-done:
				mu.Lock()
				waited = time.Since(start)
				mu.Unlock()
				return
			default:
				task.Park(time.Time{})
			}
		}
	})
	l.Close()
	waitEnded(t, ended)
	// Without the wake nothing resumes the task (it has no socket and no
	// deadline) and the loop never ends.
	if waited < 50*time.Millisecond || waited > 50*time.Millisecond+maxWait+20*time.Millisecond {
		t.Fatalf("the task waited %v for a 50 ms wake", waited)
	}
}

// TestShutdownEndsBlockedReads: a server's idle connections are tasks
// blocked in a read with a far deadline; Shutdown makes them return.
func TestShutdownEndsBlockedReads(t *testing.T) {
	ln := listen(t)
	l, ended := runLoop(t, context.Background())
	readErr := make(chan error, 1)
	l.Go(func(task *Task) {
		c, err := ln.Accept(task)
		if err != nil {
			readErr <- err
			return
		}
		task.Go(func(st *Task) {
			c.Attach(st)
			c.SetReadDeadline(time.Now().Add(time.Hour))
			_, err := c.Read(make([]byte, 10))
			readErr <- err
		})
		_, err = ln.Accept(task) // blocks until Shutdown
		if !errors.Is(err, net.ErrClosed) {
			readErr <- err
		}
	})
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	time.Sleep(50 * time.Millisecond)
	l.Shutdown()
	select {
	case err := <-readErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not end the blocked read")
	}
	l.Close()
	waitEnded(t, ended)
	// The loop closed the socket: the client sees EOF.
	cli.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := cli.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client read %v after the loop ended, want EOF", err)
	}
}

// Stop from another goroutine ends a pending Accept while the loop's
// other tasks go on: a draining server stops accepting but still serves.
// The accepting task closes the socket, and new connections are refused.
func TestStopEndsAcceptOnly(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	l, ended := runLoop(t, context.Background())
	defer func() { l.Close(); waitEnded(t, ended) }()
	acceptErr := make(chan error, 1)
	l.Go(func(task *Task) {
		defer ln.Close()
		c, err := ln.Accept(task)
		if err != nil {
			acceptErr <- err
			return
		}
		task.Go(func(st *Task) { c.Attach(st); echoServe(c) })
		_, err = ln.Accept(task) // blocks until Stop
		acceptErr <- err
	})
	cli, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	r := bufio.NewReader(cli)
	cli.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(cli, "one\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "ONE\n" {
		t.Fatalf("echo %q, %v", line, err)
	}
	time.Sleep(20 * time.Millisecond) // the second Accept is waiting
	ln.Stop()
	select {
	case err := <-acceptErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not end the pending Accept")
	}
	// The served connection still works; a new one is refused.
	if _, err := io.WriteString(cli, "two\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "TWO\n" {
		t.Fatalf("after Stop: echo %q, %v", line, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close() // the task may not have closed the socket yet
		if time.Now().After(deadline) {
			t.Fatal("connections still accepted after Stop")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReleaseToNetpoller hands a served connection to a goroutine, as the
// gateway gives a request it does not serve itself to net/http.
func TestReleaseToNetpoller(t *testing.T) {
	ln := listen(t)
	l, ended := runLoop(t, context.Background())
	handed := make(chan net.Conn, 1)
	l.Go(func(task *Task) {
		c, err := ln.Accept(task)
		if err != nil {
			handed <- nil
			return
		}
		c.Attach(task)
		b := make([]byte, 6)
		io.ReadFull(c, b) // "hello\n", read on the loop
		nc, err := c.Release()
		if err != nil {
			handed <- nil
			return
		}
		handed <- nc
		ln.Close()
	})
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	cli.Write([]byte("hello\n"))
	nc := <-handed
	if nc == nil {
		t.Fatal("no connection handed over")
	}
	l.Close()
	waitEnded(t, ended) // the loop is gone; the released conn lives on
	defer nc.Close()
	cli.Write([]byte("again\n"))
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 6)
	if _, err := io.ReadFull(nc, b); err != nil || string(b) != "again\n" {
		t.Fatalf("released conn read %q, %v", b, err)
	}
	nc.Write([]byte("ok"))
	cli.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(cli, b[:2]); err != nil || string(b[:2]) != "ok" {
		t.Fatalf("client read %q, %v", b[:2], err)
	}
}

// TestDialFailures: refused, deadline and a pre-cancelled context.
func TestDialFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	l, ended := runLoop(t, context.Background())
	errs := make(chan error, 3)
	l.Go(func(task *Task) {
		_, err := task.Dial(context.Background(), closed, time.Now().Add(5*time.Second))
		errs <- err
		_, err = task.Dial(context.Background(), closed, time.Now().Add(-time.Second))
		errs <- err
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err = task.Dial(ctx, closed, time.Time{})
		errs <- err
	})
	l.Close()
	waitEnded(t, ended)
	var op *net.OpError
	if err := <-errs; !errors.As(err, &op) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("dial to a closed port: %v, want connection refused", err)
	}
	// Loopback connects at once, so the past deadline or cancellation may
	// race the refusal; either answer is right, nothing else is.
	if err := <-errs; !errors.Is(err, os.ErrDeadlineExceeded) && !errors.As(err, &op) {
		t.Errorf("dial past its deadline: %v", err)
	}
	if err := <-errs; !errors.Is(err, context.Canceled) && !errors.As(err, &op) {
		t.Errorf("dial with a cancelled context: %v", err)
	}
}

// TestReusePortListeners binds one port from two listeners on two loops;
// both answer.
func TestReusePortListeners(t *testing.T) {
	first, err := Listen("127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Listen(first.Addr().String(), true)
	if err != nil {
		t.Fatal(err)
	}
	var ends []<-chan struct{}
	var loops []*Loop
	for _, ln := range []*Listener{first, second} {
		l, ended := runLoop(t, context.Background())
		loops, ends = append(loops, l), append(ends, ended)
		l.Go(acceptEcho(ln))
	}
	for i := range 20 {
		c, err := net.Dial("tcp", first.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("x\n"))
		b := make([]byte, 2)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "X\n" {
			t.Fatalf("connection %d: %q, %v", i, b, err)
		}
		c.Close()
	}
	for i, l := range loops {
		l.Shutdown()
		l.Close()
		waitEnded(t, ends[i])
	}
}

package h1

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
)

// blockingServer holds every request until release is closed and tracks the
// largest number of connections open at once.
func blockingServer(t *testing.T) (addr string, release chan struct{}, arrived chan struct{}, maxConns *atomic.Int64) {
	release, arrived = make(chan struct{}), make(chan struct{}, 100)
	maxConns = &atomic.Int64{}
	var open atomic.Int64
	addr = httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		io.WriteString(w, "ok")
	}), func(s *http.Server) {
		s.ConnState = func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				n := open.Add(1)
				for m := maxConns.Load(); n > m && !maxConns.CompareAndSwap(m, n); m = maxConns.Load() {
				}
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		}
	})
	return addr, release, arrived, maxConns
}

func TestPoolCapAndWait(t *testing.T) {
	addr, release, arrived, maxConns := blockingServer(t)
	pool, err := NewPool(addr, 2, Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})

	var wg sync.WaitGroup
	results := make([]Result, 5)
	errs := make([]error, 5)
	for i := range results {
		wg.Go(func() { errs[i] = pool.Do(ctxT(t), p, &results[i]) })
	}
	// Two requests reach the server; the other three wait for a connection.
	for range 2 {
		<-arrived
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case <-arrived:
		t.Fatal("a third request reached the server past the cap of 2")
	default:
	}
	close(release)
	wg.Wait()
	for i, err := range errs {
		if err != nil || results[i].Status != 200 {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	st := pool.Stats()
	if maxConns.Load() != 2 || st.Dials != 2 || st.Waits != 3 || st.Reuses != 3 {
		t.Fatalf("server saw up to %d connections; stats %+v", maxConns.Load(), st)
	}
	// Waiting counts in the latency: the waiters started before their write.
	waited := 0
	for _, r := range results {
		if r.WriteStart-r.Start > 50*time.Millisecond {
			waited++
		}
	}
	if waited != 3 {
		t.Fatalf("%d results show the wait, want 3", waited)
	}
}

func TestPoolFailFast(t *testing.T) {
	addr, release, arrived, _ := blockingServer(t)
	pool, err := NewPool(addr, 1, Options{Timeout: 10 * time.Second, FailFast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	done := make(chan error)
	go func() {
		var r Result
		done <- pool.Do(ctxT(t), p, &r)
	}()
	<-arrived
	var r Result
	err = pool.Do(ctxT(t), p, &r)
	if !errors.Is(err, ErrPoolExhausted) || r.Cause != cause.Dropped || r.WriteStart != 0 {
		t.Fatalf("err %v cause %v", err, r.Cause)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := pool.Stats(); st.Rejected != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPoolWaitTimeoutAndCancel(t *testing.T) {
	addr, release, arrived, _ := blockingServer(t)
	defer close(release)
	pool, err := NewPool(addr, 1, Options{Timeout: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	p := mustPrepare(t, Request{URL: "http://" + addr + "/", Timeout: 10 * time.Second})
	go func() {
		var r Result
		pool.Do(context.Background(), p, &r)
	}()
	<-arrived

	// The pool's default timeout applies to the wait for a connection.
	short := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	var r Result
	t0 := time.Now()
	err = pool.Do(context.Background(), short, &r)
	if !errors.Is(err, ErrTimeout) || r.Cause != cause.ClientTimeout || time.Since(t0) < 150*time.Millisecond {
		t.Fatalf("err %v cause %v after %v", err, r.Cause, time.Since(t0))
	}
	// A cancelled context ends the wait.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if err := pool.Do(ctx, p, &r); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	// Close wakes a waiter.
	errc := make(chan error)
	go func() {
		var r Result
		errc <- pool.Do(context.Background(), p, &r)
	}()
	time.Sleep(50 * time.Millisecond)
	pool.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("err %v", err)
	}
}

func TestPoolManyGoroutines(t *testing.T) {
	addr := helloServer(t)
	pool, err := NewPool(addr, 4, Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p := mustPrepare(t, Request{URL: "http://" + addr + "/", SeqHeader: "X-Seq"})
	var wg sync.WaitGroup
	var failed atomic.Int64
	for g := range 16 {
		wg.Go(func() {
			r := Result{Body: make([]byte, 0, 16)}
			for i := range 200 {
				r.Seq = uint64(g*1000 + i)
				if err := pool.Do(ctxT(t), p, &r); err != nil || string(r.Body) != "hello\n" {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	pool.Close()
	st := pool.Stats()
	if failed.Load() != 0 || st.Dials > 4 || st.Dials+st.Reuses != 3200 {
		t.Fatalf("%d failed; stats %+v", failed.Load(), st)
	}
	if st.Closes != st.Dials {
		t.Fatalf("Close must close every connection: %+v", st)
	}
	var r Result
	if err := pool.Do(ctxT(t), p, &r); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestNewPoolRefuses(t *testing.T) {
	if _, err := NewPool("192.0.2.1:80", 1, Options{}); !errors.Is(err, ErrNotLoopback) {
		t.Fatalf("non-loopback: %v", err)
	}
	if _, err := NewPool("127.0.0.1:80", 0, Options{}); err == nil {
		t.Fatal("zero connections accepted")
	}
	if _, err := NewConn("192.0.2.1:80", Options{}); !errors.Is(err, ErrNotLoopback) {
		t.Fatalf("non-loopback conn: %v", err)
	}
	if _, err := NewConn("192.0.2.1:80", Options{AllowRemote: true}); err != nil {
		t.Fatalf("AllowRemote: %v", err)
	}
}

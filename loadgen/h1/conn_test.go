package h1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
)

func TestKeepAliveReuse(t *testing.T) {
	var newConns atomic.Int64
	addr := httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.URL.Query().Get("q"))
	}), func(s *http.Server) {
		s.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				newConns.Add(1)
			}
		}
	})
	c := mustConn(t, addr, Options{Timeout: 5 * time.Second})
	p := mustPrepare(t, Request{URL: "http://" + addr + "/x?q=1"})
	r := Result{Body: make([]byte, 0, 64)}
	for i := range 10 {
		if err := c.Do(ctxT(t), p, &r); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if r.Status != 200 || r.Cause != cause.OK || string(r.Body) != "hello 1" || r.BodyBytes != 7 {
			t.Fatalf("request %d: status %d cause %v body %q (%d bytes)", i, r.Status, r.Cause, r.Body, r.BodyBytes)
		}
		if r.Reused != (i > 0) || r.Dialed != (i == 0) {
			t.Fatalf("request %d: reused=%v dialed=%v", i, r.Reused, r.Dialed)
		}
		if !(r.Start <= r.WriteStart && r.WriteStart < r.FirstByte && r.FirstByte <= r.End) {
			t.Fatalf("request %d: timestamps out of order: %v %v %v %v", i, r.Start, r.WriteStart, r.FirstByte, r.End)
		}
		if r.BytesRead <= r.BodyBytes {
			t.Fatalf("BytesRead %d should include the head", r.BytesRead)
		}
	}
	st := c.Stats()
	if st.Dials != 1 || st.Reuses != 9 || st.Closes != 0 || newConns.Load() != 1 {
		t.Fatalf("stats %+v, server saw %d connections", st, newConns.Load())
	}
}

func TestKeepAliveOff(t *testing.T) {
	var closeHdr atomic.Int64
	addr := httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Close {
			closeHdr.Add(1)
		}
		io.WriteString(w, "hi")
	}))
	c := mustConn(t, addr, Options{DisableKeepAlive: true, Timeout: 5 * time.Second})
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	var r Result
	for i := range 5 {
		if err := c.Do(ctxT(t), p, &r); err != nil || r.Status != 200 || r.Reused || !r.Dialed {
			t.Fatalf("request %d: %v status %d reused %v", i, err, r.Status, r.Reused)
		}
	}
	if st := c.Stats(); st.Dials != 5 || st.Closes != 5 || st.Reuses != 0 || closeHdr.Load() != 5 {
		t.Fatalf("stats %+v, Connection: close seen %d times", st, closeHdr.Load())
	}
}

func TestBodies(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 10000) // 160 000 bytes: many buffer fills
	addr := httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cl":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			io.WriteString(w, big)
		case "/chunked":
			f := w.(http.Flusher)
			for i := 0; i < len(big); i += 7000 {
				io.WriteString(w, big[i:min(i+7000, len(big))])
				f.Flush()
			}
		case "/empty":
			w.WriteHeader(204)
		}
	}))
	c := mustConn(t, addr, Options{Timeout: 5 * time.Second, ReadBufferSize: 4096})
	for _, path := range []string{"/cl", "/chunked", "/empty", "/cl", "/chunked"} {
		p := mustPrepare(t, Request{URL: "http://" + addr + path})
		r := Result{Body: make([]byte, 0, 100)}
		if err := c.Do(ctxT(t), p, &r); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		want := int64(len(big))
		if path == "/empty" {
			want = 0
		}
		if r.BodyBytes != want || string(r.Body) != big[:min(int(want), 100)] {
			t.Fatalf("%s: body %d bytes, kept %q", path, r.BodyBytes, r.Body)
		}
	}
	if st := c.Stats(); st.Dials != 1 {
		t.Fatalf("all bodies should share one connection: %+v", st)
	}
}

func TestRawFraming(t *testing.T) {
	cases := []struct {
		name, resp string
		status     int
		body       string
		reusable   bool
		method     string
	}{
		{"chunked with extensions and trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1 \r\n!\r\n0\r\nX-Trailer: v\r\n\r\n", 200, "hello!", true, ""},
		{"bare LF line endings", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", 200, "ok", true, ""},
		{"interim 100 then final", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx", 201, "x", true, ""},
		{"HEAD ignores Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 200, "", true, "HEAD"},
		{"304 has no body", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 304, "", true, ""},
		{"HTTP/1.0 closes by default", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, "ok", false, ""},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", 200, "ok", true, ""},
		{"Connection: close", "HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 2\r\n\r\nok", 200, "ok", false, ""},
		{"identical Content-Length list", "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok", 200, "ok", true, ""},
		{"chunked wins over Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 200, "ok", false, ""},
		{"folded unrelated header", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok", 200, "ok", true, ""},
		{"no reason phrase", "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", 404, "", true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The server answers twice on the same connection if it is
			// reusable, so the second request checks that the parser
			// stopped exactly at the end of the first response.
			addr := rawServer(t, scripted(tc.resp, tc.resp))
			c := mustConn(t, addr, Options{Timeout: 5 * time.Second})
			p := mustPrepare(t, Request{Method: tc.method, URL: "http://" + addr + "/"})
			for i := range 2 {
				r := Result{Body: make([]byte, 0, 64)}
				if err := c.Do(ctxT(t), p, &r); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if r.Status != tc.status || string(r.Body) != tc.body {
					t.Fatalf("request %d: status %d body %q", i, r.Status, r.Body)
				}
				if r.Reused != (i == 1 && tc.reusable) {
					t.Fatalf("request %d: reused %v, want %v", i, r.Reused, i == 1 && tc.reusable)
				}
			}
		})
	}
}

func TestBodyUntilClose(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		var buf []byte
		readRequest(c, &buf)
		io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\nstreamed until ")
		time.Sleep(20 * time.Millisecond)
		io.WriteString(c, "the end")
	})
	c := mustConn(t, addr, Options{Timeout: 5 * time.Second})
	r := Result{Body: make([]byte, 0, 64)}
	if err := c.Do(ctxT(t), mustPrepare(t, Request{URL: "http://" + addr + "/"}), &r); err != nil {
		t.Fatal(err)
	}
	if string(r.Body) != "streamed until the end" || r.Status != 200 {
		t.Fatalf("status %d body %q", r.Status, r.Body)
	}
	if st := c.Stats(); st.Closes != 1 || st.PeerCloses != 1 {
		t.Fatalf("a body framed by close ends the connection: %+v", st)
	}
}

func TestServerConnectionClose(t *testing.T) {
	var n atomic.Int64
	addr := httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, "ok")
	}))
	c := mustConn(t, addr, Options{Timeout: 5 * time.Second})
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	var r Result
	for i := range 6 {
		if err := c.Do(ctxT(t), p, &r); err != nil || r.Status != 200 {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if st := c.Stats(); st.Dials != 3 || st.PeerCloses != 3 || st.ErrorCloses != 0 {
		t.Fatalf("every second answer says close: %+v", st)
	}
}

func TestResets(t *testing.T) {
	cases := map[string]func(c net.Conn){
		"close before answering": func(c net.Conn) {
			var buf []byte
			readRequest(c, &buf)
		},
		"close mid-head": func(c net.Conn) {
			var buf []byte
			readRequest(c, &buf)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Len")
		},
		"close mid-body": func(c net.Conn) {
			var buf []byte
			readRequest(c, &buf)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly some")
		},
		"close mid-chunk": func(c net.Conn) {
			var buf []byte
			readRequest(c, &buf)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc")
		},
		"RST": func(c net.Conn) {
			var buf []byte
			readRequest(c, &buf)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nx")
			c.(*net.TCPConn).SetLinger(0)
		},
	}
	for name, handle := range cases {
		t.Run(name, func(t *testing.T) {
			addr := rawServer(t, handle)
			c := mustConn(t, addr, Options{Timeout: 5 * time.Second})
			var r Result
			err := c.Do(ctxT(t), mustPrepare(t, Request{URL: "http://" + addr + "/"}), &r)
			if !errors.Is(err, ErrReset) || r.Cause != cause.Reset || r.Err != err {
				t.Fatalf("err %v cause %v", err, r.Cause)
			}
			if st := c.Stats(); st.ErrorCloses != 1 || st.Retries != 0 {
				t.Fatalf("a reset must close the connection and not be retried: %+v", st)
			}
		})
	}
}

// A reset on a reused connection while the request is in flight is reported,
// not hidden by a retry.
func TestResetOnReusedConnIsReported(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		var buf []byte
		readRequest(c, &buf)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		readRequest(c, &buf) // the second request arrives, then the server dies
	})
	c := mustConn(t, addr, Options{Timeout: 5 * time.Second})
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	var r Result
	if err := c.Do(ctxT(t), p, &r); err != nil {
		t.Fatal(err)
	}
	err := c.Do(ctxT(t), p, &r)
	if r.Cause != cause.Reset || !r.Reused {
		t.Fatalf("err %v cause %v reused %v", err, r.Cause, r.Reused)
	}
}

// A server closing an idle keep-alive connection is not the next request's
// failure: the client notices and reconnects.
func TestIdleCloseReconnects(t *testing.T) {
	addr := httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		func(s *http.Server) { s.IdleTimeout = 30 * time.Millisecond })
	c := mustConn(t, addr, Options{Timeout: 5 * time.Second})
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	var r Result
	for i := range 3 {
		if err := c.Do(ctxT(t), p, &r); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		time.Sleep(150 * time.Millisecond) // well past the server's idle timeout
	}
	if st := c.Stats(); st.Dials != 3 || st.PeerCloses != 2 || st.ErrorCloses != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// With the idle probe off, the dead connection is found at write time (the
// kernel already has the server's RST) and the request is re-sent on a new
// connection: none of it had been sent.
func TestDeadConnRetriedAtWrite(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		var buf []byte
		readRequest(c, &buf)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		c.(*net.TCPConn).SetLinger(0) // close with RST once the handler returns
	})
	c := mustConn(t, addr, Options{Timeout: 5 * time.Second, IdleCheck: -1})
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	var r Result
	if err := c.Do(ctxT(t), p, &r); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if err := c.Do(ctxT(t), p, &r); err != nil {
		t.Fatalf("second request: %v", err)
	}
	if st := c.Stats(); st.Retries != 1 || st.Dials != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTimeoutNeverAnswers(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) {
		var buf []byte
		for readRequest(c, &buf) != nil { // never answers; returns when the client hangs up
		}
	})
	const timeout = 200 * time.Millisecond
	for _, how := range []string{"option", "request", "context"} {
		t.Run(how, func(t *testing.T) {
			opts := Options{}
			req := Request{URL: "http://" + addr + "/"}
			ctx := context.Background()
			switch how {
			case "option":
				opts.Timeout = timeout
			case "request":
				opts.Timeout = time.Hour
				req.Timeout = timeout
			case "context":
				var cancel func()
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			c := mustConn(t, addr, opts)
			var r Result
			t0 := time.Now()
			err := c.Do(ctx, mustPrepare(t, req), &r)
			el := time.Since(t0)
			if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || r.Cause != cause.ClientTimeout {
				t.Fatalf("err %v cause %v", err, r.Cause)
			}
			// A context's deadline runs from its creation, before the
			// dial: Do may end that much under the timeout after t0.
			lo := timeout
			if d, ok := ctx.Deadline(); ok {
				lo = min(lo, d.Sub(t0))
			}
			if el < lo || el > timeout+time.Second {
				t.Fatalf("timed out after %v, want about %v (at least %v)", el, timeout, lo)
			}
			// Never before the deadline: the timeout from Start, or the
			// context's deadline, which was set before Do began (on a
			// loop, a channel hand-off before: tens of µs).
			want := timeout
			if d, ok := ctx.Deadline(); ok {
				want = min(want, d.Sub(connOf(c).base.Add(r.Start)))
			}
			if got := r.End - r.Start; got < want {
				t.Fatalf("result spans %v, its deadline was %v after its start", got, want)
			}
			if st := c.Stats(); st.ErrorCloses != 1 {
				t.Fatalf("a timed-out connection must be closed: %+v", st)
			}
		})
	}
}

// A Conn remembers the last context's deadline (asking walks the context's
// parents); a request under another context gets that context's deadline,
// earlier or later, never the remembered one.
func TestContextDeadlinePerContext(t *testing.T) {
	var n atomic.Int64
	addr := rawServer(t, func(c net.Conn) {
		var buf []byte
		for readRequest(c, &buf) != nil {
			if n.Add(1) == 3 {
				continue // the third request is never answered
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	c := mustConn(t, addr, Options{})
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	var r Result
	// A short deadline first; the next context's is later: the request
	// must not inherit the passed one.
	short, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if err := c.Do(short, p, &r); err != nil {
		t.Fatal(err)
	}
	<-short.Done()
	if err := c.Do(ctxT(t), p, &r); err != nil {
		t.Fatalf("under a later deadline: %v", err)
	}
	// Then an earlier one than the last: it must fire at its time.
	const timeout = 200 * time.Millisecond
	ctx, cancel2 := context.WithTimeout(context.Background(), timeout)
	defer cancel2()
	t0 := time.Now()
	err := c.Do(ctx, p, &r)
	if el := time.Since(t0); !errors.Is(err, ErrTimeout) || el < timeout-time.Millisecond || el > timeout+time.Second {
		t.Fatalf("unanswered request under a %v deadline: %v after %v", timeout, err, el)
	}
}

// DoAt takes the caller's clock reading as Start; End is when the read that
// completed the response returned, so a response read at once ends at its
// first byte (no clock read after parsing).
func TestDoAtStampsFromTheCallersReading(t *testing.T) {
	addr := helloServer(t)
	clock := event.NewClock()
	c, err := NewConn(addr, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	var r Result
	for i := range 20 {
		start := clock.Now()
		if err := c.DoAt(ctxT(t), p, &r, start); err != nil {
			t.Fatal(err)
		}
		after := clock.Now()
		if r.Start != start || r.FirstByte < start || r.End < r.FirstByte || r.End > after {
			t.Fatalf("request %d: start %v first byte %v end %v, given %v, clock after %v", i, r.Start, r.FirstByte, r.End, start, after)
		}
		// The server writes each response at once: one read.
		if r.End != r.FirstByte {
			t.Fatalf("request %d: a %d-byte response read at once ends at %v, its first byte at %v", i, r.BytesRead, r.End, r.FirstByte)
		}
	}
}

// The socket deadline is armed lazily (early); a request must never time out
// before its own deadline, even when the connection's armed deadline is an
// older request's.
func TestLazyDeadlineNeverEarly(t *testing.T) {
	var n atomic.Int64
	addr := rawServer(t, func(c net.Conn) {
		var buf []byte
		for readRequest(c, &buf) != nil {
			if n.Add(1) == 6 {
				time.Sleep(250 * time.Millisecond) // slower than what is left of the first request's deadline
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	c := mustConn(t, addr, Options{Timeout: 400 * time.Millisecond})
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	var r Result
	for range 5 {
		if err := c.Do(ctxT(t), p, &r); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The armed deadline is now the first request's: about 150ms from now.
	if err := c.Do(ctxT(t), p, &r); err != nil {
		t.Fatalf("the slow request is within its own timeout: %v", err)
	}
	// And requests spanning several timeouts keep working.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if err := c.Do(ctxT(t), p, &r); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := c.Stats(); st.Dials != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCancel(t *testing.T) {
	var mu sync.Mutex
	slow := true
	addr := rawServer(t, func(c net.Conn) {
		var buf []byte
		for readRequest(c, &buf) != nil {
			mu.Lock()
			s := slow
			mu.Unlock()
			if s {
				continue // never answers; the next read ends when the client hangs up
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	c := mustConn(t, addr, Options{})
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	var r Result
	t0 := time.Now()
	err := c.Do(ctx, p, &r)
	if !errors.Is(err, context.Canceled) || r.Cause != cause.TransportError || time.Since(t0) > 2*time.Second {
		t.Fatalf("err %v cause %v after %v", err, r.Cause, time.Since(t0))
	}
	// The cancelled context stays cancelled.
	if err := c.Do(ctx, p, &r); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	// A new context works on the same Conn.
	mu.Lock()
	slow = false
	mu.Unlock()
	if err := c.Do(context.Background(), p, &r); err != nil || r.Status != 200 {
		t.Fatalf("after cancel: %v", err)
	}
	// A context cancelled while the connection is idle does not break the
	// next request under another context.
	ctx2, cancel2 := context.WithCancel(context.Background())
	if err := c.Do(ctx2, p, &r); err != nil {
		t.Fatal(err)
	}
	cancel2()
	time.Sleep(10 * time.Millisecond)
	if err := c.Do(ctxT(t), p, &r); err != nil {
		t.Fatalf("idle cancel leaked into the next request: %v", err)
	}
}

func TestConnectRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := mustConn(t, addr, Options{Timeout: 2 * time.Second})
	var r Result
	err = c.Do(ctxT(t), mustPrepare(t, Request{URL: "http://" + addr + "/"}), &r)
	if !errors.Is(err, ErrConnect) || r.Cause != cause.ConnectFailure || r.WriteStart != 0 {
		t.Fatalf("err %v cause %v", err, r.Cause)
	}
	if st := c.Stats(); st.DialErrors != 1 || st.Dials != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMalformed(t *testing.T) {
	cases := map[string]string{
		"not http":            "SSH-2.0-OpenSSH\r\n\r\n",
		"empty status line":   "\r\n\r\n",
		"bad version":         "HTTP/2.0 200 OK\r\n\r\n",
		"short status":        "HTTP/1.1 20\r\n\r\n",
		"letters in status":   "HTTP/1.1 2x0 OK\r\n\r\n",
		"status below 100":    "HTTP/1.1 099 What\r\n\r\n",
		"no colon":            "HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\nok",
		"space before colon":  "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
		"bad content-length":  "HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
		"conflicting lengths": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
		"huge content-length": "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
		"bad chunk size":      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"chunk overflow":      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
		"chunk without CRLF":  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n",
		"folded framing":      "HTTP/1.1 200 OK\r\nContent-Length:\r\n 2\r\n\r\nok",
		"fold first":          "HTTP/1.1 200 OK\r\n X: y\r\n\r\n",
		"switching protocols": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
		"endless 1xx":         strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 20),
		"chunk line too long": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + strings.Repeat("e", 5000) + "\r\nx\r\n0\r\n\r\n",
	}
	for name, resp := range cases {
		t.Run(name, func(t *testing.T) {
			addr := rawServer(t, scripted(resp))
			c := mustConn(t, addr, Options{Timeout: 2 * time.Second, ReadBufferSize: 4096})
			var r Result
			err := c.Do(ctxT(t), mustPrepare(t, Request{URL: "http://" + addr + "/"}), &r)
			if !errors.Is(err, ErrMalformed) || r.Cause != cause.TransportError {
				t.Fatalf("err %v cause %v", err, r.Cause)
			}
			if st := c.Stats(); st.ErrorCloses != 1 {
				t.Fatalf("a malformed answer must close the connection: %+v", st)
			}
		})
	}
}

func TestMaxHeaderBytes(t *testing.T) {
	var b strings.Builder
	b.WriteString("HTTP/1.1 200 OK\r\n")
	for i := range 200 {
		fmt.Fprintf(&b, "X-H%d: %s\r\n", i, strings.Repeat("v", 50))
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	addr := rawServer(t, scripted(b.String()))
	c := mustConn(t, addr, Options{Timeout: 2 * time.Second, MaxHeaderBytes: 4096})
	var r Result
	if err := c.Do(ctxT(t), mustPrepare(t, Request{URL: "http://" + addr + "/"}), &r); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err %v", err)
	}
}

// One response header line longer than the read buffer (16 KiB by default)
// is valid up to the head limit, as net/http and curl take it: the buffer
// grows for it, and the connection goes on carrying requests. Only a head
// over MaxHeaderBytes fails, with an error that names the limit.
func TestLongHeaderLine(t *testing.T) {
	// withLine is a response whose one X-Big header line is n bytes long,
	// without its CRLF.
	withLine := func(n int) string {
		return "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", n-len("X-Big: ")) + "\r\nContent-Length: 2\r\n\r\nok"
	}
	plain := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	addr := rawServer(t, scripted(withLine(16<<10), withLine(200<<10), plain, withLine(16<<10-1)))
	c := mustConn(t, addr, Options{Timeout: 5 * time.Second})
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	for i, n := range []int{16 << 10, 200 << 10, 0, 16<<10 - 1} {
		r := Result{Body: make([]byte, 0, 8)}
		if err := c.Do(ctxT(t), p, &r); err != nil || r.Status != 200 || r.Cause != cause.OK || string(r.Body) != "ok" {
			t.Fatalf("response %d (a %d-byte header line): err %v, status %d, cause %v, body %q", i, n, err, r.Status, r.Cause, r.Body)
		}
	}
	if st := c.Stats(); st.Dials != 1 || st.Closes != 0 {
		t.Fatalf("stats %+v: the long lines should not cost the connection", st)
	}

	for _, tc := range []struct {
		max, line int
		says      string
	}{
		{0, 1<<20 + 1, "limit of 1 MiB (MaxHeaderBytes)"},
		{64 << 10, 64<<10 + 1, "limit of 65536 bytes (MaxHeaderBytes)"},
		{64 << 10, 40 << 10, ""}, // under the limit, over the buffer: fine
	} {
		addr := rawServer(t, scripted(withLine(tc.line)))
		c := mustConn(t, addr, Options{Timeout: 5 * time.Second, MaxHeaderBytes: tc.max})
		var r Result
		err := c.Do(ctxT(t), mustPrepare(t, Request{URL: "http://" + addr + "/"}), &r)
		if tc.says == "" {
			if err != nil || r.Status != 200 {
				t.Fatalf("a %d-byte line under a %d-byte limit: err %v, status %d", tc.line, tc.max, err, r.Status)
			}
			continue
		}
		if !errors.Is(err, ErrMalformed) || r.Cause != cause.TransportError || !strings.Contains(err.Error(), tc.says) {
			t.Fatalf("a %d-byte line with MaxHeaderBytes %d: err %v, cause %v; want an error saying %q", tc.line, tc.max, err, r.Cause, tc.says)
		}
	}
}

func TestCauseHeader(t *testing.T) {
	addr := httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upstream-timeout":
			w.Header().Set(cause.Header, "upstream_timeout")
			w.WriteHeader(504)
		case "/plain-502":
			w.WriteHeader(502)
		case "/unknown":
			w.Header().Set(cause.Header, "martian")
			w.WriteHeader(503)
		case "/ok":
			w.Header().Set(cause.Header, "fallback")
		}
	}))
	c := mustConn(t, addr, Options{Timeout: 2 * time.Second})
	for path, want := range map[string]struct {
		c   cause.Cause
		hdr string
	}{
		"/upstream-timeout": {cause.UpstreamTimeout, "upstream_timeout"},
		"/plain-502":        {cause.BadGateway, ""},
		"/unknown":          {cause.ServiceUnavailable, "martian"},
		"/ok":               {cause.Fallback, "fallback"},
	} {
		var r Result
		if err := c.Do(ctxT(t), mustPrepare(t, Request{URL: "http://" + addr + path}), &r); err != nil {
			t.Fatal(err)
		}
		if r.Cause != want.c || r.CauseHeader() != want.hdr {
			t.Fatalf("%s: cause %v header %q", path, r.Cause, r.CauseHeader())
		}
	}
}

func TestSeqHeaderAndBody(t *testing.T) {
	addr := httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s %s", r.Method, r.Header.Get("X-Seq"), r.Header.Get("X-Custom"), body)
	}))
	p := mustPrepare(t, Request{Method: "POST", URL: "http://" + addr + "/", SeqHeader: "X-Seq",
		Header: [][2]string{{"X-Custom", "v"}}, Body: []byte("payload")})
	for _, ka := range []bool{false, true} {
		c := mustConn(t, addr, Options{Timeout: 2 * time.Second, DisableKeepAlive: ka})
		for _, seq := range []uint64{0, 42, 1<<64 - 1} {
			r := Result{Seq: seq, Body: make([]byte, 0, 128)}
			if err := c.Do(ctxT(t), p, &r); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("POST %020d v payload", seq)
			if string(r.Body) != want || r.Seq != seq {
				t.Fatalf("got %q, want %q", r.Body, want)
			}
		}
	}
}

func TestTargetMismatch(t *testing.T) {
	addr := helloServer(t)
	c := mustConn(t, addr, Options{})
	var r Result
	err := c.Do(ctxT(t), mustPrepare(t, Request{URL: "http://127.0.0.1:1/"}), &r)
	if !errors.Is(err, ErrTargetMismatch) || r.Cause != cause.TransportError {
		t.Fatalf("err %v", err)
	}
}

// A body larger than the socket buffers: the first write fills the send
// buffer and the rest goes out through the ordinary (waiting) write path.
func TestLargeRequestBody(t *testing.T) {
	addr := httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	}))
	body := make([]byte, 8<<20)
	p := mustPrepare(t, Request{Method: "POST", URL: "http://" + addr + "/", Body: body, SeqHeader: "X-Seq"})
	c := mustConn(t, addr, Options{Timeout: 10 * time.Second})
	for i := range 3 {
		r := Result{Body: make([]byte, 0, 16), Seq: uint64(i)}
		if err := c.Do(ctxT(t), p, &r); err != nil {
			t.Fatal(err)
		}
		if string(r.Body) != strconv.Itoa(len(body)) {
			t.Fatalf("server read %s bytes", r.Body)
		}
	}
}

// A response dribbled out a few bytes at a time, across many reads.
func TestSlowDrip(t *testing.T) {
	resp := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Cascade-Cause: fallback\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
	addr := rawServer(t, func(c net.Conn) {
		var buf []byte
		for readRequest(c, &buf) != nil {
			for i := 0; i < len(resp); i += 3 {
				c.Write([]byte(resp[i:min(i+3, len(resp))]))
				time.Sleep(time.Millisecond)
			}
		}
	})
	c := mustConn(t, addr, Options{Timeout: 5 * time.Second})
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	for i := range 2 {
		r := Result{Body: make([]byte, 0, 16)}
		if err := c.Do(ctxT(t), p, &r); err != nil {
			t.Fatal(err)
		}
		if string(r.Body) != "abcde" || r.Cause != cause.Fallback || r.BytesRead != int64(len(resp)) || r.Reused != (i == 1) {
			t.Fatalf("body %q cause %v read %d", r.Body, r.Cause, r.BytesRead)
		}
		if r.End-r.FirstByte < 20*time.Millisecond {
			t.Fatalf("first byte %v, end %v: the first byte is stamped too late", r.FirstByte, r.End)
		}
	}
}

// The net.Conn path (used off Linux) keeps the same behaviour: reuse,
// bodies, timeouts and resets.
func TestNetConnPath(t *testing.T) {
	addr := httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			time.Sleep(300 * time.Millisecond)
		case "/reset":
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
			return
		}
		io.WriteString(w, "ok")
	}))
	tc := mustConn(t, addr, Options{Timeout: 100 * time.Millisecond})
	c := connOf(tc)
	c.noRawIO = true
	r := Result{Body: make([]byte, 0, 8)}
	for i := range 3 {
		if err := c.Do(ctxT(t), mustPrepare(t, Request{URL: "http://" + addr + "/"}), &r); err != nil || string(r.Body) != "ok" {
			t.Fatalf("request %d: %v %q", i, err, r.Body)
		}
	}
	if err := c.Do(ctxT(t), mustPrepare(t, Request{URL: "http://" + addr + "/slow"}), &r); r.Cause != cause.ClientTimeout {
		t.Fatalf("slow: %v", err)
	}
	if err := c.Do(ctxT(t), mustPrepare(t, Request{URL: "http://" + addr + "/reset"}), &r); r.Cause != cause.Reset {
		t.Fatalf("reset: %v %v", err, r.Cause)
	}
	if st := c.Stats(); st.Dials != 2 || st.Reuses != 3 || c.rc != nil {
		t.Fatalf("stats %+v", st)
	}
}

// With keep-alive off the client asks for "Connection: close", but a server
// may answer without the header and close afterwards (the header is only a
// SHOULD). The client must not reuse that connection: the next request would
// meet the server's close as a reset.
func TestKeepAliveOffServerClosesSilently(t *testing.T) {
	// The server answers without "Connection: close", then closes, having
	// said nothing.
	addr := rawServer(t, scripted("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"))
	// The idle check would notice the close before reuse after a pause; back
	// to back (or with the check far away, as here) nothing else saves us.
	c := mustConn(t, addr, Options{DisableKeepAlive: true, Timeout: 5 * time.Second, IdleCheck: time.Hour})
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	var r Result
	for i := range 4 {
		if err := c.Do(ctxT(t), p, &r); err != nil || r.Status != 200 || r.Reused {
			t.Fatalf("request %d: err %v, status %d, reused %v", i, err, r.Status, r.Reused)
		}
		time.Sleep(20 * time.Millisecond) // the server's FIN has arrived
	}
	if st := c.Stats(); st.Dials != 4 {
		t.Fatalf("stats %+v: want a new connection per request", st)
	}
}

// A response that ends exactly at the end of the read buffer leaves no
// room for the next read; the next request on the connection must start
// from an empty buffer rather than read into zero bytes.
func TestResponseFillsBufferExactly(t *testing.T) {
	const size = 4096
	head := "HTTP/1.1 200 OK\r\nContent-Length: "
	body := strings.Repeat("x", size-len(head)-len("4053\r\n\r\n"))
	resp := head + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	if len(resp) != size {
		t.Fatalf("response is %d bytes, want %d", len(resp), size)
	}
	addr := rawServer(t, scripted(resp, resp, resp))
	c := mustConn(t, addr, Options{Timeout: 5 * time.Second, ReadBufferSize: size})
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	var r Result
	for i := range 3 {
		if err := c.Do(ctxT(t), p, &r); err != nil || r.Status != 200 {
			t.Fatalf("request %d: err %v, status %d", i, err, r.Status)
		}
		time.Sleep(10 * time.Millisecond) // let each response arrive whole, in one read
	}
	if st := c.Stats(); st.Dials != 1 {
		t.Fatalf("stats %+v: want one kept-alive connection", st)
	}
}

// TestRepeatedHeads: a head byte for byte the last one is taken from the
// Conn's memo (sameHead); every other head is parsed. Each response here
// must read as its own bytes say, whichever way it went.
func TestRepeatedHeads(t *testing.T) {
	const a = "HTTP/1.1 200 OK\r\nX-Cascade-Cause: fallback\r\nContent-Length: 2\r\n\r\n"
	const b = "HTTP/1.1 200 OK\r\nX-Cascade-Cause: fallback\r\nContent-Length: 3\r\n\r\n"
	const c503 = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n"
	type step struct {
		write  []string // written with a pause between, so the client may read them apart
		status int
		cause  string
		body   string
		keep   bool
	}
	steps := []step{
		{write: []string{a + "ab"}, status: 200, cause: "fallback", body: "ab", keep: true},
		{write: []string{a + "cd"}, status: 200, cause: "fallback", body: "cd", keep: true}, // memo
		{write: []string{b + "efg"}, status: 200, cause: "fallback", body: "efg", keep: true},
		{write: []string{b[:20], b[20:] + "hij"}, status: 200, cause: "fallback", body: "hij", keep: true}, // split head
		{write: []string{b + "klm"}, status: 200, cause: "fallback", body: "klm", keep: true},
		{write: []string{c503 + "no"}, status: 503, body: "no", keep: true},
		{write: []string{"HTTP/1.1 100 Continue\r\n\r\n" + c503 + "np"}, status: 503, body: "np", keep: true},
		{write: []string{c503[:len(c503)-2] + "Connection: close\r\n\r\nnq"}, status: 503, body: "nq"},
	}
	addr := rawServer(t, func(nc net.Conn) {
		var buf []byte
		for _, s := range steps {
			if readRequest(nc, &buf) == nil {
				return
			}
			for i, w := range s.write {
				if i > 0 {
					time.Sleep(20 * time.Millisecond)
				}
				if _, err := nc.Write([]byte(w)); err != nil {
					return
				}
			}
		}
	})
	c := mustConn(t, addr, Options{Timeout: 2 * time.Second})
	p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
	for i, s := range steps {
		r := Result{Body: make([]byte, 0, 16)}
		if err := c.Do(ctxT(t), p, &r); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if r.Status != s.status || r.CauseHeader() != s.cause || string(r.Body) != s.body {
			t.Fatalf("step %d: status %d cause %q body %q, want %d %q %q", i, r.Status, r.CauseHeader(), r.Body, s.status, s.cause, s.body)
		}
		if cc, ok := c.(*Conn); ok && i == 1 && string(cc.memo) != a {
			t.Fatalf("step %d: memo %q, want the head just read twice", i, cc.memo)
		}
	}
	if st := c.Stats(); st.Dials != 1 || st.Closes != 1 {
		t.Fatalf("stats %+v: one connection, closed by the last answer", st)
	}
}

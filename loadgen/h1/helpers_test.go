package h1

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/tcptest"
)

// rawServer serves every accepted connection with handle, on loopback.
func rawServer(t testing.TB, handle func(c net.Conn)) string { return tcptest.Serve(t, handle) }

// readRequest reads one request head (and no body) from c, returning it,
// or nil at EOF or error. Requests in these tests have no body unless the
// test reads it itself.
func readRequest(c net.Conn, buf *[]byte) []byte {
	tmp := make([]byte, 4096)
	for {
		if i := bytes.Index(*buf, []byte("\r\n\r\n")); i >= 0 {
			req := append([]byte(nil), (*buf)[:i+4]...)
			*buf = append((*buf)[:0], (*buf)[i+4:]...)
			return req
		}
		n, err := c.Read(tmp)
		if n == 0 && err != nil {
			return nil
		}
		*buf = append(*buf, tmp[:n]...)
	}
}

// scripted answers each request on a connection with the next response of
// the script; after the script it closes the connection.
func scripted(responses ...string) func(c net.Conn) {
	return func(c net.Conn) {
		var buf []byte
		for _, resp := range responses {
			if readRequest(c, &buf) == nil {
				return
			}
			if _, err := c.Write([]byte(resp)); err != nil {
				return
			}
		}
	}
}

// helloServer answers every request with a fixed response without
// allocating per request, so allocation counts and benchmarks measure the
// client alone. It understands only bodiless requests.
func helloServer(t testing.TB) string {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nDate: Sat, 21 Nov 2026 23:22:00 GMT\r\n\r\nhello\n")
	return rawServer(t, func(c net.Conn) {
		buf := make([]byte, 64<<10)
		have := 0
		for {
			n, err := c.Read(buf[have:])
			if n == 0 && err != nil {
				return
			}
			have += n
			start := 0
			for {
				i := bytes.Index(buf[start:have], []byte("\r\n\r\n"))
				if i < 0 {
					break
				}
				start += i + 4
				if _, err := c.Write(resp); err != nil {
					return
				}
			}
			have = copy(buf, buf[start:have])
		}
	})
}

// httpServer starts a net/http server on loopback, after configure (if
// any) has set up its http.Server.
func httpServer(t testing.TB, h http.Handler, configure ...func(*http.Server)) string {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	for _, f := range configure {
		f(s.Config)
	}
	s.Start()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

func mustPrepare(t testing.TB, req Request) *Prepared {
	t.Helper()
	p, err := Prepare(req)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testConn is what the Conn tests use of a connection: a Conn itself, or
// (under TestOnLoop) a Conn driven by a Loop's task.
type testConn interface {
	Do(ctx context.Context, p *Prepared, r *Result) error
	Stats() Stats
	Close() error
}

func mustConn(t testing.TB, addr string, opts Options) testConn {
	t.Helper()
	if onLoop(t) {
		return newLoopTestConn(t, addr, opts)
	}
	c, err := NewConn(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

package h1

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// The keep-alive fast path must not allocate: at 60k requests/s even one
// small allocation per request keeps the GC busy on a 2-core machine.
func TestZeroAllocKeepAlive(t *testing.T) {
	addr := helloServer(t)
	ctx, cancel := context.WithCancel(context.Background()) // a cancellable context exercises the watch path
	defer cancel()
	for _, tc := range []struct {
		name string
		req  Request
		opts Options
	}{
		{"plain", Request{}, Options{}},
		{"timeout+seq", Request{SeqHeader: "X-Seq"}, Options{Timeout: time.Second}},
		{"idle-probe", Request{}, Options{IdleCheck: time.Nanosecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.URL = "http://" + addr + "/"
			p := mustPrepare(t, tc.req)
			c := mustConn(t, addr, tc.opts)
			r := &Result{Body: make([]byte, 0, 16)}
			if err := c.Do(ctx, p, r); err != nil { // dial outside the measurement
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(1000, func() {
				r.Seq++
				if err := c.Do(ctx, p, r); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per request", allocs)
			}
		})
	}
	t.Run("pool", func(t *testing.T) {
		pool, err := NewPool(addr, 2, Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		p := mustPrepare(t, Request{URL: "http://" + addr + "/"})
		r := &Result{}
		for range 2 {
			pool.Do(ctx, p, r)
		}
		if allocs := testing.AllocsPerRun(1000, func() { pool.Do(ctx, p, r) }); allocs != 0 {
			t.Fatalf("%v allocations per request", allocs)
		}
	})
}

func BenchmarkConnKeepAlive(b *testing.B) {
	addr := helloServer(b)
	for _, tc := range []struct {
		name string
		req  Request
		opts Options
	}{
		{"plain", Request{}, Options{}},
		{"timeout", Request{}, Options{Timeout: time.Second}},
		{"timeout+seq", Request{SeqHeader: "X-Seq"}, Options{Timeout: time.Second}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tc.req.URL = "http://" + addr + "/"
			p := mustPrepare(b, tc.req)
			c := mustConn(b, addr, tc.opts)
			r := &Result{}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				r.Seq++
				if err := c.Do(ctx, p, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPoolParallel(b *testing.B) {
	addr := helloServer(b)
	pool, err := NewPool(addr, 8, Options{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	p := mustPrepare(b, Request{URL: "http://" + addr + "/"})
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		r := &Result{}
		for pb.Next() {
			if err := pool.Do(context.Background(), p, r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// The peer in the same run: net/http's client against the same server.
func BenchmarkNetHTTPClient(b *testing.B) {
	addr := helloServer(b)
	cl := &http.Client{Timeout: time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer cl.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := cl.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// BenchmarkParse measures the response parser alone, on an in-memory
// connection: each response the same as the last (its head from the memo,
// as at full speed against one upstream) and, "-parsed", with the memo
// cleared each time (every head parsed).
func BenchmarkParse(b *testing.B) {
	for _, tc := range []struct {
		name, resp string
		parse      bool
	}{
		{"hello", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nDate: Sat, 21 Nov 2026 23:22:00 GMT\r\n\r\nhello\n", false},
		{"hello-parsed", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nDate: Sat, 21 Nov 2026 23:22:00 GMT\r\n\r\nhello\n", true},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Cascade-Cause: upstream_error\r\n\r\n6\r\nhello\n\r\n0\r\n\r\n", false},
		{"chunked-parsed", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Cascade-Cause: upstream_error\r\n\r\n6\r\nhello\n\r\n0\r\n\r\n", true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := newConn("127.0.0.1:1", Options{}.withDefaults())
			m := &memConn{}
			c.nc, c.buf = m, make([]byte, defaultReadBuffer)
			p := &Prepared{}
			r := &Result{}
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.resp)))
			resp := []byte(tc.resp)
			for b.Loop() {
				m.data, m.chunks = resp, nil
				c.r, c.w = 0, 0
				c.resetResponse()
				if tc.parse {
					c.memo = c.memo[:0]
				}
				if _, err := c.readResponse(p, r, noDeadline); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// memConn is a net.Conn whose reads return data in the given chunk sizes,
// then EOF; writes are discarded.
type memConn struct {
	data   []byte
	chunks []int
}

func (m *memConn) Read(b []byte) (int, error) {
	if len(m.data) == 0 {
		return 0, io.EOF
	}
	n := len(m.data)
	if len(m.chunks) > 0 {
		n = max(1, min(n, m.chunks[0]))
		m.chunks = m.chunks[1:]
	}
	n = copy(b, m.data[:n])
	m.data = m.data[n:]
	return n, nil
}

func (m *memConn) Write(b []byte) (int, error)      { return len(b), nil }
func (m *memConn) Close() error                     { return nil }
func (m *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (m *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (m *memConn) SetDeadline(time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(time.Time) error { return nil }

package loadgen

import (
	"bytes"
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
)

// rawServer answers every HTTP/1.1 request with a fixed response and
// allocates nothing per request, so benchmarks count the client's
// allocations only. It counts connections.
type rawServer struct {
	addr  string
	conns atomic.Int64
	reqs  atomic.Int64
}

var rawResponse = []byte("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Type: text/plain\r\n\r\nhello\n")

func newRawServer(tb testing.TB) *rawServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	rs := &rawServer{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rs.conns.Add(1)
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				n := 0
				for {
					m, err := c.Read(buf[n:])
					if err != nil {
						return
					}
					n += m
					// Answer every complete request head (bodies are not sent
					// by these tests' GETs).
					for {
						i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						rs.reqs.Add(1)
						closeAfter := bytes.Contains(buf[:i], []byte("Connection: close"))
						if _, err := c.Write(rawResponse); err != nil || closeAfter {
							return
						}
						n = copy(buf, buf[i+4:n])
					}
				}
			}()
		}
	}()
	tb.Cleanup(func() { ln.Close() })
	return rs
}

func TestDefaultTransportIsH1ForPlainHTTP(t *testing.T) {
	base := Config{Requests: []Request{{Path: "/"}}, ClientTimeout: time.Second}
	for _, tc := range []struct {
		target string
		proto  Protocol
		nethttp,
		wantH1 bool
	}{
		{"http://127.0.0.1:1", ProtoAuto, false, true},
		{"http://127.0.0.1:1", ProtoHTTP1, false, true},
		{"http://127.0.0.1:1", ProtoAuto, true, false},
		{"http://127.0.0.1:1", ProtoH2C, false, false},
		{"https://127.0.0.1:1", ProtoAuto, false, false},
	} {
		cfg := base
		cfg.Target, cfg.Protocol, cfg.NetHTTP = tc.target, tc.proto, tc.nethttp
		tr, err := NewTransport(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, isH1 := tr.(*H1Transport); isH1 != tc.wantH1 {
			t.Errorf("%s %q nethttp=%v: %T", tc.target, tc.proto, tc.nethttp, tr)
		}
	}
}

// Each worker owns a connection: the connections follow the concurrency,
// they are reused with keep-alive and opened per request without.
func TestH1WorkerConnections(t *testing.T) {
	rs := newRawServer(t)
	s := load(t, Config{Target: "http://" + rs.addr, KeepAlive: true}, 200, 500*time.Millisecond)
	if c := causes(s); c[cause.OK] != 100 {
		t.Fatalf("causes %v", c)
	}
	if n := rs.conns.Load(); n > 30 { // one per concurrent worker; a busy machine needs a few more
		t.Fatalf("%d connections for 100 spaced requests with keep-alive", n)
	}
	rs = newRawServer(t)
	s = load(t, Config{Target: "http://" + rs.addr, KeepAlive: false}, 200, 250*time.Millisecond)
	if c := causes(s); c[cause.OK] != 50 || rs.conns.Load() != 50 {
		t.Fatalf("keep-alive off: causes %v, %d connections", c, rs.conns.Load())
	}
}

// A VU executor at full speed over h1: every VU keeps one connection.
func TestH1ClosedLoop(t *testing.T) {
	rs := newRawServer(t)
	clock := event.NewClock()
	samples, _ := runLoad(t, Config{Kind: VUs, Target: "http://" + rs.addr, Requests: []Request{{Path: "/"}},
		Stages: []Stage{{300 * time.Millisecond, 4, 4}}, KeepAlive: true}, clock)
	if len(samples) < 100 || rs.conns.Load() != 4 {
		t.Fatalf("%d requests over %d connections from 4 VUs", len(samples), rs.conns.Load())
	}
	for _, s := range samples {
		if s.Cause != cause.OK || s.Status != 200 {
			t.Fatalf("sample %+v", s)
		}
	}
}

// helloTransport is an h1 transport sending GET /hello to a raw server
// (the allocation tests and benchmarks).
func helloTransport(tb testing.TB) *H1Transport {
	tb.Helper()
	rs := newRawServer(tb)
	tr, err := NewH1Transport(Config{Target: "http://" + rs.addr, Requests: []Request{{Path: "/hello"}}, KeepAlive: true, ClientTimeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	return tr
}

// The steady state of one worker sending a prepared request allocates
// nothing.
func TestH1WorkerAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	tr := helloTransport(t)
	w := tr.Worker()
	defer closeTransport(w)
	ctx := context.Background()
	var s Sample
	w.RoundTrip(ctx, 0, &s) // dial
	if n := testing.AllocsPerRun(200, func() { w.RoundTrip(ctx, 0, &s) }); n != 0 || s.Cause != cause.OK {
		t.Fatalf("%.1f allocations per request, cause %s", n, s.Cause)
	}
}

func BenchmarkH1WorkerRoundTrip(b *testing.B) {
	tr := helloTransport(b)
	w := tr.Worker()
	defer closeTransport(w)
	ctx := context.Background()
	var s Sample
	b.ReportAllocs()
	for range b.N {
		w.RoundTrip(ctx, 0, &s)
	}
}

func BenchmarkH1WorkerTemplated(b *testing.B) {
	rs := newRawServer(b)
	tr, err := NewH1Transport(Config{Target: "http://" + rs.addr, Requests: []Request{{Path: "/items/{{seq}}?r={{rand_int 1 1000}}"}},
		KeepAlive: true, ClientTimeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	w := tr.Worker()
	defer closeTransport(w)
	ctx := context.Background()
	var s Sample
	b.ReportAllocs()
	for i := range b.N {
		s.Seq = uint64(i)
		w.RoundTrip(ctx, 0, &s)
	}
}

// The generator's closed loop over h1, recording into a no-op recorder:
// the per-request cost of the engine on top of the client.
func BenchmarkClosedLoop(b *testing.B) {
	rs := newRawServer(b)
	clock := event.NewClock()
	g, err := New(Config{Kind: VUs, Target: "http://" + rs.addr, Requests: []Request{{Path: "/"}},
		Stages: []Stage{{time.Hour, 1, 1}}, KeepAlive: true, MaxRequests: uint64(b.N)}, nopRecorder{}, clock, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	clock.Reset(time.Now())
	if err := g.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
}

type nopRecorder struct{}

func (nopRecorder) Record(int, *Sample) {}

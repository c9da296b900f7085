package tcpfault

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/tcptest"

	"github.com/cascadehq/cascade/internal/event"
)

// startProxy runs a proxy in front of upstream until the test ends.
func startProxy(t testing.TB, upstream string, mod ...func(*Config)) *Proxy {
	t.Helper()
	cfg := Config{Name: "test", Listen: "127.0.0.1:0", Upstream: upstream, Rand: rand.New(rand.NewPCG(1, 2))}
	for _, m := range mod {
		m(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := p.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		done := make(chan struct{})
		go func() { p.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("proxy did not stop within 10s")
		}
	})
	return p
}

func add(t *testing.T, p *Proxy, s ToxicSpec) {
	t.Helper()
	if _, err := p.AddToxic(s); err != nil {
		t.Fatal(err)
	}
}

// httpUpstream serves "hello\n" (or what h writes) on loopback.
func httpUpstream(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello\n") }
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// keepAliveClient reuses one connection, so requests are messages of one
// connection.
func keepAliveClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
}

func timedGet(t *testing.T, c *http.Client, addr string) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return time.Since(start), string(b)
}

// tcpUpstream accepts connections and runs serve on each, until the test
// ends; it returns the address and a counter of accepted connections.
func tcpUpstream(t testing.TB, serve func(net.Conn)) (string, func() int) {
	var n atomic.Int64
	addr := tcptest.Serve(t, func(c net.Conn) { n.Add(1); serve(c) })
	return addr, func() int { return int(n.Load()) }
}

func echo(c net.Conn) { io.Copy(c, c) }

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// readAllTimeout reads until EOF or error, with an overall deadline.
func readAllTimeout(c net.Conn, d time.Duration) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	return b, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func memSink() (*event.Memory, func(*Config)) {
	m := &event.Memory{}
	return m, func(c *Config) { c.Events = m }
}

func eventsOf(m *event.Memory, typ string) []event.Event {
	var out []event.Event
	for _, e := range m.Events() {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

package gateway

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cascadehq/cascade/gateway/balance"
	"github.com/cascadehq/cascade/gateway/fallback"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
)

// seen is one request an upstream received.
type seen struct {
	method, path, body, attempt, deadline, reqID, xff string
	at                                                time.Time
}

// recorder is an upstream that records what it receives.
type recorder struct {
	mu   sync.Mutex
	reqs []seen
}

func (r *recorder) all() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seen(nil), r.reqs...)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

// recording starts an upstream that records each request and then calls h
// with n, the 1-based number of the request.
func recording(t *testing.T, h func(w http.ResponseWriter, r *http.Request, n int)) (string, *recorder) {
	t.Helper()
	rec := &recorder{}
	url := serve(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, seen{method: r.Method, path: r.URL.RequestURI(), body: string(b),
			attempt: r.Header.Get(HeaderAttempt), deadline: r.Header.Get(HeaderDeadline),
			reqID: r.Header.Get(HeaderRequestID), xff: r.Header.Get("X-Forwarded-For"), at: time.Now()})
		n := len(rec.reqs)
		rec.mu.Unlock()
		h(w, r, n)
	})
	return url, rec
}

// gw starts a gateway for cfg with events into mem (may be nil).
func gw(t *testing.T, cfg Config, mem *event.Memory, opts ...func(*Options)) *Gateway {
	t.Helper()
	o := Options{Loops: loopsFor(t)}
	if mem != nil {
		o.Sink = mem
	}
	for _, f := range opts {
		f(&o)
	}
	g, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// one is a config with one upstream "up" over targets and one route "/".
func one(r Route, u Upstream, targets ...string) Config {
	u.Name, u.Targets = "up", targets
	r.Upstream = "up"
	if r.Path == "" {
		r.Path = "/"
	}
	return Config{Upstreams: []Upstream{u}, Routes: []Route{r}}
}

type answer struct {
	status   int
	cause    string
	fallback string
	reqID    string
	body     string
	err      error
	elapsed  time.Duration
}

// client returns an HTTP client of its own (connections not shared
// between tests).
func client(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
}

func call(t *testing.T, c *http.Client, method, url, body string, hdr ...string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	start := time.Now()
	res, err := c.Do(req)
	if err != nil {
		return answer{err: err, elapsed: time.Since(start)}
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	return answer{status: res.StatusCode, cause: res.Header.Get(cause.Header), fallback: res.Header.Get(fallback.Header),
		reqID: res.Header.Get(HeaderRequestID), body: string(b), err: err, elapsed: time.Since(start)}
}

// refused returns a URL nothing listens on.
func refused(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// eventsOf returns the events of one type.
func eventsOf(mem *event.Memory, typ string) []event.Event {
	var out []event.Event
	for _, e := range mem.Events() {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// eventually polls cond for up to 3 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// hang is a handler that answers only when the client leaves.
func hang(w http.ResponseWriter, r *http.Request, _ int) { <-r.Context().Done() }

func du(v time.Duration) units.Duration { return units.Duration(v) }

func balanceCfg(policy string) balance.Config { return balance.Config{Policy: policy} }

// getAll GETs url and reads the whole body: what came, and the read's error
// (a cut connection's, when the gateway ended the answer early).
func getAll(t *testing.T, url string) ([]byte, error) {
	t.Helper()
	res, err := client(5 * time.Second).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	return io.ReadAll(res.Body)
}

// unanswered is the address of a listener whose accept queue is full:
// Linux drops further SYNs, so a dial to it waits until its timeout.
func unanswered(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := "127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
	// Fill the backlog (0 means one pending connection, plus a little slack).
	for i := 0; i < 4; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
	}
	return addr
}

package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/tcptest"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
)

// start runs a gateway with one route "/" to target, returning its URL.
func start(t *testing.T, to Timeouts, sink event.Sink, targets ...string) *Gateway {
	t.Helper()
	if sink == nil {
		sink = event.Discard
	}
	g, err := New(Config{
		Upstreams: []UpstreamTargets{{Name: "up", Targets: targets}},
		Routes:    []Route{{Path: "/", Upstream: "up", Timeouts: to}},
	}, Options{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// rawServer accepts TCP connections and hands each to fn.
func rawServer(t *testing.T, fn func(net.Conn)) string {
	return "http://" + tcptest.Serve(t, fn)
}

func readRequest(c net.Conn) {
	_, _ = http.ReadRequest(bufio.NewReader(c))
}

type result struct {
	status  int
	cause   string
	elapsed time.Duration
}

func get(t *testing.T, url string, timeout time.Duration) (result, error) {
	t.Helper()
	c := &http.Client{Timeout: timeout}
	start := time.Now()
	res, err := c.Get(url)
	if err != nil {
		return result{elapsed: time.Since(start)}, err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return result{status: res.StatusCode, cause: res.Header.Get(cause.Header), elapsed: time.Since(start)}, nil
}

func within(t *testing.T, what string, got, lo, hi time.Duration) {
	t.Helper()
	if got < lo || got > hi {
		t.Errorf("%s took %s, want within [%s, %s]", what, got, lo, hi)
	}
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestErrorMap(t *testing.T) {
	refused := "http://" + tcptest.Refused(t)
	slowHeaders := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	})
	reset := rawServer(t, func(c net.Conn) {
		readRequest(c)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	closeEarly := rawServer(t, func(c net.Conn) {
		readRequest(c)
		c.Close()
	})
	garbage := rawServer(t, func(c net.Conn) {
		readRequest(c)
		io.WriteString(c, "HTTP/1.1 two hundred OK\r\n\r\n")
		c.Close()
	})
	upstream503 := serve(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	ok := serve(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fine") })

	cases := []struct {
		name       string
		target     string
		to         Timeouts
		status     int
		cause      cause.Cause
		minT, maxT time.Duration
	}{
		{"ok passes through", ok, Timeouts{}, 200, cause.OK, 0, ms(500)},
		{"connection refused", refused, Timeouts{}, 502, cause.UpstreamConnectFailure, 0, ms(500)},
		{"response header timeout", slowHeaders, Timeouts{ResponseHeader: 300 * msD, Total: 2000 * msD}, 504, cause.GatewayTimeout, ms(280), ms(900)},
		{"total timeout (header timeout defaults to it)", slowHeaders, Timeouts{Total: 300 * msD}, 504, cause.GatewayTimeout, ms(280), ms(900)},
		{"reset by upstream", reset, Timeouts{}, 502, cause.UpstreamReset, 0, ms(500)},
		{"closed before answering", closeEarly, Timeouts{}, 502, cause.UpstreamReset, 0, ms(500)},
		{"malformed answer", garbage, Timeouts{}, 502, cause.UpstreamMalformed, 0, ms(500)},
		{"upstream's own 503", upstream503, Timeouts{}, 503, cause.UpstreamError, 0, ms(500)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := start(t, tc.to, nil, tc.target)
			r, err := get(t, g.URL()+"/x", 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			want := ""
			if tc.cause != cause.OK {
				want = tc.cause.String()
			}
			if r.status != tc.status || r.cause != want {
				t.Errorf("got %d %q, want %d %q", r.status, r.cause, tc.status, want)
			}
			if got := cause.FromResponse(r.status, r.cause); got != tc.cause {
				t.Errorf("client classifies it as %s, want %s", got, tc.cause)
			}
			within(t, tc.name, r.elapsed, tc.minT, tc.maxT)
		})
	}
}

const msD = units.Duration(time.Millisecond)

// A SYN that is never answered: the connect timeout fires.
func TestConnectTimeout(t *testing.T) {
	addr := unanswered(t)
	g := start(t, Timeouts{Connect: 300 * msD, Total: 5000 * msD}, nil, "http://"+addr)
	r, err := get(t, g.URL()+"/", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.status != 502 || r.cause != cause.UpstreamConnectFailure.String() {
		t.Fatalf("got %d %q, want 502 upstream_connect_failure", r.status, r.cause)
	}
	within(t, "connect timeout", r.elapsed, ms(280), ms(1500))
}

func TestClientGoneIs499Event(t *testing.T) {
	hang := serve(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	var mem event.Memory
	g := start(t, Timeouts{}, &mem, hang)
	_, err := get(t, g.URL()+"/", 200*time.Millisecond)
	if err == nil {
		t.Fatal("client should have timed out")
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range mem.Events() {
			if e.Type == "gateway.client_gone" {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no gateway.client_gone event; events: %v", mem.Events())
}

func TestNoReplicasAndNoRoute(t *testing.T) {
	ok := serve(t, func(w http.ResponseWriter, r *http.Request) {})
	g, err := New(Config{
		Upstreams: []UpstreamTargets{{Name: "a", Targets: []string{ok}}},
		Routes:    []Route{{Path: "/a", Upstream: "a"}},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if r, _ := get(t, g.URL()+"/b", time.Second); r.status != 404 || r.cause != "no_route" {
		t.Errorf("no route: %d %q", r.status, r.cause)
	}
	if err := g.SetTargets("a", nil); err != nil {
		t.Fatal(err)
	}
	if r, _ := get(t, g.URL()+"/a", time.Second); r.status != 503 || r.cause != "no_healthy_upstream" {
		t.Errorf("no replicas: %d %q", r.status, r.cause)
	}
}

func TestRoutingDeadlineAndRoundRobin(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	var deadlines []int
	mk := func(name string) string {
		return serve(t, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen[name+r.URL.Path]++
			if v, err := strconv.Atoi(r.Header.Get(HeaderDeadline)); err == nil {
				deadlines = append(deadlines, v)
			}
			mu.Unlock()
		})
	}
	a1, a2, b := mk("a1"), mk("a2"), mk("b")
	g, err := New(Config{
		Upstreams: []UpstreamTargets{{Name: "a", Targets: []string{a1, a2}}, {Name: "b", Targets: []string{b}}},
		Routes: []Route{
			{Path: "/", Upstream: "a", Timeouts: Timeouts{Total: 2000 * msD}},
			{Path: "/api/b", Upstream: "b"},
		},
	}, Options{Loops: loopsFor(t)})
	if err != nil {
		t.Fatal(err)
	}
	g.Start()
	defer g.Close()
	for i := 0; i < 4; i++ {
		get(t, g.URL()+"/x", time.Second)
	}
	get(t, g.URL()+"/api/b/1", time.Second)
	mu.Lock()
	defer mu.Unlock()
	if seen["a1/x"] != 2 || seen["a2/x"] != 2 || seen["b/api/b/1"] != 1 {
		t.Fatalf("routing/balancing: %v", seen)
	}
	for _, d := range deadlines[:4] {
		if d < 1500 || d > 2000 {
			t.Fatalf("deadline header %d ms, want just under 2000", d)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	c := Config{
		Upstreams: []UpstreamTargets{{Name: "a", Targets: []string{"ftp://x"}}, {Name: "a"}},
		Routes:    []Route{{Path: "x", Upstream: "zz", Timeouts: Timeouts{ResponseHeader: 2000 * msD, Total: 1000 * msD}}},
	}
	errs := c.Validate(nil)
	var all []string
	for _, e := range errs {
		all = append(all, e.Error())
	}
	joined := strings.Join(all, "\n")
	for _, want := range []string{"upstreams[0].targets[0]", "declared twice", "upstreams[1].targets", "routes[0].path", `unknown upstream "zz"`, "routes[0].timeouts.response_header"} {
		if !strings.Contains(joined, want) {
			t.Errorf("missing %q in:\n%s", want, joined)
		}
	}
	if _, err := New(c, Options{}); err == nil {
		t.Fatal("New must refuse an invalid config")
	}
}

package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascadehq/cascade/gateway/breaker"
	"github.com/cascadehq/cascade/gateway/limit"
	"github.com/cascadehq/cascade/gateway/retry"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
)

// syncBuffer is an io.Writer safe for the gateway's writers and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(s.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("access log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// Every request leaves one access-log line; the request ID is the
// client's or a generated one, and the same upstream, in the answer and in
// the log.
func TestAccessLogAndRequestID(t *testing.T) {
	url, rec := recording(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(503)
			return
		}
		w.Write([]byte("hello"))
	})
	var log syncBuffer
	g := gw(t, one(Route{Retries: &retry.Config{RetryOn: []string{"503"}, MaxAttempts: 2, BackoffBase: du(time.Millisecond)}},
		Upstream{}, url), nil, func(o *Options) { o.AccessLog = &log })
	c := client(5 * time.Second)
	a := call(t, c, "GET", g.URL()+"/hello?x=\"1\"", "", HeaderRequestID, "client-id-7")
	b := call(t, c, "GET", g.URL()+"/generated", "")
	f := call(t, c, "GET", g.URL()+"/fail", "")
	call(t, c, "HEAD", g.URL()+"/", "")
	g.Close() // flushes
	if a.reqID != "client-id-7" || rec.all()[0].reqID != "client-id-7" {
		t.Errorf("propagated id: answer %q, upstream %q", a.reqID, rec.all()[0].reqID)
	}
	if b.reqID == "" || rec.all()[1].reqID != b.reqID {
		t.Errorf("generated id: answer %q, upstream %q", b.reqID, rec.all()[1].reqID)
	}
	if !strings.HasPrefix(rec.all()[0].xff, "127.0.0.1") {
		t.Errorf("X-Forwarded-For %q", rec.all()[0].xff)
	}
	lines := log.lines(t)
	if len(lines) != 4 {
		t.Fatalf("%d access-log lines, want 4", len(lines))
	}
	l := lines[0]
	for k, want := range map[string]any{"request_id": "client-id-7", "method": "GET", "uri": `/hello?x="1"`, "route": "/",
		"upstream": "up", "attempts": 1.0, "status": 200.0, "cause": "ok", "bytes": 5.0} {
		if l[k] != want {
			t.Errorf("line 1 %s = %v, want %v", k, l[k], want)
		}
	}
	if l["replica"] != strings.TrimPrefix(url, "http://") {
		t.Errorf("replica %v, want %s", l["replica"], url)
	}
	if d, ok := l["duration_ms"].(float64); !ok || d <= 0 || d > 1000 {
		t.Errorf("duration_ms %v", l["duration_ms"])
	}
	if _, err := time.Parse(time.RFC3339Nano, l["ts"].(string)); err != nil {
		t.Errorf("ts: %v", err)
	}
	if lines[1]["request_id"] != b.reqID {
		t.Errorf("line 2 id %v, answer %s", lines[1]["request_id"], b.reqID)
	}
	if f.status != 503 || lines[2]["attempts"] != 2.0 || lines[2]["cause"] != "upstream_error" || lines[2]["status"] != 503.0 {
		t.Errorf("failed request: %+v, log %v", f, lines[2])
	}
}

// A client that leaves is logged as 499 client_gone, and an event says so.
func TestClientGoneAccessLog(t *testing.T) {
	url, _ := recording(t, hang)
	var log syncBuffer
	var mem event.Memory
	g := gw(t, one(Route{}, Upstream{}, url), &mem, func(o *Options) { o.AccessLog = &log })
	if a := call(t, client(150*time.Millisecond), "GET", g.URL()+"/", ""); a.err == nil {
		t.Fatal("the client should have timed out")
	}
	eventually(t, "a client_gone event", func() bool { return len(eventsOf(&mem, "gateway.client_gone")) > 0 })
	g.Close()
	lines := log.lines(t)
	if len(lines) != 1 || lines[0]["status"] != 499.0 || lines[0]["cause"] != "client_gone" {
		t.Errorf("access log: %v", lines)
	}
}

// Headers arrive, then part of the body, then nothing: the idle timeout
// cuts the connection (the status is already out) and says so.
func TestIdleTimeoutBetweenBodyReads(t *testing.T) {
	stall := rawServer(t, func(c net.Conn) {
		readRequest(c)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
		time.Sleep(2 * time.Second)
		c.Close()
	})
	var log syncBuffer
	var mem event.Memory
	g := gw(t, one(Route{Timeouts: Timeouts{Idle: du(200 * time.Millisecond), Total: du(5 * time.Second)}}, Upstream{}, stall),
		&mem, func(o *Options) { o.AccessLog = &log })
	start := time.Now()
	body, err := getAll(t, g.URL()+"/")
	if err == nil || string(body) != "12345" {
		t.Errorf("body %q, err %v: want the first 5 bytes and a cut connection", body, err)
	}
	within(t, "idle timeout", time.Since(start), ms(180), ms(1200))
	eventually(t, "the termination event", func() bool { return len(eventsOf(&mem, "gateway.gateway_timeout")) > 0 })
	g.Close()
	lines := log.lines(t)
	if len(lines) != 1 || lines[0]["cause"] != "gateway_timeout" || !strings.Contains(lines[0]["detail"].(string), "idle") ||
		lines[0]["bytes"] != 5.0 {
		t.Errorf("access log %v", lines)
	}
}

// /metrics on the admin listener, in Prometheus text format.
func TestMetrics(t *testing.T) {
	url, _ := recording(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 3 {
			w.WriteHeader(500)
		}
	})
	cfg := one(Route{Retries: &retry.Config{RetryOn: []string{"500"}, MaxAttempts: 2, BackoffBase: du(time.Millisecond)}},
		Upstream{Breaker: &breaker.Config{}, Limits: &Limits{Config: limit.Config{MaxRequests: 10}}}, url)
	cfg.AdminListen = "127.0.0.1:0"
	g := gw(t, cfg, nil)
	c := client(5 * time.Second)
	for range 3 {
		call(t, c, "GET", g.URL()+"/", "")
	}
	call(t, c, "GET", g.URL()+"/", "")
	// The answer reaches the client just before the gateway counts it.
	var text string
	eventually(t, "the last request to be counted", func() bool {
		res, err := c.Get("http://" + g.AdminAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		text = string(b)
		return strings.Contains(text, "cascade_gateway_active_requests 0")
	})
	replica := strings.TrimPrefix(url, "http://")
	for _, want := range []string{
		`cascade_gateway_requests_total{cause="ok",route="/",upstream="up"} 4`,
		`cascade_gateway_upstream_requests_total{upstream="up"} 4`,
		`cascade_gateway_upstream_attempts_total{replica="` + replica + `",upstream="up"} 5`,
		`cascade_gateway_upstream_attempt_failures_total{replica="` + replica + `",upstream="up"} 1`,
		`cascade_gateway_retries_total{route="/"} 1`,
		`cascade_gateway_breaker_state{state="closed",upstream="up"} 1`,
		`cascade_gateway_breaker_state{state="open",upstream="up"} 0`,
		`cascade_gateway_bulkhead_overflows_total{reason="max_requests",upstream="up"} 0`,
		`cascade_gateway_upstream_endpoints{state="available",upstream="up"} 1`,
		`cascade_gateway_request_duration_seconds_count{route="/"} 4`,
		`# TYPE cascade_gateway_request_duration_seconds histogram`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
}

func TestAdminListenLoopbackOnly(t *testing.T) {
	cfg := one(Route{}, Upstream{}, "http://127.0.0.1:1")
	for addr, ok := range map[string]bool{"127.0.0.1:0": true, "[::1]:9901": true, "localhost:9901": true,
		"0.0.0.0:9901": false, ":9901": false, "10.1.2.3:9901": false, "nonsense": false} {
		cfg.AdminListen = addr
		errs := cfg.Validate(nil)
		if ok != (len(errs) == 0) {
			t.Errorf("admin_listen %q: errors %v", addr, errs)
		}
		if !ok {
			if _, err := New(cfg, Options{}); err == nil {
				t.Errorf("New accepted admin_listen %q", addr)
			}
		}
	}
}

// The termination events of one route and cause are thinned to one a
// second, with the count they stand for.
func TestTerminationEventsThinned(t *testing.T) {
	var mem event.Memory
	g := gw(t, one(Route{}, Upstream{}, refused(t)), &mem)
	c := client(5 * time.Second)
	for range 10 {
		if a := call(t, c, "GET", g.URL()+"/", ""); a.cause != cause.UpstreamConnectFailure.String() {
			t.Fatalf("got %+v", a)
		}
	}
	ev := eventsOf(&mem, "gateway.upstream_connect_failure")
	if len(ev) != 1 || ev[0].Attrs["count"] != int64(1) || ev[0].Attrs["route"] != "/" || ev[0].Target != "up" {
		t.Errorf("events %v", ev)
	}
}

// TestPropagate checks what a route adds upstream, on the fast path and on
// the net/http one (a TE header hands the request over): by default all
// four headers; with [none] nothing of the gateway's own, while a client's
// X-Request-Id and X-Forwarded-For pass unchanged; with a subset, just it.
func TestPropagate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		propagate []string
		clientHdr []string
		want      seen // "*": present, any value
	}{
		{"default", nil, nil, seen{attempt: "1", deadline: "*", reqID: "*", xff: "127.0.0.1"}},
		{"default, client's id and xff", nil, []string{HeaderRequestID, "c-1", "X-Forwarded-For", "198.18.0.7"},
			seen{attempt: "1", deadline: "*", reqID: "c-1", xff: "198.18.0.7, 127.0.0.1"}},
		{"none", []string{PropagateNone}, nil, seen{}},
		{"none, client's id and xff", []string{PropagateNone}, []string{HeaderRequestID, "c-2", "X-Forwarded-For", "198.18.0.7"},
			seen{reqID: "c-2", xff: "198.18.0.7"}},
		{"attempt and request id", []string{PropagateAttempt, PropagateRequestID}, nil, seen{attempt: "1", reqID: "*"}},
		{"deadline and forwarded_for", []string{PropagateDeadline, PropagateForwardedFor}, nil, seen{deadline: "*", xff: "127.0.0.1"}},
	} {
		for _, slow := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/net_http=%v", tc.name, slow), func(t *testing.T) {
				url, rec := recording(t, func(w http.ResponseWriter, r *http.Request, n int) { w.Write([]byte("ok")) })
				g := gw(t, one(Route{Propagate: tc.propagate}, Upstream{}, url), nil)
				hdr := tc.clientHdr
				if slow {
					hdr = append(hdr[:len(hdr):len(hdr)], "TE", "gzip")
				}
				if a := call(t, client(5*time.Second), "GET", g.URL()+"/", "", hdr...); a.status != 200 {
					t.Fatalf("status %d (%v)", a.status, a.err)
				}
				got := rec.all()[0]
				for _, f := range []struct{ name, got, want string }{{"attempt", got.attempt, tc.want.attempt},
					{"deadline", got.deadline, tc.want.deadline}, {"request id", got.reqID, tc.want.reqID}, {"xff", got.xff, tc.want.xff}} {
					if f.want == "*" && f.got == "" || f.want != "*" && f.got != f.want {
						t.Errorf("%s upstream = %q, want %q", f.name, f.got, f.want)
					}
				}
			})
		}
	}
}

// The access log's cause for an answer passed through is the one the client
// reads from it (cause.FromResponse of the status and X-Cascade-Cause), the
// cause the run's summary counts the request under: the upstream's own
// db_timeout or upstream_timeout, not upstream_error. So are the metrics'.
// Both the fast path and net/http's (a TE header hands a request over).
func TestAccessLogCauseIsTheClients(t *testing.T) {
	answers := []struct {
		status int
		cause  []string // X-Cascade-Cause values the upstream sets
	}{
		{503, []string{"db_timeout"}},
		{504, []string{"upstream_timeout"}},
		{503, []string{"db_error"}},
		{499, []string{"client_gone"}}, // slowdb with propagate_cancel
		{400, []string{"upstream_error"}},
		{404, nil},                 // no cause: the gateway adds upstream_error
		{503, []string{"no_such"}}, // unknown: judged by the status
		{200, []string{"ok"}},
		{200, nil},
	}
	url, _ := recording(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		var i int
		fmt.Sscanf(r.URL.Path, "/%d", &i)
		a := answers[i]
		for _, c := range a.cause {
			w.Header().Add(cause.Header, c)
		}
		w.WriteHeader(a.status)
	})
	var log syncBuffer
	var mem event.Memory
	g := gw(t, one(Route{}, Upstream{}, url), &mem, func(o *Options) { o.AccessLog = &log })
	c := client(5 * time.Second)
	var got []string
	for _, slow := range []bool{false, true} {
		for i := range answers {
			var hdr []string
			if slow {
				hdr = []string{"TE", "deflate"}
			}
			a := call(t, c, "GET", fmt.Sprintf("%s/%d", g.URL(), i), "", hdr...)
			if a.err != nil || a.status != answers[i].status {
				t.Fatalf("answer %d: %+v", i, a)
			}
			got = append(got, cause.FromResponse(a.status, a.cause).String())
		}
	}
	g.Close() // flushes
	lines := log.lines(t)
	if len(lines) != len(got) {
		t.Fatalf("%d access-log lines for %d requests", len(lines), len(got))
	}
	for i, l := range lines {
		if l["cause"] != got[i] {
			t.Errorf("request %s (slow path %v): access log says %v, the client read %s", l["uri"], i >= len(answers), l["cause"], got[i])
		}
	}
	if got[0] != "db_timeout" || got[1] != "upstream_timeout" || got[5] != "upstream_error" || got[6] != "service_unavailable" {
		t.Errorf("the client read %v", got[:len(answers)])
	}
	// An answer passed through is not a decision of the gateway's.
	for _, e := range mem.Events() {
		if _, ok := cause.Parse(strings.TrimPrefix(e.Type, "gateway.")); ok {
			t.Errorf("event %s %v for an answer the upstream decided", e.Type, e.Attrs)
		}
	}
}

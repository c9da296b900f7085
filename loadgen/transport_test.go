package loadgen

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/tcptest"
)

// protoServer records the protocol of every request and counts connections.
type protoServer struct {
	url    string
	protos atomic.Value // last r.Proto
	h2     atomic.Int64
	h1     atomic.Int64
	conns  atomic.Int64
}

func (p *protoServer) handler(delay time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.protos.Store(r.Proto)
		if r.ProtoMajor == 2 {
			p.h2.Add(1)
		} else {
			p.h1.Add(1)
		}
		time.Sleep(delay)
	})
}

func (p *protoServer) connState(_ net.Conn, s http.ConnState) {
	if s == http.StateNew {
		p.conns.Add(1)
	}
}

func newTLSServer(t *testing.T, delay time.Duration) *protoServer {
	t.Helper()
	ps := &protoServer{}
	srv := httptest.NewUnstartedServer(ps.handler(delay))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = ps.connState
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused-certificate case logs handshake errors
	srv.StartTLS()                                   // a self-signed certificate
	t.Cleanup(srv.Close)
	ps.url = srv.URL
	return ps
}

// newH2CServer serves HTTP/1.1 and HTTP/2 with prior knowledge on cleartext.
func newH2CServer(t *testing.T, delay time.Duration) *protoServer {
	t.Helper()
	ps := &protoServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: ps.handler(delay), ConnState: ps.connState, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	ps.url = "http://" + ln.Addr().String()
	return ps
}

func load(t *testing.T, cfg Config, rate float64, d time.Duration) []Sample {
	t.Helper()
	cfg.Requests = []Request{{Path: "/"}}
	cfg.Stages = []Stage{{d, rate, rate}}
	cfg.ClientTimeout = 5 * time.Second
	rec := &memRecorder{}
	clock := event.NewClock()
	g, err := New(cfg, rec, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock.Reset(time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := g.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return rec.samples
}

func causes(samples []Sample) map[cause.Cause]int {
	m := map[cause.Cause]int{}
	for _, s := range samples {
		m[s.Cause]++
	}
	return m
}

func TestHTTP2OverTLS(t *testing.T) {
	for _, tc := range []struct {
		proto  Protocol
		wantH2 bool
	}{{ProtoAuto, true}, {ProtoH2, true}, {ProtoHTTP1, false}} {
		t.Run("protocol="+string(tc.proto), func(t *testing.T) {
			srv := newTLSServer(t, 0)
			s := load(t, Config{Target: srv.url, Protocol: tc.proto, InsecureSkipVerify: true, KeepAlive: true}, 100, 200*time.Millisecond)
			if c := causes(s); c[cause.OK] != 20 {
				t.Fatalf("causes %v", c)
			}
			if h2 := srv.h2.Load(); (h2 == 20) != tc.wantH2 || h2+srv.h1.Load() != 20 {
				t.Fatalf("server saw %d HTTP/2 and %d HTTP/1 requests", h2, srv.h1.Load())
			}
			// (No connection count here: requests due while the first TLS
			// handshake is still running each dial, and on a busy machine the
			// handshake can outlast the whole test. TestH2C checks multiplexing.)
		})
	}
	t.Run("self-signed refused without insecure_skip_verify", func(t *testing.T) {
		srv := newTLSServer(t, 0)
		s := load(t, Config{Target: srv.url, KeepAlive: true}, 50, 100*time.Millisecond)
		if c := causes(s); c[cause.TransportError] != len(s) || srv.h1.Load()+srv.h2.Load() != 0 {
			t.Fatalf("causes %v; the server answered %d", c, srv.h1.Load()+srv.h2.Load())
		}
	})
	t.Run("h2 needs https", func(t *testing.T) {
		if _, err := NewHTTPTransport(Config{Target: "http://127.0.0.1:1", Protocol: ProtoH2}); err == nil {
			t.Fatal("h2 over http:// accepted")
		}
		if _, err := NewHTTPTransport(Config{Target: "https://127.0.0.1:1", Protocol: ProtoH2C}); err == nil {
			t.Fatal("h2c over https:// accepted")
		}
		if _, err := NewHTTPTransport(Config{Target: "http://127.0.0.1:1", Protocol: "spdy"}); err == nil || !strings.Contains(err.Error(), "unknown protocol") {
			t.Fatalf("unknown protocol: %v", err)
		}
	})
}

func TestH2C(t *testing.T) {
	srv := newH2CServer(t, 0)
	s := load(t, Config{Target: srv.url, Protocol: ProtoH2C, KeepAlive: true}, 100, 200*time.Millisecond)
	if c := causes(s); c[cause.OK] != 20 || srv.h2.Load() != 20 || srv.conns.Load() != 1 {
		t.Fatalf("causes %v; server saw %d HTTP/2 requests on %d connections", c, srv.h2.Load(), srv.conns.Load())
	}
	// Without h2c the same server is spoken to in HTTP/1.1.
	srv = newH2CServer(t, 0)
	load(t, Config{Target: srv.url, KeepAlive: true}, 100, 100*time.Millisecond)
	if srv.h1.Load() != 10 || srv.h2.Load() != 0 {
		t.Fatalf("auto over http://: %d HTTP/1 and %d HTTP/2", srv.h1.Load(), srv.h2.Load())
	}
}

func TestKeepAlive(t *testing.T) {
	// Off: one connection per request.
	srv := newH2CServer(t, 0)
	s := load(t, Config{Target: srv.url, KeepAlive: false}, 100, 300*time.Millisecond)
	if c := causes(s); c[cause.OK] != 30 || srv.conns.Load() != 30 {
		t.Fatalf("keep-alive off: causes %v, %d connections for 30 requests", c, srv.conns.Load())
	}
	// On, sequential requests: connections are reused.
	srv = newH2CServer(t, 0)
	load(t, Config{Target: srv.url, KeepAlive: true}, 100, 300*time.Millisecond)
	if n := srv.conns.Load(); n > 6 { // one per concurrent worker: a few on a busy machine
		t.Fatalf("keep-alive on: %d connections for 30 spaced requests", n)
	}
}

// A connection cap: the server never sees more connections than the cap,
// and requests beyond it wait (their wait is part of their latency).
func TestConnectionCap(t *testing.T) {
	for _, proto := range []Protocol{ProtoHTTP1, ProtoH2C} {
		t.Run(string(proto), func(t *testing.T) {
			srv := newH2CServer(t, 50*time.Millisecond)
			s := load(t, Config{Target: srv.url, Protocol: proto, KeepAlive: true, MaxConns: 2}, 200, 200*time.Millisecond)
			if c := causes(s); c[cause.OK] != 40 {
				t.Fatalf("causes %v", c)
			}
			if n := srv.conns.Load(); n > 2 {
				t.Fatalf("%d connections with a cap of 2", n)
			}
			if proto == ProtoHTTP1 {
				// 40 requests of 50 ms through 2 connections take ≥ 1 s in all:
				// the last ones waited ≈ 800 ms for a connection.
				var worst time.Duration
				for _, x := range s {
					worst = max(worst, x.Latency)
				}
				if worst < 700*time.Millisecond {
					t.Fatalf("worst latency %s: requests did not wait for the 2 connections", worst)
				}
			}
		})
	}
}

// A path that reads as a network-path reference ("//host/x") is a path on
// the target, never a second host: the loopback check saw only the
// target's. (url.Parse resolved it, and the request went to the other
// host.)
func TestHTTPTransportStaysOnTarget(t *testing.T) {
	var other atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { other.Add(1) }))
	defer elsewhere.Close()
	var paths []string
	var mu sync.Mutex
	target := httptest.NewUnstartedServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.RequestURI)
		mu.Unlock()
	}))
	target.Config.Protocols = new(http.Protocols)
	target.Config.Protocols.SetHTTP1(true)
	target.Config.Protocols.SetUnencryptedHTTP2(true)
	target.Start()
	defer target.Close()
	host := strings.TrimPrefix(elsewhere.URL, "http://")
	for _, proto := range []Protocol{ProtoAuto, ProtoH2C} {
		tr, err := NewHTTPTransport(Config{Target: target.URL, Protocol: proto, KeepAlive: true, Requests: []Request{
			{Path: "//" + host + "/static?a=1"}, {Path: "//" + host + "/t{{seq}}"}}})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			var s Sample
			tr.RoundTrip(context.Background(), i, &s)
			if s.Cause != cause.OK {
				t.Fatalf("%s request %d: %v", proto, i, s.Cause)
			}
		}
	}
	want := "//" + host + "/static?a=1 //" + host + "/t0 //" + host + "/static?a=1 //" + host + "/t0"
	if got := strings.Join(paths, " "); other.Load() != 0 || got != want {
		t.Fatalf("the other host got %d requests; the target got %q, want %q", other.Load(), got, want)
	}
	dial := targetOnly(mustURL(t, target.URL), &net.Dialer{})
	if _, err := dial(context.Background(), "tcp", host); err == nil || !strings.Contains(err.Error(), "refusing to dial") {
		t.Fatalf("dialing another address: %v", err)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// A Host header names a virtual host behind the target's address, on both
// clients, static or templated (wrk -H 'Host: ...', hey -host).
func TestHostHeader(t *testing.T) {
	hosts := make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { hosts <- r.Host }))
	defer srv.Close()
	reqs := []Request{
		{Path: "/", Header: http.Header{"Host": {"api.example.test"}}},
		{Path: "/{{seq}}", Header: http.Header{"Host": {"v{{seq}}.example.test"}, "X-A": {"1"}}},
	}
	for _, nethttp := range []bool{false, true} {
		tr := clientTransport(t, Config{Target: srv.URL, KeepAlive: true, Requests: reqs}, nethttp)
		for i := range reqs {
			s := Sample{Seq: 7}
			tr.RoundTrip(context.Background(), i, &s)
			if s.Cause != cause.OK {
				t.Fatalf("net/http %v, request %d: %v", nethttp, i, s.Cause)
			}
			want := map[int]string{0: "api.example.test", 1: "v7.example.test"}[i]
			if got := <-hosts; got != want {
				t.Errorf("net/http %v, request %d: Host %q, want %q", nethttp, i, got, want)
			}
		}
	}
}

// A templated request the client refuses once rendered is a request_error
// (never sent), not a transport error of the target's, on both clients.
func TestRequestErrorCause(t *testing.T) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { got.Add(1) }))
	defer srv.Close()
	reqs := []Request{{Path: "/a\x01/{{seq}}"}} // a control character: no client sends it
	for _, nethttp := range []bool{false, true} {
		tr := clientTransport(t, Config{Target: srv.URL, KeepAlive: true, Requests: reqs}, nethttp)
		if re := FirstRequestError(tr); re != nil {
			t.Errorf("net/http %v: a reason before any request: %v", nethttp, re)
		}
		for seq := uint64(7); seq < 9; seq++ {
			s := Sample{Seq: seq}
			tr.RoundTrip(context.Background(), 0, &s)
			if s.Cause != cause.RequestError {
				t.Errorf("net/http %v: cause %v, want request_error", nethttp, s.Cause)
			}
		}
		// The reason is kept, once: the first request's, with what it
		// rendered to and what the client said of it.
		re := FirstRequestError(tr)
		if re == nil || re.Seq != 7 || re.Request != "GET /a\x01/{{seq}}" || !strings.Contains(re.Error(), "/7") {
			t.Errorf("net/http %v: first request error %v", nethttp, re)
		}
	}
	if got.Load() != 0 {
		t.Errorf("the server got %d requests", got.Load())
	}
}

// clientTransport is the net/http client's transport or loadgen/h1's.
func clientTransport(t *testing.T, cfg Config, nethttp bool) Transport {
	t.Helper()
	cfg.NetHTTP = nethttp
	if nethttp {
		tr, err := NewHTTPTransport(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	tr, err := NewH1Transport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// A request that fails in the client keeps why, once per cause, on both
// clients: the samples say only connect_failure or transport_error, and
// the summary needs the error itself. Successes keep nothing.
func TestFirstClientErrors(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer ok.Close()
	refused := "http://" + tcptest.Refused(t)
	garbage := "http://" + tcptest.Serve(t, func(c net.Conn) {
		c.Read(make([]byte, 4096))
		io.WriteString(c, "SMTP ready\r\n\r\n")
	})
	reqs := []Request{{Name: "probe", Path: "/"}}
	for _, nethttp := range []bool{false, true} {
		for _, tc := range []struct {
			target string
			cause  cause.Cause
			says   string // in the kept error; "" for none
		}{
			{ok.URL, cause.OK, ""},
			{refused, cause.ConnectFailure, "refused"},
			{garbage, cause.TransportError, "malformed"},
		} {
			tr := clientTransport(t, Config{Target: tc.target, KeepAlive: true, Requests: reqs, ClientTimeout: 5 * time.Second}, nethttp)
			for seq := uint64(3); seq < 5; seq++ {
				s := Sample{Seq: seq}
				tr.RoundTrip(context.Background(), 0, &s)
				if s.Cause != tc.cause {
					t.Fatalf("net/http %v, %s: cause %v, want %v", nethttp, tc.target, s.Cause, tc.cause)
				}
			}
			got := FirstClientErrors(tr)
			if tc.says == "" {
				if len(got) != 0 {
					t.Errorf("net/http %v: kept %v for requests that succeeded", nethttp, got)
				}
				continue
			}
			// The first one, once: sequence number 3, not 4.
			if len(got) != 1 || got[0].Cause != tc.cause || got[0].Seq != 3 || got[0].Request != "probe" ||
				!strings.Contains(got[0].Error(), tc.says) {
				t.Errorf("net/http %v, %s: kept %v; want the first %v, saying %q", nethttp, tc.target, got, tc.cause, tc.says)
			}
		}
	}
}

// What net/http does for HTTPS, HTTP/2 and h2c is where the reason matters
// most: an untrusted certificate, a server without HTTP/2 or without h2c
// all end as transport_error, and only the kept error tells them apart.
func TestFirstClientErrorsTLSAndHTTP2(t *testing.T) {
	quiet := func() *httptest.Server { // the servers log the handshakes the client fails
		s := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		s.Config.ErrorLog = log.New(io.Discard, "", 0)
		return s
	}
	selfSigned := quiet()
	selfSigned.StartTLS()
	defer selfSigned.Close()
	noH2 := quiet()
	noH2.EnableHTTP2 = false
	noH2.StartTLS()
	defer noH2.Close()
	h1Only := quiet()
	h1Only.Start()
	defer h1Only.Close()
	for _, tc := range []struct {
		name string
		cfg  Config
		says string
	}{
		// ... and says how to accept it.
		{"self-signed without insecure", Config{Target: selfSigned.URL}, "certificate signed by unknown authority (for a test server with a self-signed certificate, accept any certificate: --insecure"},
		{"h2 to a server without h2", Config{Target: noH2.URL, Protocol: ProtoH2, InsecureSkipVerify: true}, "no application protocol"},
		// Go's h2c client says one or the other, depending on when the
		// server's HTTP/1.1 answer to the preface reaches it.
		{"h2c to an HTTP/1-only server", Config{Target: h1Only.URL, Protocol: ProtoH2C}, "HTTP/1.1|http2: client conn could not be established"},
	} {
		tc.cfg.Requests, tc.cfg.KeepAlive, tc.cfg.ClientTimeout = []Request{{Path: "/"}}, true, 5*time.Second
		tr, err := NewHTTPTransport(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		var s Sample
		tr.RoundTrip(context.Background(), 0, &s)
		tr.CloseIdle()
		got := FirstClientErrors(tr)
		says := false
		for _, w := range strings.Split(tc.says, "|") {
			says = says || len(got) == 1 && strings.Contains(got[0].Error(), w)
		}
		if s.Cause == cause.OK || len(got) != 1 || got[0].Cause != s.Cause || !says {
			t.Errorf("%s: cause %v, kept %v; want the error, saying %q", tc.name, s.Cause, got, tc.says)
		}
		t.Logf("%s: %v: %v", tc.name, s.Cause, got)
	}
}

// A value from a data set goes into the path as it is; whatever the two
// clients make of it, they make the same: the same request target at the
// server, or both refuse it (request_error) with a reason. A '#' in a value
// used to cut the request short on loadgen/h1 ("/p/a#b?q=a#b" went out as
// "/p/a", a fragment) while net/http sent "/p/a%23b?q=a"; a space in the
// query went out raw on HTTP/2 and was refused by loadgen/h1.
func TestRenderedPathSameOnBothClients(t *testing.T) {
	var rec targets
	srv := newH2CServerFunc(t, rec.record)
	values := []string{"a#b", "a b", "a?b=1", "\u00fc", `x"y`, "a%20b", "100%", "a\tb"}
	rows := make([][]string, len(values))
	for i, v := range values {
		rows[i] = []string{v}
	}
	data := []*Dataset{{Name: "d", Columns: []string{"v"}, Rows: rows}}
	reqs := []Request{{Path: "/p/{{d.v}}?q={{d.v}}"}, {Path: "/p/{{d.v}}"}}
	type outcome struct {
		target string // what the server got, or "" when refused
		reason string
	}
	run := func(cfg Config, nethttp bool) []outcome {
		tr := clientTransport(t, cfg, nethttp)
		var out []outcome
		for seq := range uint64(2 * len(values)) {
			rec.take()
			s := Sample{Seq: seq} // rows in order: value seq % len(values)
			tr.RoundTrip(context.Background(), int(seq)/len(values), &s)
			var o outcome
			if got := rec.take(); len(got) == 1 {
				o.target = got[0]
			}
			switch {
			case s.Cause == cause.RequestError && o.target == "":
				o.reason = "refused"
			case s.Cause != cause.OK || o.target == "":
				t.Errorf("net/http %v, request %d, value %q: cause %v, server got %q", nethttp, int(seq)/len(values), values[int(seq)%len(values)], s.Cause, o.target)
			}
			out = append(out, o)
		}
		if re := FirstRequestError(tr); re != nil && !strings.Contains(re.Error(), "/p/") {
			t.Errorf("net/http %v: the reason does not show the rendered path: %v", nethttp, re)
		}
		return out
	}
	cfg := Config{Target: srv, KeepAlive: true, Requests: reqs, Data: data}
	h1 := run(cfg, false)
	std := run(cfg, true)
	cfg.Protocol = ProtoH2C
	h2 := run(cfg, true)
	for i := range h1 {
		if h1[i] != std[i] || h1[i] != h2[i] {
			t.Errorf("request %d, value %q: h1 %+v, net/http %+v, h2c %+v", i/len(values), values[i%len(values)], h1[i], std[i], h2[i])
		}
	}
	// A '#' is never dropped along with what follows it; a space in the
	// path alone goes out escaped.
	for _, i := range []int{0, len(values)} {
		if h1[i].target != "" && !strings.Contains(h1[i].target, "b") {
			t.Errorf("value \"a#b\" went out as %q", h1[i].target)
		}
	}
	if h1[len(values)+1].target != "/p/a%20b" {
		t.Errorf("path /p/{{d.v}} with \"a b\": h1 %+v", h1[len(values)+1])
	}
}

// newH2CServerFunc serves HTTP/1.1 and h2c, calling f for each request.
// targets records the request targets a test server receives.
type targets struct {
	mu  sync.Mutex
	got []string
}

func (r *targets) record(req *http.Request) {
	r.mu.Lock()
	r.got = append(r.got, req.RequestURI)
	r.mu.Unlock()
}

// take returns what was recorded since the last take.
func (r *targets) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

func newH2CServerFunc(t *testing.T, f func(*http.Request)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { f(r) }), Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// A header value whose rendering no client sends (a line break from a
// data set's quoted field) is a request_error on both clients: net/http's
// refusal used to be counted as a transport_error, a failure of the
// request in flight, though nothing was sent.
func TestRenderedHeaderRefusedAlike(t *testing.T) {
	var got atomic.Int64
	srv := newH2CServerFunc(t, func(*http.Request) { got.Add(1) })
	// A Host that is no host[:port] (net/http cut it short and sent the
	// request over HTTP/1.1, and refused it over HTTP/2) likewise.
	for _, h := range []struct{ name, value string }{{"X-N", "a\nInjected: 1"}, {"Host", "a b"}, {"Host", "x/y"}, {"Host", ""}} {
		data := []*Dataset{{Name: "d", Columns: []string{"v"}, Rows: [][]string{{h.value}}}}
		reqs := []Request{{Path: "/h", Header: http.Header{h.name: {"{{d.v}}"}}}}
		for _, c := range []struct {
			nethttp bool
			proto   Protocol
		}{{false, ProtoAuto}, {true, ProtoAuto}, {true, ProtoH2C}} {
			tr := clientTransport(t, Config{Target: srv, KeepAlive: true, Requests: reqs, Data: data, Protocol: c.proto}, c.nethttp)
			s := Sample{Seq: 0}
			tr.RoundTrip(context.Background(), 0, &s)
			if h.value == "" {
				// An empty Host is the target's, on both clients.
				if s.Cause != cause.OK {
					t.Errorf("Host \"\", net/http %v %q: cause %v, want ok", c.nethttp, c.proto, s.Cause)
				}
				continue
			}
			if s.Cause != cause.RequestError {
				t.Errorf("%s %q, net/http %v %q: cause %v, want request_error", h.name, h.value, c.nethttp, c.proto, s.Cause)
			}
			if re := FirstRequestError(tr); re == nil || !strings.Contains(strings.ToLower(re.Error()), strings.ToLower(h.name)) {
				t.Errorf("%s %q, net/http %v %q: first request error %v, want one naming %s", h.name, h.value, c.nethttp, c.proto, re, h.name)
			}
		}
	}
	if got.Load() != 3 { // the empty Host's, one per client
		t.Errorf("the server got %d requests, want 3", got.Load())
	}
}

// A target with a base path (an external gateway at http://host/api) is
// the prefix of every request's path on both clients: net/http replaced
// it with the request's path ("/api" + "/u" went out as "/u" over h2c and
// https, as "/api/u" over loadgen/h1).
func TestTargetBasePathOnBothClients(t *testing.T) {
	var rec targets
	srv := newH2CServerFunc(t, rec.record)
	reqs := []Request{{Path: "/s?x=1"}, {Path: "/u/{{seq}}"}, {Path: "/a%2Fb"}}
	for _, target := range []string{srv + "/api", srv + "/api/", srv + "/a%20pi"} {
		for _, c := range []struct {
			nethttp bool
			proto   Protocol
		}{{false, ProtoAuto}, {true, ProtoAuto}, {true, ProtoH2C}} {
			rec.take()
			tr := clientTransport(t, Config{Target: target, KeepAlive: true, Requests: reqs, Protocol: c.proto}, c.nethttp)
			for i := range reqs {
				s := Sample{Seq: 7}
				tr.RoundTrip(context.Background(), i, &s)
				if s.Cause != cause.OK {
					t.Errorf("%s, net/http %v %q, request %d: cause %v", target, c.nethttp, c.proto, i, s.Cause)
				}
			}
			base := strings.TrimSuffix(strings.TrimPrefix(target, srv), "/")
			want := []string{base + "/s?x=1", base + "/u/7", base + "/a%2Fb"}
			if got := rec.take(); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("%s, net/http %v %q: the server got %q, want %q", target, c.nethttp, c.proto, got, want)
			}
		}
	}
}

// With urlencode and json, any data value reaches the server as itself, on
// every client: the path segment and the query value decode back to it, and
// the JSON body's field reads back as it. The values are the ones
// TestRenderedPathSameOnBothClients shows refused or changed when written
// raw.
func TestEncodedValuesArriveIntact(t *testing.T) {
	values := []string{"a#b", "a b", "a?b=1&c=2", "\u00fc/x", `x"y\z`, "a%20b", "100%", "a\tb", "1+1"}
	type got struct{ seg, q, body string }
	var mu sync.Mutex
	var seen []got
	srv := newH2CServerFunc(t, func(r *http.Request) {
		var b struct{ V string }
		err := json.NewDecoder(r.Body).Decode(&b)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			t.Errorf("body of %s: %v", r.RequestURI, err)
		}
		seg, _ := strings.CutPrefix(r.URL.EscapedPath(), "/p/")
		seg, err = url.PathUnescape(seg)
		if err != nil {
			t.Errorf("path %s: %v", r.RequestURI, err)
		}
		seen = append(seen, got{seg, r.URL.Query().Get("q"), b.V})
	})
	rows := make([][]string, len(values))
	for i, v := range values {
		rows[i] = []string{v}
	}
	data := []*Dataset{{Name: "d", Columns: []string{"v"}, Rows: rows}}
	reqs := []Request{{Method: "POST", Path: "/p/{{urlencode d.v}}?q={{urlencode d.v}}", Body: []byte(`{"v": {{json d.v}}}`)}}
	for _, c := range []struct {
		name    string
		proto   Protocol
		nethttp bool
	}{{"h1", ProtoHTTP1, false}, {"net/http", ProtoHTTP1, true}, {"h2c", ProtoH2C, true}} {
		tr := clientTransport(t, Config{Target: srv, KeepAlive: true, Requests: reqs, Data: data, Protocol: c.proto}, c.nethttp)
		mu.Lock()
		seen = nil
		mu.Unlock()
		for seq := range uint64(len(values)) {
			s := Sample{Seq: seq}
			tr.RoundTrip(context.Background(), 0, &s)
			if s.Cause != cause.OK {
				t.Errorf("%s: value %q: cause %v (%v)", c.name, values[seq], s.Cause, FirstRequestError(tr))
			}
		}
		mu.Lock()
		if len(seen) != len(values) {
			t.Errorf("%s: the server saw %d requests, want %d", c.name, len(seen), len(values))
		}
		for i, g := range seen {
			if v := values[i]; g != (got{v, v, v}) {
				t.Errorf("%s: value %q arrived as path %q, query %q, body %q", c.name, v, g.seg, g.q, g.body)
			}
		}
		mu.Unlock()
	}
}

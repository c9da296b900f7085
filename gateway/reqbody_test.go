package gateway

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawBodyExchange writes req on a new connection to the gateway, half-closes
// it when halfClose, and returns everything the gateway sent back until it
// closed the connection (or 2 s passed).
func rawBodyExchange(t *testing.T, g *Gateway, req string, halfClose bool) string {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(g.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		_ = c.(*net.TCPConn).CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

// A request body the gateway could not read was never forwarded, yet the
// client read "200 OK" with an empty body: the exchange failed as
// client_gone and the handler returned without answering, so net/http
// wrote its default 200. A malformed chunked body is the client's error
// (400); a body cut short leaves nobody to answer, and the connection is
// cut rather than answered with a success.
func TestUnreadableRequestBodyIsNotASuccess(t *testing.T) {
	for _, loops := range []int{0, 1} {
		url, rec := recording(t, func(w http.ResponseWriter, r *http.Request, _ int) {})
		var log syncBuffer
		g := gw(t, one(Route{}, Upstream{}, url), nil, func(o *Options) { o.Loops, o.AccessLog = loops, &log })

		bad := rawBodyExchange(t, g, "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", false)
		if !strings.HasPrefix(bad, "HTTP/1.1 400 ") {
			t.Errorf("loops %d: malformed chunked body: want a 400, got %q", loops, bad)
		}
		short := rawBodyExchange(t, g, "POST /short HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n64\r\nonly-some", true)
		if strings.Contains(short, " 200 ") {
			t.Errorf("loops %d: body cut short: the client was told 200: %q", loops, short)
		}
		if n := rec.count(); n != 0 {
			t.Errorf("loops %d: the upstream received %d requests, want none", loops, n)
		}
		g.Close()
		lines := log.lines(t)
		if len(lines) != 2 || lines[0]["status"] != 400.0 || lines[1]["status"] != 499.0 || lines[1]["cause"] != "client_gone" {
			t.Errorf("loops %d: access log: %v", loops, lines)
		}
	}
}

// A body too large to replay is streamed to the upstream as it arrives.
// When the client stopped sending mid-body, the failed read was taken for
// the upstream's: 502 upstream_reset, a failure for the breaker, the
// outlier detector and the replica's counters. It is the client's leaving.
func TestClientLeavingMidUploadIsNotAnUpstreamFailure(t *testing.T) {
	for _, loops := range []int{0, 1} {
		url, _ := recording(t, func(w http.ResponseWriter, r *http.Request, _ int) {})
		var log syncBuffer
		g := gw(t, one(Route{}, Upstream{}, url), nil, func(o *Options) { o.Loops, o.AccessLog = loops, &log })
		// 1 MiB announced, 100 KiB sent: past max_replay_body, so streamed.
		rawBodyExchange(t, g, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n"+strings.Repeat("x", 100<<10), true)
		eventually(t, "the access log line", func() bool { return len(log.lines(t)) == 1 })
		g.Close()
		if l := log.lines(t)[0]; l["status"] != 499.0 || l["cause"] != "client_gone" {
			t.Errorf("loops %d: access log %v: want 499 client_gone", loops, l)
		}
		for _, ep := range *g.ups["up"].eps.Load() {
			if n := ep.stats.failures.Load(); n != 0 {
				t.Errorf("loops %d: the replica was charged %d failures", loops, n)
			}
		}
	}
}

// A request with both Content-Length and Transfer-Encoding is answered and
// its connection closed (RFC 9112 6.3): net/http read the chunked body and
// kept the connection, so what followed on it, which a server reading the
// Content-Length would take for a second request, was served as one (the
// way requests are smuggled). A request with chunked framing alone keeps
// its connection.
func TestBothFramingsCloseTheConnection(t *testing.T) {
	for _, loops := range []int{0, 1} {
		url, rec := recording(t, func(w http.ResponseWriter, r *http.Request, _ int) {})
		g := gw(t, one(Route{}, Upstream{}, url), nil, func(o *Options) { o.Loops = loops })
		start := time.Now()
		out := rawBodyExchange(t, g, "POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"5\r\nhello\r\n0\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n", false)
		if !strings.HasPrefix(out, "HTTP/1.1 200 ") || !strings.Contains(out, "\r\nConnection: close\r\n") || strings.Count(out, "HTTP/1.1 ") != 1 {
			t.Errorf("loops %d: want one 200 with Connection: close, got %q", loops, out)
		}
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("loops %d: the gateway kept the connection open (%v)", loops, d)
		}
		if got := rec.all(); len(got) != 1 || got[0].path != "/first" || got[0].body != "hello" {
			t.Errorf("loops %d: the upstream saw %+v, want /first with the chunked body alone", loops, got)
		}
		// Chunked alone: answered on a connection that stays open for the
		// next request.
		out = rawBodyExchange(t, g, "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"+
			"GET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false)
		if strings.Count(out, "HTTP/1.1 200 ") != 2 {
			t.Errorf("loops %d: chunked alone: want two answers on the connection, got %q", loops, out)
		}
		g.Close()
	}
}

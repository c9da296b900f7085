package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
)

// rawExchange sends raw bytes to addr and reads responses until the
// connection closes or n responses were read.
func rawExchange(t *testing.T, addr, req string, n int, head ...bool) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for i := 0; i < n; i++ {
		var r *http.Request
		if len(head) > i && head[i] {
			r = &http.Request{Method: "HEAD"}
		}
		res, err := http.ReadResponse(br, r)
		if err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("response %d body: %v", i+1, err)
		}
		res.Body = io.NopCloser(strings.NewReader(string(b)))
		out = append(out, res)
	}
	return out
}

func bodyOf(r *http.Response) string { b, _ := io.ReadAll(r.Body); return string(b) }

// The upstream's framing reaches the client, whichever path served the
// request: the fast path forwards it raw, net/http (reached here through a
// chunked request body) re-frames it.
func TestResponseFraming(t *testing.T) {
	upstream := serve(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte("part1-"))
			w.(http.Flusher).Flush()
			w.Write([]byte("part2"))
		case "/empty":
			w.WriteHeader(204)
		case "/length":
			w.Header().Set("Content-Length", "5")
			w.Write([]byte("12345"))
		case "/hop":
			w.Header().Set("Connection", "X-Secret")
			w.Header().Set("X-Secret", "1")
			w.Header().Set("Keep-Alive", "timeout=5")
			w.Write([]byte("ok"))
		}
	})
	untilClose := rawServer(t, func(c net.Conn) {
		readRequest(c)
		io.WriteString(c, "HTTP/1.0 200 OK\r\nX-A: b\r\n\r\nuntil the end")
		c.Close()
	})
	g := gw(t, Config{
		Upstreams: []Upstream{{Name: "up", Targets: []string{upstream}}, {Name: "old", Targets: []string{untilClose}}},
		Routes:    []Route{{Path: "/", Upstream: "up"}, {Path: "/old", Upstream: "old"}},
	}, nil)
	for _, slow := range []bool{false, true} {
		send := func(method, path string) *http.Response {
			req, _ := http.NewRequest(method, g.URL()+path, nil)
			if slow {
				// An unknown-length body arrives chunked: net/http's path.
				req, _ = http.NewRequest(method, g.URL()+path, io.MultiReader(strings.NewReader("x")))
				req.ContentLength = -1
			}
			res, err := client(5 * time.Second).Do(req)
			if err != nil {
				t.Fatalf("slow=%v %s %s: %v", slow, method, path, err)
			}
			return res
		}
		for path, want := range map[string]string{"/chunked": "part1-part2", "/length": "12345", "/old": "until the end", "/empty": ""} {
			res := send("POST", path)
			if got := bodyOf(res); got != want {
				t.Errorf("slow=%v %s: body %q, want %q", slow, path, got, want)
			}
			res.Body.Close()
		}
		res := send("HEAD", "/length")
		if b := bodyOf(res); b != "" || res.ContentLength != 5 {
			t.Errorf("slow=%v HEAD: body %q length %d", slow, b, res.ContentLength)
		}
		res = send("GET", "/hop")
		if res.Header.Get("X-Secret") != "" || res.Header.Get("Keep-Alive") != "" || bodyOf(res) != "ok" {
			t.Errorf("slow=%v: hop-by-hop headers forwarded: %v", slow, res.Header)
		}
	}
}

// Several requests written at once on one connection are answered in
// order (pipelining), by the fast path.
func TestPipelining(t *testing.T) {
	url, rec := recording(t, func(w http.ResponseWriter, r *http.Request, n int) { w.Write([]byte(r.URL.Path)) })
	g := gw(t, one(Route{}, Upstream{}, url), nil)
	req := "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcHEAD /3 HTTP/1.1\r\nHost: a\r\n\r\n" +
		"GET /4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
	res := rawExchange(t, g.Addr(), req, 4, false, false, true, false)
	for i, want := range []string{"/1", "/2", "", "/4"} {
		if got := bodyOf(res[i]); got != want {
			t.Errorf("response %d: %q, want %q", i+1, got, want)
		}
	}
	if all := rec.all(); len(all) != 4 || all[1].body != "abc" {
		t.Errorf("upstream saw %+v", all)
	}
}

// What the fast path does not serve goes to net/http and still works:
// HTTP/1.0, Expect: 100-continue, a body beyond the fast path's bound.
func TestHandoff(t *testing.T) {
	url, rec := recording(t, func(w http.ResponseWriter, r *http.Request, n int) { w.Write([]byte("got " + r.Method)) })
	g := gw(t, one(Route{}, Upstream{}, url), nil)
	res := rawExchange(t, g.Addr(), "GET /old HTTP/1.0\r\nHost: a\r\n\r\n", 1)
	if b := bodyOf(res[0]); b != "got GET" {
		t.Errorf("HTTP/1.0: %q", b)
	}
	res = rawExchange(t, g.Addr(), "PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\ndata", 2)
	if res[0].StatusCode != 100 || bodyOf(res[1]) != "got PUT" {
		t.Errorf("Expect: %d then %q", res[0].StatusCode, bodyOf(res[1]))
	}
	big := strings.Repeat("z", defaultMaxBody+10)
	if a := call(t, client(5*time.Second), "POST", g.URL()+"/big", big); a.status != 200 {
		t.Errorf("large body: %+v", a)
	}
	all := rec.all()
	if len(all) != 3 || all[1].body != "data" || all[2].body != big {
		t.Errorf("upstream saw %d requests", len(all))
	}
	res = rawExchange(t, g.Addr(), "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 1)
	if res[0].StatusCode != 501 {
		t.Errorf("Upgrade: %d", res[0].StatusCode)
	}
	res = rawExchange(t, g.Addr(), "GET / HTTP/1.1\r\nNo-Host: a\r\n\r\n", 1)
	if res[0].StatusCode != 400 {
		t.Errorf("no Host: %d (net/http's answer expected)", res[0].StatusCode)
	}
}

// closeConn and resetConn are how an upstream drops a connection: FIN, or
// RST (SO_LINGER 0).
func closeConn(c net.Conn) { c.Close() }
func resetConn(c net.Conn) { c.(*net.TCPConn).SetLinger(0); c.Close() }

// An upstream that closes (or resets) idle keep-alive connections without
// saying so: the request that meets a dropped pooled connection never
// reached the upstream, and is sent again on a new one, transparently.
// (Within aliveAfter of its last use the pool does not check a connection.)
func TestStalePooledConnection(t *testing.T) {
	for _, drop := range []struct {
		name string
		drop func(net.Conn)
	}{{"closed", closeConn}, {"reset", resetConn}} {
		t.Run(drop.name, func(t *testing.T) {
			var requests atomic.Int32
			up := rawServer(t, func(c net.Conn) {
				readRequest(c)
				requests.Add(1)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				time.Sleep(20 * time.Millisecond)
				drop.drop(c)
			})
			g := gw(t, one(Route{}, Upstream{}, up), nil)
			c := client(5 * time.Second)
			for i := range 5 {
				if a := call(t, c, "GET", g.URL()+"/", ""); a.status != 200 || a.body != "ok" {
					t.Fatalf("request %d: %+v", i, a)
				}
				time.Sleep(40 * time.Millisecond)
			}
			if n := requests.Load(); n != 5 {
				t.Errorf("the upstream handled %d requests for 5", n)
			}
		})
	}
}

// A pooled connection that fails after the upstream read the request is
// not a stale one: the request may have had its effect, and sending it
// again is a retry, which the route (without a retry policy) does not
// make. The client gets 502 upstream_reset, whether the upstream reset the
// connection (the reset fault) or closed it, and the upstream has handled
// each request once.
func TestNoHiddenResend(t *testing.T) {
	for _, drop := range []struct {
		name string
		drop func(net.Conn)
	}{{"reset", resetConn}, {"closed", closeConn}} {
		t.Run(drop.name, func(t *testing.T) {
			var requests atomic.Int32
			up := rawServer(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				for n := 1; ; n++ {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					requests.Add(1)
					if n == 2 {
						drop.drop(c)
						return
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			})
			g := gw(t, one(Route{}, Upstream{}, up), nil)
			c := client(5 * time.Second)
			if a := call(t, c, "GET", g.URL()+"/", ""); a.status != 200 {
				t.Fatalf("first request: %+v", a)
			}
			if a := call(t, c, "GET", g.URL()+"/", ""); a.status != 502 || a.cause != cause.UpstreamReset.String() {
				t.Errorf("second request: %+v, want 502 upstream_reset", a)
			}
			if n := requests.Load(); n != 2 {
				t.Errorf("the upstream handled %d requests for 2", n)
			}
			if u := g.Stats().Upstreams[0]; u.Attempts != 2 {
				t.Errorf("stats %+v: want 2 attempts", u)
			}
		})
	}
}

// A client that sends its head a byte at a time is cut off when the head
// takes longer than the header timeout, however steady the trickle; an
// idle keep-alive connection is closed after the idle timeout.
func TestSlowClientsCut(t *testing.T) {
	url, _ := recording(t, func(w http.ResponseWriter, r *http.Request, n int) {})
	g, err := New(one(Route{}, Upstream{}, url), Options{})
	if err != nil {
		t.Fatal(err)
	}
	g.srv.headerTimeout, g.srv.idleTimeout = 300*time.Millisecond, 400*time.Millisecond
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer g.Close()

	c, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	closed := false
	for _, b := range []byte("GET / HTTP/1.1\r\nHost: slow\r\nX-Padding: aaaaaaaaaaaaaaaaaaaa\r\n\r\n") {
		if _, err := c.Write([]byte{b}); err != nil {
			closed = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(make([]byte, 64)); !closed && (n != 0 || err == nil) {
		t.Fatalf("a trickled head was served (%d bytes, %v)", n, err)
	}
	within(t, "cutting the slow client", time.Since(start), ms(280), ms(2500))

	idle, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	start = time.Now()
	idle.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil {
		t.Fatal("read data from an idle connection")
	}
	within(t, "closing an idle connection", time.Since(start), ms(380), ms(1500))
}

// Close returns promptly with exchanges in flight: waiting for headers,
// streaming a stalled body, waiting in the bulkhead's queue, backing off.
func TestCloseIsPrompt(t *testing.T) {
	stall := rawServer(t, func(c net.Conn) {
		readRequest(c)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
		time.Sleep(3 * time.Second)
		c.Close()
	})
	url, _ := recording(t, hang)
	g, err := New(Config{
		Upstreams: []Upstream{{Name: "stall", Targets: []string{stall}}, {Name: "hang", Targets: []string{url}}},
		Routes: []Route{{Path: "/stall", Upstream: "stall", Timeouts: Timeouts{Total: du(10 * time.Second)}},
			{Path: "/hang", Upstream: "hang", Timeouts: Timeouts{Total: du(10 * time.Second)}}},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	c := client(10 * time.Second)
	for _, p := range []string{"/stall", "/hang", "/stall", "/hang"} {
		go func() {
			if res, err := c.Get(g.URL() + p); err == nil {
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := g.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	within(t, "Close", time.Since(start), 0, ms(1500))
}

// An upstream that times out an idle keep-alive connection by sending 408
// and closing it (as nginx's keepalive_timeout or Go's IdleTimeout can
// look from outside): the next request must not read that 408 as its
// answer.
func TestIdleConnectionClosedWith408(t *testing.T) {
	up := rawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")
		time.Sleep(250 * time.Millisecond)
		io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		c.Close()
	})
	g := gw(t, one(Route{}, Upstream{}, up), nil)
	c := client(5 * time.Second)
	for i := range 3 {
		if a := call(t, c, "GET", g.URL()+"/", ""); a.status != 200 || a.body != "fresh" {
			t.Fatalf("request %d: %+v", i, a)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

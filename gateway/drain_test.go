package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/event"
)

// rawClient is a client connection that writes requests by hand, so a test
// can leave it idle, keep it alive, or send what the fast path hands to
// net/http.
type rawClient struct {
	net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{Conn: c, r: bufio.NewReader(c)}
}

// rawResult is one answer and its body.
type rawResult struct {
	status int
	conn   string // the Connection header
	body   string
	err    error
}

func (c *rawClient) roundTrip(req string) <-chan rawResult {
	out := make(chan rawResult, 1)
	go func() {
		if _, err := io.WriteString(c, req); err != nil {
			out <- rawResult{err: err}
			return
		}
		res, err := http.ReadResponse(c.r, nil)
		if err != nil {
			out <- rawResult{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		conn := res.Header.Get("Connection")
		if res.Close {
			conn = "close" // ReadResponse takes the header into Close
		}
		out <- rawResult{status: res.StatusCode, conn: conn, body: string(b), err: err}
	}()
	return out
}

// closedByPeer reports whether the gateway closed c: a read ends with EOF
// (or a reset) before the timeout.
func (c *rawClient) closedByPeer(timeout time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(timeout))
	_, err := c.r.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

const (
	slowGet   = "GET /slow HTTP/1.1\r\nHost: gw\r\n\r\n"
	fastGet   = "GET /fast HTTP/1.1\r\nHost: gw\r\n\r\n"
	slowChunk = "POST /slow HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n" // handed to net/http
)

// drainGateway is a gateway with a route /slow to an upstream that answers
// after 500 ms and a route /fast to one that answers at once.
func drainGateway(t *testing.T, mem *event.Memory) *Gateway {
	t.Helper()
	slow := serve(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(500 * time.Millisecond)
		io.WriteString(w, "slow")
	})
	fast := serve(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fast") })
	return gw(t, Config{
		Upstreams: []Upstream{{Name: "slow", Targets: []string{slow}}, {Name: "fast", Targets: []string{fast}}},
		Routes:    []Route{{Path: "/slow", Upstream: "slow"}, {Path: "/fast", Upstream: "fast"}},
	}, mem)
}

// Shutdown answers the requests in flight on both paths, each with
// Connection: close, closes the idle keep-alive connection at once, and
// refuses new connections from the start of the drain.
func TestShutdownDrains(t *testing.T) {
	mem := &event.Memory{}
	g := drainGateway(t, mem)
	idle := dialRaw(t, g.Addr())
	if r := <-idle.roundTrip(fastGet); r.status != 200 || r.conn == "close" {
		t.Fatalf("warm-up: %+v", r)
	}
	fastPath := dialRaw(t, g.Addr()).roundTrip(slowGet)
	handed := dialRaw(t, g.Addr()).roundTrip(slowChunk)
	time.Sleep(150 * time.Millisecond) // both at the upstream
	type shut struct {
		st  DrainStats
		err error
	}
	done := make(chan shut, 1)
	start := time.Now()
	go func() {
		st, err := g.Shutdown(context.Background())
		done <- shut{st, err}
	}()
	if !idle.closedByPeer(200 * time.Millisecond) {
		t.Error("the idle keep-alive connection is still open 200 ms into the drain")
	}
	eventually(t, "new connections refused", func() bool {
		c, err := net.DialTimeout("tcp", g.Addr(), time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	if refusedAfter := time.Since(start); refusedAfter > 200*time.Millisecond {
		t.Errorf("new connections refused only %s into the drain", refusedAfter)
	}
	for name, ch := range map[string]<-chan rawResult{"fast path": fastPath, "net/http": handed} {
		r := <-ch
		if r.err != nil || r.status != 200 || r.body != "slow" || r.conn != "close" {
			t.Errorf("%s: in flight at the drain: %+v, want 200 \"slow\" with Connection: close", name, r)
		}
	}
	s := <-done
	if s.err != nil {
		t.Errorf("Shutdown: %v", s.err)
	}
	if s.st.InFlight != 2 || s.st.Ended != 2 || s.st.Cut != 0 {
		t.Errorf("stats %+v, want 2 in flight, 2 ended, 0 cut", s.st)
	}
	within(t, "the drain", s.st.Elapsed, ms(200), ms(2000))
	if ev := eventsOf(mem, "gateway.stop"); len(ev) != 1 || ev[0].Attrs["cut"] != 0 || ev[0].Attrs["ended"] != 2 {
		t.Errorf("gateway.stop events %+v", ev)
	}
	if len(eventsOf(mem, "gateway.drain")) != 1 {
		t.Errorf("no gateway.drain event")
	}
}

// A drain that ends (its timeout) before the upstream answers cuts the
// request in flight, and says so; one whose context has ended already
// drops everything at once, as Close.
func TestShutdownTimeoutCuts(t *testing.T) {
	for _, timeout := range []time.Duration{200 * time.Millisecond, 0} {
		t.Run(timeout.String(), func(t *testing.T) {
			g := drainGateway(t, nil)
			inFlight := dialRaw(t, g.Addr()).roundTrip(slowGet)
			time.Sleep(150 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			st, _ := g.Shutdown(ctx)
			if st.InFlight != 1 || st.Ended != 0 || st.Cut != 1 {
				t.Errorf("stats %+v, want 1 in flight, 0 ended, 1 cut", st)
			}
			within(t, "the cut drain", st.Elapsed, timeout, timeout+ms(300))
			if r := <-inFlight; r.err == nil {
				t.Errorf("the cut request got an answer: %+v", r)
			} else if !strings.Contains(r.err.Error(), "EOF") && !strings.Contains(r.err.Error(), "reset") {
				t.Errorf("the cut request: %v, want the connection closed", r.err)
			}
		})
	}
}

package packet

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/units"
)

// requireRoot skips a test that needs namespaces and TUN devices, or fails
// it when CI says they must be there.
func requireRoot(t testing.TB) {
	t.Helper()
	if err := CheckPrivileges(); err != nil {
		if os.Getenv("CASCADE_REQUIRE_ROOT") == "1" {
			t.Fatalf("CASCADE_REQUIRE_ROOT=1 but packet faults cannot run: %v", err)
		}
		t.Skipf("skipping: %v (set CASCADE_REQUIRE_ROOT=1 to make this a failure)", err)
	}
}

var linkSeq atomic.Int64

// testPrefix is unique per process and call, so parallel test binaries and
// tests never share a namespace name.
func testPrefix() string {
	return fmt.Sprintf("cx%dn%d", os.Getpid()%10000000, linkSeq.Add(1)%1000)
}

// newTestLink makes a Link that is closed, and checked to have left nothing
// behind, when the test ends, pass or fail.
func newTestLink(t *testing.T, cfg Config) *Link {
	t.Helper()
	requireRoot(t)
	if cfg.Prefix == "" {
		cfg.Prefix = testPrefix()
	}
	l, err := NewLink(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewLink: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertGone(t, cfg.Prefix)
	})
	return l
}

// assertGone fails if a namespace or device named for prefix still exists.
func assertGone(t testing.TB, prefix string) {
	t.Helper()
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			if strings.HasPrefix(i.Name, prefix+"-") {
				t.Errorf("device %s left behind", i.Name)
			}
		}
	}
}

// serveHTTP runs an HTTP server in the link's upstream namespace and returns
// its base URL and a client that dials from the gateway's side.
func serveHTTP(t *testing.T, l *Link, h http.Handler) (string, *http.Client) {
	t.Helper()
	ln, err := l.Listen("tcp", ":0")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	tr := &http.Transport{DialContext: l.DialContext, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	return "http://" + ln.Addr().String(), &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func TestLinkBaseline(t *testing.T) {
	l := newTestLink(t, Config{})
	url, c := serveHTTP(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.RemoteAddr)
	}))
	if !strings.HasPrefix(url, "http://198.18.0.2:") {
		t.Fatalf("listener address %s, want 198.18.0.2:port", url)
	}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(b), "hello 198.18.0.1:") {
		t.Fatalf("body %q: the request should come from the gateway side, 198.18.0.1", b)
	}
	s := l.Stats()
	if s.ToUpstream.Packets == 0 || s.FromUpstream.Packets == 0 || s.ToUpstream.Dropped+s.FromUpstream.Dropped != 0 {
		t.Fatalf("stats %+v", s)
	}
	t.Logf("stats %+v", s)
}

// echo runs a TCP echo server in the upstream namespace and returns its address.
func echo(t *testing.T, l *Link) string {
	t.Helper()
	ln, err := l.Listen("tcp", ":0")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// pingRTT measures n one-byte round trips over one connection and returns
// them sorted.
func pingRTT(t *testing.T, l *Link, addr string, n int) []time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := l.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var b [1]byte
	var rtts []time.Duration
	for i := 0; i <= n; i++ {
		start := time.Now()
		if _, err := c.Write(b[:]); err != nil {
			t.Fatalf("write: %v", err)
		}
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatalf("read: %v", err)
		}
		if i > 0 { // the first exchange also pays for connection setup
			rtts = append(rtts, time.Since(start))
		}
	}
	slices.Sort(rtts)
	return rtts
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func TestLinkDelayRTT(t *testing.T) {
	l := newTestLink(t, Config{})
	addr := echo(t, l)
	for _, oneWay := range []time.Duration{0, 10 * time.Millisecond, 50 * time.Millisecond} {
		if err := l.Set(Both, Impairment{Delay: units.Duration(oneWay)}); err != nil {
			t.Fatal(err)
		}
		n := 200
		if oneWay > 0 {
			n = int(2 * time.Second / (2 * oneWay))
		}
		before := l.Stats()
		rtts := pingRTT(t, l, addr, n)
		after := l.Stats()
		_ = before
		lo, med := rtts[0], quantile(rtts, 0.5)
		t.Logf("one-way delay %v: RTT min %v p50 %v p90 %v max %v over %d round trips; engine lateness mean %v/%v max %v/%v (learnt wake-up lead %v/%v)",
			oneWay, lo, med, quantile(rtts, 0.9), rtts[len(rtts)-1], n,
			after.ToUpstream.MeanLateness, after.FromUpstream.MeanLateness, after.ToUpstream.MaxLateness, after.FromUpstream.MaxLateness,
			time.Duration(l.pipes[0].wake.lead.Load()), time.Duration(l.pipes[1].wake.lead.Load()))
		if lo < 2*oneWay {
			t.Errorf("one-way delay %v: RTT %v is below twice the delay", oneWay, lo)
		}
		if med > 2*oneWay+10*time.Millisecond {
			t.Errorf("one-way delay %v: median RTT %v is far above twice the delay", oneWay, med)
		}
	}
}

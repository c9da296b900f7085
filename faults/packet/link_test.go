package packet

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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

package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/gateway/health"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
)

// Options.Dial replaces how one upstream's replicas (and its health checks)
// are reached: here every connection to an address nothing listens on is
// sent to a real server instead, and a failed dial is a connect failure
// like any other.
func TestOptionsDialPerUpstream(t *testing.T) {
	var requests atomic.Int64
	real := strings.TrimPrefix(serve(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Connection", "close") // every request dials anew
		w.Write([]byte("via dial"))
	}), "http://")
	var dials atomic.Int64
	var fail atomic.Bool
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != "198.18.0.2:9" {
			t.Errorf("dial %s %s", network, addr)
		}
		dials.Add(1)
		if fail.Load() {
			return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("refused by the test")}
		}
		var d net.Dialer
		return d.DialContext(ctx, network, real)
	}
	cfg := Config{
		Upstreams: []Upstream{{Name: "up", Targets: []string{"http://198.18.0.2:9"},
			HealthCheck: &health.Config{Interval: du(time.Minute), Timeout: du(time.Second), HealthyThreshold: 1}}},
		Routes: []Route{{Path: "/", Upstream: "up", Timeouts: Timeouts{Connect: du(time.Second)}}},
	}
	g, err := New(cfg, Options{Sink: event.Discard, Dial: map[string]DialFunc{"up": dial}})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	r, err := get(t, g.URL()+"/", 2*time.Second)
	if err != nil || r.status != 200 {
		t.Fatalf("through the dialer: %+v %v", r, err)
	}
	if dials.Load() < 2 || requests.Load() < 2 {
		t.Errorf("%d dials for %d requests: want the health check's and the request's", dials.Load(), requests.Load())
	}
	fail.Store(true)
	r, err = get(t, g.URL()+"/", 2*time.Second)
	if err != nil || r.status != 502 || r.cause != cause.UpstreamConnectFailure.String() {
		t.Errorf("a failed dial: %+v %v, want 502 upstream_connect_failure", r, err)
	}
}

package health

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/gateway/balance"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
)

// upstream is a real HTTP server on 127.0.0.1 whose health answer can be
// switched.
type upstream struct {
	*httptest.Server
	status atomic.Int64
	hang   atomic.Bool
	hits   atomic.Int64
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.status.Store(200)
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		if r.URL.Path != "/healthz" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if u.hang.Load() {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		w.WriteHeader(int(u.status.Load()))
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) addr() string { return strings.TrimPrefix(u.URL, "http://") }

func newChecker(t *testing.T, cfg Config, eps ...*balance.Endpoint) (*Checker, *event.Memory) {
	t.Helper()
	set, err := balance.New(balance.Config{}, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Add(eps...); err != nil {
		t.Fatal(err)
	}
	var mem event.Memory
	c, err := NewChecker(cfg, set, WithEvents(&mem, nil), WithTarget("api"))
	if err != nil {
		t.Fatal(err)
	}
	return c, &mem
}

func TestActiveChecks(t *testing.T) {
	u := newUpstream(t)
	ep := balance.NewEndpoint(u.addr(), 1)
	c, mem := newChecker(t, Config{Path: "/healthz", Timeout: units.Duration(2 * time.Second)}, ep)
	ctx := context.Background()

	c.CheckAll(ctx)
	if !ep.Healthy() || len(mem.Events()) != 0 {
		t.Fatalf("healthy upstream: healthy=%v events=%v", ep.Healthy(), mem.Events())
	}
	u.status.Store(500)
	for i := range 2 {
		c.CheckAll(ctx)
		if !ep.Healthy() {
			t.Fatalf("down after %d failures (threshold 3)", i+1)
		}
	}
	c.CheckAll(ctx)
	if ep.Healthy() {
		t.Fatal("still healthy after 3 failures")
	}
	u.status.Store(204)
	c.CheckAll(ctx)
	if ep.Healthy() {
		t.Fatal("up after 1 success (threshold 2)")
	}
	c.CheckAll(ctx)
	if !ep.Healthy() {
		t.Fatal("still down after 2 successes")
	}
	evs := mem.Events()
	if len(evs) != 2 || evs[0].Type != "health.down" || evs[1].Type != "health.up" {
		t.Fatalf("events = %v", evs)
	}
	if evs[0].Attr("reason") != "status 500" || evs[0].Target != "api["+u.addr()+"]" {
		t.Errorf("down event = %+v", evs[0])
	}
}

func TestCheckTimeoutAndRefused(t *testing.T) {
	u := newUpstream(t)
	u.hang.Store(true)
	slow := balance.NewEndpoint(u.addr(), 1)
	// A port nobody listens on: bind, note it, close.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := l.Addr().String()
	l.Close()
	refused := balance.NewEndpoint(refusedAddr, 1)

	c, mem := newChecker(t, Config{Path: "/healthz", Timeout: units.Duration(200 * time.Millisecond),
		Interval: units.Duration(time.Second), UnhealthyThreshold: 1}, slow, refused)
	start := time.Now()
	c.CheckAll(context.Background())
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("a round with a hanging endpoint took %v (timeout 200ms)", took)
	}
	if slow.Healthy() || refused.Healthy() {
		t.Fatalf("healthy: slow=%v refused=%v", slow.Healthy(), refused.Healthy())
	}
	reasons := map[string]string{}
	for _, e := range mem.Events() {
		reasons[e.Attr("addr")] = e.Attr("reason")
	}
	if reasons[slow.Addr()] != "timeout" || !strings.HasPrefix(reasons[refused.Addr()], "error: ") {
		t.Errorf("reasons = %v", reasons)
	}
}

func TestNewEndpointNeedsOneSuccess(t *testing.T) {
	up := newUpstream(t)
	down := newUpstream(t)
	down.status.Store(503)
	a := balance.NewEndpoint(up.addr(), 1)
	b := balance.NewEndpoint(down.addr(), 1)
	a.SetHealthy(false) // added as Envoy adds a host under active checks
	b.SetHealthy(false)
	c, mem := newChecker(t, Config{Path: "/healthz", HealthyThreshold: 3}, a, b)
	c.CheckAll(context.Background())
	if !a.Healthy() {
		t.Error("a new endpoint passing its first check is not up")
	}
	if b.Healthy() {
		t.Error("a new endpoint failing its first check is up")
	}
	var got []string
	for _, e := range mem.Events() {
		got = append(got, e.Type+" "+e.Attr("addr"))
	}
	if len(got) != 2 {
		t.Errorf("events = %v, want one up and one down", got)
	}
}

func TestRunMarksDownAndStops(t *testing.T) {
	u := newUpstream(t)
	ep := balance.NewEndpoint(u.addr(), 1)
	c, _ := newChecker(t, Config{Path: "/healthz", Interval: units.Duration(20 * time.Millisecond),
		Timeout: units.Duration(20 * time.Millisecond), UnhealthyThreshold: 2}, ep)
	u.status.Store(500)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	deadline := time.Now().Add(4 * time.Second)
	for ep.Healthy() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if ep.Healthy() {
		t.Fatal("Run never marked the failing endpoint down")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not stop when its context ended")
	}
	if u.hits.Load() < 2 {
		t.Errorf("%d checks made", u.hits.Load())
	}
}

func TestCheckValidate(t *testing.T) {
	tests := []struct {
		cfg   Config
		field string
	}{
		{Config{Interval: units.Duration(-1)}, "interval"},
		{Config{Timeout: units.Duration(10 * time.Second)}, "timeout"},
		{Config{Interval: units.Duration(time.Second), Timeout: units.Duration(2 * time.Second)}, "timeout"},
		{Config{Path: "healthz"}, "path"},
		{Config{HealthyThreshold: -1}, "healthy_threshold"},
		{Config{UnhealthyThreshold: -1}, "unhealthy_threshold"},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), tt.field+": ") {
			t.Errorf("%+v: %v", tt.cfg, err)
		}
	}
	if err := (Config{Interval: units.Duration(500 * time.Millisecond)}).Validate(); err != nil {
		t.Errorf("short interval with the default timeout: %v", err)
	}
	if d := (Config{Interval: units.Duration(500 * time.Millisecond)}).withDefaults(); d.Timeout.D() != 500*time.Millisecond {
		t.Errorf("default timeout not capped at the interval: %v", d.Timeout)
	}
}

// A check asks its endpoint and nothing else: a redirect fails the check
// (as in Envoy) and is never followed, so a loopback endpoint cannot send
// the checker to another host.
func TestCheckDoesNotFollowRedirects(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/healthz", http.StatusFound)
	}))
	defer redirecting.Close()
	ep := balance.NewEndpoint(strings.TrimPrefix(redirecting.URL, "http://"), 1)
	c, mem := newChecker(t, Config{Path: "/healthz", UnhealthyThreshold: 1}, ep)
	c.CheckAll(context.Background())
	if ep.Healthy() {
		t.Error("an endpoint answering 302 passed its check")
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect was followed: %d requests reached its target", n)
	}
	if evs := mem.Events(); len(evs) != 1 || evs[0].Attr("reason") != "status 302" {
		t.Errorf("events = %v", evs)
	}
}

package faults_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/gateway"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
)

// rig is one fake upstream behind cascade's gateway.
type rig struct {
	up   *faults.Upstream
	gw   *gateway.Gateway
	sink *event.Memory
}

func newRig(t *testing.T, replicas int, to gateway.Timeouts) *rig {
	t.Helper()
	return newRigCfg(t, faults.UpstreamConfig{Name: "api", Replicas: replicas}, to)
}

func newRigCfg(t *testing.T, cfg faults.UpstreamConfig, to gateway.Timeouts) *rig {
	t.Helper()
	sink := &event.Memory{}
	up := faults.NewUpstream(cfg, faults.Options{Seed: 1, Sink: sink})
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	var targets []string
	for _, r := range up.Replicas() {
		targets = append(targets, r.URL())
	}
	gw, err := gateway.New(gateway.Config{
		Upstreams: []gateway.UpstreamTargets{{Name: "api", Targets: targets}},
		Routes:    []gateway.Route{{Path: "/", Upstream: "api", Timeouts: to}},
	}, gateway.Options{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	return &rig{up: up, gw: gw, sink: sink}
}

// activate starts a fault on every replica; it is removed at cleanup.
func (r *rig) activate(t *testing.T, kind string, spec faults.Spec) []*faults.Effect {
	t.Helper()
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	var fxs []*faults.Effect
	f := spec.New() // one fault value for every replica, as the timeline does
	for i, rep := range r.up.Replicas() {
		fx := faults.NewEffect(seeded(uint64(i)), nil)
		if err := rep.Activate(kind, f, fx); err != nil {
			t.Fatal(err)
		}
		fxs = append(fxs, fx)
		t.Cleanup(func() { rep.Deactivate(kind) })
	}
	return fxs
}

type outcome struct {
	status  int
	cause   cause.Cause
	elapsed time.Duration
	err     error
}

func call(url string, timeout time.Duration) outcome {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	res, err := c.Get(url)
	if err != nil {
		return outcome{err: err, elapsed: time.Since(start)}
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return outcome{status: res.StatusCode, cause: cause.FromResponse(res.StatusCode, res.Header.Get(cause.Header)), elapsed: time.Since(start)}
}

func TestLatencyFault(t *testing.T) {
	r := newRig(t, 1, gateway.Timeouts{})
	base := call(r.gw.URL()+"/", 5*time.Second)
	r.activate(t, "latency", &faults.LatencySpec{Delay: dist.FixedLatency(200 * time.Millisecond), Selector: faults.Selector{Probability: 1}})
	o := call(r.gw.URL()+"/", 5*time.Second)
	if o.status != 200 || o.cause != cause.OK {
		t.Fatalf("got %+v", o)
	}
	if o.elapsed < 200*time.Millisecond || o.elapsed > base.elapsed+600*time.Millisecond {
		t.Fatalf("latency fault: %s (baseline %s), want ≈ +200ms", o.elapsed, base.elapsed)
	}
}

func TestLatencyProbabilityIsSeeded(t *testing.T) {
	count := func() int64 {
		r := newRig(t, 1, gateway.Timeouts{})
		fxs := r.activate(t, "latency", &faults.LatencySpec{Delay: dist.FixedLatency(time.Millisecond), Selector: faults.Selector{Probability: 0.3}})
		for i := 0; i < 200; i++ {
			call(r.gw.URL()+"/", 5*time.Second)
		}
		return fxs[0].Count()
	}
	a, b := count(), count()
	if a != b {
		t.Fatalf("same seed fired %d then %d times", a, b)
	}
	if a < 30 || a > 90 {
		t.Fatalf("30%% of 200 fired %d times", a)
	}
}

func TestErrorFault(t *testing.T) {
	r := newRig(t, 1, gateway.Timeouts{})
	r.activate(t, "error", &faults.ErrorSpec{Status: 500, Selector: faults.Selector{Probability: 1}})
	o := call(r.gw.URL()+"/", 5*time.Second)
	if o.status != 500 || o.cause != cause.UpstreamError {
		t.Fatalf("got %d %s, want 500 upstream_error", o.status, o.cause)
	}
}

func TestResetFault(t *testing.T) {
	r := newRig(t, 1, gateway.Timeouts{})
	r.activate(t, "reset", &faults.ResetSpec{Selector: faults.Selector{Probability: 1}})
	// Through the gateway: a 502 that names the reset.
	o := call(r.gw.URL()+"/", 5*time.Second)
	if o.status != 502 || o.cause != cause.UpstreamReset {
		t.Fatalf("through gateway: %+v", o)
	}
	// Directly: the client sees the RST itself.
	o = call(r.up.Replicas()[0].URL()+"/", 5*time.Second)
	if o.err == nil || !errors.Is(o.err, syscall.ECONNRESET) {
		t.Fatalf("direct: want connection reset, got %+v", o)
	}
}

func TestHangFaultMeetsGatewayTimeout(t *testing.T) {
	r := newRig(t, 1, gateway.Timeouts{ResponseHeader: units.Duration(300 * time.Millisecond), Total: units.Duration(time.Second)})
	r.activate(t, "hang", &faults.HangSpec{Selector: faults.Selector{Probability: 1}})
	o := call(r.gw.URL()+"/", 5*time.Second)
	if o.status != 504 || o.cause != cause.GatewayTimeout {
		t.Fatalf("got %+v, want 504 gateway_timeout", o)
	}
	if o.elapsed < 290*time.Millisecond || o.elapsed > 900*time.Millisecond {
		t.Fatalf("the gateway answered after %s, want ≈ its 300ms timeout", o.elapsed)
	}
	// The hung request ended when the gateway gave up on it.
	deadline := time.Now().Add(2 * time.Second)
	for r.up.Replicas()[0].InFlight.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the hung handler outlived the gateway's request")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDownFaultRefusesThenRecovers(t *testing.T) {
	r := newRig(t, 1, gateway.Timeouts{Connect: units.Duration(300 * time.Millisecond)})
	rep := r.up.Replicas()[0]
	addr := rep.Addr()
	// A request in flight when the replica dies sees its connection reset.
	rep.Activate("slow", (&faults.LatencySpec{Delay: dist.FixedLatency(2 * time.Second), Selector: faults.Selector{Probability: 1}}).New(), faults.NewEffect(seeded(9), nil))
	var inflight outcome
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); inflight = call(r.gw.URL()+"/", 5*time.Second) }()
	time.Sleep(200 * time.Millisecond)
	fx := faults.NewEffect(seeded(2), nil)
	if err := rep.Activate("down", (&faults.DownSpec{}).New(), fx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if inflight.status != 502 || inflight.cause != cause.UpstreamReset {
		t.Fatalf("in-flight request: %+v, want 502 upstream_reset", inflight)
	}
	o := call(r.gw.URL()+"/", 5*time.Second)
	if o.status != 502 || o.cause != cause.UpstreamConnectFailure {
		t.Fatalf("while down: %+v, want 502 upstream_connect_failure", o)
	}
	rep.Deactivate("slow")
	if err := rep.Deactivate("down"); err != nil {
		t.Fatal(err)
	}
	if rep.Addr() != addr {
		t.Fatalf("replica came back on %s, not %s", rep.Addr(), addr)
	}
	o = call(r.gw.URL()+"/", 5*time.Second)
	if o.status != 200 {
		t.Fatalf("after recovery: %+v", o)
	}
	if fx.Count() != 1 {
		t.Fatalf("down fired %d times", fx.Count())
	}
}

func TestTimelineRunsOnTheClock(t *testing.T) {
	sink := &event.Memory{}
	clock := event.NewClock()
	up := faults.NewUpstream(faults.UpstreamConfig{Name: "api", Replicas: 2}, faults.Options{Seed: 1, Sink: sink, Clock: clock})
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	entries := []faults.Entry{
		{Name: "e500", Kind: "error", Spec: &faults.ErrorSpec{Status: 500, Selector: faults.Selector{Probability: 1}}, Upstream: "api", Replica: 1,
			Start: 200 * time.Millisecond, Duration: 300 * time.Millisecond},
		{Name: "never", Kind: "hang", Spec: &faults.HangSpec{Selector: faults.Selector{Probability: 1}}, Upstream: "api", Replica: -1,
			Start: 10 * time.Second, Duration: time.Second},
	}
	tl, err := faults.NewTimeline(entries, []*faults.Upstream{up}, faults.Options{Seed: 1, Sink: sink, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := faults.NewTimeline([]faults.Entry{{Name: "x", Upstream: "nope"}}, []*faults.Upstream{up}, faults.Options{}); err == nil {
		t.Fatal("a fault on an unknown upstream must be refused")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() { tl.Run(ctx); close(done) }()
	time.Sleep(350 * time.Millisecond) // inside the error window
	during := []outcome{call(up.Replicas()[0].URL(), time.Second), call(up.Replicas()[1].URL(), time.Second)}
	<-done
	after := call(up.Replicas()[1].URL(), time.Second)
	if during[0].status != 200 || during[1].status != 500 || after.status != 200 {
		t.Fatalf("replica 0 during %d, replica 1 during %d, after %d", during[0].status, during[1].status, after.status)
	}
	var start, stop time.Duration
	for _, e := range sink.Events() {
		if e.Attr("fault") == "e500" && e.Type == "fault.start" {
			start = e.T
		}
		if e.Attr("fault") == "e500" && e.Type == "fault.stop" {
			stop = e.T
		}
	}
	if start < 200*time.Millisecond || start > 300*time.Millisecond || stop < 500*time.Millisecond || stop > 600*time.Millisecond {
		t.Fatalf("fault events at %s and %s, want 200ms and 500ms", start, stop)
	}
	reps := tl.Reports()
	if !reps[0].Started || reps[0].Fired != 1 || reps[1].Started || reps[1].Fired != 0 {
		t.Fatalf("reports: %+v", reps)
	}
}

func TestUnknownKindListsValidOnes(t *testing.T) {
	_, err := faults.NewSpec("latensy")
	if err == nil || !strings.Contains(err.Error(), "latency") || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("err = %v", err)
	}
}

func seeded(n uint64) *rand.Rand { return rand.New(rand.NewPCG(n, 42)) }

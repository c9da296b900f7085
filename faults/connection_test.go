package faults_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/faults/packet"
	"github.com/cascadehq/cascade/gateway"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
)

func proxied(replicas int) faults.UpstreamConfig {
	return faults.UpstreamConfig{Name: "api", Replicas: replicas, FaultProxy: true}
}

func latencySpec(d time.Duration) *faults.TCPLatencySpec {
	s, _ := faults.NewSpec("tcp_latency")
	l := s.(*faults.TCPLatencySpec)
	l.Latency = units.Duration(d)
	return l
}

// With FaultProxy each replica is reached through its proxy: the replica's
// address is the proxy's, and the proxy forwards to the replica behind it.
func TestFaultProxyInFrontOfReplicas(t *testing.T) {
	r := newRigCfg(t, proxied(2), gateway.Timeouts{})
	for _, rep := range r.up.Replicas() {
		p := rep.Proxy()
		if p == nil || rep.Addr() != p.Addr() || p.Upstream() == p.Addr() {
			t.Fatalf("%s: addr %s, proxy %v", rep.Name(), rep.Addr(), p)
		}
	}
	if o := call(r.gw.URL()+"/", 2*time.Second); o.status != 200 {
		t.Fatalf("through the proxies: %+v", o)
	}
	if got := r.up.Replicas()[0].Proxy().Stats().Accepted + r.up.Replicas()[1].Proxy().Stats().Accepted; got == 0 {
		t.Error("no connection went through the proxies")
	}
}

// A connection fault adds its toxic at onset, counts each answer it
// delayed, and leaves nothing behind at the end.
func TestTCPLatencyFault(t *testing.T) {
	r := newRigCfg(t, proxied(1), gateway.Timeouts{})
	base := call(r.gw.URL()+"/", 2*time.Second)
	fxs := r.activate(t, "slow", latencySpec(80*time.Millisecond))
	for i := 0; i < 3; i++ {
		if o := call(r.gw.URL()+"/", 2*time.Second); o.status != 200 || o.elapsed < 80*time.Millisecond {
			t.Fatalf("with tcp_latency 80ms: %+v", o)
		}
	}
	if n := fxs[0].Count(); n != 3 {
		t.Errorf("fired %d times for 3 answers", n)
	}
	rep := r.up.Replicas()[0]
	if _, ok := rep.Proxy().Toxic("slow"); !ok {
		t.Fatal("the toxic is not named after the fault")
	}
	if err := rep.Deactivate("slow"); err != nil {
		t.Fatal(err)
	}
	if len(rep.Proxy().Toxics()) != 0 {
		t.Errorf("toxics left: %v", rep.Proxy().Toxics())
	}
	if n := fxs[0].Count(); n != 3 {
		t.Errorf("after the end the count is %d, want the final 3", n)
	}
	if o := call(r.gw.URL()+"/", 2*time.Second); o.elapsed > base.elapsed+50*time.Millisecond {
		t.Errorf("after the fault: %v (before it: %v)", o.elapsed, base.elapsed)
	}
}

// Killing a replica takes its proxy down too, so the gateway still sees a
// refused connection (not an accepted one that closes); tcp_down does the
// same at the proxy alone.
func TestProxyFollowsReplicaDown(t *testing.T) {
	r := newRigCfg(t, proxied(1), gateway.Timeouts{Connect: units.Duration(300 * time.Millisecond)})
	rep := r.up.Replicas()[0]
	addr := rep.Addr()
	for _, kind := range []string{"down", "tcp_down"} {
		spec, _ := faults.NewSpec(kind)
		fx := faults.NewEffect(seeded(1), nil)
		if err := rep.Activate(kind, spec.New(), fx); err != nil {
			t.Fatal(err)
		}
		if o := call(r.gw.URL()+"/", 2*time.Second); o.status != 502 || o.cause != cause.UpstreamConnectFailure {
			t.Errorf("%s: %+v, want 502 upstream_connect_failure", kind, o)
		}
		if err := rep.Deactivate(kind); err != nil {
			t.Fatal(err)
		}
		if rep.Addr() != addr {
			t.Errorf("%s: back on %s, not %s", kind, rep.Addr(), addr)
		}
		if o := call(r.gw.URL()+"/", 2*time.Second); o.status != 200 {
			t.Errorf("after %s: %+v", kind, o)
		}
		if fx.Count() != 1 {
			t.Errorf("%s fired %d times", kind, fx.Count())
		}
	}
}

// A ramp grows the delay from nothing to the full latency.
func TestTCPLatencyRamp(t *testing.T) {
	e := faults.Entry{Name: "ramp", Kind: "tcp_latency", Upstream: "api", Replica: -1, Spec: latencySpec(400 * time.Millisecond), Ramp: time.Second}
	sink := &event.Memory{}
	opts := faults.Options{Seed: 7, Sink: sink, Clock: event.NewClock()}
	up := faults.NewUpstream(proxied(1), opts)
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	tl, err := faults.NewTimeline([]faults.Entry{e}, []*faults.Upstream{up}, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tl.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	url := up.Replicas()[0].URL()
	time.Sleep(50 * time.Millisecond)
	early := call(url, 2*time.Second).elapsed
	time.Sleep(1200 * time.Millisecond)
	late := call(url, 2*time.Second).elapsed
	if early > 200*time.Millisecond {
		t.Errorf("early in the ramp: %s, want well under 400ms", early)
	}
	if late < 400*time.Millisecond || late > 800*time.Millisecond {
		t.Errorf("after the ramp: %s, want 400ms", late)
	}
	cancel()
	<-done
	rep := tl.Reports()[0]
	if rep.Effects.Connection == nil || rep.Effects.Connection.Messages < 2 {
		t.Errorf("report effects %+v", rep.Effects)
	}
}

// A connection or packet fault on an upstream the run did not prepare for
// it is refused with the reason, not silently ignored.
func TestNetFaultNeedsPreparedUpstream(t *testing.T) {
	up := faults.NewUpstream(faults.UpstreamConfig{Name: "api"}, faults.Options{})
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	pk, _ := faults.NewSpec("packet")
	pk.(*faults.PacketSpec).Loss.Percent = 0.01
	for _, e := range []faults.Entry{
		{Name: "c", Kind: "tcp_latency", Spec: latencySpec(time.Millisecond), Upstream: "api", Replica: -1},
		{Name: "p", Kind: "packet", Spec: pk, Upstream: "api", Replica: -1},
	} {
		_, err := faults.NewTimeline([]faults.Entry{e}, []*faults.Upstream{up}, faults.Options{})
		if err == nil || !strings.Contains(err.Error(), "the run") {
			t.Errorf("%s on an unprepared upstream: %v", e.Kind, err)
		}
	}
	rep := up.Replicas()[0]
	if err := rep.Activate("x", latencySpec(time.Millisecond).New(), faults.NewEffect(seeded(1), nil)); err == nil {
		t.Error("a tcp fault activated on a replica without a proxy")
	}
}

// The packet kind's params: a zero impairment and bad values are refused,
// naming the parameter.
func TestPacketSpecValidate(t *testing.T) {
	s := &faults.PacketSpec{}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "at least one impairment") {
		t.Errorf("empty: %v", err)
	}
	s.Reorder = packet.Reorder{Gap: 2}
	s.Correlation = 0.5
	err := s.Validate()
	var fields []string
	for _, e := range unwrapAll(err) {
		if pe, ok := e.(*faults.ParamError); ok {
			fields = append(fields, pe.Field)
		}
	}
	if !strings.Contains(strings.Join(fields, ","), "reorder") {
		t.Errorf("errors %v: fields %v", err, fields)
	}
}

func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unwrapAll(e)...)
		}
		return out
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// With your own gateway, the replica's configured address is its proxy's.
func TestFaultProxyTakesTheListenAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := proxied(1)
	cfg.Listen = []string{addr}
	up := faults.NewUpstream(cfg, faults.Options{})
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	rep := up.Replicas()[0]
	if rep.Addr() != addr || rep.Proxy().Upstream() == addr {
		t.Errorf("replica at %s, proxy → %s; want the proxy on %s", rep.Addr(), rep.Proxy().Upstream(), addr)
	}
	if o := call(rep.URL()+"/", 2*time.Second); o.status != 200 {
		t.Errorf("through %s: %+v", addr, o)
	}
}

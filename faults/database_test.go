package faults_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/faults/slowdb"
	"github.com/cascadehq/cascade/gateway"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
)

func newDBRig(t *testing.T, db faults.DatabaseConfig) (*rig, *faults.Timeline) {
	t.Helper()
	cfg := faults.UpstreamConfig{Name: "orders", Replicas: 1, Kind: faults.UpstreamDatabase, Database: &db}
	sink := &event.Memory{}
	clock := event.NewClock()
	opts := faults.Options{Seed: 1, Sink: sink, Clock: clock}
	up := faults.NewUpstream(cfg, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := up.StartContext(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	gw, err := gateway.New(gateway.Config{
		Upstreams: []gateway.UpstreamTargets{{Name: "orders", Targets: []string{up.Replicas()[0].URL()}}},
		Routes: []gateway.Route{{Path: "/", Upstream: "orders", Timeouts: gateway.Timeouts{
			ResponseHeader: units.Duration(3 * time.Second), Total: units.Duration(4 * time.Second)}}},
	}, gateway.Options{Sink: sink, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	tl, err := faults.NewTimeline(nil, []*faults.Upstream{up}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tctx, tcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tl.Run(tctx); close(done) }()
	t.Cleanup(func() { tcancel(); <-done })
	return &rig{up: up, gw: gw, sink: sink}, tl
}

func TestDatabaseUpstreamFaultsThroughGateway(t *testing.T) {
	r, tl := newDBRig(t, faults.DatabaseConfig{Config: slowdb.Config{Driver: slowdb.SQLite, PoolSize: 2,
		StatementTimeout: units.Duration(150 * time.Millisecond), UpstreamTimeout: units.Duration(600 * time.Millisecond),
		Customers: 50, OrdersPerCustomer: 3}})
	url := r.gw.URL() + "/orders/history?customer=7"
	if o := call(url, 5*time.Second); o.status != 200 || o.cause != cause.OK {
		t.Fatalf("healthy: %+v", o)
	}

	start := func(name, kind string, spec faults.Spec) {
		t.Helper()
		if err := spec.Validate(); err != nil {
			t.Fatal(err)
		}
		if err := tl.Start(faults.Entry{Name: name, Kind: kind, Spec: spec, Upstream: "orders", Replica: -1}); err != nil {
			t.Fatal(err)
		}
	}

	// A slow query past the statement timeout: the database decides, 503.
	start("slow", "slow_query", &faults.SlowQuerySpec{SlowQuery: slowdb.SlowQuery{Latency: dist.FixedLatency(time.Second)}})
	o := call(url, 5*time.Second)
	if o.status != 503 || o.cause != cause.DBTimeout {
		t.Fatalf("slow_query: %+v, want 503 db_timeout", o)
	}
	if o.elapsed < 140*time.Millisecond || o.elapsed > time.Second {
		t.Fatalf("slow_query answered after %s, want ≈ the 150ms statement timeout", o.elapsed)
	}
	if err := tl.Stop("slow"); err != nil {
		t.Fatal(err)
	}

	// The pool leaked: requests wait for a connection until the upstream's
	// own deadline, 504 upstream_timeout (a layer above the database).
	start("leak", "pool_exhaustion", &faults.PoolExhaustionSpec{})
	time.Sleep(50 * time.Millisecond)
	o = call(url, 5*time.Second)
	if o.status != 504 || o.cause != cause.UpstreamTimeout {
		t.Fatalf("pool_exhaustion: %+v, want 504 upstream_timeout", o)
	}
	if o.elapsed < 550*time.Millisecond || o.elapsed > 2*time.Second {
		t.Fatalf("pool_exhaustion answered after %s, want ≈ the 600ms upstream timeout", o.elapsed)
	}
	if err := tl.Stop("leak"); err != nil {
		t.Fatal(err)
	}

	start("refused", "connection_refused", &faults.ConnectionRefusedSpec{})
	// Idle pooled connections are closed as the fault starts; new ones fail.
	o = call(url, 5*time.Second)
	if o.status != 503 || o.cause != cause.DBError {
		t.Fatalf("connection_refused: %+v, want 503 db_error", o)
	}
	if err := tl.Stop("refused"); err != nil {
		t.Fatal(err)
	}
	if o := call(url, 5*time.Second); o.status != 200 {
		t.Fatalf("after the faults: %+v", o)
	}
	reps := map[string]faults.Report{}
	for _, rep := range tl.Reports() {
		reps[rep.Name] = rep
	}
	for _, n := range []string{"slow", "leak", "refused"} {
		if reps[n].Fired == 0 {
			t.Errorf("%s: fired 0 times: %+v", n, reps[n])
		}
	}
}

func TestDatabaseFaultRefusedOnHTTPUpstream(t *testing.T) {
	r := newRig(t, 1, gateway.Timeouts{})
	tl, err := faults.NewTimeline([]faults.Entry{{Name: "x", Kind: "slow_query", Upstream: "api", Replica: -1,
		Spec: &faults.SlowQuerySpec{SlowQuery: slowdb.SlowQuery{Latency: dist.FixedLatency(time.Second)}}}},
		[]*faults.Upstream{r.up}, faults.Options{})
	if err == nil || !strings.Contains(err.Error(), "only to upstreams of kind database") {
		t.Fatalf("NewTimeline = %v, %v", tl, err)
	}
}

func TestDatabaseConfigValidate(t *testing.T) {
	cases := map[string]struct {
		c        faults.DatabaseConfig
		replicas int
		want     string
	}{
		"container needs postgres": {faults.DatabaseConfig{Container: true}, 1, "driver: postgres"},
		"container and dsn":        {faults.DatabaseConfig{Container: true, Config: slowdb.Config{Driver: "postgres", DSN: "postgres://x"}}, 1, "not both"},
		"sqlite file shared":       {faults.DatabaseConfig{Config: slowdb.Config{DSN: "/tmp/x.db"}}, 2, "cannot back 2 replicas"},
		"postgres needs dsn":       {faults.DatabaseConfig{Config: slowdb.Config{Driver: "postgres"}}, 1, "needs a dsn"},
	}
	for name, c := range cases {
		err := c.c.Validate(c.replicas)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	if err := (faults.DatabaseConfig{Container: true, Config: slowdb.Config{Driver: "postgres"}}).Validate(3); err != nil {
		t.Errorf("a postgres container for 3 replicas is fine: %v", err)
	}
}

// A lock wait that began on lock_contention's lock and that a deadline
// ends just after the stop is in the fault's report, and waiting for it
// does not move the fault's end: fault.stop is stamped when the stop
// began.
func TestDatabaseLockFaultStopsWhenItsStopBegins(t *testing.T) {
	r, tl := newDBRig(t, faults.DatabaseConfig{Config: slowdb.Config{Driver: slowdb.SQLite,
		LockTimeout: units.Duration(10 * time.Second), StatementTimeout: units.Duration(20 * time.Second),
		UpstreamTimeout: units.Duration(20 * time.Second), Customers: 50, OrdersPerCustomer: 3}})
	// SQLite polls the busy lock every 100ms from 228ms on: ~928ms and
	// ~1028ms after the wait begins. The deadline falls between, after
	// the stop.
	const deadline, stopAt = 1020 * time.Millisecond, 975 * time.Millisecond
	req, err := http.NewRequest(http.MethodGet, r.up.Replicas()[0].URL()+"/orders?customer=3", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(slowdb.DeadlineHeader, strconv.FormatInt(deadline.Milliseconds(), 10))
	for attempt := 1; ; attempt++ {
		name := "lock-" + strconv.Itoa(attempt)
		beforeStart := time.Now()
		if err := tl.Start(faults.Entry{Name: name, Kind: "lock_contention", Spec: &faults.LockContentionSpec{},
			Upstream: "orders", Replica: -1}); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		status := make(chan string, 1)
		go func() {
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				status <- err.Error()
				return
			}
			res.Body.Close()
			status <- res.Status + " " + res.Header.Get(cause.Header) + " " + res.Header.Get(slowdb.StageHeader)
		}()
		time.Sleep(time.Until(began.Add(stopAt)))
		stopCall := time.Now()
		if err := tl.Stop(name); err != nil {
			t.Fatal(err)
		}
		took := time.Since(stopCall)
		got := <-status
		var rep faults.Report
		for _, rp := range tl.Reports() {
			if rp.Name == name {
				rep = rp
			}
		}
		var startT, stopT time.Duration
		for _, e := range r.sink.Events() {
			if e.Source == "timeline" && e.Attr("fault") == name {
				switch e.Type {
				case "fault.start":
					startT = e.T
				case "fault.stop":
					stopT = e.T
				}
			}
		}
		t.Logf("attempt %d: %s; Stop took %v; fired %d; fault.stop %v after fault.start, stop called %v after",
			attempt, got, took.Round(time.Millisecond), rep.Fired, (stopT - startT).Round(time.Millisecond),
			stopCall.Sub(began).Round(time.Millisecond))
		if strings.HasPrefix(got, "200") {
			if attempt == 5 {
				t.Fatal("the wait never outlasted the fault in 5 attempts")
			}
			continue // the poll saw the release first: nothing to count
		}
		if got != "504 Gateway Timeout upstream_timeout lock" {
			t.Fatalf("want 504 upstream_timeout in the lock stage, got %s", got)
		}
		if rep.Fired != 1 {
			t.Fatalf("the report says the fault fired %d times, want 1", rep.Fired)
		}
		// fault.start is stamped inside tl.Start, so no earlier than
		// beforeStart: stopT-startT <= stopT-beforeStart, and the
		// difference below is at most how late fault.stop is stamped
		// after the stop was called. Measuring from began (after Start
		// returned) read 17ms once under -race, which was Start's own time.
		if d := stopT - startT - stopCall.Sub(beforeStart); d > 15*time.Millisecond {
			t.Fatalf("fault.stop is stamped %v after the stop began (the stop took %v)", d.Round(time.Millisecond), took)
		}
		return
	}
}

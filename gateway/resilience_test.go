package gateway

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/gateway/balance"
	"github.com/cascadehq/cascade/gateway/breaker"
	"github.com/cascadehq/cascade/gateway/fallback"
	"github.com/cascadehq/cascade/gateway/health"
	"github.com/cascadehq/cascade/gateway/limit"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
)

// The weather API fails: its 500s are answered from the cache; once the
// breaker opens the upstream is not asked at all and the cached forecast is
// served; a request with nothing cached gets 503 breaker_open; after the
// wait in open, passing probes close the breaker.
func TestBreakerOpensServesFallbackAndCloses(t *testing.T) {
	var failing atomic.Bool
	url, rec := recording(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if failing.Load() {
			w.WriteHeader(500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"forecast":"sunny"}`))
	})
	var mem event.Memory
	g := gw(t, one(Route{Fallback: &Fallback{Cache: &fallback.CacheConfig{TTL: du(10 * time.Second)}}},
		Upstream{Breaker: &breaker.Config{SlidingWindowSize: 4, MinimumCalls: 4, FailureRateThreshold: 0.5,
			WaitDurationInOpen: du(300 * time.Millisecond), PermittedCallsInHalfOpen: 2}}, url), &mem)
	c := client(5 * time.Second)
	get := func(path string) answer { return call(t, c, "GET", g.URL()+path, "") }

	if a := get("/forecast?city=paris"); a.status != 200 || a.fallback != "" {
		t.Fatalf("healthy: %+v", a)
	}
	failing.Store(true)
	for i := range 4 {
		a := get("/forecast?city=paris")
		if a.status != 200 || a.fallback != fallback.KindCache || a.cause != cause.Fallback.String() || a.body != `{"forecast":"sunny"}` {
			t.Fatalf("failure %d: %+v, want the cached forecast marked as a fallback", i, a)
		}
	}
	eventually(t, "the breaker to open", func() bool { return g.Stats().Upstreams[0].BreakerState == "open" })
	if s := g.Stats().Upstreams[0]; s.BreakerOpened != 1 {
		t.Fatalf("after 4 failures: %+v", s)
	}
	asked := rec.count()
	for range 5 {
		if a := get("/forecast?city=paris"); a.fallback != fallback.KindCache {
			t.Fatalf("while open: %+v", a)
		}
	}
	if rec.count() != asked {
		t.Errorf("the upstream was asked %d times while the breaker was open", rec.count()-asked)
	}
	if a := get("/forecast?city=oslo"); a.status != 503 || a.cause != cause.BreakerOpen.String() {
		t.Errorf("nothing cached while open: %+v, want 503 breaker_open", a)
	}
	failing.Store(false)
	time.Sleep(350 * time.Millisecond)
	for i := range 2 {
		if a := get("/forecast?city=paris"); a.status != 200 || a.fallback != "" {
			t.Errorf("probe %d: %+v", i, a)
		}
	}
	// The breaker records an attempt just after its answer went out, and
	// sends its event just after it unlocks (emit), a moment after the
	// state reads closed: wait for both.
	eventually(t, "the breaker to close", func() bool {
		return g.Stats().Upstreams[0].BreakerState == "closed" && len(eventsOf(&mem, "breaker.close")) > 0
	})
	var types []string
	for _, e := range mem.Events() {
		if e.Source == "gateway" && len(e.Type) > 8 && e.Type[:8] == "breaker." {
			types = append(types, e.Type)
		}
	}
	if want := []string{"breaker.open", "breaker.half_open", "breaker.close"}; !equal(types, want) {
		t.Errorf("breaker events %v, want %v", types, want)
	}
	if len(eventsOf(&mem, "fallback.serve")) == 0 || len(eventsOf(&mem, "gateway.breaker_open")) == 0 {
		t.Errorf("no fallback.serve or gateway.breaker_open event")
	}
}

// Half-open probes whose clients give up on a hanging upstream prove
// nothing: the breaker stays half-open (a probe counted as a success
// closed it) and each abandoned probe's slot goes to the next call; once
// the upstream answers again, a probe that gets its answer closes it.
func TestBreakerProbeAbandonedByItsClient(t *testing.T) {
	var mode atomic.Int32 // 0 fail, 1 hang, 2 answer
	var hung atomic.Int32 // hanging calls the gateway gave up
	url, rec := recording(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch mode.Load() {
		case 0:
			w.WriteHeader(500)
		case 1:
			<-r.Context().Done()
			hung.Add(1)
		}
	})
	var mem event.Memory
	g := gw(t, one(Route{Timeouts: Timeouts{Total: du(5 * time.Second)}},
		Upstream{Breaker: &breaker.Config{SlidingWindowSize: 2, MinimumCalls: 2, FailureRateThreshold: 0.5,
			WaitDurationInOpen: du(200 * time.Millisecond), PermittedCallsInHalfOpen: 1}}, url), &mem)
	state := func() string { return g.Stats().Upstreams[0].BreakerState }
	c := client(5 * time.Second)
	for range 2 {
		call(t, c, "GET", g.URL()+"/", "")
	}
	eventually(t, "the breaker to open", func() bool { return state() == "open" })

	mode.Store(1)
	time.Sleep(250 * time.Millisecond)
	impatient := client(300 * time.Millisecond)
	for i := range 3 {
		before := rec.count()
		if a := call(t, impatient, "GET", g.URL()+"/", ""); a.err == nil {
			t.Fatalf("probe %d: answered %+v on a hanging upstream", i, a)
		}
		if rec.count() != before+1 {
			t.Fatalf("probe %d did not reach the upstream: its slot was not handed back", i)
		}
		// The gateway sees the client gone at its next poll, closes the
		// upstream connection and hands the probe's ticket back.
		brk := g.upList[0].brk
		eventually(t, "the gateway to give up the probe", func() bool {
			c := brk.Counters()
			return hung.Load() == int32(i+1) && c.Released+c.Successes == uint64(i+1)
		})
		if s := state(); s != "half_open" {
			t.Fatalf("after abandoned probe %d the breaker is %s, want half_open", i, s)
		}
	}

	mode.Store(2)
	if a := call(t, c, "GET", g.URL()+"/", ""); a.status != 200 {
		t.Fatalf("probe on a healthy upstream: %+v", a)
	}
	eventually(t, "the breaker to close", func() bool { return state() == "closed" })
	var types []string
	for _, e := range mem.Events() {
		if e.Source == "gateway" && strings.HasPrefix(e.Type, "breaker.") {
			types = append(types, e.Type)
		}
	}
	if want := []string{"breaker.open", "breaker.half_open", "breaker.close"}; !equal(types, want) {
		t.Errorf("breaker events %v, want %v", types, want)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A static fallback answers for the failures it is configured for only.
func TestStaticFallbackConditions(t *testing.T) {
	dead := refused(t)
	static := &fallback.StaticConfig{Status: 200, Body: "degraded", Headers: map[string]string{"Content-Type": "text/plain"}}
	g := gw(t, Config{
		Upstreams: []Upstream{{Name: "dead", Targets: []string{dead}}},
		Routes: []Route{
			{Path: "/any", Upstream: "dead", Fallback: &Fallback{Static: static}},
			{Path: "/timeouts-only", Upstream: "dead", Fallback: &Fallback{Static: static, On: []string{OnTimeout}}},
		},
	}, nil)
	c := client(5 * time.Second)
	if a := call(t, c, "GET", g.URL()+"/any", ""); a.status != 200 || a.body != "degraded" || a.fallback != "static" || a.cause != "fallback" {
		t.Errorf("static fallback: %+v", a)
	}
	if a := call(t, c, "POST", g.URL()+"/any", "x"); a.fallback != "static" {
		t.Errorf("static fallback for POST: %+v", a)
	}
	if a := call(t, c, "GET", g.URL()+"/timeouts-only", ""); a.status != 502 || a.cause != cause.UpstreamConnectFailure.String() {
		t.Errorf("fallback on timeouts only, connect failure: %+v", a)
	}
}

// The bulkhead sheds what does not fit: max_requests with no queue, a
// queue that times out, a queue that waits long enough, max_connections.
func TestBulkheadOverflow(t *testing.T) {
	url, _ := recording(t, func(w http.ResponseWriter, r *http.Request, n int) {
		time.Sleep(300 * time.Millisecond)
		w.Write([]byte("slow"))
	})
	cases := []struct {
		name   string
		limits Limits
		// second request's outcome, sent while the first holds the slot
		status  int
		minT    time.Duration
		maxT    time.Duration
		overMax bool
	}{
		{"max_requests, no queue", Limits{Config: limit.Config{MaxRequests: 1}}, 503, 0, ms(200), false},
		{"queue wait runs out", Limits{Config: limit.Config{MaxRequests: 1, MaxPending: 1, MaxPendingWait: du(100 * time.Millisecond)}}, 503, ms(90), ms(280), false},
		{"queue wait long enough", Limits{Config: limit.Config{MaxRequests: 1, MaxPending: 1, MaxPendingWait: du(2 * time.Second)}}, 200, ms(250), ms(1500), false},
		{"max_connections", Limits{MaxConnections: 1}, 503, 0, ms(200), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mem event.Memory
			lim := tc.limits
			g := gw(t, one(Route{}, Upstream{Limits: &lim}, url), &mem)
			c := client(5 * time.Second)
			first := make(chan answer, 1)
			go func() { first <- call(t, c, "GET", g.URL()+"/", "") }()
			time.Sleep(80 * time.Millisecond)
			a := call(t, c, "GET", g.URL()+"/", "")
			if a.status != tc.status {
				t.Errorf("second request: %+v, want %d", a, tc.status)
			}
			if tc.status == 503 && a.cause != cause.Overflow.String() {
				t.Errorf("second request cause %q, want overflow", a.cause)
			}
			within(t, "second request", a.elapsed, tc.minT, tc.maxT)
			if f := <-first; f.status != 200 {
				t.Errorf("first request: %+v", f)
			}
			if tc.status == 503 {
				ev := eventsOf(&mem, "limit.overflow")
				if len(ev) != 1 {
					t.Fatalf("limit.overflow events: %v", ev)
				}
				if tc.overMax && ev[0].Attr("reason") != "max_connections" {
					t.Errorf("reason %q", ev[0].Attr("reason"))
				}
				if g.Stats().Upstreams[0].Overflows != 1 {
					t.Errorf("stats: %+v", g.Stats().Upstreams[0])
				}
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	url, rec := recording(t, func(w http.ResponseWriter, r *http.Request, n int) {})
	var mem event.Memory
	g := gw(t, one(Route{RateLimit: &limit.RateConfig{Rate: units.Rate(2), Burst: 1}}, Upstream{}, url), &mem)
	c := client(5 * time.Second)
	var statuses []int
	for range 3 {
		a := call(t, c, "GET", g.URL()+"/", "")
		statuses = append(statuses, a.status)
		if a.status == 429 && a.cause != cause.RateLimited.String() {
			t.Errorf("429 with cause %q", a.cause)
		}
	}
	if statuses[0] != 200 || statuses[1] != 429 || statuses[2] != 429 || rec.count() != 1 {
		t.Errorf("statuses %v, upstream saw %d", statuses, rec.count())
	}
	if len(eventsOf(&mem, "limit.rate_limited")) != 1 || len(eventsOf(&mem, "gateway.rate_limited")) != 1 {
		t.Errorf("events: %v", mem.Events())
	}
}

// Consecutive 5xx eject a replica; the rest of the traffic goes to the
// healthy one.
func TestOutlierEjection(t *testing.T) {
	badURL, bad := recording(t, func(w http.ResponseWriter, r *http.Request, n int) { w.WriteHeader(500) })
	goodURL, good := recording(t, func(w http.ResponseWriter, r *http.Request, n int) {})
	var mem event.Memory
	g := gw(t, one(Route{}, Upstream{Outlier: &health.OutlierConfig{Consecutive5xx: 3, BaseEjectionTime: du(10 * time.Second)}},
		badURL, goodURL), &mem)
	c := client(5 * time.Second)
	for range 20 {
		call(t, c, "GET", g.URL()+"/", "")
	}
	if bad.count() != 3 || good.count() != 17 {
		t.Errorf("bad replica saw %d, good %d; want 3 and 17", bad.count(), good.count())
	}
	ev := eventsOf(&mem, "outlier.eject")
	if len(ev) != 1 || ev[0].Attr("reason") != "consecutive_5xx" {
		t.Errorf("eject events %v", ev)
	}
	if g.Stats().Upstreams[0].Ejections != 1 {
		t.Errorf("stats %+v", g.Stats().Upstreams[0])
	}
}

// With active health checks a replica that fails them gets no traffic;
// replicas added at run time join once they pass, removed ones leave.
func TestHealthChecksAndSetTargets(t *testing.T) {
	var sick atomic.Bool
	sick.Store(true)
	mk := func(name string, isSick *atomic.Bool) string {
		return serve(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/health" && isSick != nil && isSick.Load() {
				w.WriteHeader(500)
				return
			}
			w.Write([]byte(name))
		})
	}
	a := mk("a", &sick)
	var mem event.Memory
	// A new replica starts unhealthy and needs one passing check; three
	// failures in a row take a healthy one out (so a slow check on a busy
	// machine does not).
	g := gw(t, one(Route{}, Upstream{HealthCheck: &health.Config{Interval: du(150 * time.Millisecond), Timeout: du(150 * time.Millisecond),
		Path: "/health", UnhealthyThreshold: 3, HealthyThreshold: 1}}, a), &mem)
	c := client(5 * time.Second)
	if r := call(t, c, "GET", g.URL()+"/", ""); r.status != 503 || r.cause != cause.NoHealthyUpstream.String() {
		t.Fatalf("only replica failing its check: %+v", r)
	}
	b := mk("b", nil)
	if err := g.SetTargets("up", []string{a, b}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b to pass its first check", func() bool { return call(t, c, "GET", g.URL()+"/", "").body == "b" })
	for range 5 {
		if r := call(t, c, "GET", g.URL()+"/", ""); r.body != "b" {
			t.Fatalf("traffic to an unhealthy replica: %+v", r)
		}
	}
	sick.Store(false)
	eventually(t, "a to recover", func() bool { return call(t, c, "GET", g.URL()+"/", "").body == "a" })
	if err := g.SetTargets("up", []string{a}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if r := call(t, c, "GET", g.URL()+"/", ""); r.body != "a" {
			t.Fatalf("traffic to a removed replica: %+v", r)
		}
	}
	for _, typ := range []string{"health.down", "health.up", "endpoint.add", "endpoint.remove"} {
		if len(eventsOf(&mem, typ)) == 0 {
			t.Errorf("no %s event", typ)
		}
	}
	if err := g.SetTargets("nope", nil); err == nil {
		t.Error("SetTargets on an unknown upstream")
	}
	if err := g.SetTargets("up", []string{"ftp://x"}); err == nil {
		t.Error("SetTargets with a bad URL")
	}
}

// Health checks failing on three of four replicas that still serve (a
// broken /health handler): with panic_threshold 50% the gateway stops
// trusting them and spreads requests over all four, as Envoy does below
// its healthy panic threshold; the panic is an event, a stat and a metric.
func TestPanicThresholdSpreadsOverFailingChecks(t *testing.T) {
	var urls []string
	var recs []*recorder
	for i := range 4 {
		u, rec := recording(t, func(w http.ResponseWriter, r *http.Request, n int) {
			if r.URL.Path == "/health" && i > 0 {
				w.WriteHeader(503)
			}
		})
		urls, recs = append(urls, u), append(recs, rec)
	}
	var mem event.Memory
	hc := &health.Config{Interval: du(100 * time.Millisecond), Timeout: du(100 * time.Millisecond), Path: "/health", UnhealthyThreshold: 1, HealthyThreshold: 1}
	g := gw(t, one(Route{}, Upstream{HealthCheck: hc, Balance: balance.Config{Policy: "round_robin", PanicThreshold: 0.5}}, urls...), &mem)
	eventually(t, "the checks to mark three replicas down", func() bool { return len(eventsOf(&mem, "health.down")) == 3 })
	c := client(5 * time.Second)
	before := make([]int, 4)
	for i, r := range recs {
		before[i] = r.count()
	}
	for range 40 {
		if a := call(t, c, "GET", g.URL()+"/x", ""); a.status != 200 {
			t.Fatalf("in panic: %+v", a)
		}
	}
	// Each replica got its round-robin share of /x (the checks on /health
	// are counted apart).
	for i, r := range recs {
		n := 0
		for _, s := range r.all()[before[i]:] {
			if s.path == "/x" {
				n++
			}
		}
		if n != 10 {
			t.Errorf("replica %d got %d of 40 requests, want 10 (spread in panic)", i, n)
		}
	}
	if ev := eventsOf(&mem, balance.EvPanic); len(ev) != 1 || ev[0].Attrs["panic"] != true || ev[0].Attrs["available"] != 1 {
		t.Errorf("panic events %v", ev)
	}
	if st := g.Stats().Upstreams[0]; st.Panics != 1 {
		t.Errorf("stats %+v", st)
	}
}

// Replicas come and go while requests flow (autoscaling): no request is
// lost to a replica that left, and -race sees no unguarded state.
func TestSetTargetsUnderLoad(t *testing.T) {
	var urls []string
	for range 3 {
		u, _ := recording(t, func(w http.ResponseWriter, r *http.Request, n int) { time.Sleep(time.Millisecond) })
		urls = append(urls, u)
	}
	g := gw(t, one(Route{}, Upstream{Balance: balanceCfg("least_request")}, urls...), nil)
	c := client(5 * time.Second)
	var wg sync.WaitGroup
	var bad atomic.Int64
	var firstBad atomic.Pointer[answer]
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if a := call(t, c, "GET", g.URL()+"/", ""); a.status != 200 {
					bad.Add(1)
					firstBad.CompareAndSwap(nil, &a)
				}
			}
		})
	}
	for i := range 100 {
		// Rotate which replicas stay, so additions and removals both race
		// with picks.
		set := []string{urls[i%3], urls[(i+1)%3]}[:1+i%2]
		if err := g.SetTargets("up", set); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if bad.Load() > 0 {
		t.Errorf("%d requests failed while replicas changed; the first: %+v", bad.Load(), *firstBad.Load())
	}
}

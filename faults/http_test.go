package faults_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/gateway"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/units"
)

// newBodyRig is a one-replica upstream with a body big enough to cut.
func newBodyRig(t *testing.T, size int64) *rig {
	t.Helper()
	return newRigCfg(t, faults.UpstreamConfig{Name: "api", Replicas: 1, Behaviour: faults.Behaviour{BodySize: units.Size(size)}}, gateway.Timeouts{})
}

// fetch reads a whole answer and reports the body length and the read error.
func fetch(url string, timeout time.Duration) (status int, c cause.Cause, n int, elapsed time.Duration, err error) {
	cl := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	res, err := cl.Get(url)
	if err != nil {
		return 0, 0, 0, time.Since(start), err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, cause.FromResponse(res.StatusCode, res.Header.Get(cause.Header)), len(b), time.Since(start), err
}

func TestSlowBodyPacesTheBody(t *testing.T) {
	r := newBodyRig(t, 2000)
	r.activate(t, "slow_body", &faults.SlowBodySpec{BytesPerSecond: 4000, Selector: faults.Selector{Probability: 1}})
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	res, err := cl.Get(r.gw.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	ttfb := time.Since(start)
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	total := time.Since(start)
	if err != nil || len(b) != 2000 || res.StatusCode != 200 {
		t.Fatalf("status %d, %d bytes, err %v", res.StatusCode, len(b), err)
	}
	// 2000 bytes at 4000 B/s: the headers at once, the body over ≈ 500ms.
	if ttfb > 200*time.Millisecond {
		t.Errorf("headers after %s: only the body should be slow", ttfb)
	}
	if total < 450*time.Millisecond || total > 1500*time.Millisecond {
		t.Errorf("the body took %s, want ≈ 500ms", total)
	}
}

func TestTruncatedBodyThroughGateway(t *testing.T) {
	r := newBodyRig(t, 1000)
	r.activate(t, "truncated_body", &faults.TruncatedBodySpec{Fraction: 0.3, Selector: faults.Selector{Probability: 1}})
	// Directly: Content-Length says 1000, 300 bytes arrive, then EOF.
	status, _, n, _, err := fetch(r.up.Replicas()[0].URL()+"/", 5*time.Second)
	if status != 200 || n != 300 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("direct: status %d, %d bytes, err %v; want 200, 300 bytes, unexpected EOF", status, n, err)
	}
	// Through the gateway the client also gets a cut answer, never a whole one.
	status, _, n, _, err = fetch(r.gw.URL()+"/", 5*time.Second)
	if err == nil || n >= 1000 {
		t.Fatalf("through the gateway: status %d, %d bytes, err %v; want a broken body", status, n, err)
	}
}

func TestCloseMidResponseResets(t *testing.T) {
	r := newBodyRig(t, 1000)
	r.activate(t, "close_mid_response", &faults.CloseMidResponseSpec{After: 0.5, Close: faults.CloseRST, Selector: faults.Selector{Probability: 1}})
	status, _, n, _, err := fetch(r.up.Replicas()[0].URL()+"/", 5*time.Second)
	if status != 200 || n >= 1000 || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("direct: status %d, %d bytes, err %v; want a reset mid-body", status, n, err)
	}
	status, c, n, _, err := fetch(r.gw.URL()+"/", 5*time.Second)
	// The gateway either relayed the headers and then aborted, or (if the
	// reset overtook them) answered 502 upstream_reset itself.
	if !(err != nil && n < 1000) && !(status == 502 && c == cause.UpstreamReset) {
		t.Fatalf("through the gateway: status %d %s, %d bytes, err %v", status, c, n, err)
	}
}

func TestMalformedIs502UpstreamMalformed(t *testing.T) {
	for _, v := range []string{faults.MalformedGarbage, faults.MalformedStatus, faults.MalformedHeader, faults.MalformedLength} {
		t.Run(v, func(t *testing.T) {
			r := newBodyRig(t, 64)
			r.activate(t, "malformed", &faults.MalformedSpec{Variant: v, Selector: faults.Selector{Probability: 1}})
			o := call(r.gw.URL()+"/", 5*time.Second)
			if o.status != 502 || o.cause != cause.UpstreamMalformed {
				t.Fatalf("got %+v, want 502 upstream_malformed", o)
			}
		})
	}
}

func TestFailFirstThenSucceed(t *testing.T) {
	r := newRig(t, 2, gateway.Timeouts{})
	fxs := r.activate(t, "fail_first", &faults.FailFirstSpec{Count: 3, Status: 503})
	var got []int
	for range 6 {
		got = append(got, call(r.gw.URL()+"/", 5*time.Second).status)
	}
	want := []int{503, 503, 503, 200, 200, 200}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("statuses %v, want %v (the count is shared by both replicas)", got, want)
		}
	}
	if fxs[0].Count()+fxs[1].Count() != 3 {
		t.Fatalf("fired %d+%d times", fxs[0].Count(), fxs[1].Count())
	}
}

func TestSpikeSlowsAShare(t *testing.T) {
	r := newRig(t, 1, gateway.Timeouts{})
	r.activate(t, "spike", &faults.SpikeSpec{Delay: dist.FixedLatency(300 * time.Millisecond), Selector: faults.Selector{Probability: 0.1}})
	var lat []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				o := call(r.gw.URL()+"/", 5*time.Second)
				mu.Lock()
				lat = append(lat, o.elapsed)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	slow := 0
	for _, l := range lat {
		if l >= 300*time.Millisecond {
			slow++
		}
	}
	if slow < 3 || slow > 25 {
		t.Fatalf("%d of 100 slow, want ≈ 10%%", slow)
	}
	if lat[50] > 200*time.Millisecond {
		t.Fatalf("p50 %s: the spike must leave most requests alone", lat[50])
	}
}

func TestMatchLimitsAFault(t *testing.T) {
	r := newRig(t, 1, gateway.Timeouts{})
	r.activate(t, "error", &faults.ErrorSpec{Status: 500, Selector: faults.Selector{Probability: 1,
		Match: &faults.Match{Method: "post", Path: "/orders/*/items", Header: map[string]string{"X-Tenant": "acme"}}}})
	do := func(method, path, tenant string) int {
		req, _ := http.NewRequest(method, r.gw.URL()+path, nil)
		if tenant != "" {
			req.Header.Set("X-Tenant", tenant)
		}
		res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	cases := []struct {
		method, path, tenant string
		want                 int
	}{
		{"POST", "/orders/42/items", "acme", 500},
		{"GET", "/orders/42/items", "acme", 200},
		{"POST", "/orders/42/items", "other", 200},
		{"POST", "/orders/42", "acme", 200},
		{"POST", "/orders/42/items/7", "acme", 200}, // * stops at /
	}
	for _, c := range cases {
		if got := do(c.method, c.path, c.tenant); got != c.want {
			t.Errorf("%s %s tenant %q: %d, want %d", c.method, c.path, c.tenant, got, c.want)
		}
	}
	prefix := &faults.Match{Path: "/api"}
	for path, want := range map[string]bool{"/api": true, "/api/v1": true, "/apx": false} {
		req, _ := http.NewRequest("GET", "http://x"+path, nil)
		if prefix.Matches(req) != want {
			t.Errorf("prefix /api on %s: want %v", path, want)
		}
	}
	if err := (&faults.Match{Path: "/a/[b"}).Validate(); err == nil {
		t.Error("a broken glob must be refused")
	}
}

func TestLatencyDistributions(t *testing.T) {
	cases := map[string]struct {
		d        dist.Latency
		min, max time.Duration // bounds on the median of 30 draws (coarse)
	}{
		"fixed":       {dist.FixedLatency(80 * time.Millisecond), 80 * time.Millisecond, 250 * time.Millisecond},
		"uniform":     {dist.Latency{Dist: dist.Uniform, Min: units.Duration(40 * time.Millisecond), Max: units.Duration(120 * time.Millisecond)}, 40 * time.Millisecond, 250 * time.Millisecond},
		"normal":      {dist.Latency{Dist: dist.Normal, Mean: units.Duration(80 * time.Millisecond), Stddev: units.Duration(10 * time.Millisecond)}, 50 * time.Millisecond, 250 * time.Millisecond},
		"lognormal":   {dist.Latency{Dist: dist.LogNormal, P50: units.Duration(60 * time.Millisecond), P99: units.Duration(200 * time.Millisecond)}, 40 * time.Millisecond, 300 * time.Millisecond},
		"percentiles": {dist.Latency{Dist: dist.Percentiles, P50: units.Duration(60 * time.Millisecond), P99: units.Duration(100 * time.Millisecond)}, 30 * time.Millisecond, 250 * time.Millisecond},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, 1, gateway.Timeouts{})
			r.activate(t, "latency", &faults.LatencySpec{Delay: c.d, Selector: faults.Selector{Probability: 1}})
			var lat []time.Duration
			for range 30 {
				o := call(r.gw.URL()+"/", 5*time.Second)
				if o.status != 200 {
					t.Fatalf("%+v", o)
				}
				lat = append(lat, o.elapsed)
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			if lat[15] < c.min || lat[15] > c.max {
				t.Fatalf("median %s, want within [%s, %s]", lat[15], c.min, c.max)
			}
		})
	}
}

func TestLatencyNeverShort(t *testing.T) {
	// Measured at the replica itself: the injected delay is a floor.
	r := newRig(t, 1, gateway.Timeouts{})
	r.activate(t, "latency", &faults.LatencySpec{Delay: dist.FixedLatency(20 * time.Millisecond), Selector: faults.Selector{Probability: 1}})
	for range 20 {
		o := call(r.up.Replicas()[0].URL()+"/", 5*time.Second)
		if o.elapsed < 20*time.Millisecond {
			t.Fatalf("answered after %s, before the 20ms delay", o.elapsed)
		}
	}
}

// The healthy behaviour's own latency is accounted for like a fault's:
// one release per delayed request, none before its deadline.
func TestBehaviourLatencyLateness(t *testing.T) {
	r := newRigCfg(t, faults.UpstreamConfig{Name: "api", Behaviour: faults.Behaviour{Latency: dist.FixedLatency(5 * time.Millisecond)}}, gateway.Timeouts{})
	rep := r.up.Replicas()[0]
	for range 4 {
		call(rep.URL()+"/", 5*time.Second)
	}
	if l := rep.Lateness(); l.Releases() != 4 || l.Max < 0 {
		t.Fatalf("lateness %+v: want 4 releases, none early", l)
	}
}

func TestKillResetsAndStaysDown(t *testing.T) {
	r := newRig(t, 1, gateway.Timeouts{Connect: units.Duration(300 * time.Millisecond)})
	rep := r.up.Replicas()[0]
	slowFx := faults.NewEffect(seeded(3), nil)
	if err := rep.Activate("slow", (&faults.LatencySpec{Delay: dist.FixedLatency(2 * time.Second), Selector: faults.Selector{Probability: 1}}).New(), slowFx); err != nil {
		t.Fatal(err)
	}
	direct := make(chan error, 1)
	go func() { _, _, _, _, err := fetch(rep.URL()+"/", 5*time.Second); direct <- err }()
	time.Sleep(200 * time.Millisecond)
	if err := rep.Activate("kill", (&faults.KillSpec{}).New(), faults.NewEffect(seeded(4), nil)); err != nil {
		t.Fatal(err)
	}
	if err := <-direct; !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("in-flight request: %v, want a reset", err)
	}
	rep.Deactivate("slow")
	if err := rep.Deactivate("kill"); err != nil {
		t.Fatal(err)
	}
	if o := call(r.gw.URL()+"/", 5*time.Second); o.status != 502 || o.cause != cause.UpstreamConnectFailure {
		t.Fatalf("after the kill ended: %+v; a killed replica stays down", o)
	}
	if !rep.Down() {
		t.Fatal("Down() = false after a kill")
	}
}

func TestRestartComesBackAfterDelay(t *testing.T) {
	r := newRig(t, 1, gateway.Timeouts{Connect: units.Duration(300 * time.Millisecond)})
	rep := r.up.Replicas()[0]
	addr := rep.Addr()
	start := time.Now()
	if err := rep.Activate("restart", (&faults.RestartSpec{Delay: units.Duration(400 * time.Millisecond)}).New(), faults.NewEffect(seeded(5), nil)); err != nil {
		t.Fatal(err)
	}
	if o := call(r.gw.URL()+"/", 5*time.Second); o.cause != cause.UpstreamConnectFailure {
		t.Fatalf("during the restart: %+v", o)
	}
	for {
		o := call(r.gw.URL()+"/", 5*time.Second)
		if o.status == 200 {
			break
		}
		if time.Since(start) > 3*time.Second {
			t.Fatal("the replica never came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if back := time.Since(start); back < 400*time.Millisecond {
		t.Fatalf("back after %s, before the 400ms delay", back)
	}
	if rep.Addr() != addr {
		t.Fatalf("came back on %s, not %s", rep.Addr(), addr)
	}
	if err := rep.Deactivate("restart"); err != nil {
		t.Fatal(err)
	}
}

func TestPauseHoldsConnectionsThenResumes(t *testing.T) {
	r := newRig(t, 1, gateway.Timeouts{ResponseHeader: units.Duration(300 * time.Millisecond), Total: units.Duration(time.Second)})
	rep := r.up.Replicas()[0]
	if err := rep.Activate("pause", (&faults.PauseSpec{}).New(), faults.NewEffect(seeded(6), nil)); err != nil {
		t.Fatal(err)
	}
	// The kernel still completes the handshake: a connect succeeds.
	c, err := net.DialTimeout("tcp", rep.Addr(), time.Second)
	if err != nil {
		t.Fatalf("connect to a paused replica: %v (the kernel's backlog should accept)", err)
	}
	c.Close()
	// Through the gateway: nothing answers, the gateway times out.
	if o := call(r.gw.URL()+"/", 5*time.Second); o.status != 504 || o.cause != cause.GatewayTimeout {
		t.Fatalf("while paused: %+v, want 504 gateway_timeout", o)
	}
	// A direct request waits for the resume, then succeeds.
	got := make(chan outcome, 1)
	go func() { got <- call(rep.URL()+"/", 5*time.Second) }()
	time.Sleep(300 * time.Millisecond)
	select {
	case o := <-got:
		t.Fatalf("answered while paused: %+v", o)
	default:
	}
	if err := rep.Deactivate("pause"); err != nil {
		t.Fatal(err)
	}
	if o := <-got; o.status != 200 || o.elapsed < 300*time.Millisecond {
		t.Fatalf("after resume: %+v", o)
	}
	if o := call(r.gw.URL()+"/", 5*time.Second); o.status != 200 {
		t.Fatalf("after resume through the gateway: %+v", o)
	}
}

func TestKindsHaveLayers(t *testing.T) {
	layers := map[string]faults.Layer{}
	for _, k := range faults.AllKinds() {
		layers[k.Name] = k.Layer
	}
	want := map[string]faults.Layer{
		"latency": faults.LayerHTTP, "malformed": faults.LayerHTTP, "kill": faults.LayerInstance,
		"pause": faults.LayerInstance, "slow_query": faults.LayerDatabase, "pool_exhaustion": faults.LayerDatabase,
	}
	for k, l := range want {
		if layers[k] != l {
			t.Errorf("%s: layer %q, want %q", k, layers[k], l)
		}
	}
	k, _ := faults.LookupKind("slow_query")
	if err := k.Applies(faults.UpstreamHTTP, false); err == nil || !strings.Contains(err.Error(), "database") {
		t.Errorf("slow_query on an HTTP upstream: %v", err)
	}
	k, _ = faults.LookupKind("latency")
	if err := k.Applies(faults.UpstreamHTTP, true); err == nil {
		t.Error("an HTTP fault cannot reach a containerised replica")
	}
	k, _ = faults.LookupKind("kill")
	if err := k.Applies(faults.UpstreamDatabase, true); err != nil {
		t.Errorf("kill applies everywhere: %v", err)
	}
}

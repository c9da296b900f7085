package loadgen

import (
	"context"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/event"
)

// concServer answers after delay and tracks how many requests it holds at
// once, with the clock time and concurrency seen by each arrival.
type concServer struct {
	url      string
	cur, max atomic.Int64
	mu       sync.Mutex
	seen     []arrival
	conns    atomic.Int64
}

type arrival struct {
	at   time.Duration
	conc int64
	r    *http.Request
	body string
}

func newConcServer(t *testing.T, clock *event.Clock, delay time.Duration) *concServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cs := &concServer{url: "http://" + ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := cs.cur.Add(1)
		defer cs.cur.Add(-1)
		for {
			m := cs.max.Load()
			if n <= m || cs.max.CompareAndSwap(m, n) {
				break
			}
		}
		b := make([]byte, r.ContentLength)
		if r.ContentLength > 0 {
			_, _ = r.Body.Read(b)
		}
		cs.mu.Lock()
		cs.seen = append(cs.seen, arrival{at: clock.Now(), conc: n, r: r, body: string(b)})
		cs.mu.Unlock()
		if delay > 0 {
			time.Sleep(delay)
		}
	}), ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			cs.conns.Add(1)
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return cs
}

func runLoad(t *testing.T, cfg Config, clock *event.Clock) ([]Sample, *Generator) {
	t.Helper()
	rec := &memRecorder{}
	if onLoops(t) {
		cfg.Loops = 2
	}
	g, err := New(cfg, rec, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock.Reset(time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if onLoops(t) {
		for _, e := range g.execs {
			if e.cfg.Kind == VUs && len(e.loops) == 0 {
				t.Fatalf("executor %d did not run on the loops", e.idx)
			}
		}
	}
	return rec.samples, g
}

// Constant VUs with think time: a closed loop. Concurrency at the server
// never exceeds the VU count, and each VU's rate is bounded by service plus
// think time.
func TestConstantVUs(t *testing.T) {
	clock := event.NewClock()
	srv := newConcServer(t, clock, 10*time.Millisecond)
	samples, g := runLoad(t, Config{Kind: VUs, Target: srv.url, Requests: []Request{{Path: "/"}},
		Stages: []Stage{{time.Second, 4, 4}}, Think: dist.FixedLatency(10 * time.Millisecond), KeepAlive: true}, clock)
	// 4 VUs × 1 s / (10 ms service + 10 ms think + overhead) ≈ 200 at most.
	if n := len(samples); n < 100 || n > 205 {
		t.Fatalf("%d requests from 4 VUs with 20 ms cycles in 1 s", n)
	}
	if m := srv.max.Load(); m > 4 {
		t.Fatalf("server saw %d concurrent requests from 4 VUs", m)
	}
	for _, s := range samples {
		if s.Cause != cause.OK || s.Lag != 0 || s.Latency != s.Service+s.ConnWait || s.Latency < 10*time.Millisecond {
			t.Fatalf("closed-model sample %+v", s)
		}
	}
	p := g.Executors()[0]
	if p.Kind != VUs || p.Completed != int64(len(samples)) || p.InFlight != 0 || p.VUs != 0 {
		t.Fatalf("progress after the run %+v", p)
	}
	// Sequence numbers are unique across VUs.
	seen := map[uint64]bool{}
	for _, s := range samples {
		if seen[s.Seq] {
			t.Fatalf("seq %d used twice", s.Seq)
		}
		seen[s.Seq] = true
	}
	// A closed model schedules nothing ahead: the run cannot tell when an
	// interval is whole by counting, and waits the client timeout.
	if _, ok := g.ArrivalsBefore(time.Second); ok {
		t.Fatal("ArrivalsBefore counted a closed model's requests")
	}
}

// MaxRequests with more VUs than 64 requests each: every VU sends while
// requests remain (hey -n N -c V), so a slow target holds V requests at
// once, and still exactly N go out, each sequence number once. Handing out
// whole blocks of 64 ran ceil(N/64) VUs: one here, 50 × 200 ms in a row.
func TestMaxRequestsRunsEveryVU(t *testing.T) {
	const vus, n, delay = 20, 50, 200 * time.Millisecond
	clock := event.NewClock()
	srv := newConcServer(t, clock, delay)
	start := time.Now()
	samples, g := runLoad(t, Config{Kind: VUs, Target: srv.url, Requests: []Request{{Path: "/"}},
		Stages: []Stage{{time.Minute, vus, vus}}, KeepAlive: true, MaxRequests: n}, clock)
	took := time.Since(start)
	if m := srv.max.Load(); m != vus {
		t.Fatalf("the server held at most %d requests at once; %d VUs should keep %d in flight", m, vus, vus)
	}
	seen := map[uint64]bool{}
	for _, s := range samples {
		if s.Cause != cause.OK || seen[s.Seq] || s.Seq >= n {
			t.Fatalf("sample %+v (seen before: %v)", s, seen[s.Seq])
		}
		seen[s.Seq] = true
	}
	// ceil(50/20) = 3 rounds of 200 ms; the bound is coarse for a busy
	// machine, and far below the 10 s of one VU sending them all.
	if len(samples) != n || took > 5*time.Second {
		t.Fatalf("%d requests in %v; want %d in about %v", len(samples), took, n, 3*delay)
	}
	if _, end := g.Window(0); end > took {
		t.Fatalf("window ends at %v; the run took %v", end, took)
	}
}

// MaxRequests ends the executor when its last request is answered, not at
// the VU controller's next tick: 100 requests that took 3 ms were reported
// as taking 11, their rate under a third of what it was.
func TestMaxRequestsEndsWithTheLastAnswer(t *testing.T) {
	clock := event.NewClock()
	srv := newConcServer(t, clock, 0)
	gap := time.Hour // the least of a few runs: a busy machine delays some
	for range 5 {
		samples, g := runLoad(t, Config{Kind: VUs, Target: srv.url, Requests: []Request{{Path: "/"}},
			Stages: []Stage{{time.Minute, 2, 2}}, KeepAlive: true, MaxRequests: 3}, clock)
		var last time.Duration
		for _, s := range samples {
			last = max(last, s.Intended+s.Latency)
		}
		_, end := g.Window(0)
		if len(samples) != 3 || end < last {
			t.Fatalf("%d samples, the last answered at %v, the window ends at %v", len(samples), last, end)
		}
		gap = min(gap, end-last)
	}
	if gap >= vuTick/2 {
		t.Fatalf("the window ends %v after the last answer; want well within the controller's %v tick", gap, vuTick)
	}
}

// The share of the remaining requests a VU takes: whole blocks while there
// are plenty, its part of the rest near the end, never none.
func TestBlockSize(t *testing.T) {
	for _, tc := range []struct {
		max, next uint64
		vus       int64
		want      uint64
	}{
		{0, 0, 100, seqBlock},         // no bound
		{1_000_000, 0, 100, seqBlock}, // plenty left
		{100, 0, 100, 1},              // hey -n 100 -c 100
		{100, 0, 10, 10},              // a tenth each
		{100, 95, 10, 1},              // the tail: one at a time
		{100, 100, 10, seqBlock},      // exhausted: any block is past the bound
		{100, 0, 0, seqBlock},         // no VUs counted (ramp start): as one
		{6400, 0, 100, seqBlock},      // exactly a block each
		{6399, 0, 100, seqBlock - 1},  // just under
	} {
		if got := blockSize(tc.max, tc.next, tc.vus); got != tc.want {
			t.Errorf("blockSize(max %d, next %d, %d VUs) = %d, want %d", tc.max, tc.next, tc.vus, got, tc.want)
		}
	}
}

// Ramping VUs: the server never sees more concurrent requests than the
// profile allows at that moment (plus one controller tick), and the ramp
// reaches its target.
func TestRampingVUs(t *testing.T) {
	clock := event.NewClock()
	srv := newConcServer(t, clock, 5*time.Millisecond)
	stages := []Stage{{600 * time.Millisecond, 0, 6}, {400 * time.Millisecond, 6, 6}, {400 * time.Millisecond, 6, 2}}
	p := NewPacer(stages)
	runLoad(t, Config{Kind: VUs, Target: srv.url, Requests: []Request{{Path: "/"}}, Stages: stages, KeepAlive: true}, clock)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	peak := int64(0)
	for _, a := range srv.seen {
		// Allow what the profile wanted a little earlier (a VU finishing its
		// request after a ramp-down) and the scheduling of a busy machine.
		allowed := max(p.VUsAt(a.at), p.VUsAt(a.at-150*time.Millisecond))
		if a.conc > int64(allowed)+1 {
			t.Fatalf("at %s the server held %d requests; the profile allows %d", a.at, a.conc, allowed)
		}
		if a.at >= 700*time.Millisecond && a.at < time.Second {
			peak = max(peak, a.conc)
		}
	}
	if peak < 5 {
		t.Fatalf("peak concurrency during the 6-VU hold was %d", peak)
	}
}

// Two executors side by side: a background load and a burst that starts
// later; each sample says which executor sent it, within its window.
func TestExecutorsSideBySide(t *testing.T) {
	clock := event.NewClock()
	srv := newConcServer(t, clock, 0)
	cfg := Config{Target: srv.url, Seed: 3, Executors: []Config{
		{Name: "background", Requests: []Request{{Path: "/bg"}}, Stages: []Stage{{time.Second, 100, 100}}, KeepAlive: true},
		{Name: "burst", Requests: []Request{{Path: "/burst"}}, Stages: []Stage{{200 * time.Millisecond, 500, 500}},
			Start: 400 * time.Millisecond, KeepAlive: true},
	}}
	samples, g := runLoad(t, cfg, clock)
	if g.Duration() != time.Second || g.Expected(0, time.Second) != 200 || g.ExpectedOf(1, 0, 500*time.Millisecond) != 50 {
		t.Fatalf("duration %s, expected %f / %f", g.Duration(), g.Expected(0, time.Second), g.ExpectedOf(1, 0, 500*time.Millisecond))
	}
	n := [2]int{}
	for _, s := range samples {
		n[s.Executor]++
		if s.Executor == 1 && (s.Intended < 400*time.Millisecond || s.Intended >= 600*time.Millisecond) {
			t.Fatalf("burst sample intended at %s", s.Intended)
		}
	}
	if n != [2]int{100, 100} {
		t.Fatalf("samples per executor %v", n)
	}
	paths := map[string]int{}
	srv.mu.Lock()
	for _, a := range srv.seen {
		paths[a.r.URL.Path]++
	}
	srv.mu.Unlock()
	if paths["/bg"] != 100 || paths["/burst"] != 100 {
		t.Fatalf("server saw %v", paths)
	}
	ps := g.Executors()
	if ps[0].Name != "background" || ps[1].Name != "burst" || ps[1].Scheduled != 100 || ps[1].Total != 200*time.Millisecond {
		t.Fatalf("progress %+v", ps)
	}
	if _, err := New(Config{Target: srv.url, Executors: []Config{
		{Name: "a", Requests: []Request{{Path: "/"}}, Stages: []Stage{{time.Second, 1, 1}}},
		{Name: "a", Requests: []Request{{Path: "/"}}, Stages: []Stage{{time.Second, 1, 1}}},
	}}, &memRecorder{}, clock, nil); err == nil {
		t.Fatal("duplicate executor names accepted")
	}
}

// The scheduler sends on time: at 2 000 requests/s every request is sent,
// and the median scheduling lag stays below Go's 1 ms timer granularity
// (coarse bounds: the machine is shared; the tail is measured by
// bench/loadgen.sh, not asserted here).
func TestSchedulingLag(t *testing.T) {
	rate := 2000.0
	if raceEnabled {
		rate = 300
	}
	clock := event.NewClock()
	srv := newConcServer(t, clock, 0)
	samples, _ := runLoad(t, Config{Target: srv.url, Requests: []Request{{Path: "/"}},
		Stages: []Stage{{time.Second, rate, rate}}, KeepAlive: true}, clock)
	if len(samples) != int(rate) {
		t.Fatalf("%d samples, want %.0f", len(samples), rate)
	}
	lags := make([]time.Duration, len(samples))
	for i, s := range samples {
		// Lateness is accounted, never hidden: the latency from the intended
		// send is the lag plus the wait for a connection plus the service.
		if s.Cause != cause.OK || s.Lag < 0 || s.Latency != s.Lag+s.ConnWait+s.Service {
			t.Fatalf("sample %+v", s)
		}
		lags[i] = s.Lag
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	p50 := lags[len(lags)/2]
	t.Logf("lag p50 %s p90 %s p99 %s max %s", p50, lags[len(lags)*9/10], lags[len(lags)*99/100], lags[len(lags)-1])
	if p50 > 900*time.Microsecond {
		t.Fatalf("lag p50 %s: the scheduler is late", p50)
	}
}

// Evenly spaced arrivals are counted too: a window's share of the profile's
// mean is fractional (10/s over [250ms, 500ms) is 2.5) while its arrivals
// are whole (2, at 300 and 400 ms), and "achieved_rate >= 99%" judged a
// phase that sent every request on time at 80% of its target.
func TestEvenScheduleCounted(t *testing.T) {
	clock := event.NewClock()
	srv := newConcServer(t, clock, 0)
	cfg := Config{Target: srv.url, Requests: []Request{{Path: "/"}}, Stages: []Stage{{time.Second, 10, 10}}, KeepAlive: true,
		Start: 100 * time.Millisecond}
	samples, g := runLoad(t, cfg, clock)
	if len(samples) != 10 {
		t.Fatalf("%d arrivals at 10/s in 1 s", len(samples))
	}
	ms := time.Millisecond
	scheduledMatchesArrivals(t, g, samples, [][2]time.Duration{{0, 350 * ms}, {350 * ms, 600 * ms}, {600 * ms, 650 * ms}, {0, 2 * time.Second}, {500 * ms, 501 * ms}})
	arrivalsBeforeMatch(t, g, samples)
}

func TestPoissonRun(t *testing.T) {
	clock := event.NewClock()
	srv := newConcServer(t, clock, 0)
	cfg := Config{Target: srv.url, Requests: []Request{{Path: "/"}}, Stages: []Stage{{time.Second, 1000, 1000}},
		Poisson: true, Seed: 11, KeepAlive: true}
	samples, g := runLoad(t, cfg, clock)
	if n := len(samples); n < 870 || n > 1130 {
		t.Fatalf("%d Poisson arrivals at 1000/s in 1 s", n)
	}
	// The schedule a summary judges against is the seeded one, counted,
	// not the profile's mean: in the whole run and in any window of it.
	if got := g.Scheduled(0, time.Second); got != float64(len(samples)) {
		t.Errorf("Scheduled(0, 1s) = %v, want the %d arrivals sent", got, len(samples))
	}
	if g.Expected(0, time.Second) != 1000 {
		t.Errorf("Expected(0, 1s) = %v, want the profile's 1000", g.Expected(0, time.Second))
	}
	scheduledMatchesArrivals(t, g, samples, [][2]time.Duration{{0, 250 * time.Millisecond}, {300 * time.Millisecond, 700 * time.Millisecond}, {900 * time.Millisecond, 2 * time.Second}})
	arrivalsBeforeMatch(t, g, samples)
	// The same seed schedules the same intended times.
	again, _ := runLoad(t, cfg, event.NewClock())
	if len(again) != len(samples) {
		t.Fatalf("same seed: %d then %d arrivals", len(samples), len(again))
	}
	key := func(xs []Sample) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, s := range xs {
			out[i] = s.Intended
		}
		sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
		return out
	}
	a, b := key(samples), key(again)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("arrival %d at %s then %s", i, a[i], b[i])
		}
	}
}

// Templated requests reach the server rendered: path, headers and body.
func TestTemplatedRequests(t *testing.T) {
	clock := event.NewClock()
	srv := newConcServer(t, clock, 0)
	users, err := ParseCSV("users", []byte("id,name\n7,ann\n8,bob\n"))
	if err != nil {
		t.Fatal(err)
	}
	runLoad(t, Config{Target: srv.url, Data: []*Dataset{users}, KeepAlive: true, Seed: 1,
		Requests: []Request{{Method: "POST", Path: "/u/{{users.id}}?n={{seq}}", Header: http.Header{"X-Name": {"{{users.name}}"}},
			Body: []byte(`{"id":{{users.id}}}`)}},
		Stages: []Stage{{100 * time.Millisecond, 100, 100}}}, clock)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.seen) != 10 {
		t.Fatalf("server saw %d requests", len(srv.seen))
	}
	for _, a := range srv.seen {
		n := a.r.URL.Query().Get("n")
		id, name := "7", "ann"
		if n == "1" || n == "3" || n == "5" || n == "7" || n == "9" {
			id, name = "8", "bob"
		}
		if a.r.Method != "POST" || a.r.URL.Path != "/u/"+id || a.r.Header.Get("X-Name") != name || a.body != `{"id":`+id+`}` {
			t.Fatalf("request %s %s name %q body %q", a.r.Method, a.r.URL, a.r.Header.Get("X-Name"), a.body)
		}
	}
}

// Workers that a slow stretch needed end once they have been idle: the
// number of goroutines and connections follows the concurrency the load
// needs now, not the most it ever needed (memory flat over long runs).
func TestIdleWorkersEnd(t *testing.T) {
	clock := event.NewClock()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var closed atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if clock.Now() < 300*time.Millisecond {
			time.Sleep(150 * time.Millisecond) // a slow stretch: ~30 requests in flight
		}
	}), ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Add(1)
		}
	}}
	go srv.Serve(ln)
	defer srv.Close()
	rec := &memRecorder{}
	g, err := New(Config{Target: "http://" + ln.Addr().String(), Requests: []Request{{Path: "/"}},
		Stages: []Stage{{2 * time.Second, 200, 200}}, KeepAlive: true, workerIdle: 300 * time.Millisecond}, rec, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock.Reset(time.Now())
	peak := 0
	done := make(chan struct{})
	go func() { g.Run(context.Background()); close(done) }()
	time.Sleep(400 * time.Millisecond)
	peak = g.Executors()[0].Workers
	time.Sleep(1200 * time.Millisecond)
	late := g.Executors()[0].Workers
	<-done
	if peak < 15 || late > 8 {
		t.Fatalf("workers: %d after the slow stretch, %d a second later; want many, then a few", peak, late)
	}
	// Workers with their own connections (loadgen/h1) close them as they
	// end; net/http's pool closes idle ones after workerIdle itself.
	if _, own := g.execs[0].tr.(WorkerTransport); own && closed.Load() < int64(peak-late)/2 {
		t.Fatalf("%d connections closed; the ended workers' connections should close", closed.Load())
	}
	if p := g.Executors()[0]; p.Completed != 400 || p.Workers != 0 || len(rec.samples) != 400 {
		t.Fatalf("after the run: %+v, %d samples", p, len(rec.samples))
	}
}

// scheduledMatchesArrivals checks that the schedule a summary judges each
// window against counts the arrivals intended in it.
func scheduledMatchesArrivals(t *testing.T, g *Generator, samples []Sample, windows [][2]time.Duration) {
	t.Helper()
	for _, w := range windows {
		var in int
		for _, s := range samples {
			if s.Intended >= w[0] && s.Intended < w[1] {
				in++
			}
		}
		if got := g.ScheduledOf(0, w[0], w[1]); got != float64(in) {
			t.Errorf("ScheduledOf(0, %s, %s) = %v, want the %d arrivals intended in it", w[0], w[1], got, in)
		}
	}
}

// arrivalsBeforeMatch checks that ArrivalsBefore, which the run uses to
// write an interval as soon as every request intended in it is recorded,
// counts exactly the samples intended before each bound: one it
// undercounts would have its interval written while a request of it is
// still out. Bounds only grow, as the run asks them.
func arrivalsBeforeMatch(t *testing.T, g *Generator, samples []Sample) {
	t.Helper()
	for b := time.Duration(0); b <= 2*time.Second; b += 37 * time.Millisecond {
		want := 0
		for _, s := range samples {
			if s.Intended < b {
				want++
			}
		}
		for range 2 { // asked again at the same bound: the same count
			if got, ok := g.ArrivalsBefore(b); !ok || got != int64(want) {
				t.Fatalf("ArrivalsBefore(%s) = %d, %v; want the %d samples intended before it", b, got, ok, want)
			}
		}
	}
}

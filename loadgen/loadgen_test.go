package loadgen

import (
	"context"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/tcptest"
)

func TestPacer(t *testing.T) {
	s := time.Second
	cases := []struct {
		name   string
		stages []Stage
		n      int64
		at     time.Duration
		ok     bool
	}{
		{"constant first", []Stage{{10 * s, 100, 100}}, 0, 0, true},
		{"constant 50th", []Stage{{10 * s, 100, 100}}, 50, 500 * time.Millisecond, true},
		{"constant last", []Stage{{10 * s, 100, 100}}, 999, 9990 * time.Millisecond, true},
		{"constant past end", []Stage{{10 * s, 100, 100}}, 1000, 0, false},
		// Ramp 0→100/s over 10 s: N(t) = 5t², so request n is due at sqrt(n/5).
		{"ramp 20th", []Stage{{10 * s, 0, 100}}, 20, 2 * s, true},
		{"ramp 125th", []Stage{{10 * s, 0, 100}}, 125, 5 * s, true},
		// Ramp down 100→0: N(t) = 100t − 5t²; N(2) = 180.
		{"ramp down", []Stage{{10 * s, 100, 0}}, 180, 2 * s, true},
		// Second stage starts after 1 s × 10/s = 10 requests.
		{"second stage", []Stage{{s, 10, 10}, {s, 100, 100}}, 10, s, true},
		{"second stage 60th", []Stage{{s, 10, 10}, {s, 100, 100}}, 60, 1500 * time.Millisecond, true},
		{"pause stage skipped", []Stage{{s, 10, 10}, {s, 0, 0}, {s, 10, 10}}, 10, 2 * s, true},
		{"zero rate", []Stage{{s, 0, 0}}, 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			at, ok := NewPacer(tc.stages).At(tc.n)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if ok && (at-tc.at).Abs() > time.Microsecond {
				t.Fatalf("At(%d) = %s, want %s", tc.n, at, tc.at)
			}
		})
	}
}

func TestPacerExpectedMatchesAt(t *testing.T) {
	p := NewPacer([]Stage{{2 * time.Second, 0, 300}, {3 * time.Second, 300, 300}, {time.Second, 300, 50}})
	if math.Abs(p.Total()-(300+900+175)) > 1e-9 {
		t.Fatalf("total = %f", p.Total())
	}
	// Counting At() in [a, b) equals Expected(a, b), to within one request.
	for _, w := range [][2]time.Duration{{0, time.Second}, {time.Second, 2500 * time.Millisecond}, {4 * time.Second, 6 * time.Second}} {
		n := 0
		for i := int64(0); ; i++ {
			at, ok := p.At(i)
			if !ok {
				break
			}
			if at >= w[0] && at < w[1] {
				n++
			}
		}
		if e := p.Expected(w[0], w[1]); math.Abs(float64(n)-e) > 1 {
			t.Fatalf("window %v: At counts %d, Expected %f", w, n, e)
		}
	}
	if r := p.RateAt(time.Second); r != 150 {
		t.Fatalf("RateAt(1s) = %f", r)
	}
}

type memRecorder struct {
	mu      sync.Mutex
	samples []Sample
}

func (m *memRecorder) Record(_ int, s *Sample) {
	m.mu.Lock()
	m.samples = append(m.samples, *s)
	m.mu.Unlock()
}

// stallServer answers at once, except that every request arriving during
// [stallAt, stallAt+stallFor) on clock is held until the stall ends.
func stallServer(t *testing.T, clock *event.Clock, stallAt, stallFor time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if now := clock.Now(); now >= stallAt && now < stallAt+stallFor {
			time.Sleep(stallAt + stallFor - now)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// A server that stalls for 1 s: requests scheduled during the stall must show
// latencies up to 1 s, measured from when they were due.
func TestIntendedTimeMeasurement(t *testing.T) {
	clock := event.NewClock()
	url := stallServer(t, clock, time.Second, time.Second)
	rec := &memRecorder{}
	g, err := New(Config{Target: url, Requests: []Request{{Path: "/"}}, Stages: []Stage{{3 * time.Second, 100, 100}},
		ClientTimeout: 5 * time.Second, KeepAlive: true}, rec, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock.Reset(time.Now())
	if err := g.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rec.samples) != 300 {
		t.Fatalf("%d samples, want 300", len(rec.samples))
	}
	slow := 0
	for _, s := range rec.samples {
		if s.Cause != cause.OK {
			t.Fatalf("sample %+v", s)
		}
		due := s.Intended
		switch {
		case due >= time.Second && due < 1100*time.Millisecond:
			// Due at the start of the stall: waits the whole second.
			if s.Latency < 850*time.Millisecond || s.Latency > 1300*time.Millisecond {
				t.Errorf("request due at %s waited %s, want ≈1s", due, s.Latency)
			}
		case due < 900*time.Millisecond || due >= 2200*time.Millisecond:
			if s.Latency > 300*time.Millisecond {
				t.Errorf("request due at %s outside the stall took %s", due, s.Latency)
			}
		}
		if s.Latency > 500*time.Millisecond {
			slow++
		}
	}
	// Half the stall's requests wait more than 500 ms: 50 of 300.
	if slow < 40 || slow > 62 {
		t.Fatalf("%d requests slower than 500ms, want ≈50", slow)
	}
}

// With a cap on in-flight requests and a server that never answers, requests
// due while the cap is full are counted as dropped, not silently skipped.
func TestDroppedAccounting(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })}
	go srv.Serve(ln)
	defer srv.Close()
	clock := event.NewClock()
	rec := &memRecorder{}
	g, err := New(Config{Target: "http://" + ln.Addr().String(), Requests: []Request{{Path: "/"}},
		Stages: []Stage{{500 * time.Millisecond, 100, 100}}, ClientTimeout: 800 * time.Millisecond, MaxInFlight: 3, KeepAlive: true}, rec, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock.Reset(time.Now())
	g.Run(context.Background())
	counts := map[cause.Cause]int{}
	for _, s := range rec.samples {
		counts[s.Cause]++
	}
	if len(rec.samples) != 50 || counts[cause.ClientTimeout] != 3 || counts[cause.Dropped] != 47 {
		t.Fatalf("samples %d, causes %v; want 3 client timeouts and 47 dropped", len(rec.samples), counts)
	}
	if p := g.Progress(); p.Dropped != 47 || p.Scheduled != 50 {
		t.Fatalf("progress %+v", p)
	}
}

// An arrival-rate executor runs its whole duration even when its last
// arrival comes well before the end (k6's behaviour): 1/s for 1.6 s arrives
// at 0 and 1 s, and the run still takes 1.6 s; its idle connections do
// not stay open through that quiet tail; a stopped run does not wait.
func TestArrivalsRunTheWholeDuration(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var open atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
		ConnState: func(c net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		}}
	go srv.Serve(ln)
	defer srv.Close()
	var inTail atomic.Int64
	inTail.Store(-1)
	run := func(ctx context.Context) (time.Duration, int) {
		clock := event.NewClock()
		rec := &memRecorder{}
		g, err := New(Config{Target: "http://" + ln.Addr().String(), Requests: []Request{{Path: "/"}},
			Stages: []Stage{{1600 * time.Millisecond, 1, 1}}, ClientTimeout: time.Second, KeepAlive: true}, rec, clock, nil)
		if err != nil {
			t.Fatal(err)
		}
		clock.Reset(time.Now())
		tm := time.AfterFunc(1400*time.Millisecond, func() { inTail.Store(open.Load()) })
		defer tm.Stop()
		g.Run(ctx)
		return clock.Now(), len(rec.samples)
	}
	took, n := run(context.Background())
	if c := inTail.Load(); c != 0 {
		t.Errorf("%d connections open 0.4 s after the last arrival, want 0", c)
	}
	if n != 2 {
		t.Fatalf("%d samples, want 2 (at 0 and 1 s)", n)
	}
	if took < 1600*time.Millisecond || took > 2500*time.Millisecond {
		t.Fatalf("the run took %s, want its whole 1.6 s and little more", took)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	if took, _ := run(ctx); took > 1500*time.Millisecond {
		t.Fatalf("a run stopped at 1.2 s took %s: it waited for the schedule's end", took)
	}
}

func TestClassification(t *testing.T) {
	// Connection refused at the client.
	addr := tcptest.Refused(t)
	clock := event.NewClock()
	rec := &memRecorder{}
	g, _ := New(Config{Target: "http://" + addr, Requests: []Request{{Path: "/"}}, Stages: []Stage{{100 * time.Millisecond, 50, 50}},
		ClientTimeout: time.Second, KeepAlive: true}, rec, clock, nil)
	clock.Reset(time.Now())
	g.Run(context.Background())
	for _, s := range rec.samples {
		if s.Cause != cause.ConnectFailure {
			t.Fatalf("refused: %s", s.Cause)
		}
	}
	// An interrupted run marks in-flight requests aborted, not errors.
	srv := stallServer(t, clock, 0, time.Hour)
	rec = &memRecorder{}
	g, _ = New(Config{Target: srv, Requests: []Request{{Path: "/"}}, Stages: []Stage{{time.Second, 20, 20}},
		ClientTimeout: 5 * time.Second, KeepAlive: true}, rec, clock, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	clock.Reset(time.Now())
	g.Run(ctx)
	if len(rec.samples) == 0 {
		t.Fatal("no samples recorded for the interrupted requests")
	}
	for _, s := range rec.samples {
		if s.Cause != cause.Aborted {
			t.Fatalf("interrupted request recorded as %s", s.Cause)
		}
	}
}

func TestWeightedMixIsSeeded(t *testing.T) {
	reqs := []Request{{Path: "/a", Weight: 3}, {Path: "/b", Weight: 1}}
	mk := func() []int {
		p := newPicker(reqs, 5)
		out := make([]int, 4000)
		for i := range out {
			out[i] = p.pick()
		}
		return out
	}
	a, b := mk(), mk()
	n := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("same seed, different mix")
		}
		n += a[i]
	}
	if n < 850 || n > 1150 {
		t.Fatalf("weight 1 of 4 picked %d of 4000 times", n)
	}
}

// The dispatch frontier: nothing is handed over before the run, the
// frontier follows the clock while the scheduler keeps time, and it is
// unbounded once the profile is done.
func TestDispatchedThrough(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go srv.Serve(ln)
	defer srv.Close()
	clock := event.NewClock()
	g, err := New(Config{Target: "http://" + ln.Addr().String(), Requests: []Request{{Path: "/"}},
		Stages: []Stage{{time.Second, 100, 100}}, ClientTimeout: time.Second, KeepAlive: true}, &memRecorder{}, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f := g.DispatchedThrough(); f != 0 {
		t.Fatalf("before the run: frontier %s, want 0", f)
	}
	clock.Reset(time.Now())
	done := make(chan struct{})
	go func() { g.Run(context.Background()); close(done) }()
	time.Sleep(500 * time.Millisecond)
	f, now := g.DispatchedThrough(), clock.Now()
	if f > now+20*time.Millisecond || f < now-200*time.Millisecond {
		t.Fatalf("mid-run: frontier %s at %s", f, now)
	}
	<-done
	if f := g.DispatchedThrough(); f != time.Duration(math.MaxInt64) {
		t.Fatalf("after the run: frontier %s", f)
	}
}

// OldestInFlight bounds the intended send of every request not yet
// recorded, for closed models: while one VU's request stalls, it stays at
// that request's send, and the samples recorded so far all start before
// it; with none in flight it is the clock. An open model cannot say.
func TestOldestInFlight(t *testing.T) {
	url, release := heldServer(t)
	clock := event.NewClock()
	rec := &memRecorder{}
	g, err := New(Config{Kind: VUs, Target: url, Requests: []Request{{Path: "/stall"}},
		Stages: []Stage{{700 * time.Millisecond, 2, 2}}, ClientTimeout: 5 * time.Second, KeepAlive: true}, rec, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	runStalled(t, g, clock, release, "")
	open, err := New(Config{Target: url, Requests: []Request{{Path: "/"}}, Stages: []Stage{{time.Second, 10, 10}},
		ClientTimeout: time.Second, KeepAlive: true}, &memRecorder{}, event.NewClock(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := open.OldestInFlight(); ok {
		t.Error("an open model said it knows its oldest request in flight")
	}
}

// A load that mixes models answers both questions, each for its own
// executors: OldestInFlight for the VUs (held by the stalled one while the
// open executor's requests come and go), ArrivalsBefore for the
// arrival-rate executor's schedule alone (exactly its samples, none of the
// VUs'). Before, both said they could not tell, and the run waited a whole
// client timeout for every interval.
func TestMixedModelsAnswerEachForItsOwn(t *testing.T) {
	url, release := heldServer(t)
	clock := event.NewClock()
	rec := &memRecorder{}
	g, err := New(Config{Target: url, ClientTimeout: 5 * time.Second, KeepAlive: true, Executors: []Config{
		{Name: "open", Requests: []Request{{Path: "/"}}, Stages: []Stage{{700 * time.Millisecond, 100, 100}}, KeepAlive: true, Seed: 3, Poisson: true},
		{Name: "vus", Kind: VUs, Requests: []Request{{Path: "/stall"}}, Stages: []Stage{{700 * time.Millisecond, 2, 2}}, KeepAlive: true},
	}}, rec, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	runStalled(t, g, clock, release, "mixed: ")
	var open []Sample
	vus := 0
	for _, s := range rec.samples {
		if s.Executor == 0 {
			open = append(open, s)
		} else {
			vus++
		}
	}
	if len(open) < 40 || vus < 10 {
		t.Fatalf("%d open-model and %d VU samples", len(open), vus)
	}
	arrivalsBeforeMatch(t, g, open)
}

// runStalled runs g, whose VUs' first requests stall until release is
// closed, and checks OldestInFlight: held at the stalled sends (~0) at
// 300 ms, then following the clock once they are answered (only VUs hold
// it: an open executor's workers do not).
func runStalled(t *testing.T, g *Generator, clock *event.Clock, release chan struct{}, what string) {
	t.Helper()
	clock.Reset(time.Now())
	done := make(chan struct{})
	go func() { g.Run(context.Background()); close(done) }()
	time.Sleep(300 * time.Millisecond)
	oldest, ok := g.OldestInFlight()
	if !ok || oldest > 50*time.Millisecond {
		t.Fatalf("%sa VU's first request stalled since ~0: OldestInFlight = %v, %v", what, oldest, ok)
	}
	close(release)
	time.Sleep(100 * time.Millisecond)
	if oldest, _ := g.OldestInFlight(); oldest < 350*time.Millisecond {
		t.Errorf("%safter the stall: OldestInFlight = %v, want about the clock (400 ms)", what, oldest)
	}
	<-done
}

// heldServer answers at once, but for the first request to /stall, which
// it holds until release is closed.
func heldServer(t *testing.T) (url string, release chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release = make(chan struct{})
	var stalled atomic.Bool
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stall" && stalled.CompareAndSwap(false, true) {
			<-release
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String(), release
}

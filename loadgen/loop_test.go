package loadgen

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/tcptest"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/evloop"
)

// onLoops says whether a test runs under TestOnLoops: runLoad then sets
// Config.Loops and checks that the VU executors used them.
func onLoops(t testing.TB) bool { return strings.HasPrefix(t.Name(), "TestOnLoops/") }

func skipWithoutLoops(t *testing.T) {
	t.Helper()
	l, err := evloop.New()
	if err != nil {
		t.Skip(err)
	}
	l.Close()
	l.Run(context.Background())
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("event loops need GOMAXPROCS >= 2: a loop never takes the last P")
	}
}

// TestOnLoops runs the closed-model tests again with the VUs on event
// loops: same profile, same think time, same accounting.
func TestOnLoops(t *testing.T) {
	skipWithoutLoops(t)
	t.Run("ConstantVUs", TestConstantVUs)
	t.Run("RampingVUs", TestRampingVUs)
	t.Run("MaxRequestsRunsEveryVU", TestMaxRequestsRunsEveryVU)
	t.Run("MaxRequestsEndsWithTheLastAnswer", TestMaxRequestsEndsWithTheLastAnswer)
	t.Run("H1ClosedLoop", TestH1ClosedLoop)
}

func loopsRun(t *testing.T, cfg Config, ctx context.Context) ([]Sample, *Generator, time.Duration) {
	t.Helper()
	clock := event.NewClock()
	rec := &memRecorder{}
	cfg.Loops = 2
	g, err := New(cfg, rec, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock.Reset(time.Now())
	start := time.Now()
	g.Run(ctx)
	return rec.samples, g, time.Since(start)
}

// Templated requests, on loops and on goroutines: MaxRequests ends the run
// early with exactly that many requests, every sequence number below it sent
// once, the server seeing what was rendered, and the executor's window
// ending when the last VU stopped (its rate is over the time it ran).
func TestLoopsTemplatesAndMaxRequests(t *testing.T) {
	for _, loops := range []int{2, 0} {
		t.Run(map[bool]string{true: "loops", false: "goroutines"}[loops > 0], func(t *testing.T) {
			if loops > 0 {
				skipWithoutLoops(t)
			}
			var mu sync.Mutex
			paths := map[string]int{}
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				paths[r.URL.RequestURI()]++
				mu.Unlock()
			}))
			t.Cleanup(hs.Close)
			clock := event.NewClock()
			rec := &memRecorder{}
			g, err := New(Config{Kind: VUs, Target: hs.URL, Requests: []Request{{Path: "/i/{{seq}}"}}, Loops: loops,
				Stages: []Stage{{10 * time.Second, 7, 7}}, KeepAlive: true, MaxRequests: 500}, rec, clock, nil)
			if err != nil {
				t.Fatal(err)
			}
			clock.Reset(time.Now())
			start := time.Now()
			g.Run(context.Background())
			took := time.Since(start)
			seen := map[uint64]bool{}
			for _, s := range rec.samples {
				if s.Cause != cause.OK || seen[s.Seq] || s.Seq >= 500 {
					t.Fatalf("sample %+v (seen before: %v)", s, seen[s.Seq])
				}
				seen[s.Seq] = true
			}
			mu.Lock()
			defer mu.Unlock()
			if len(rec.samples) != 500 || len(paths) != 500 || paths["/i/0"] != 1 || paths["/i/499"] != 1 || took > 5*time.Second {
				t.Fatalf("%d samples, server saw %d distinct paths; %v for a 10 s profile bounded at 500 requests", len(rec.samples), len(paths), took)
			}
			for p, n := range paths {
				if n != 1 {
					t.Fatalf("%s sent %d times", p, n)
				}
			}
			if _, end := g.Window(0); end > took || end <= 0 || g.End() != end {
				t.Fatalf("window ends at %v, End %v; the run took %v", end, g.End(), took)
			}
		})
	}
}

// VUs that a ramp takes away before the count is reached leave the rest of
// their blocks of sequence numbers to the others: still exactly
// MaxRequests, each once.
func TestMaxRequestsAcrossRampDown(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(hs.Close)
	clock := event.NewClock()
	rec := &memRecorder{}
	g, err := New(Config{Kind: VUs, Target: hs.URL, Requests: []Request{{Path: "/"}}, KeepAlive: true, MaxRequests: 2500,
		Think:  dist.FixedLatency(time.Millisecond),
		Stages: []Stage{{100 * time.Millisecond, 10, 10}, {100 * time.Millisecond, 10, 2}, {10 * time.Second, 2, 2}}}, rec, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock.Reset(time.Now())
	g.Run(context.Background())
	seen := map[uint64]bool{}
	for _, s := range rec.samples {
		if seen[s.Seq] || s.Seq >= 2500 {
			t.Fatalf("sample %+v (seen before: %v)", s, seen[s.Seq])
		}
		seen[s.Seq] = true
	}
	_, end := g.Window(0)
	if len(rec.samples) != 2500 || end < 200*time.Millisecond || end > 9*time.Second {
		t.Fatalf("%d samples, window end %v; want 2500, after the ramp down and before the profile's end", len(rec.samples), end)
	}
}

// A target that never answers: on loops the client timeout ends each
// request on time, and cancelling the run ends the ones in flight as
// aborted, promptly, with nothing lost.
func TestLoopsTimeoutAndCancel(t *testing.T) {
	skipWithoutLoops(t)
	url := "http://" + tcptest.Serve(t, func(c net.Conn) { io.Copy(io.Discard, c) })

	samples, _, _ := loopsRun(t, Config{Kind: VUs, Target: url, Requests: []Request{{Path: "/"}},
		Stages: []Stage{{350 * time.Millisecond, 3, 3}}, KeepAlive: true, ClientTimeout: 100 * time.Millisecond}, context.Background())
	if len(samples) < 9 || len(samples) > 12 {
		t.Fatalf("%d samples from 3 VUs with a 100 ms timeout over 350 ms", len(samples))
	}
	for _, s := range samples {
		if s.Cause != cause.ClientTimeout || s.Latency < 100*time.Millisecond || s.Latency > 150*time.Millisecond {
			t.Fatalf("timed-out sample %+v", s)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	samples, g, took := loopsRun(t, Config{Kind: VUs, Target: url, Requests: []Request{{Path: "/"}},
		Stages: []Stage{{time.Minute, 4, 4}}, KeepAlive: true, ClientTimeout: time.Minute}, ctx)
	if took > 2*time.Second || len(samples) != 4 {
		t.Fatalf("cancelled run took %v and recorded %d samples from 4 VUs", took, len(samples))
	}
	for _, s := range samples {
		if s.Cause != cause.Aborted {
			t.Fatalf("sample cut short by the cancel: %+v", s)
		}
	}
	if p := g.Progress(); p.Scheduled != p.Completed || p.InFlight != 0 {
		t.Fatalf("progress after the cancel %+v", p)
	}
}

// The steady state of a VU on a loop allocates nothing: the coroutine
// switch, the wait and the timer heap included. (No benchmark of the loop
// beside BenchmarkClosedLoop: with the server in the same process, the
// goroutine path runs client and server on one thread with no wake-ups,
// while the loop keeps its own thread, so each request pays a cross-thread
// wake-up that an external server costs both paths alike. bench/loadgen.sh
// measures it against an external upstream.)
func TestLoopWorkerAllocations(t *testing.T) {
	skipWithoutLoops(t)
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	tr := helloTransport(t)
	l, err := evloop.New()
	if err != nil {
		t.Fatal(err)
	}
	var allocs float64
	var last cause.Cause
	l.Go(func(task *evloop.Task) {
		w := tr.LoopWorker(task, nil)
		defer closeTransport(w)
		ctx := context.Background()
		var s Sample
		w.RoundTrip(ctx, 0, &s) // dial
		// AllocsPerRun runs at GOMAXPROCS 1, where the loop holds the only
		// P and the server runs when the scheduler preempts it (every
		// 10 ms): few runs.
		allocs = testing.AllocsPerRun(20, func() { w.RoundTrip(ctx, 0, &s) })
		last = s.Cause
	})
	l.Close()
	l.Run(context.Background())
	if allocs != 0 || last != cause.OK {
		t.Fatalf("%.1f allocations per request on a loop, cause %s", allocs, last)
	}
}

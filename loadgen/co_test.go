package loadgen

import (
	"net"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/event"
)

// pauseServer holds every request that arrives during the first `pause` of
// each `every` window of clock (a stop-the-world pause, like
// bench/servers/upstream -mode stall) until the window's pause ends.
func pauseServer(t *testing.T, clock *event.Clock, every, pause time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if now := clock.Now(); now >= 0 {
			if phase := now % every; phase < pause {
				time.Sleep(pause - phase)
			}
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func quantile(xs []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(int(q*float64(len(s))), len(s)-1)]
}

// The coordinated-omission test, small: a 500 ms pause every 1.25 s at
// 200 requests/s. 40 % of arrivals fall in a pause and wait U(0, 500 ms),
// so the true p90 is 375 ms and p99 487.5 ms. The open model measures
// that; a closed loop of 10 VUs, and the same open load's uncorrected
// (Service) view behind a 10-connection cap, see a pause once per
// connection and report a p90 of a few milliseconds.
func TestCoordinatedOmission(t *testing.T) {
	if raceEnabled {
		t.Skip("timing test; the race detector slows the generator too much")
	}
	every, pause, run := 1250*time.Millisecond, 500*time.Millisecond, 2500*time.Millisecond
	lat := func(samples []Sample, f func(Sample) time.Duration) []time.Duration {
		var out []time.Duration
		for _, s := range samples {
			if s.Cause != cause.OK {
				t.Fatalf("sample %+v", s)
			}
			out = append(out, f(s))
		}
		return out
	}
	latency := func(s Sample) time.Duration { return s.Latency }
	service := func(s Sample) time.Duration { return s.Service }

	// Open model, no connection cap: right, whichever view.
	clock := event.NewClock()
	url := pauseServer(t, clock, every, pause)
	open, _ := runLoad(t, Config{Target: url, Requests: []Request{{Path: "/"}}, Stages: []Stage{{run, 200, 200}},
		KeepAlive: true, ClientTimeout: 5 * time.Second}, clock)
	l := lat(open, latency)
	p90, p99 := quantile(l, 0.90), quantile(l, 0.99)
	t.Logf("open model: %d requests, p90 %s p99 %s", len(l), p90, p99)
	if len(open) != 500 || p90 < 300*time.Millisecond || p90 > 450*time.Millisecond || p99 < 430*time.Millisecond || p99 > 600*time.Millisecond {
		t.Fatalf("open model: %d requests, p90 %s (want ≈375ms), p99 %s (want ≈488ms)", len(open), p90, p99)
	}

	// Open model behind 10 connections: the latency from the intended send
	// is still right; the service time (from the write on a connection) is
	// what wrk2 -U would report.
	clock = event.NewClock()
	url = pauseServer(t, clock, every, pause)
	capped, _ := runLoad(t, Config{Target: url, Requests: []Request{{Path: "/"}}, Stages: []Stage{{run, 200, 200}},
		KeepAlive: true, MaxConns: 10, ClientTimeout: 5 * time.Second}, clock)
	l, sv := lat(capped, latency), lat(capped, service)
	t.Logf("open model, 10 connections: latency p90 %s p99 %s; service p90 %s p99 %s",
		quantile(l, 0.9), quantile(l, 0.99), quantile(sv, 0.9), quantile(sv, 0.99))
	if p := quantile(l, 0.9); p < 300*time.Millisecond || p > 450*time.Millisecond {
		t.Fatalf("capped open model: latency p90 %s, want ≈375ms", p)
	}
	if p := quantile(sv, 0.9); p > 100*time.Millisecond {
		t.Fatalf("capped open model: service p90 %s; a closed loop's view should hide the pauses", p)
	}

	// Closed loop: 10 VUs with 45 ms think time (≈200/s when nothing
	// pauses). It reports a small p90 and sends less.
	clock = event.NewClock()
	url = pauseServer(t, clock, every, pause)
	closed, _ := runLoad(t, Config{Kind: VUs, Target: url, Requests: []Request{{Path: "/"}}, Stages: []Stage{{run, 10, 10}},
		Think: fixed(45 * time.Millisecond), KeepAlive: true, ClientTimeout: 5 * time.Second}, clock)
	l = lat(closed, latency)
	t.Logf("closed loop: %d requests, p90 %s p99 %s", len(l), quantile(l, 0.9), quantile(l, 0.99))
	if p := quantile(l, 0.9); p > 100*time.Millisecond || len(closed) > 450 {
		t.Fatalf("closed loop: %d requests, p90 %s; expected the coordinated-omission lie (few requests, small p90)", len(closed), p)
	}
}

func fixed(d time.Duration) dist.Latency { return dist.FixedLatency(d) }

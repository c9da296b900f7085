package report

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
)

func ev(sec float64, typ, target string, attrs map[string]any) event.Event {
	return event.Event{T: time.Duration(sec * float64(time.Second)), Type: typ, Target: target, Attrs: attrs}
}

func TestFaultWindows(t *testing.T) {
	evs := []event.Event{
		ev(2, "fault.start", "api", map[string]any{"fault": "a", "kind": "latency"}),
		ev(3, "fault.start", "api[1]", map[string]any{"fault": "b", "kind": "down"}),
		ev(3.5, "fault.apply", "api[1]", map[string]any{"fault": "b"}),
		ev(4, "fault.stop", "api", map[string]any{"fault": "a", "kind": "latency"}),
		ev(5, "fault.stop", "api", map[string]any{"fault": "b"}), // wrong target: not b's stop
	}
	got := faultWindows(evs, nil, 10)
	want := []FaultWindow{
		{Name: "a", Kind: "latency", Target: "api", Start: 2, End: 4},
		{Name: "b", Kind: "down", Target: "api[1]", Start: 3, End: 10, Open: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	// An old run directory without fault events: from the summary.
	sum := &results.Summary{Faults: []results.FaultSummary{{Name: "x", Kind: "error", Target: "db", Start: 1, End: 2, Started: true}, {Name: "never", Started: false}}}
	got = faultWindows(nil, sum, 10)
	if len(got) != 1 || got[0].Name != "x" || got[0].Start != 1 || got[0].End != 2 {
		t.Fatalf("from summary: %+v", got)
	}
}

func TestBreakerLanes(t *testing.T) {
	evs := []event.Event{
		ev(1, "breaker.open", "api", nil),
		ev(2, "breaker.half_open", "api", nil),
		ev(2, "breaker.close", "api", nil), // same instant: the last one holds
		ev(3, "breaker.forced_open", "db", nil),
		ev(2.5, "breaker.weird", "db", nil), // out of order, unknown state
	}
	s := breakers(evs, 5)
	if !reflect.DeepEqual(s.X, []float64{0, 1, 2, 2.5, 3, 5}) || !reflect.DeepEqual(s.Names, []string{"api", "db"}) {
		t.Fatalf("axis %v names %v", s.X, s.Names)
	}
	want := [][]float64{
		{0, 2, 0, 0, 0, 0},
		{0, 0, 0, -1, 3, 3},
	}
	if !reflect.DeepEqual(s.Values, want) {
		t.Fatalf("values %v, want %v", s.Values, want)
	}
	if breakers([]event.Event{ev(1, "fault.start", "api", nil)}, 5) != nil {
		t.Fatal("lanes without breaker events")
	}
}

func TestReplicaCounts(t *testing.T) {
	evs := []event.Event{
		ev(0.0001, "upstream.listen", "api[0]", nil), // setup: before load.start
		ev(0.0002, "upstream.listen", "api[1]", nil),
		ev(0, "load.start", "", nil),
		ev(1, "outlier.eject", "api[127.0.0.1:9]", nil),
		ev(1.5, "outlier.eject", "api[127.0.0.1:9]", nil), // already out: no change
		ev(2, "replica.add", "api[2]", nil),
		ev(3, "outlier.uneject", "api[127.0.0.1:9]", nil),
		ev(4, "scale.set", "api", map[string]any{"replicas": 5.0}),
		ev(4.5, "health.down", "api[127.0.0.1:8]", nil),
	}
	s := replicas(evs, 6)
	if !reflect.DeepEqual(s.X, []float64{0, 1, 2, 3, 4, 4.5, 6}) {
		t.Fatalf("axis %v", s.X)
	}
	got := map[string][]float64{}
	for i, n := range s.Names {
		got[n] = s.Values[i]
		if s.Upstreams[i] != "api" {
			t.Errorf("%s: upstream %q", n, s.Upstreams[i])
		}
	}
	want := map[string][]float64{
		"api replicas":  {2, 2, 3, 3, 5, 5, 5},
		"api ejected":   {0, 1, 1, 0, 0, 0, 0},
		"api unhealthy": {0, 0, 0, 0, 0, 1, 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

// TestSeriesMergesHistograms: a long run's points merge whole histograms,
// so a merged window's p99 is the p99 of its requests, which the
// Collector's phase stats (a separate aggregation of the same samples)
// agree on.
func TestSeriesMergesHistograms(t *testing.T) {
	phases := []results.Phase{{Name: "a", Start: 0, End: 5 * time.Second}, {Name: "b", Start: 5 * time.Second, End: 10 * time.Second}}
	c := results.NewCollector(phases, time.Second, 3)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5000; i++ {
		at := time.Duration(rng.Int64N(int64(10 * time.Second)))
		lat := time.Duration(rng.ExpFloat64() * float64(10*time.Millisecond))
		cs := cause.OK
		if rng.IntN(10) == 0 {
			cs = cause.GatewayTimeout
		}
		c.Record(i, &loadgen.Sample{Intended: at, Latency: lat, Service: lat, Cause: cs})
	}
	var recs []results.IntervalRecord
	for _, iv := range c.TakeIntervals(1 << 62) {
		recs = append(recs, results.IntervalRecord{Start: results.Sec(iv.Start), Width: 1, Stats: results.Summarize(iv.Stats, time.Second, 0)})
	}
	pts, err := Series(recs, []loadgen.Stage{{Duration: 10 * time.Second, From: 500, To: 500}}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 2 || pts[0].T != 0 || pts[1].T != 5 || pts[0].Width != 5 {
		t.Fatalf("points %+v", pts)
	}
	for i, st := range c.PhaseStats() {
		want := results.Summarize(st, 5*time.Second, 0)
		want.Latency.Mean, want.Latency.Min = 0, 0 // merged windows skip them: no chart draws them
		if pts[i].Latency != want.Latency || pts[i].Scheduled != want.Scheduled || !reflect.DeepEqual(pts[i].Causes, want.Causes) {
			t.Errorf("window %d: %+v %v\nphase: %+v %v", i, pts[i].Latency, pts[i].Causes, want.Latency, want.Causes)
		}
		if pts[i].TargetRate != 500 || pts[i].AchievedRate != float64(want.Sent)/5 {
			t.Errorf("window %d: target %v achieved %v", i, pts[i].TargetRate, pts[i].AchievedRate)
		}
	}
	// Unmerged, one point per interval, in order.
	pts, _ = Series(recs, nil, 0)
	if len(pts) != 10 || pts[9].T != 9 {
		t.Fatalf("%d points", len(pts))
	}
}

// A run stopped 10 ms into its 5th second: its last interval is 10 ms wide,
// and so is the rate over it (2 requests at 200/s, not 2/s against a
// target of 200), merged or not.
func TestSeriesLastIntervalCut(t *testing.T) {
	stages := []loadgen.Stage{{Duration: 10 * time.Second, From: 200, To: 200}}
	var recs []results.IntervalRecord
	for s := range 5 {
		st := results.StatsSummary{Scheduled: 200, Sent: 200}
		rec := results.IntervalRecord{Start: results.Seconds(s), Width: 1, Stats: st}
		if s == 4 {
			rec.Stats.Scheduled, rec.Stats.Sent, rec.Width = 2, 2, 0.01
		}
		recs = append(recs, rec)
	}
	pts, err := Series(recs, stages, 0)
	if err != nil {
		t.Fatal(err)
	}
	if last := pts[4]; math.Abs(last.AchievedRate-200) > 1e-6 || math.Abs(last.TargetRate-200) > 1e-6 {
		t.Errorf("unmerged last point: achieved %v target %v", last.AchievedRate, last.TargetRate)
	}
	pts, err = Series(recs, stages, 3) // windows of 2 s: [0,2) [2,4) [4,4.01)
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 3 || pts[2].T != 4 || math.Abs(pts[2].Width-0.01) > 1e-9 || math.Abs(pts[2].AchievedRate-200) > 1e-6 || pts[1].Width != 2 {
		t.Errorf("merged points: %+v", pts)
	}
}

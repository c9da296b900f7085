package results

import (
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/loadgen"
)

func sample(at, lat time.Duration, c cause.Cause) *loadgen.Sample {
	return &loadgen.Sample{Intended: at, Latency: lat, Service: lat / 2, Lag: time.Millisecond, Cause: c}
}

func TestCollectorPhasesAndIntervals(t *testing.T) {
	phases := []Phase{{Name: "run", End: 4 * time.Second}, {Name: "a", End: 2 * time.Second}, {Name: "b", Start: time.Second, End: 3 * time.Second}}
	c := NewCollector(phases, time.Second, 3)
	for i := 0; i < 400; i++ {
		at := time.Duration(i) * 10 * time.Millisecond
		cs := cause.OK
		if i%10 == 0 {
			cs = cause.GatewayTimeout
		}
		switch i {
		case 399:
			cs = cause.Dropped
		case 398:
			cs = cause.Aborted // cut short by the run's stop: its latency is no answer's
		}
		c.Record(i, sample(at, time.Duration(i+1)*time.Millisecond, cs))
	}
	st := c.PhaseStats()
	if st[0].Scheduled() != 400 || st[0].Sent() != 399 || st[1].Scheduled() != 200 || st[2].Scheduled() != 200 {
		t.Fatalf("phase counts: %d/%d, %d, %d", st[0].Scheduled(), st[0].Sent(), st[1].Scheduled(), st[2].Scheduled())
	}
	if st[0].Causes[cause.GatewayTimeout] != 40 || st[0].Errors() != 41 || st[0].Causes[cause.Aborted] != 1 {
		t.Fatalf("causes: %v errors %d", st[0].Causes, st[0].Errors())
	}
	// Dropped and aborted requests have no latency: 398 values, the
	// largest 398 ms.
	if st[0].Latency.TotalCount() != 398 || st[0].Service.TotalCount() != 398 || st[0].Latency.Max() < 397000 || st[0].Latency.Max() > 399000 {
		t.Fatalf("latency hist: n=%d max=%d", st[0].Latency.TotalCount(), st[0].Latency.Max())
	}
	// Intervals come out once, in order, only when complete.
	ivs := c.TakeIntervals(2500 * time.Millisecond)
	if len(ivs) != 2 || ivs[0].Index != 0 || ivs[1].Index != 1 || ivs[0].Stats.Scheduled() != 100 {
		t.Fatalf("first take: %+v", ivs)
	}
	if again := c.TakeIntervals(2500 * time.Millisecond); len(again) != 0 {
		t.Fatal("intervals were taken twice")
	}
	rest := c.TakeIntervals(1 << 62)
	if len(rest) != 2 || rest[1].Start != 3*time.Second {
		t.Fatalf("rest: %+v", rest)
	}
}

// PeekIntervals shows the open intervals, merged over shards, as copies:
// they stay for TakeIntervals, and later samples do not change a copy.
func TestCollectorPeekIntervals(t *testing.T) {
	c := NewCollector([]Phase{{Name: "run", End: 3 * time.Second}}, time.Second, 4)
	for i := range 300 {
		cs := cause.OK
		if i%3 == 0 {
			cs = cause.UpstreamError
		}
		c.Record(i, &loadgen.Sample{Intended: time.Duration(i) * 10 * time.Millisecond, Latency: time.Millisecond, Service: time.Millisecond, Cause: cs})
	}
	c.TakeIntervals(time.Second)
	peek := c.PeekIntervals()
	if len(peek) != 2 || peek[0].Start != time.Second || peek[1].Start != 2*time.Second {
		t.Fatalf("peek: %+v", peek)
	}
	if st := peek[0].Stats; st.Scheduled() != 100 || st.Errors() != 33 || st.Latency.TotalCount() != 100 || st.Service.TotalCount() != 100 {
		t.Fatalf("interval 1: scheduled %d errors %d latency n %d service n %d", st.Scheduled(), st.Errors(), st.Latency.TotalCount(), st.Service.TotalCount())
	}
	c.Record(0, &loadgen.Sample{Intended: 1500 * time.Millisecond, Latency: time.Millisecond, Service: time.Millisecond})
	if n := peek[0].Stats.Scheduled(); n != 100 {
		t.Fatalf("a later sample changed the copy: %d", n)
	}
	ivs := c.TakeIntervals(1 << 62)
	if len(ivs) != 2 || ivs[0].Stats.Scheduled() != 101 || ivs[1].Stats.Scheduled() != 100 {
		t.Fatalf("take after peek: %+v", ivs)
	}
}

func TestSummaryRoundTripThroughDisk(t *testing.T) {
	c := NewCollector([]Phase{{Name: "run", End: time.Second}}, time.Second, 1)
	for i := 0; i < 100; i++ {
		c.Record(0, sample(time.Duration(i)*10*time.Millisecond, time.Duration(i+1)*time.Millisecond, cause.OK))
	}
	st := c.PhaseStats()[0]
	dir := filepath.Join(t.TempDir(), "run")
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.Emit(event.Event{T: time.Second, Source: "run", Type: "x"})
	w.WriteIntervals(c.TakeIntervals(1<<62), Sec(time.Second))
	sum := &Summary{Scenario: "s", PlanHash: "sha256:0", Run: PhaseSummary{Name: "run", End: 1, Stats: Summarize(st, time.Second, 100)}, Verdict: VerdictPass}
	if err := w.WriteSummary(sum); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Events) != 1 || len(r.Intervals) != 1 || r.Intervals[0].Stats.Scheduled != 100 {
		t.Fatalf("loaded %d events, %d intervals", len(r.Events), len(r.Intervals))
	}
	back, err := r.Summary.Run.Stats.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if back.Latency.ValueAtQuantile(99) != st.Latency.ValueAtQuantile(99) || back.Causes[cause.OK] != 100 {
		t.Fatalf("histogram did not survive the disk: %d vs %d", back.Latency.ValueAtQuantile(99), st.Latency.ValueAtQuantile(99))
	}
	p := r.Summary.Run.Stats
	if p.TargetRate != 100 || p.AchievedRate != 100 || p.Latency.P50 < 49 || p.Latency.P50 > 51 {
		t.Fatalf("summary numbers: %+v", p)
	}
}

// A run keeps every interval open for a client timeout after it ends, in
// every shard that recorded into it. On a 64-CPU machine with a slow
// upstream (answers spread over the default 30 s timeout) the collector a
// run makes must not take gigabytes for that: at 2 shards per CPU it took
// 128 shards × 31 intervals × 340 KiB, 1.3 GiB.
func TestCollectorMemoryOnManyCPUs(t *testing.T) {
	const procs, open = 64, 31
	phases := []Phase{{Name: "run", End: time.Hour}}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := NewCollector(phases, time.Second, ShardsFor(procs))
	for w := range 2 * procs { // each worker's samples land in every open interval
		for i := range open {
			c.Record(w, sample(time.Duration(i)*time.Second, 30*time.Second-time.Duration(i)*time.Second, cause.OK))
		}
	}
	c.PeekIntervals() // places every pending sample
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if grew > 150<<20 {
		t.Fatalf("the collector of a %d-CPU run holds %d MiB for %d open intervals, want at most 150 MiB", procs, grew>>20, open)
	}
	t.Logf("%d shards, %d open intervals: %d MiB", ShardsFor(procs), open, grew>>20)
	runtime.KeepAlive(c)
}

// Recorded counts what the run compares with the open-model executors'
// schedules. In a load that mixes models the closed-model executors'
// samples are left out: counted, an interval the open executor still had a
// request out in could have looked whole, and the VUs' samples, which no
// schedule counts, would hold every interval back. Recycled interval stats
// start from zero; a load of one model counts every sample.
func TestRecordedLeavesOutClosedExecutors(t *testing.T) {
	bd := Breakdown{Executors: []string{"open", "vus"}, Closed: []bool{false, true}}
	c := NewCollector([]Phase{{Name: "run", End: time.Hour}}, time.Second, 2, WithBreakdown(bd))
	rec := func(worker, exec int, at time.Duration, n int) {
		for range n {
			s := sample(at, time.Millisecond, cause.OK)
			s.Executor = exec
			c.Record(worker, s)
		}
	}
	rec(0, 0, 100*time.Millisecond, 7)
	rec(1, 1, 200*time.Millisecond, 5)
	rec(1, 0, 300*time.Millisecond, 2)
	rec(0, 1, 1100*time.Millisecond, 4)
	rec(1, 0, 1200*time.Millisecond, 3)
	if got := c.Recorded(0); got != 9 {
		t.Fatalf("interval 0: Recorded = %d, want the open executor's 9 (5 closed left out)", got)
	}
	if got := c.Recorded(1); got != 3 {
		t.Fatalf("interval 1: Recorded = %d, want 3", got)
	}
	ivs := c.TakeIntervals(2 * time.Second)
	if len(ivs) != 2 || ivs[0].Stats.Scheduled() != 14 || ivs[1].Stats.Scheduled() != 7 {
		t.Fatalf("the intervals written hold every sample: %+v", ivs)
	}
	c.Recycle(ivs)
	rec(0, 0, 2100*time.Millisecond, 2) // on recycled stats
	rec(1, 0, 2200*time.Millisecond, 1)
	if got := c.Recorded(2); got != 3 {
		t.Fatalf("interval 2 on recycled stats: Recorded = %d, want 3", got)
	}
	one := NewCollector([]Phase{{Name: "run", End: time.Hour}}, time.Second, 1,
		WithBreakdown(Breakdown{Executors: []string{"vus"}, Closed: []bool{true}}))
	one.Record(0, sample(0, time.Millisecond, cause.OK))
	if got := one.Recorded(0); got != 1 {
		t.Fatalf("a closed model alone: Recorded = %d, want 1", got)
	}
}

// In a load that mixes models, the closed-model executors' samples stay
// out of the lag histograms: a VU's request is due when it is sent, so its
// lag is 0 by construction, and 58,000 of them beside 30,000 open-model
// requests took the run's lag p99 from 0.83 ms to 0.40 ms, which a
// "lag_p99 < 0.5ms" objective passed on. A closed model alone keeps its
// lags (its run has no other).
func TestLagLeavesOutClosedExecutorsOfAMixedLoad(t *testing.T) {
	bd := Breakdown{Executors: []string{"open", "vus"}, Closed: []bool{false, true}}
	c := NewCollector([]Phase{{Name: "run", End: time.Hour}}, time.Second, 2, WithBreakdown(bd))
	for i := range 10 {
		s := sample(time.Duration(i)*time.Millisecond, time.Millisecond, cause.OK)
		s.Lag = 5 * time.Millisecond
		c.Record(i, s)
	}
	for i := range 1000 {
		s := sample(time.Duration(i)*time.Millisecond, time.Millisecond, cause.OK)
		s.Executor, s.Lag = 1, 0
		c.Record(i, s)
	}
	run := c.PhaseStats()[0]
	if n := run.Lag.TotalCount(); n != 10 {
		t.Errorf("the run's lag holds %d samples, want the open executor's 10", n)
	}
	if p99 := run.Lag.ValueAtQuantile(99); p99 < 4900 {
		t.Errorf("the run's lag p99 is %d µs, want the open executor's 5000", p99)
	}
	if n := run.Latency.TotalCount(); n != 1010 {
		t.Errorf("the run's latency holds %d samples, want every one, 1010", n)
	}
	one := NewCollector([]Phase{{Name: "run", End: time.Hour}}, time.Second, 1,
		WithBreakdown(Breakdown{Executors: []string{"vus"}, Closed: []bool{true}}))
	one.Record(0, sample(0, time.Millisecond, cause.OK))
	if n := one.PhaseStats()[0].Lag.TotalCount(); n != 1 {
		t.Errorf("a closed model alone: %d lags, want 1", n)
	}
}

package results

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/loadgen"
)

func esample(exec, req int, intended, latency time.Duration, c cause.Cause) *loadgen.Sample {
	return &loadgen.Sample{Executor: exec, Request: req, Intended: intended, Latency: latency, Service: latency / 2, Lag: latency / 10, Cause: c}
}

// Samples recorded by many workers into many shards merge into exactly the
// histogram one recorder would have built.
func TestCollectorMergesShards(t *testing.T) {
	phases := []Phase{{Name: "run", Start: 0, End: 10 * time.Second}, {Name: "late", Start: 5 * time.Second, End: 10 * time.Second}}
	c := NewCollector(phases, time.Second, 4)
	want := NewHistogram()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				at := time.Duration(i) * 10 * time.Millisecond
				c.Record(w, esample(0, 0, at, time.Duration(w*1000+i)*time.Microsecond, cause.OK))
			}
		}()
		for i := 0; i < 1000; i++ {
			recordDuration(want, time.Duration(w*1000+i)*time.Microsecond)
		}
	}
	wg.Wait()
	ps := c.PhaseStats()
	if !ps[0].Latency.Equals(want) {
		t.Fatalf("merged histogram differs: count %d vs %d, p99 %d vs %d",
			ps[0].Latency.TotalCount(), want.TotalCount(), ps[0].Latency.ValueAtQuantile(99), want.ValueAtQuantile(99))
	}
	if n := ps[1].Latency.TotalCount(); n != 8*500 {
		t.Fatalf("phase late holds %d samples, want 4000", n)
	}
	if ps[0].Lag.TotalCount() != 8000 || ps[0].Service.TotalCount() != 8000 || ps[0].Causes[cause.OK] != 8000 {
		t.Fatal("lag, service or causes not merged")
	}
	ivs := c.TakeIntervals(1 << 62)
	if len(ivs) != 10 {
		t.Fatalf("%d intervals", len(ivs))
	}
	for i, iv := range ivs {
		if iv.Index != int64(i) || iv.Stats.Latency.TotalCount() != 800 {
			t.Fatalf("interval %d: index %d, %d samples", i, iv.Index, iv.Stats.Latency.TotalCount())
		}
	}
	if len(c.TakeIntervals(1<<62)) != 0 {
		t.Fatal("intervals taken twice")
	}
}

// Dropped requests are counted as scheduled and as errors but never enter
// the latency histograms (they were never sent).
func TestCollectorDropped(t *testing.T) {
	c := NewCollector([]Phase{{Name: "run", End: time.Second}}, time.Second, 1)
	for i := 0; i < 10; i++ {
		c.Record(0, esample(0, 0, time.Duration(i)*time.Millisecond, time.Millisecond, cause.OK))
	}
	for i := 0; i < 5; i++ {
		c.Record(0, &loadgen.Sample{Intended: time.Duration(i) * time.Millisecond, Cause: cause.Dropped})
	}
	st := c.PhaseStats()[0]
	if st.Scheduled() != 15 || st.Sent() != 10 || st.Errors() != 5 || st.Latency.TotalCount() != 10 {
		t.Fatalf("scheduled %d sent %d errors %d histogram %d", st.Scheduled(), st.Sent(), st.Errors(), st.Latency.TotalCount())
	}
	sum := Summarize(st, time.Second, 15)
	if sum.TargetRate != 15 || sum.AchievedRate != 10 || math.Abs(sum.ErrorRate-1.0/3) > 1e-9 {
		t.Fatalf("summary %+v", sum)
	}
}

func TestCollectorBreakdown(t *testing.T) {
	bd := Breakdown{Executors: []string{"bg", "burst"}, Tags: []string{"list", "item"}, TagOf: [][]int{{0, 1}, {1}}}
	c := NewCollector([]Phase{{Name: "run", End: 10 * time.Second}}, time.Second, 2, WithBreakdown(bd))
	for i := 0; i < 100; i++ {
		c.Record(i, esample(0, i%2, time.Duration(i)*time.Millisecond, time.Millisecond, cause.OK))
		c.Record(i, esample(1, 0, time.Duration(i)*time.Millisecond, 100*time.Millisecond, cause.GatewayTimeout))
	}
	ex, tags := c.ExecutorStats(), c.TagStats()
	if ex[0].Scheduled() != 100 || ex[1].Scheduled() != 100 || ex[1].Causes[cause.GatewayTimeout] != 100 || ex[0].Errors() != 0 {
		t.Fatalf("executor stats %v / %v", ex[0].Causes, ex[1].Causes)
	}
	if ex[1].Lag == nil || ex[1].Lag.TotalCount() != 100 {
		t.Fatal("executor lag missing")
	}
	// Tag "item" is request 1 of bg and request 0 of burst: 50 + 100.
	if tags[0].Scheduled() != 50 || tags[1].Scheduled() != 150 {
		t.Fatalf("tags: list %d, item %d", tags[0].Scheduled(), tags[1].Scheduled())
	}
	if p := Quantile(ex[1].Latency, 50); p < 99*time.Millisecond || p > 101*time.Millisecond {
		t.Fatalf("burst p50 %s", p)
	}
	// A single executor and tag keep no breakdown: the run phase is it.
	one := NewCollector([]Phase{{Name: "run", End: time.Second}}, time.Second, 1,
		WithBreakdown(Breakdown{Executors: []string{"load"}, Tags: []string{"GET /"}, TagOf: [][]int{{0}}}))
	if one.ExecutorStats() != nil || one.TagStats() != nil || one.PhaseSentByTag() != nil {
		t.Fatal("breakdown kept for a single executor and tag")
	}
}

// Each phase counts the requests of each tag it sent: what the verdict
// divides an upstream's attempts by.
func TestPhaseSentByTag(t *testing.T) {
	bd := Breakdown{Executors: []string{"bg", "burst"}, Tags: []string{"list", "item"}, TagOf: [][]int{{0, 1}, {1}}}
	c := NewCollector([]Phase{{Name: "run", End: 10 * time.Second}, {Name: "late", Start: 50 * time.Millisecond, End: 10 * time.Second}},
		time.Second, 3, WithBreakdown(bd))
	for i := 0; i < 100; i++ {
		at := time.Duration(i) * time.Millisecond
		c.Record(i, esample(0, i%2, at, time.Millisecond, cause.OK))
		c.Record(i, esample(1, 0, at, time.Millisecond, cause.GatewayTimeout))
	}
	c.Record(0, esample(1, 0, 0, 0, cause.Dropped)) // never sent
	// SetPhases adds a phase while the run goes on; it counts from then.
	if err := c.SetPhases([]Phase{{Name: "run", End: 10 * time.Second}, {Name: "late", Start: 50 * time.Millisecond, End: 10 * time.Second},
		{Name: "added", Start: time.Second, End: 2 * time.Second}}); err != nil {
		t.Fatal(err)
	}
	c.Record(1, esample(0, 0, 1500*time.Millisecond, time.Millisecond, cause.OK))
	got := c.PhaseSentByTag()
	want := []map[string]int64{{"list": 51, "item": 150}, {"list": 26, "item": 75}, {"list": 1}}
	if len(got) != len(want) {
		t.Fatalf("%d phases, want %d", len(got), len(want))
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Errorf("phase %d: %v, want %v", i, got[i], want[i])
		}
		for tag, n := range want[i] {
			if got[i][tag] != n {
				t.Errorf("phase %d: %v, want %v", i, got[i], want[i])
			}
		}
	}
}

func TestLiveP99(t *testing.T) {
	c := NewCollector([]Phase{{Name: "run", End: time.Minute}}, time.Second, 3,
		WithBreakdown(Breakdown{Executors: []string{"a", "b"}}))
	// Second 2 (by completion): 99 fast and one slow request per executor a.
	for i := 0; i < 100; i++ {
		lat := time.Millisecond
		if i >= 98 {
			lat = 500 * time.Millisecond
		}
		c.Record(i, esample(0, 0, 2*time.Second+time.Duration(i)*time.Millisecond-lat+time.Millisecond, lat, cause.OK))
	}
	if _, ok := c.LiveP99(0, 2500*time.Millisecond); ok {
		t.Fatal("p99 of second 1 reported although nothing completed then")
	}
	p, ok := c.LiveP99(0, 3200*time.Millisecond)
	if !ok || p < 490*time.Millisecond || p > 510*time.Millisecond {
		t.Fatalf("live p99 %s %v, want ≈500ms", p, ok)
	}
	if _, ok := c.LiveP99(1, 3200*time.Millisecond); ok {
		t.Fatal("executor b has no samples")
	}
	// Four seconds later the slot is reused, not mixed.
	c.Record(0, esample(0, 0, 6*time.Second, time.Millisecond, cause.OK))
	if p, _ := c.LiveP99(0, 7*time.Second); p > 2*time.Millisecond {
		t.Fatalf("reused slot kept old values: p99 %s", p)
	}
}

// The .hlog is HdrHistogram's interval log: read back with the library's
// own reader, every interval comes back with its tag, times and values.
func TestHlogReadBack(t *testing.T) {
	c := NewCollector([]Phase{{Name: "run", End: time.Minute}}, time.Second, 2)
	for sec := 0; sec < 3; sec++ {
		for i := 0; i < 1000; i++ {
			lat := time.Duration(sec+1) * time.Duration(i+1) * time.Microsecond * 10 // up to 10, 20, 30 ms
			c.Record(i, esample(0, 0, time.Duration(sec)*time.Second+time.Duration(i)*time.Millisecond, lat, cause.OK))
		}
	}
	// A start between seconds, as a run's is: the header keeps its
	// milliseconds, or a reader puts every interval before it happened.
	start := time.Date(2026, 11, 22, 10, 0, 0, 858_293_960, time.UTC)
	var buf bytes.Buffer
	h := NewHlogWriter(&buf, start)
	ivs := c.TakeIntervals(1 << 62)
	for _, iv := range ivs {
		h.Write(iv, time.Second)
	}
	if err := h.Flush(); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	for _, want := range []string{"#[Histogram log format version 1.3]", fmt.Sprintf("#[StartTime: %d.858 ", start.Unix()),
		fmt.Sprintf("#[BaseTime: %d.858 ", start.Unix()), "Tag=service,"} {
		if !strings.Contains(text, want) {
			t.Fatalf("hlog lacks %q:\n%s", want, text)
		}
	}
	r := hdr.NewHistogramLogReader(&buf)
	var got []*hdr.Histogram
	for {
		hh, err := r.NextIntervalHistogram()
		if err == io.EOF || (err == nil && hh == nil) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, hh)
	}
	if len(got) != 6 {
		t.Fatalf("read %d histograms, want 6 (3 intervals × latency and service)", len(got))
	}
	for i, hh := range got {
		sec := i / 2
		wantTag := ""
		src := ivs[sec].Stats.Latency
		if i%2 == 1 {
			wantTag, src = HlogTagService, ivs[sec].Stats.Service
		}
		if hh.Tag() != wantTag || hh.TotalCount() != 1000 {
			t.Fatalf("histogram %d: tag %q, %d values", i, hh.Tag(), hh.TotalCount())
		}
		if hh.StartTimeMs() != start.UnixMilli()+int64(sec)*1000 || hh.EndTimeMs() != hh.StartTimeMs()+1000 {
			t.Fatalf("histogram %d: %d–%d ms", i, hh.StartTimeMs(), hh.EndTimeMs())
		}
		for _, q := range []float64{50, 99, 100} {
			us, ns := src.ValueAtQuantile(q), hh.ValueAtQuantile(q)
			if math.Abs(float64(ns)/1000-float64(us)) > float64(us)/500+1 {
				t.Fatalf("histogram %d p%g: %d ns read back, %d µs recorded", i, q, ns, us)
			}
		}
	}
}

// The run directory gets latency.hlog next to intervals.jsonl.
func TestWriterWritesHlog(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.SetStart(time.Now())
	c := NewCollector([]Phase{{Name: "run", End: time.Minute}}, time.Second, 1)
	c.Record(0, esample(0, 0, 0, time.Millisecond, cause.OK))
	w.WriteIntervals(c.TakeIntervals(1<<62), Sec(time.Second))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, HlogFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hh, err := hdr.NewHistogramLogReader(f).NextIntervalHistogram()
	if err != nil || hh == nil || hh.TotalCount() != 1 {
		t.Fatalf("read back %v, %v", hh, err)
	}
}

func BenchmarkRecord(b *testing.B) {
	phases := []Phase{{Name: "run", End: time.Hour}, {Name: "before", End: 30 * time.Minute}, {Name: "fault", Start: 30 * time.Minute, End: time.Hour}}
	c := NewCollector(phases, time.Second, 4, WithBreakdown(Breakdown{Executors: []string{"load"}}))
	s := esample(0, 0, 0, 3*time.Millisecond, cause.OK)
	b.ReportAllocs()
	for i := range b.N {
		s.Intended = time.Duration(i) * 20 * time.Microsecond % time.Hour
		c.Record(1, s)
		if i%50000 == 0 {
			c.TakeIntervals(s.Intended - time.Second)
		}
	}
}

// Written intervals are recycled: the next intervals reuse their
// histograms, empty, so a long run allocates nothing per second.
func TestCollectorRecyclesIntervals(t *testing.T) {
	c := NewCollector([]Phase{{Name: "run", End: time.Hour}}, time.Second, 2)
	for i := 0; i < 100; i++ {
		c.Record(i, esample(0, 0, time.Duration(i)*10*time.Millisecond, 5*time.Millisecond, cause.GatewayTimeout))
	}
	first := c.TakeIntervals(1 << 62)
	if len(first) != 1 || first[0].Stats.Scheduled() != 100 {
		t.Fatalf("first: %+v", first)
	}
	old := first[0].Stats
	c.Recycle(first)
	c.Record(0, esample(0, 0, 5*time.Second, time.Millisecond, cause.OK))
	next := c.TakeIntervals(1 << 62)
	if len(next) != 1 || next[0].Stats.Scheduled() != 1 || next[0].Stats.Causes[cause.GatewayTimeout] != 0 ||
		next[0].Stats.Latency.TotalCount() != 1 || next[0].Stats.Latency.Max() > 1100 {
		t.Fatalf("a recycled interval kept old data: %+v", next[0].Stats.Causes)
	}
	if next[0].Stats != old {
		t.Fatal("the recycled stats were not reused")
	}
	// Phase stats (they have a lag histogram) are never taken in.
	before := len(c.free.s)
	c.Recycle([]Interval{{Stats: c.PhaseStats()[0]}})
	if n := len(c.free.s); n != before {
		t.Fatalf("%d spare stats; phase stats must not be recycled", n)
	}
}

// Record keeps a few samples waiting per shard and places them a batch at a
// time. Every reader must place them first: a sample recorded before a
// call is in what the call returns, however few were recorded.
func TestCollectorReadersPlaceWaitingSamples(t *testing.T) {
	bd := Breakdown{Executors: []string{"bg", "burst"}, Tags: []string{"list", "item"}, TagOf: [][]int{{0, 1}, {1}}}
	newC := func() *Collector {
		return NewCollector([]Phase{{Name: "run", End: time.Minute}, {Name: "early", End: 5 * time.Second}}, time.Second, 4, WithBreakdown(bd))
	}
	// Three samples, fewer than a batch, on three shards, completing in second 2.
	record := func(c *Collector) {
		c.Record(0, esample(0, 0, 2*time.Second, time.Millisecond, cause.OK))
		c.Record(1, esample(0, 1, 2100*time.Millisecond, time.Millisecond, cause.OK))
		c.Record(2, esample(1, 0, 2200*time.Millisecond, 3*time.Millisecond, cause.GatewayTimeout))
	}
	for _, tc := range []struct {
		name string
		got  func(c *Collector) int64
		want int64
	}{
		{"TakeIntervals", func(c *Collector) int64 {
			var n int64
			for _, iv := range c.TakeIntervals(1 << 62) {
				n += iv.Stats.Scheduled()
			}
			return n
		}, 3},
		{"PhaseStats", func(c *Collector) int64 { return c.PhaseStats()[0].Scheduled() }, 3},
		{"ExecutorStats", func(c *Collector) int64 { return c.ExecutorStats()[1].Causes[cause.GatewayTimeout] }, 1},
		{"TagStats", func(c *Collector) int64 { return c.TagStats()[1].Scheduled() }, 2}, // bg's request 1 and burst's 0
		{"LiveP99", func(c *Collector) int64 {
			if _, ok := c.LiveP99(1, 3500*time.Millisecond); !ok {
				return 0
			}
			return 1
		}, 1},
	} {
		c := newC()
		record(c)
		if got := tc.got(c); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	// A window moved after the fact does not move samples recorded under
	// the old one: they were placed when recorded, as one at a time would.
	c := newC()
	record(c)
	if err := c.SetPhases([]Phase{{Name: "run", End: time.Minute}, {Name: "early", Start: 3 * time.Second, End: 5 * time.Second}}); err != nil {
		t.Fatal(err)
	}
	if n := c.PhaseStats()[1].Scheduled(); n != 3 {
		t.Errorf("phase early after SetPhases: %d samples, want the 3 recorded before it", n)
	}
}

// Past a batch, samples are placed as they come and every count is exact.
func TestCollectorPlacesFullBatches(t *testing.T) {
	c := NewCollector([]Phase{{Name: "run", End: time.Hour}}, time.Second, 1)
	const n = 3*pendMax + 5
	for i := range n {
		c.Record(0, esample(0, 0, time.Duration(i)*time.Millisecond, time.Duration(1+i%7)*time.Millisecond, cause.OK))
		if waiting := len(c.shards[0].pend); waiting >= pendMax {
			t.Fatalf("after %d records %d wait, want fewer than %d", i+1, waiting, pendMax)
		}
	}
	st := c.PhaseStats()[0]
	if st.Scheduled() != n || st.Latency.TotalCount() != n || st.Service.TotalCount() != n {
		t.Fatalf("%d scheduled, %d latencies, %d service times; want %d", st.Scheduled(), st.Latency.TotalCount(), st.Service.TotalCount(), n)
	}
}

// A stretch without requests (a load that starts late, a pause between
// executors) is in the log as an empty interval, as HlogWriter promises,
// so the log covers the run without holes: only intervals that held
// samples used to be written.
func TestHlogEmptyStretch(t *testing.T) {
	c := NewCollector([]Phase{{Name: "run", End: time.Minute}}, time.Second, 2)
	c.Record(0, esample(0, 0, 2500*time.Millisecond, time.Millisecond, cause.OK))
	c.Record(1, esample(0, 0, 5500*time.Millisecond, time.Millisecond, cause.OK))
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	h := NewHlogWriter(&buf, start)
	for _, iv := range c.TakeIntervals(1 << 62) {
		h.Write(iv, time.Second)
	}
	if err := h.Flush(); err != nil {
		t.Fatal(err)
	}
	// An empty interval's Interval_Max is 0, as Java's writer has it (the
	// library wrote the top of the lowest bucket, 0.000511 ms).
	for _, line := range strings.Split(buf.String(), "\n") {
		f := strings.Split(strings.TrimPrefix(line, "Tag=service,"), ",")
		if len(f) == 4 && (f[0] == "0.000000" || f[0] == "3.000000") && f[2] != "0.000000" {
			t.Errorf("empty interval %q: want an Interval_Max of 0.000000", line)
		}
	}
	r := hdr.NewHistogramLogReader(&buf)
	type span struct{ from, to, n int64 }
	var got []span
	for {
		hh, err := r.NextIntervalHistogram()
		if err != nil {
			t.Fatal(err)
		}
		if hh == nil {
			break
		}
		if hh.Tag() == "" {
			got = append(got, span{hh.StartTimeMs() - start.UnixMilli(), hh.EndTimeMs() - start.UnixMilli(), hh.TotalCount()})
		}
	}
	want := []span{{0, 2000, 0}, {2000, 3000, 1}, {3000, 5000, 0}, {5000, 6000, 1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("intervals (ms from the start, count) %v, want %v", got, want)
	}
}

package results

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/loadgen"
)

// The collector defers records (Service equal to Latency, sub-µs lags).
// These tests hold it to an eager reference: every value recorded as it
// comes, as the collector did before it deferred anything.

func eagerAdd(s *Stats, x *loadgen.Sample) {
	s.Causes[x.Cause]++
	if x.Cause == cause.Dropped {
		return
	}
	recordDuration(s.Latency, x.Latency)
	recordDuration(s.Service, x.Service)
	if s.Lag != nil {
		recordDuration(s.Lag, x.Lag)
	}
	if s.ByCause != nil && x.Cause.IsError() {
		if s.ByCause[x.Cause] == nil {
			s.ByCause[x.Cause] = NewHistogram()
		}
		recordDuration(s.ByCause[x.Cause], x.Service)
	}
}

// sameHist: the same geometry, total and counts, of which min, max, mean
// and every percentile are functions.
func sameHist(a, b *hdr.Histogram) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equals(b)
}

// sameStats fails unless got and want hold identical histograms and counts;
// with summary, unless they summarize to the same JSON too (percentiles,
// min, max, mean, encodings: what summary.json and intervals.jsonl hold).
func sameStats(t *testing.T, what string, got, want *Stats, summary bool) {
	t.Helper()
	if !sameHist(got.Latency, want.Latency) || !sameHist(got.Service, want.Service) || !sameHist(got.Lag, want.Lag) {
		t.Fatalf("%s: histograms differ: latency n=%d/%d, service n=%d/%d p50=%d/%d", what,
			got.Latency.TotalCount(), want.Latency.TotalCount(), got.Service.TotalCount(), want.Service.TotalCount(),
			got.Service.ValueAtQuantile(50), want.Service.ValueAtQuantile(50))
	}
	if got.Causes != want.Causes {
		t.Fatalf("%s: causes %v, want %v", what, got.Causes, want.Causes)
	}
	if (got.ByCause == nil) != (want.ByCause == nil) {
		t.Fatalf("%s: by-cause presence differs", what)
	}
	if got.ByCause != nil {
		for c := range got.ByCause {
			g, w := got.ByCause[c], want.ByCause[c]
			if g == nil && w != nil && w.TotalCount() == 0 || w == nil && g != nil && g.TotalCount() == 0 {
				continue // made by a merge, empty: summarized the same
			}
			if !sameHist(g, w) {
				t.Fatalf("%s: %s histogram differs", what, cause.Cause(c))
			}
		}
	}
	if !summary {
		return
	}
	gj, _ := json.Marshal(Summarize(got, time.Second, 1))
	wj, _ := json.Marshal(Summarize(want, time.Second, 1))
	if !bytes.Equal(gj, wj) {
		t.Fatalf("%s: summaries differ:\n got %s\nwant %s", what, gj, wj)
	}
}

// refCollector is the eager reference of a Collector's outputs.
type refCollector struct {
	phases    []Phase
	ph        []*Stats
	execs     []*Stats
	tags      []*Stats
	intervals map[int64]*Stats
	bd        Breakdown
}

func newRef(phases []Phase, bd Breakdown) *refCollector {
	r := &refCollector{phases: phases, intervals: map[int64]*Stats{}, bd: bd}
	for range phases {
		r.ph = append(r.ph, newStats(true))
	}
	for range bd.Executors {
		r.execs = append(r.execs, newStats(true))
	}
	for range bd.Tags {
		r.tags = append(r.tags, newStats(false))
	}
	return r
}

func (r *refCollector) record(x *loadgen.Sample) {
	for i, p := range r.phases {
		if x.Intended >= p.Start && x.Intended < p.End {
			eagerAdd(r.ph[i], x)
		}
	}
	idx := int64(x.Intended / time.Second)
	if r.intervals[idx] == nil {
		r.intervals[idx] = newStats(false)
	}
	eagerAdd(r.intervals[idx], x)
	eagerAdd(r.execs[x.Executor], x)
	eagerAdd(r.tags[r.bd.TagOf[x.Executor][x.Request]], x)
}

func (r *refCollector) take(before time.Duration) []Interval {
	var out []Interval
	for idx, st := range r.intervals {
		if idx < int64(before/time.Second) {
			out = append(out, Interval{Index: idx, Start: time.Duration(idx) * time.Second, Stats: st})
			delete(r.intervals, idx)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// segment kinds of a sample stream.
const (
	segClosed   = iota // Service == Latency, no lag
	segSameUs          // Service a few hundred ns under Latency: often the same µs value
	segOpen            // lags, some under a µs or negative; Service = Latency - lag
	segConnWait        // closed, but waiting for a connection: Service < Latency
	segErrors          // closed, failures and drops
	segHuge            // beyond the range: both clamp to the maximum
	segKinds
)

func genSample(rng *rand.Rand, kind int, at time.Duration) *loadgen.Sample {
	x := &loadgen.Sample{Executor: rng.IntN(2), Intended: at, Cause: cause.OK}
	x.Request = rng.IntN(2 - x.Executor) // executor 1 has one request
	lat := time.Duration(rng.Int64N(int64(50*time.Millisecond))) + time.Duration(rng.IntN(3))*time.Second
	x.Latency, x.Service = lat, lat
	switch kind {
	case segSameUs:
		x.Service = lat - time.Duration(rng.IntN(900))
	case segOpen:
		x.Lag = time.Duration(rng.Int64N(int64(3*time.Millisecond))) - 100*time.Microsecond
		if rng.IntN(3) == 0 {
			x.Lag = time.Duration(rng.IntN(3000)) // under a µs, deferred; or just over
		}
		x.Service = lat - max(x.Lag, 0)
	case segConnWait:
		x.ConnWait = time.Duration(rng.Int64N(int64(2 * time.Millisecond)))
		x.Service = lat - x.ConnWait
	case segErrors:
		x.Cause = []cause.Cause{cause.GatewayTimeout, cause.ConnectFailure, cause.Dropped, cause.OK}[rng.IntN(4)]
		if x.Cause == cause.Dropped {
			x.Latency, x.Service = 0, 0
		}
	case segHuge:
		x.Latency = 11*time.Minute + lat
		x.Service = 10*time.Minute + lat
	}
	return x
}

// A run's streams, closed then open and back, by many workers into few
// shards, read mid-run and taken by the second, give exactly the eager
// reference's phases, executors, tags, intervals and .hlog.
func TestCollectorDeferredRecordsAreExact(t *testing.T) {
	phases := []Phase{{Name: "run", End: 20 * time.Second}, {Name: "a", Start: 1500 * time.Millisecond, End: 7 * time.Second}, {Name: "b", Start: 5 * time.Second, End: 20 * time.Second}}
	bd := Breakdown{Executors: []string{"e0", "e1"}, Tags: []string{"x", "y", "z"}, TagOf: [][]int{{0, 1}, {2}}}
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			c := NewCollector(phases, time.Second, 3, WithBreakdown(bd))
			ref := newRef(phases, bd)
			var gotIvs, wantIvs []Interval
			var at time.Duration
			check := func(when string, summary bool) {
				for i, st := range c.PhaseStats() {
					sameStats(t, fmt.Sprintf("%s: phase %s", when, phases[i].Name), st, ref.ph[i], summary)
				}
				for i, st := range c.ExecutorStats() {
					sameStats(t, fmt.Sprintf("%s: executor %d", when, i), st, ref.execs[i], summary)
				}
				for i, st := range c.TagStats() {
					sameStats(t, fmt.Sprintf("%s: tag %d", when, i), st, ref.tags[i], summary)
				}
			}
			take := func(before time.Duration) {
				got, want := c.TakeIntervals(before), ref.take(before)
				if len(got) != len(want) {
					t.Fatalf("took %d intervals, want %d", len(got), len(want))
				}
				for i := range got {
					if got[i].Index != want[i].Index {
						t.Fatalf("interval %d, want %d", got[i].Index, want[i].Index)
					}
					sameStats(t, fmt.Sprintf("interval %d", got[i].Index), got[i].Stats, want[i].Stats, false)
				}
				gotIvs, wantIvs = append(gotIvs, got...), append(wantIvs, want...)
			}
			// Seed 1 is the case in the small: closed, then one sample with
			// a connection wait, then a lagged one, then closed again.
			kinds := []int{segClosed, segConnWait, segOpen, segClosed}
			lens := []int{500, 1, 1, 500}
			if seed > 1 {
				kinds, lens = nil, nil
				for range 12 {
					kinds, lens = append(kinds, rng.IntN(segKinds)), append(lens, []int{1, 3, 50, 2000}[rng.IntN(4)])
				}
			}
			for k, kind := range kinds {
				for range lens[k] {
					x := genSample(rng, kind, at)
					c.Record(rng.IntN(8), x)
					ref.record(x)
					at += time.Duration(rng.Int64N(int64(5 * time.Millisecond)))
					if seed > 1 && rng.IntN(200) == 0 {
						at -= 1500 * time.Millisecond // late samples, into intervals a shard may have split or not
						at = max(at, 0)
					}
				}
				if k%3 == 2 {
					check(fmt.Sprintf("after segment %d", k), false)
				}
				if k%4 == 1 {
					take(at - time.Second)
				}
			}
			check("at the end", true)
			take(1 << 62)
			// The .hlog of what was taken: byte for byte the reference's.
			var gb, wb bytes.Buffer
			start := time.Unix(1763770500, 0)
			gw, ww := NewHlogWriter(&gb, start), NewHlogWriter(&wb, start)
			for i := range gotIvs {
				gw.Write(gotIvs[i], time.Second)
				ww.Write(wantIvs[i], time.Second)
			}
			if err := gw.Flush(); err != nil {
				t.Fatal(err)
			}
			_ = ww.Flush()
			if !bytes.Equal(gb.Bytes(), wb.Bytes()) {
				t.Fatal(".hlog differs from the reference's")
			}
			c.Recycle(gotIvs) // reused intervals defer again, from empty
		})
	}
}

// Recycled intervals start deferring again, whatever the stream they
// start with.
func TestCollectorRecycledIntervalsDeferAgain(t *testing.T) {
	c := NewCollector(nil, time.Second, 1)
	ref := newRef(nil, Breakdown{Executors: []string{""}, TagOf: [][]int{{0}}, Tags: []string{""}})
	rng := rand.New(rand.NewPCG(3, 4))
	for sec := range 6 {
		kind := []int{segOpen, segClosed, segConnWait, segClosed, segSameUs, segClosed}[sec]
		for i := range 300 {
			x := genSample(rng, kind, time.Duration(sec)*time.Second+time.Duration(i)*time.Millisecond)
			x.Executor, x.Request = 0, 0
			c.Record(0, x)
			ref.record(x)
		}
		got, want := c.TakeIntervals(time.Duration(sec+1)*time.Second), ref.take(time.Duration(sec+1)*time.Second)
		if len(got) != 1 || len(want) != 1 {
			t.Fatalf("second %d: took %d intervals", sec, len(got))
		}
		sameStats(t, fmt.Sprint("second ", sec), got[0].Stats, want[0].Stats, true)
		c.Recycle(got)
	}
}

// Merging deferred stats into settled ones, settled into deferred, and
// deferred into deferred, gives what eager records merged give.
func TestStatsMergeDeferred(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	fill := func(kinds ...int) (lazy, eager *Stats) {
		lazy, eager = newShardStats(true), newStats(true)
		for _, k := range kinds {
			for range 200 {
				x := genSample(rng, k, 0)
				p := pointOf(x)
				lazy.add(&p)
				eagerAdd(eager, x)
			}
		}
		return lazy, eager
	}
	type pair struct{ lazy, eager *Stats }
	mk := func(kinds ...int) pair { l, e := fill(kinds...); return pair{l, e} }
	for name, parts := range map[string][]pair{
		"deferred into deferred":   {mk(segClosed), mk(segClosed, segErrors)},
		"split into deferred":      {mk(segClosed), mk(segClosed, segConnWait)},
		"deferred into split":      {mk(segOpen), mk(segClosed)},
		"split into split":         {mk(segSameUs, segOpen), mk(segErrors, segConnWait, segClosed)},
		"empty, deferred, split":   {mk(), mk(segClosed), mk(segOpen, segClosed)},
		"into an empty deferred":   {mk(), mk(segClosed)},
		"deferred lags into split": {mk(segConnWait), mk(segOpen)},
	} {
		// Into fresh stats, as PhaseStats does.
		got, want := newStats(true), newStats(true)
		for _, p := range parts {
			got.merge(p.lazy)
			want.merge(p.eager)
		}
		sameStats(t, name+", into new stats", got, want, true)
		// Into the first, still deferred, as TakeIntervals does; the
		// others must not change.
		before := make([]*Stats, len(parts))
		for i, p := range parts {
			before[i] = newStats(true)
			before[i].merge(p.lazy)
		}
		for _, p := range parts[1:] {
			parts[0].lazy.merge(p.lazy)
			parts[0].eager.merge(p.eager)
		}
		sameStats(t, name+", into the first", parts[0].lazy, parts[0].eager, false)
		for i, p := range parts[1:] {
			again := newStats(true)
			again.merge(p.lazy)
			sameStats(t, name+", a merged source", again, before[i+1], false)
		}
	}
	// The exported Merge into NewStats (intervals re-aggregated offline).
	l, e := fill(segClosed, segOpen)
	got, want := NewStats(), NewStats()
	got.Merge(l)
	want.Merge(e)
	want.Lag, got.Lag = nil, nil
	sameStats(t, "NewStats", got, want, true)
}

// A closed model's first request on each connection waited for its dial, so
// its Service differs from its Latency. Those samples are kept aside rather
// than ending the deferral (the deferral is the point: two records fewer per
// request), up to maxDiff; past it the stats record eagerly. Exact all along.
func TestCollectorDefersPastDials(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	lazy, eager := newShardStats(true), newStats(true)
	add := func(kind, n int) {
		for range n {
			x := genSample(rng, kind, 0)
			p := pointOf(x)
			lazy.add(&p)
			eagerAdd(eager, x)
		}
	}
	settled := func(what string) {
		t.Helper()
		got := newStats(true)
		got.merge(lazy) // leaves lazy as it was
		sameStats(t, what, got, eager, true)
	}
	add(segConnWait, 50) // 50 connections dial
	add(segClosed, 5000)
	if !lazy.svcSame || len(lazy.diffLat) != 50 {
		t.Fatalf("after 50 dials: deferring %v with %d aside, want true with 50", lazy.svcSame, len(lazy.diffLat))
	}
	settled("after 50 dials")
	add(segConnWait, maxDiff-50) // reconnections, up to the bound
	add(segClosed, 100)
	if !lazy.svcSame {
		t.Fatal("stopped deferring at the bound")
	}
	settled("at the bound")
	add(segConnWait, 1)
	if lazy.svcSame || len(lazy.diffLat) != 0 {
		t.Fatalf("past the bound: deferring %v with %d aside, want false with 0", lazy.svcSame, len(lazy.diffLat))
	}
	add(segClosed, 100)
	settled("past the bound")
}

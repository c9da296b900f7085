package report

import (
	"fmt"
	"math"
	"sort"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
)

// Data is what the pictures are drawn from: a run directory read back, plus
// the load profile. The run directory records what happened per interval but
// not what the profile asked for, so the caller (which compiles the saved
// scenario anyway) hands the stages in; without them the target line is
// left out.
type Data struct {
	Run      *results.Run
	Scenario []byte          // scenario.yaml as run; shown for reproduction
	Stages   []loadgen.Stage // the load profile; nil when unknown
}

// Point is one interval of the run's time series: the requests intended in
// [T, T+Width), judged when they ended.
type Point struct {
	T, Width     float64 // seconds on the run clock
	Scheduled    int64   // every request the profile asked for (dropped included)
	Sent         int64   // actually sent
	TargetRate   float64 // per second, from the profile; NaN when the profile is unknown
	AchievedRate float64 // sent per second
	Measured     int64   // requests with a latency (everything sent)
	Latency      results.Percentiles
	ErrorRate    float64
	Causes       map[string]int64
}

// Series turns interval records into points, in time order. When there are
// more than maxPoints intervals (a long run), neighbouring intervals are
// merged histogram by histogram, so the percentiles stay exact for the
// wider windows instead of being averaged; maxPoints <= 0 keeps every
// interval.
func Series(recs []results.IntervalRecord, stages []loadgen.Stage, maxPoints int) ([]Point, error) {
	recs = append([]results.IntervalRecord(nil), recs...)
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Start < recs[j].Start })
	var pacer *loadgen.Pacer
	if len(stages) > 0 {
		pacer = loadgen.NewPacer(stages)
	}
	if maxPoints > 0 && len(recs) > maxPoints {
		merged, err := coarsen(recs, (len(recs)+maxPoints-1)/maxPoints)
		if err != nil {
			return nil, err
		}
		recs = merged
	}
	out := make([]Point, 0, len(recs))
	for _, r := range recs {
		out = append(out, point(r, pacer))
	}
	return out, nil
}

func point(r results.IntervalRecord, pacer *loadgen.Pacer) Point {
	st := r.Stats
	w := float64(r.Width)
	p := Point{
		T: float64(r.Start), Width: w, Scheduled: st.Scheduled, Sent: st.Sent,
		TargetRate: math.NaN(), Latency: st.Latency, ErrorRate: st.ErrorRate, Causes: st.Causes,
	}
	p.Measured = st.Sent
	if w > 0 {
		p.AchievedRate = float64(st.Sent) / w
		if pacer != nil {
			start := r.Start.D()
			p.TargetRate = pacer.Expected(start, start+r.Width.D()) / w
		}
	}
	if p.Causes == nil {
		p.Causes = map[string]int64{}
	}
	return p
}

// coarsen merges every k consecutive intervals (aligned to multiples of k
// widths, so the windows do not depend on where the run's first interval
// fell). Only the latency histograms are decoded, and the merged windows'
// percentiles are read straight off the merged histogram: decoding is the
// cost of a long run's report, so nothing else is decoded or re-encoded.
func coarsen(recs []results.IntervalRecord, k int) ([]results.IntervalRecord, error) {
	type group struct {
		rec  results.IntervalRecord
		hist *hdr.Histogram
	}
	var groups []*group
	byIdx := map[int64]*group{}
	// Windows are k of the run's interval width; a run's last interval
	// may be narrower (the load stopped inside it), so the widest one sets it.
	var width results.Seconds
	for _, r := range recs {
		if r.Width <= 0 {
			return nil, fmt.Errorf("interval at %.3fs has width %v", float64(r.Start), r.Width)
		}
		width = max(width, r.Width)
	}
	for _, r := range recs {
		span := float64(width) * float64(k)
		idx := int64(math.Floor(float64(r.Start)/span + 1e-9))
		g := byIdx[idx]
		if g == nil {
			g = &group{hist: results.NewHistogram(), rec: results.IntervalRecord{
				Start: results.Seconds(float64(idx) * span), Width: results.Seconds(span),
				Stats: results.StatsSummary{Causes: map[string]int64{}},
			}}
			byIdx[idx] = g
			groups = append(groups, g)
		}
		if h := r.Stats.Histograms.Latency; h != "" {
			lat, err := hdr.Decode([]byte(h))
			if err != nil {
				return nil, fmt.Errorf("interval at %.3fs: latency histogram: %w", float64(r.Start), err)
			}
			g.hist.Merge(lat)
		}
		if r.Width < width { // the run's last, cut where the load stopped: so is the window
			g.rec.Width = r.Start + r.Width - g.rec.Start
		}
		st := &g.rec.Stats
		st.Scheduled += r.Stats.Scheduled
		st.Sent += r.Stats.Sent
		st.Errors += r.Stats.Errors
		for c, n := range r.Stats.Causes {
			st.Causes[c] += n
		}
	}
	out := make([]results.IntervalRecord, 0, len(groups))
	for _, g := range groups {
		st := &g.rec.Stats
		if judged := st.Scheduled - st.Causes[cause.Aborted.String()]; judged > 0 {
			st.ErrorRate = float64(st.Errors) / float64(judged)
		}
		if g.hist.TotalCount() > 0 {
			// One pass over the histogram for every percentile the charts
			// draw (the 100th is the max); min and mean are left out, as
			// nothing draws them and each would be another pass.
			q := g.hist.ValueAtPercentiles([]float64{50, 90, 99, 99.9, 100})
			st.Latency = results.Percentiles{P50: msRound(q[50]), P90: msRound(q[90]), P99: msRound(q[99]), P999: msRound(q[99.9]), Max: msRound(q[100])}
		}
		out = append(out, g.rec)
	}
	return out, nil
}

// msRound turns microseconds into milliseconds as results.Summarize does.
func msRound(us int64) float64 { return math.Round(float64(us)) / 1000 }

// causeOrder lists the causes that occur in points in the canonical order of
// package cause (ok first, then client, gateway, upstream, inferred), so the
// CSV's columns and the chart's stack are stable from run to run.
func causeOrder(points []Point) []string {
	seen := map[string]bool{}
	for _, p := range points {
		for c, n := range p.Causes {
			if n > 0 {
				seen[c] = true
			}
		}
	}
	var out []string
	for _, c := range cause.All() {
		if seen[c.String()] {
			out = append(out, c.String())
			delete(seen, c.String())
		}
	}
	// Causes this build does not know (a newer run read by an older cascade)
	// still get a column, after the known ones.
	var rest []string
	for c := range seen {
		rest = append(rest, c)
	}
	sort.Strings(rest)
	return append(out, rest...)
}

package verdict

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/cascadehq/cascade/autoscale"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/results"
)

// Scaling assertions.
const (
	ScalesUpWithin   = "scales_up_within"
	Reaches          = "reaches"
	DirectionChanges = "direction_changes"
	NoDeadBand       = "no_dead_band"
)

// Scaling judges an autoscaler: how soon it scaled up after a load step,
// whether it reached a replica count, how often it changed direction
// (flapping), and whether its metric sat in the tolerance dead band. With
// Oracle set, nothing scaled during the run: the decisions are those a
// Kubernetes HPA with that spec would have made, replayed over the recorded
// metrics (upstreams.jsonl).
type Scaling struct {
	Name     string
	Upstream string
	Assert   string // one of the assertions above
	After    Anchor // scales_up_within
	Within   time.Duration
	N        int // reaches: replicas; direction_changes: the most allowed
	// Spec is the autoscaler's settings, for evidence and the oracle.
	Spec autoscale.Settings
	// Oracle: replay the HPA over the recorded metrics instead of reading
	// the autoscaler's events.
	Oracle bool
}

type scaleStep struct {
	at       time.Duration
	from, to int
	value    float64
	hasValue bool
}

// decisions returns the scale changes, from the autoscaler's events or from
// the oracle's replay, and the dead-band report (oracle and sync events).
func (s *Scaling) decisions(in *Input) ([]scaleStep, autoscale.DeadBandReport, string, bool) {
	if s.Oracle {
		samples := OracleSamples(in, s.Spec)
		if len(samples) == 0 {
			return nil, autoscale.DeadBandReport{}, noUpstreamRecords, false
		}
		ds := autoscale.Replay(s.Spec, samples)
		var out []scaleStep
		for _, d := range ds {
			if d.Scaled() {
				out = append(out, scaleStep{at: d.At, from: d.From, to: d.To, value: d.Value, hasValue: !math.IsNaN(d.Value)})
			}
		}
		return out, autoscale.DeadBand(ds), "a Kubernetes HPA replayed over the recorded metrics (oracle)", true
	}
	var out []scaleStep
	for _, e := range eventsOf(in, s.Upstream, autoscale.EvScale) {
		st := scaleStep{at: e.T, from: int(num(e, "from")), to: int(num(e, "to"))}
		if v, ok := e.Attrs["value"]; ok {
			st.value, st.hasValue = toFloat(v), true
		}
		out = append(out, st)
	}
	var syncs []autoscale.Decision
	for _, e := range eventsOf(in, s.Upstream, autoscale.EvSync) {
		db, _ := e.Attrs["dead_band"].(bool)
		syncs = append(syncs, autoscale.Decision{At: e.T, DeadBand: db, Ratio: num(e, "ratio")})
	}
	src := "the autoscaler's autoscale.scale events"
	if len(syncs) == 0 && len(out) == 0 {
		return nil, autoscale.DeadBandReport{}, "no autoscale.sync or autoscale.scale events for " + s.Upstream + ": no autoscaler ran", false
	}
	return out, autoscale.DeadBand(syncs), src, true
}

// Evaluate implements Objective.
func (s *Scaling) Evaluate(in *Input) results.ObjectiveResult {
	r := results.ObjectiveResult{Name: s.Name, Phase: "run", Expr: s.Name}
	steps, db, src, ok := s.decisions(in)
	switch s.Assert {
	case ScalesUpWithin:
		r.Bound = "<= " + FormatDuration(s.Within)
	case Reaches:
		r.Bound = fmt.Sprintf(">= %d replicas", s.N)
	case DirectionChanges:
		r.Bound = fmt.Sprintf("<= %d", s.N)
	case NoDeadBand:
		r.Bound = "0 syncs above target inside the tolerance"
	}
	if !ok {
		r.Evidence = src
		return r
	}
	trail := scaleTrail(steps)
	r.Facts = map[string]float64{"scale_events": float64(len(steps))}
	switch s.Assert {
	case ScalesUpWithin:
		t0, anchorEv, ok := s.After.Resolve(in)
		if !ok {
			r.Evidence = anchorEv
			return r
		}
		r.Facts["anchor_s"] = t0.Seconds()
		for _, st := range steps {
			if st.at < t0 || st.to <= st.from {
				continue
			}
			d := st.at - t0
			r.Value, r.Pass = d.Seconds(), d <= s.Within
			var b string
			r.Measured, b = exactPair(d, s.Within)
			r.Bound = "<= " + b
			r.Facts["scaled_s"], r.Facts["delta_s"] = st.at.Seconds(), d.Seconds()
			val := ""
			if st.hasValue {
				val = fmt.Sprintf(" on %s %s against a target of %s", s.Spec.Metric, metricValue(s.Spec.Metric, st.value), metricValue(s.Spec.Metric, s.Spec.Target))
			}
			r.Evidence = fmt.Sprintf("%s; %s scaled %d → %d at %s%s: after %s (%s; %s)", anchorEv, s.Upstream, st.from, st.to, secs(st.at), val, within(d), src, trail)
			return r
		}
		r.Measured = "never"
		r.Evidence = fmt.Sprintf("%s; %s never scaled up after it (%s; %s)", anchorEv, s.Upstream, src, trail)
	case Reaches:
		// The replicas it started with count: an upstream of 4 replicas
		// that never scaled was "at most 2 replicas" (min_replicas), and
		// "reaches: 4" failed although 4 ran throughout.
		start := s.initialReplicas(in)
		most, at := start, time.Duration(-1)
		for _, st := range steps {
			if st.to > most {
				most, at = st.to, st.at
			}
		}
		r.Value, r.Measured, r.Pass = float64(most), fmt.Sprintf("%d replicas", most), most >= s.N
		r.Facts["max_replicas"] = float64(most)
		r.Evidence = fmt.Sprintf("at most %d replicas, the %d it started with (%s; %s)", most, start, src, trail)
		if at >= 0 {
			r.Facts["reached_s"] = at.Seconds()
			r.Evidence = fmt.Sprintf("reached %d replicas at %s (%s; %s)", most, secs(at), src, trail)
		}
	case DirectionChanges:
		n, last := 0, 0
		for _, st := range steps {
			dir := 1
			if st.to < st.from {
				dir = -1
			}
			if last != 0 && dir != last {
				n++
			}
			last = dir
		}
		r.Value, r.Measured, r.Pass = float64(n), fmt.Sprintf("%d changes", n), n <= s.N
		r.Facts["direction_changes"] = float64(n)
		r.Evidence = fmt.Sprintf("%d scale events, %d changes of direction (%s; %s)", len(steps), n, src, trail)
	case NoDeadBand:
		r.Value, r.Measured, r.Pass = float64(db.AboveInBand), fmt.Sprintf("%d syncs", db.AboveInBand), db.AboveInBand == 0
		r.Facts["syncs"], r.Facts["in_band"], r.Facts["above_in_band"] = float64(db.Syncs), float64(db.InBand), float64(db.AboveInBand)
		r.Evidence = fmt.Sprintf("target %s %s with a %s tolerance: %s (%s)", s.Spec.Metric, metricValue(s.Spec.Metric, s.Spec.Target),
			FormatPercent(s.Spec.Tolerance), db, src)
		if db.AboveInBand > 0 {
			r.Evidence += fmt.Sprintf("; a target below %s would have scaled", metricValue(s.Spec.Metric, s.Spec.Target/(1+s.Spec.Tolerance)))
		}
	}
	return r
}

// initialReplicas is how many replicas the upstream had when the run
// began, as the upstreams recorded it (the oracle's replay starts there,
// within min and max); min_replicas when nothing was recorded.
func (s *Scaling) initialReplicas(in *Input) int {
	first := -1
	var at results.Seconds
	for _, r := range in.Upstreams {
		if r.Upstream == s.Upstream && r.Replicas > 0 && (first < 0 || r.Start < at) {
			first, at = r.Replicas, r.Start
		}
	}
	if first < 0 {
		return s.Spec.Min
	}
	if s.Oracle {
		return min(max(first, s.Spec.Min), s.Spec.Max)
	}
	return first
}

// Doomed implements Abortable for scales_up_within.
func (s *Scaling) Doomed(in *Input) (bool, string) {
	if s.Assert != ScalesUpWithin || s.Oracle {
		return false, ""
	}
	t0, _, ok := s.After.Resolve(in)
	if !ok || in.Now <= t0+s.Within {
		return false, ""
	}
	steps, _, _, _ := s.decisions(in)
	for _, st := range steps {
		if st.at >= t0 && st.to > st.from {
			return false, ""
		}
	}
	return true, fmt.Sprintf("%s: no scale-up within %s of %s", s.Name, FormatDuration(s.Within), s.After)
}

func scaleTrail(steps []scaleStep) string {
	if len(steps) == 0 {
		return "no scale events"
	}
	parts := make([]string, 0, len(steps))
	for i, st := range steps {
		if i == 8 {
			parts = append(parts, fmt.Sprintf("… %d more", len(steps)-i))
			break
		}
		parts = append(parts, fmt.Sprintf("%d→%d@%s", st.from, st.to, secs(st.at)))
	}
	return strings.Join(parts, " ")
}

func metricValue(metric string, v float64) string {
	switch metric {
	case autoscale.P95Latency:
		return fmtSec(v)
	case autoscale.RequestRate:
		return fmt.Sprintf("%.1f/s", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// OracleSamples turns an upstream's records into the samples an HPA would
// have seen at each sync: the metric averaged over the sync period that
// ended then (summed over replicas for Pods metrics).
func OracleSamples(in *Input, s autoscale.Settings) []autoscale.Sample {
	var recs []results.UpstreamRecord
	for _, r := range in.Upstreams {
		if r.Upstream == s.Upstream {
			recs = append(recs, r)
		}
	}
	if len(recs) == 0 {
		return nil
	}
	sync := s.SyncPeriod
	end := (recs[len(recs)-1].Start + recs[len(recs)-1].Width).D()
	var out []autoscale.Sample
	for at := sync; at <= end; at += sync {
		var total, weight float64
		replicas := 0
		for _, r := range recs {
			from, to := r.Start.D(), (r.Start + r.Width).D()
			if to <= at-sync || from >= at {
				continue
			}
			w := r.Width.D().Seconds()
			switch s.Metric {
			case autoscale.InFlight:
				total += r.InFlightMean * w
			case autoscale.RequestRate:
				// Everything the replicas served, as the live metric
				// counts it: the direct path's requests are load too.
				total += float64(r.Arrivals + r.DirectArrivals)
			case autoscale.P95Latency:
				if r.ServiceP95MS == 0 {
					continue
				}
				total += r.ServiceP95MS / 1000 * w
			}
			weight += w
			replicas = max(replicas, r.Replicas)
		}
		v := math.NaN()
		if weight > 0 {
			v = total / weight
		}
		out = append(out, autoscale.Sample{At: at, Replicas: replicas, Total: v})
	}
	return out
}

// num reads a numeric attr: an int when emitted live, a float64 once read
// back from events.jsonl.
func num(e event.Event, key string) float64 { return toFloat(e.Attrs[key]) }

func toFloat(v any) float64 {
	switch x := v.(type) {
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case float64:
		return x
	case uint64:
		return float64(x)
	}
	return 0
}

package verdict

import (
	"fmt"
	"math"
	"time"

	"github.com/cascadehq/cascade/results"
)

// Abortable is an objective that can tell, from what a run has recorded so
// far, that it has failed whatever happens next, so the run can stop early
// instead of burning the rest of its time (a scenario marks such objectives
// abort: true).
type Abortable interface {
	Objective
	// Doomed reports whether the objective can no longer pass, and why. The
	// input is partial: intervals, events and upstream records so far, with
	// Now set; Summary and Phases are empty.
	Doomed(in *Input) (bool, string)
}

// CanAbort says whether a threshold can be judged early: counts and the
// maximum only grow, so an upper bound they have crossed stays crossed; a
// whole-run rate or quantile is settled once its failures exceed the share
// of the planned requests the bound allows.
func (t *Threshold) CanAbort() error {
	switch t.op {
	case LT, LE:
	case EQ:
		// "errors == 0": a count that only grows is lost once it passes
		// the bound.
		if t.metric.unit != unitCount && t.metric.stat != "max" {
			return fmt.Errorf("only an upper bound (<, <=, or == on a count) can fail early: %q could still pass later", t.Expr)
		}
	default:
		return fmt.Errorf("only an upper bound (<, <=, or == on a count) can fail early: %q could still pass later", t.Expr)
	}
	switch t.metric.stat {
	case "errors", "cause_count", "requests", "max", "events", "retries", "non_idempotent_retries",
		"late_attempts", "orphans", "orphan_time", "upstream_requests":
		return nil
	case "error_rate", "cause_rate", "quantile":
		if t.Phase != "" {
			return fmt.Errorf("%s can fail early only over the whole run (its planned size is known); drop the phase or use a count", t.metric.name)
		}
		if t.metric.series != "latency" && t.metric.stat == "quantile" {
			return fmt.Errorf("%s cannot fail early: only latency quantiles can", t.metric.name)
		}
		return nil
	}
	return fmt.Errorf("%s cannot fail early (it can still move either way)", t.metric.name)
}

// Doomed implements Abortable for the metrics CanAbort accepts.
func (t *Threshold) Doomed(in *Input) (bool, string) {
	if t.CanAbort() != nil {
		return false, ""
	}
	from, to, ok := phaseBounds(in, t.Phase)
	if !ok {
		return false, ""
	}
	if in.Now > 0 {
		to = min(to, in.Now)
	}
	ivs, err := in.intervalsSoFar()
	if err != nil {
		return false, ""
	}
	st := merged(ivs, from, to)
	sp := span{st: st, from: from, to: to, label: fmt.Sprintf("[%s, %s) so far", secs(from), secs(to))}
	switch t.metric.stat {
	case "error_rate", "cause_rate":
		if in.Planned <= 0 {
			return false, ""
		}
		k := st.Errors()
		if t.metric.stat == "cause_rate" {
			k = st.Causes[t.metric.cause]
		}
		// However the rest goes, the final rate is at least k / planned.
		if least := float64(k) / in.Planned; !t.op.holds(least, t.bound) {
			return true, fmt.Sprintf("%s: %d failures already, of %.0f planned requests: at least %s whatever follows",
				t.Name, k, in.Planned, FormatPercent(least))
		}
		return false, ""
	case "quantile":
		if in.Planned <= 0 || st.Latency.TotalCount() == 0 {
			return false, ""
		}
		above := countAbove(st, time.Duration(t.bound*float64(time.Second)))
		allowed := (1 - t.metric.quantile/100) * in.Planned
		if float64(above) > allowed {
			// The most it allows is whole: 1% of 1050 is 10.5, so 10
			// (it said "more than the 11", of 11 slow requests).
			return true, fmt.Sprintf("%s: %d requests already took longer than %s, more than the %.0f of %.0f planned that %s allows",
				t.Name, above, t.format(t.bound), math.Floor(allowed+1e-9), in.Planned, t.metric.name)
		}
		return false, ""
	}
	v, ev, _, ok := t.measure(in, sp)
	lost := !t.op.holds(v, t.bound)
	if t.op == EQ {
		lost = v > t.bound // below the bound it can still get there
	}
	if !ok || !lost {
		return false, ""
	}
	return true, fmt.Sprintf("%s: already %s (%s)", t.Name, t.format(v), ev)
}

// countAbove counts the latencies above d (to the histogram's 0.1%).
func countAbove(st *results.Stats, d time.Duration) int64 {
	us := d.Microseconds()
	var n int64
	for _, b := range st.Latency.Distribution() {
		if b.From > us {
			n += b.Count
		}
	}
	return n
}

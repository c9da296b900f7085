package verdict

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cascadehq/cascade/results"
)

// interval is one decoded line of intervals.jsonl.
type interval struct {
	from, to time.Duration
	st       *results.Stats
}

// intervals decodes intervals.jsonl once per Input, in time order.
func (in *Input) intervals() ([]interval, error) {
	if in.ivs != nil || len(in.Intervals) == 0 {
		return in.ivs, in.ivErr
	}
	recs := append([]results.IntervalRecord(nil), in.Intervals...)
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Start < recs[j].Start })
	for _, r := range recs {
		st, err := r.Stats.Stats()
		if err != nil {
			in.ivErr = fmt.Errorf("interval at %.1fs: %w", float64(r.Start), err)
			return nil, in.ivErr
		}
		// An overloaded run can write an interval twice (samples that
		// landed after it was flushed): they are one interval.
		if n := len(in.ivs); n > 0 && in.ivs[n-1].from == r.Start.D() {
			in.ivs[n-1].st.Merge(st)
			continue
		}
		in.ivs = append(in.ivs, interval{from: r.Start.D(), to: (r.Start + r.Width).D(), st: st})
	}
	return in.ivs, nil
}

// merged adds up the intervals that start in [from, to).
func merged(ivs []interval, from, to time.Duration) *results.Stats {
	st := results.NewStats()
	for _, iv := range ivs {
		if iv.from >= from && iv.from < to {
			st.Merge(iv.st)
		}
	}
	return st
}

// intervalWidth is the width of the recorded intervals (1 s by default).
func intervalWidth(ivs []interval) time.Duration {
	if len(ivs) > 0 && ivs[0].to > ivs[0].from {
		return ivs[0].to - ivs[0].from
	}
	return time.Second
}

// Window asserts a threshold in every rolling window of a phase: "p99 <
// 300ms in every 10 s window". Windows slide by one interval (1 s) over
// intervals.jsonl, so a bad 10 s stretch anywhere is caught even when the
// whole-run p99 looks fine.
type Window struct {
	Name  string
	T     *Threshold
	Every time.Duration
}

// phaseBounds returns the window of a phase ("" is the whole run).
func phaseBounds(in *Input, phase string) (time.Duration, time.Duration, bool) {
	if phase == "" {
		phase = "run"
	}
	p, ok := in.Phases[phase]
	if !ok {
		if phase == "run" && in.Summary == nil {
			return 0, runEnd(in), true
		}
		return 0, 0, false
	}
	return p.Summary.Start.D(), p.Summary.End.D(), true
}

// windowResult is the outcome over every window.
type windowResult struct {
	windows, failed, empty int
	worst                  float64
	worstFrom, worstTo     time.Duration
	firstFail              time.Duration
	worstEv                string
	haveWorst              bool
	lo, hi                 time.Duration // the whole intervals judged
}

// wholeIntervals is the stretch [lo, hi) of the intervals lying wholly
// inside [from, to): an interval that straddles a phase's edge holds the
// neighbouring phase's requests, and a window made of it would judge the
// phase on them. An edge within 1% of an interval's width of a boundary is
// on it: phases derived from the faults as they ran start a millisecond or
// two after the plan, and 1% of an interval's requests cannot move its p99.
// The run's last interval is only as wide as the part of it the load ran,
// so hi may fall inside a second; nominal is then hi rounded up to one.
func wholeIntervals(ivs []interval, from, to time.Duration) (lo, hi, nominal time.Duration) {
	width := intervalWidth(ivs)
	slack := width / 100
	lo = (from - slack).Truncate(width)
	if lo < from-slack {
		lo += width
	}
	hi = (to + slack).Truncate(width)
	nominal = hi
	for _, iv := range ivs {
		if iv.from == hi && iv.to > hi && iv.to < hi+width && iv.to <= to+slack {
			hi, nominal = iv.to, hi+width
		}
	}
	return lo, hi, nominal
}

// slide judges every complete window of whole intervals inside [from, to)
// that ends by limit.
func (w *Window) slide(in *Input, ivs []interval, from, to, limit time.Duration) windowResult {
	width := intervalWidth(ivs)
	res := windowResult{firstFail: -1}
	lo, hi, nominal := wholeIntervals(ivs, from, to)
	res.lo, res.hi = lo, hi
	every := w.Every
	if hi > lo && nominal-lo < every {
		every = nominal - lo // a phase shorter than the window is one window
	}
	for k := lo; hi > lo && k+every <= nominal; k += width {
		end := min(k+every, hi)
		if end > limit {
			break
		}
		st := merged(ivs, k, end)
		sp := span{st: st, from: k, to: end, label: fmt.Sprintf("window [%s, %s)", secs(k), secs(end))}
		if end > k {
			sp.achieved = float64(st.Sent()) / (end - k).Seconds()
		}
		v, ev, _, ok := w.T.measure(in, sp)
		if !ok {
			res.empty++
			continue
		}
		res.windows++
		pass := w.T.op.holds(v, w.T.bound)
		if !pass {
			res.failed++
			if res.firstFail < 0 {
				res.firstFail = k
			}
		}
		if !res.haveWorst || worse(w.T.op, v, res.worst) {
			res.worst, res.worstFrom, res.worstTo, res.worstEv, res.haveWorst = v, k, end, ev, true
		}
	}
	return res
}

// worse says whether a is further from passing than b under op.
func worse(op Op, a, b float64) bool {
	switch op {
	case LT, LE:
		return a > b
	case GT, GE:
		return a < b
	}
	return false
}

// Evaluate implements Objective.
func (w *Window) Evaluate(in *Input) results.ObjectiveResult {
	r := results.ObjectiveResult{Name: w.Name, Phase: phaseOr(w.T.Phase), Expr: w.T.Expr,
		Bound: fmt.Sprintf("%s %s in every %s window", w.T.op, w.T.format(w.T.bound), FormatDuration(w.Every))}
	from, to, ok := phaseBounds(in, w.T.Phase)
	if !ok {
		r.Evidence = fmt.Sprintf("phase %q was not recorded (phases: %s)", w.T.Phase, strings.Join(phaseNames(in), ", "))
		return r
	}
	ivs, err := in.intervals()
	if err != nil {
		r.Evidence = err.Error()
		return r
	}
	if len(ivs) == 0 {
		r.Evidence = "the run recorded no intervals (intervals.jsonl)"
		return r
	}
	res := w.slide(in, ivs, from, to, ivs[len(ivs)-1].to)
	r.Facts = map[string]float64{"windows": float64(res.windows), "failed": float64(res.failed), "empty": float64(res.empty)}
	width := intervalWidth(ivs)
	if res.hi <= res.lo {
		r.Measured = "nothing to judge"
		r.Evidence = fmt.Sprintf("phase %s [%s, %s) holds no whole %s interval: windows are made of whole intervals inside the phase, so that no request of a neighbouring phase is judged with it; put the phase's edges on whole seconds, or drop every:",
			phaseOr(w.T.Phase), secs(from), secs(to), FormatDuration(width))
		return r
	}
	if res.windows == 0 {
		r.Evidence = fmt.Sprintf("no %s window of [%s, %s) had requests to judge", FormatDuration(w.Every), secs(res.lo), secs(res.hi))
		return r
	}
	r.Value, r.Measured = res.worst, "worst "+w.T.format(res.worst)
	if m, b := w.T.exact(res.worst); m != "" {
		r.Measured = "worst " + m
		r.Bound = fmt.Sprintf("%s %s in every %s window", w.T.op, b, FormatDuration(w.Every))
	}
	r.Facts["worst_from_s"], r.Facts["worst_to_s"] = res.worstFrom.Seconds(), res.worstTo.Seconds()
	r.Pass = res.failed == 0
	r.Evidence = fmt.Sprintf("%d of %d windows failed; worst %s", res.failed, res.windows, res.worstEv)
	if res.lo != from || res.hi != to {
		r.Evidence += fmt.Sprintf("; windows over [%s, %s), the whole intervals of [%s, %s)", secs(res.lo), secs(res.hi), secs(from), secs(to))
	}
	if res.failed > 0 {
		r.Facts["first_failed_s"] = res.firstFail.Seconds()
		r.Evidence += fmt.Sprintf("; first failing window starts at %s", secs(res.firstFail))
	}
	return r
}

// Doomed implements Abortable: a window that failed stays failed.
func (w *Window) Doomed(in *Input) (bool, string) {
	from, to, ok := phaseBounds(in, w.T.Phase)
	ivs, err := in.intervals()
	if !ok || err != nil || len(ivs) == 0 {
		return false, ""
	}
	res := w.slide(in, ivs, from, to, ivs[len(ivs)-1].to)
	if res.failed == 0 {
		return false, ""
	}
	return true, fmt.Sprintf("%s: window starting at %s failed (%s)", w.Name, secs(res.firstFail), res.worstEv)
}

func phaseOr(p string) string {
	if p == "" {
		return "run"
	}
	return p
}

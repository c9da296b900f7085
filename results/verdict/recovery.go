package verdict

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cascadehq/cascade/results"
)

// Recovery defaults.
const (
	DefaultBand      = 1.5                   // p99 may be 1.5 times the baseline's
	DefaultErrorBand = 0.01                  // the error rate may be 1 point above the baseline's
	DefaultHold      = 3 * time.Second       // and must stay within the band this long
	BandFloor        = 25 * time.Millisecond // the p99 band is never narrower than this (timer and scheduler noise)
)

// Recovery is time-to-recover: after a disturbance ends (a fault's end, a
// load step), how long until the p99 and the error rate are back within the
// baseline's band, and stay there for Hold. Judged on 1 s intervals, so it
// is exact to the interval width; `recovers_within` bounds it.
type Recovery struct {
	Name   string
	After  Anchor
	Within time.Duration
	// Baseline is a phase whose p99 and error rate are "normal". When "",
	// the baseline is [BaselineFrom, the anchor's onset): for a fault, the
	// time before it started; for a load step, the time before the step.
	Baseline     string
	BaselineFrom time.Duration
	// Onset is where a default baseline ends: the fault's onset, or the
	// step's start (which is the anchor itself).
	Onset Anchor
	// Band: an interval is back when its p99 ≤ baseline p99 × Band (and at
	// least baseline + BandFloor) and its error rate ≤ the baseline's +
	// ErrorBand.
	Band      float64
	ErrorBand float64
	Hold      time.Duration
}

type band struct {
	p99, errRate       float64 // the baseline
	maxP99, maxErrRate float64 // the band's upper edges
	label              string
}

func (rc *Recovery) baseline(in *Input, ivs []interval) (band, string, bool) {
	var st *results.Stats
	label := ""
	if rc.Baseline != "" {
		p, ok := in.Phases[rc.Baseline]
		if !ok {
			return band{}, fmt.Sprintf("baseline phase %q was not recorded", rc.Baseline), false
		}
		st = p.Stats
		label = phaseLabel(rc.Baseline, p.Summary)
	} else {
		onset, ev, ok := rc.Onset.Resolve(in)
		if !ok {
			return band{}, ev, false
		}
		from := rc.BaselineFrom
		width := intervalWidth(ivs)
		// Skip the first interval when there is room: it holds the ramp and
		// cold connections, not the steady state.
		if from == 0 && onset >= 3*width {
			from = width
		}
		to := onset.Truncate(width)
		// The time before the onset is normal only where no other fault
		// was active: a second fault's baseline that took in the first
		// one's slow seconds set a band so wide that a disturbance which
		// never ended passed as recovered at once.
		wins := faultWindows(in, runEnd(in))
		var calm []interval
		var left time.Duration
		names := map[string]bool{}
		var order []string
		for _, iv := range ivs {
			if iv.from < from || iv.from >= to {
				continue
			}
			hit := false
			for _, w := range wins {
				if min(iv.to, w.to)-max(iv.from, w.from) > width/100 {
					hit = true
					if !names[w.name] {
						names[w.name] = true
						order = append(order, w.name)
					}
				}
			}
			if hit {
				left += iv.to - iv.from
				continue
			}
			calm = append(calm, iv)
		}
		label = fmt.Sprintf("[%s, %s) before %s", secs(from), secs(to), rc.Onset)
		switch {
		case left == 0:
			st = merged(ivs, from, to)
		case len(calm) == 0:
			// Nothing calm to compare with: say so rather than fail a
			// scenario whose background fault runs throughout.
			st = merged(ivs, from, to)
			label += fmt.Sprintf(" (another fault was active throughout it: %s; the band includes its effect: name a calm phase with baseline: to judge against one)", strings.Join(order, ", "))
		default:
			st = merged(calm, from, to)
			which := "fault " + order[0] + " was"
			if len(order) > 1 {
				which = "faults " + strings.Join(order, ", ") + " were"
			}
			label += fmt.Sprintf(", leaving out the %s while %s active", FormatDuration(left), which)
		}
	}
	if st.Latency.TotalCount() == 0 {
		return band{}, "the baseline " + label + " has no requests", false
	}
	b := band{p99: results.Quantile(st.Latency, 99).Seconds(), label: label}
	if j := st.Judged(); j > 0 {
		b.errRate = float64(st.Errors()) / float64(j)
	}
	bw := rc.Band
	if bw == 0 {
		bw = DefaultBand
	}
	eb := rc.ErrorBand
	if eb == 0 {
		eb = DefaultErrorBand
	}
	b.maxP99 = max(b.p99*bw, b.p99+BandFloor.Seconds())
	b.maxErrRate = b.errRate + eb
	return b, "", true
}

// inBand judges one interval: ok says whether it had requests at all.
func (b band) inBand(st *results.Stats) (in bool, p99, errRate float64, ok bool) {
	if st.Latency.TotalCount() == 0 {
		return false, 0, 0, false
	}
	p99 = results.Quantile(st.Latency, 99).Seconds()
	if j := st.Judged(); j > 0 {
		errRate = float64(st.Errors()) / float64(j)
	}
	return p99 <= b.maxP99 && errRate <= b.maxErrRate, p99, errRate, true
}

// Evaluate implements Objective.
func (rc *Recovery) Evaluate(in *Input) results.ObjectiveResult {
	r := results.ObjectiveResult{Name: rc.Name, Phase: "run", Expr: "recovers_within " + FormatDuration(rc.Within),
		Bound: "<= " + FormatDuration(rc.Within)}
	ivs, err := in.intervals()
	if err != nil {
		r.Evidence = err.Error()
		return r
	}
	if len(ivs) == 0 {
		r.Evidence = "the run recorded no intervals (intervals.jsonl)"
		return r
	}
	b, why, ok := rc.baseline(in, ivs)
	if !ok {
		r.Evidence = why
		return r
	}
	t0, anchorEv, ok := rc.After.Resolve(in)
	if !ok {
		r.Evidence = anchorEv
		return r
	}
	hold := rc.Hold
	if hold == 0 {
		hold = DefaultHold
	}
	width := intervalWidth(ivs)
	r.Facts = map[string]float64{"anchor_s": t0.Seconds(), "baseline_p99_s": b.p99, "band_p99_s": b.maxP99,
		"baseline_error_rate": b.errRate, "band_error_rate": b.maxErrRate}
	bandEv := fmt.Sprintf("baseline %s: p99 %s, errors %s; band p99 <= %s, errors <= %s",
		b.label, fmtSec(b.p99), FormatPercent(b.errRate), fmtSec(b.maxP99), FormatPercent(b.maxErrRate))

	// Recovered at the start of the first stretch of `hold` (from the
	// interval holding the anchor on) whose p99 and error rate, over the
	// whole stretch, are within the band, and whose first interval is too.
	// Judging the stretch as one keeps a single slow request in a 1 s
	// interval of a light load (where p99 is the maximum) from hiding a
	// recovery, and judging its first interval keeps the tail of the
	// disturbance from being averaged away.
	//
	// The interval holding the anchor also holds the requests sent before
	// it, which the disturbance may have slowed; intervals keep no
	// per-request times to tell them apart. So that interval counts only
	// when it is within the band as a whole: when it is not, recovery is
	// measured from the next interval, late by at most the interval width
	// (the precision the objective promises), never early.
	var cand []interval
	for _, iv := range ivs {
		if iv.from >= t0.Truncate(width) {
			cand = append(cand, iv)
		}
	}
	last := time.Duration(0)
	if len(cand) > 0 {
		last = cand[len(cand)-1].to
	}
	mixedNote := ""
	for _, c := range cand {
		first, fp, fe, has := b.inBand(c.st)
		if !has {
			continue
		}
		if !first {
			if pre := (t0 - c.from).Seconds() / width.Seconds(); c.from < t0 && pre >= 0.01 {
				mixedNote = fmt.Sprintf(" (the interval [%s, %s) holding the anchor was out of the band, p99 %s, errors %s, but %.0f%% of it came before the anchor, so recovery is known only to the interval width)",
					secs(c.from), secs(c.to), fmtSec(fp), FormatPercent(fe), 100*pre)
			}
			continue
		}
		end := min(c.from+hold, last)
		in, p99, er, _ := b.inBand(merged(cand, c.from, end))
		if !in {
			continue
		}
		ttr := max(c.from-t0, 0)
		r.Value, r.Pass = ttr.Seconds(), ttr <= rc.Within
		var b string
		r.Measured, b = exactPair(ttr, rc.Within)
		r.Bound = "<= " + b
		r.Facts["recovered_s"], r.Facts["ttr_s"] = c.from.Seconds(), ttr.Seconds()
		heldNote := fmt.Sprintf("over the %s from there", FormatDuration(end-c.from))
		if end-c.from < hold {
			heldNote = fmt.Sprintf("over the %s left of the run (wanted %s)", FormatDuration(end-c.from), FormatDuration(hold))
		}
		r.Evidence = fmt.Sprintf("%s; %s; back within the band from %s (p99 %s, errors %s %s): recovered after %s%s",
			bandEv, anchorEv, secs(c.from), fmtSec(p99), FormatPercent(er), heldNote, within(ttr), mixedNote)
		return r
	}
	r.Measured = "never"
	r.Evidence = fmt.Sprintf("%s; %s; never back within the band for %s by the end of the run", bandEv, anchorEv, FormatDuration(hold))
	for i := len(cand) - 1; i >= 0; i-- {
		if in, p99, er, has := b.inBand(cand[i].st); has && !in {
			r.Evidence += fmt.Sprintf(" (last out of band: [%s, %s) p99 %s, errors %s)", secs(cand[i].from), secs(cand[i].to), fmtSec(p99), FormatPercent(er))
			break
		}
	}
	return r
}

func fmtSec(s float64) string { return FormatDuration(time.Duration(s * float64(time.Second))) }

// faultWindow is a stretch during which a fault was active.
type faultWindow struct {
	name     string
	from, to time.Duration
}

// faultWindows lists when each fault was active, from the injector's own
// fault.start and fault.stop events (a repeated fault has one window per
// occurrence); a fault still active when the run ends runs until end.
func faultWindows(in *Input, end time.Duration) []faultWindow {
	evs := make([]int, 0, len(in.Events))
	for i, e := range in.Events {
		if e.Type == "fault.start" || e.Type == "fault.stop" {
			evs = append(evs, i)
		}
	}
	sort.SliceStable(evs, func(a, b int) bool { return in.Events[evs[a]].T < in.Events[evs[b]].T })
	open := map[string]time.Duration{}
	var out []faultWindow
	for _, i := range evs {
		e := in.Events[i]
		name := e.Attr("fault")
		if name == "" {
			continue
		}
		t0, active := open[name]
		switch {
		case e.Type == "fault.start" && !active:
			open[name] = e.T
		case e.Type == "fault.stop" && active:
			out = append(out, faultWindow{name: name, from: t0, to: e.T})
			delete(open, name)
		}
	}
	for name, t0 := range open {
		out = append(out, faultWindow{name: name, from: t0, to: max(end, t0)})
	}
	return out
}

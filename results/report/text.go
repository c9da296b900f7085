// Package report renders a run's summary for people: plain text for the
// terminal (here), and the pictures in other files. It reads only recorded
// data, so the same report comes out of a live run and of `cascade report DIR`.
package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/verdict"
)

// Text writes the summary as a terminal report.
func Text(w io.Writer, s *results.Summary, dir string) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "\ncascade: %s", s.Scenario)
	switch {
	case s.Interrupted && s.Planned > 0 && s.Elapsed > s.Planned:
		// Stopped once the load had ended, while the run waited for its
		// last answers: "after 4.6s of 4.0s" read as a clock gone wrong.
		fmt.Fprintf(b, "  (INTERRUPTED %.1fs after the %.1fs load ended, waiting for its last answers: partial results)", float64(s.Elapsed-s.Planned), float64(s.Planned))
	case s.Interrupted:
		fmt.Fprintf(b, "  (INTERRUPTED after %.1fs of %.1fs: partial results)", float64(s.Elapsed), float64(s.Planned))
	}
	if s.Aborted != "" {
		fmt.Fprintf(b, "  (ABORTED after %.1fs of %.1fs: %s)", float64(s.Elapsed), float64(s.Planned), s.Aborted)
	}
	switch {
	case s.Rebuilt != nil:
		fmt.Fprintf(b, "  (KILLED: PARTIAL results, rebuilt up to %.1fs of %.1fs)", float64(s.Elapsed), float64(s.Planned))
	case s.Error != "":
		fmt.Fprintf(b, "  (STOPPED BY AN ERROR after %.1fs of %.1fs: partial results)", float64(s.Elapsed), float64(s.Planned))
	}
	fmt.Fprintf(b, "\n  seed %d · plan %s · target %s", s.Seed, s.PlanHash, s.Target)
	if kind, ok := strings.CutPrefix(s.Gateway, results.GatewayContainerPrefix); ok {
		fmt.Fprintf(b, " (%s in a container)", kind)
	} else if s.Gateway != "builtin" && s.Gateway != "" {
		fmt.Fprintf(b, " (external gateway)")
	}
	if dir != "" {
		fmt.Fprintf(b, "\n  results in %s", dir)
	}
	b.WriteString("\n")
	if rb := s.Rebuilt; rb != nil {
		// First, before any number: none of them is the run's own summary.
		ran := ""
		if rb.LastEvent > rb.Through {
			// It ran at least that far: what lies between was lost.
			ran = fmt.Sprintf(" (its last event at %.1fs)", float64(rb.LastEvent))
		}
		fmt.Fprintf(b, "  PARTIAL: the run was killed before it wrote its summary%s; this report is rebuilt\n"+
			"  from the records it streamed up to %.1fs of the planned %.1fs (%s); %s.\n",
			ran, float64(rb.Through), float64(s.Planned), strings.Join(rb.Files, ", "), rb.Rule)
	}
	for _, warn := range s.Warnings {
		fmt.Fprintf(b, "  warning: %s\n", warn)
	}

	r := s.Run.Stats
	took := fmt.Sprintf("%.1fs", float64(s.Elapsed))
	if s.Elapsed < 1 { // a run ended by its max_requests can take milliseconds
		took = fmt.Sprintf("%.0fms", float64(s.Elapsed)*1000)
	}
	if load := s.Run.End - s.Run.Start; load > 0 && s.Elapsed-load >= 0.5 {
		// The run waits for answers still in flight after its load; the
		// achieved rate beside is over the load's window: "in 6.5s ·
		// achieved 100/s" of 400 requests read as a sum gone wrong.
		took = fmt.Sprintf("%s (%.1fs of load, then %.1fs for the last answers)", took, float64(load), float64(s.Elapsed-load))
	}
	rates := fmt.Sprintf("%s · achieved %.1f/s", targetPart(s), r.AchievedRate)
	if s.Run.Cut() && s.Run.End-s.Run.Start < 1 && r.Scheduled > 0 {
		// Stopped within its first second, the run keeps no rate (as a
		// phase reached for a sliver): "31 requests sent ... achieved
		// 0.0/s" read as a rate measured at zero.
		rates = " · no rate (stopped within the first second)"
	}
	fmt.Fprintf(b, "\nLoad      %d requests sent of %d scheduled in %s%s · %d dropped\n",
		r.Sent, r.Scheduled, took, rates, r.Causes[cause.Dropped.String()])
	if r.Answered() > 0 {
		fmt.Fprintf(b, "Latency   %s   (from intended send time)\n", pctLine(r.Latency))
		fmt.Fprintf(b, "Service   %s   (from actual send: what a closed loop would report)\n", pctLine(r.Service))
	} else {
		// Every request sent was cut short by the stop (or none was
		// sent): no latency was measured, which is not 0 ms.
		b.WriteString("Latency   none measured: no request was answered\n")
	}
	fmt.Fprintf(b, "Outcomes  %s\n", causeLine(r.Causes, r.Scheduled))

	if len(s.Phases) > 0 {
		b.WriteString("\nPhases\n")
		tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "  phase\twindow\tsent\tachieved/s\tp50\tp90\tp99\tmax\terrors\t\toutcomes")
		cut := false
		for _, p := range s.Phases {
			fmt.Fprintln(tw, phaseRow(p, s.Rebuilt != nil))
			cut = cut || p.Cut() && p.End > p.Start
		}
		tw.Flush()
		switch {
		case cut && s.Rebuilt != nil:
			fmt.Fprintf(b, "  * the records end at %.1fs, before the phase's planned end\n", float64(s.Elapsed))
		case cut:
			fmt.Fprintf(b, "  * the run stopped at %.1fs, before the phase's planned end\n", float64(s.Elapsed))
		}
	}

	groups(b, "Executors", s.Executors)
	groups(b, "Requests by tag", s.Tags)

	if len(s.Faults) > 0 {
		b.WriteString("\nFaults\n")
		fb := &strings.Builder{}
		tw := tabwriter.NewWriter(fb, 0, 0, 2, ' ', 0)
		for _, f := range s.Faults {
			when := "never started"
			if f.Started {
				when = fmt.Sprintf("%.1fs–%.1fs", float64(f.Start), float64(f.End))
			}
			eff := fmt.Sprintf("took effect %d times", f.Fired)
			if f.Started && f.Fired == 0 {
				why := f.Reason
				if why == "" {
					why = "no request reached the target while it was active"
				}
				eff = "NEVER TOOK EFFECT (" + why + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s on %s\t%s\t%s\n", f.Name, f.Kind, f.Target, when, eff)
		}
		tw.Flush()
		writeWithEffects(b, fb.String(), s.Faults)
	}

	gatewayBlock(b, s.GatewayStats)

	if len(s.Objectives) > 0 {
		b.WriteString("\nObjectives\n")
		tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
		for _, o := range s.Objectives {
			mark := "PASS"
			switch {
			case o.NotJudged:
				mark = "NOT JUDGED"
			case !o.Pass:
				mark = "FAIL"
			}
			measured := o.Measured
			if measured == "" {
				measured = "n/a"
			}
			fmt.Fprintf(tw, "  %s\t%s\tmeasured %s\t(bound %s)\t%s\n", mark, o.Name, measured, o.Bound, o.Evidence)
		}
		tw.Flush()
	}

	passed := 0
	for _, o := range s.Objectives {
		if o.Pass {
			passed++
		}
	}
	if s.Rebuilt != nil {
		judged := ""
		if len(s.Objectives) > 0 {
			judged = fmt.Sprintf("; %d/%d objectives passed on what it recorded, %d not judged", passed, len(s.Objectives), notJudged(s.Objectives))
		}
		fmt.Fprintf(b, "\nVerdict: ERROR (%s%s)\n", s.Error, judged)
	} else if s.Error != "" {
		// Whatever the objectives say of what was measured, the run did
		// not finish: not a pass.
		fmt.Fprintf(b, "\nVerdict: ERROR (the run stopped: %s; %d/%d objectives passed on what it measured)\n", s.Error, passed, len(s.Objectives))
	} else if len(s.Objectives) == 0 && s.Verdict == results.VerdictPass {
		// Nothing was judged: "PASS" beside 100% errors would read as a
		// verdict on them.
		fmt.Fprintf(b, "\nVerdict: no objectives, nothing judged (add slo: to the scenario, or --threshold)\n")
	} else {
		fmt.Fprintf(b, "\nVerdict: %s (%d/%d objectives passed)\n", strings.ToUpper(s.Verdict), passed, len(s.Objectives))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func notJudged(objs []results.ObjectiveResult) int {
	n := 0
	for _, o := range objs {
		if o.NotJudged {
			n++
		}
	}
	return n
}

func pctLine(p results.Percentiles) string {
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s", ms(p.P50), ms(p.P90), ms(p.P99), ms(p.P999), ms(p.Max))
}

// phaseRow is a phase's line of the Phases table. A phase the run stopped
// in shows where it stopped, marked *; one it never reached, or reached
// for less than an interval, has no rate, and one that sent nothing has no
// latencies (not 0 ms). In a killed run's rebuilt summary a phase past the
// records may well have run: it is "not recorded".
func phaseRow(p results.PhaseSummary, rebuilt bool) string {
	st := p.Stats
	window := fmt.Sprintf("%.1fs–%.1fs", float64(p.Start), float64(p.End))
	rate := fmt.Sprintf("%.1f", st.AchievedRate)
	switch {
	case p.Cut() && p.End <= p.Start:
		what := "not reached"
		if rebuilt {
			what = "not recorded"
		}
		window = fmt.Sprintf("%s (%.1fs–%.1fs)", what, float64(p.Start), float64(p.PlannedEnd))
		rate = "-"
	case p.Cut():
		window += "*"
		if p.End-p.Start < 1 {
			rate = "-"
		}
	}
	lat := []string{"-", "-", "-", "-", "-"}
	if st.Answered() > 0 {
		lat = []string{ms(st.Latency.P50), ms(st.Latency.P90), ms(st.Latency.P99), ms(st.Latency.Max), verdict.FormatPercent(st.ErrorRate)}
	} else if st.Judged() > 0 {
		lat[4] = verdict.FormatPercent(st.ErrorRate) // all dropped: an error rate, no latency
	}
	return fmt.Sprintf("  %s\t%s\t%d\t%s\t%s\t\t%s", p.Name, window, st.Sent, rate, strings.Join(lat, "\t"), causeLine(st.Causes, st.Scheduled))
}

func ms(v float64) string {
	return verdict.FormatDuration(time.Duration(v * float64(time.Millisecond)))
}

// causeLine lists outcomes by count, largest first: "ok 1480 (98.7%), gateway_timeout 20 (1.3%)".
func causeLine(causes map[string]int64, total int64) string {
	type kv struct {
		name string
		n    int64
	}
	var xs []kv
	for k, n := range causes {
		xs = append(xs, kv{k, n})
	}
	sort.Slice(xs, func(i, j int) bool {
		if xs[i].n != xs[j].n {
			return xs[i].n > xs[j].n
		}
		return xs[i].name < xs[j].name
	})
	parts := make([]string, 0, len(xs))
	for _, x := range xs {
		label := x.name
		if c, ok := cause.Parse(x.name); ok && c != cause.OK {
			label += "[" + string(c.Layer()) + "]"
		}
		pct := ""
		if total > 0 {
			pct = " (" + verdict.FormatPercent(float64(x.n)/float64(total)) + ")"
		}
		parts = append(parts, fmt.Sprintf("%s %d%s", label, x.n, pct))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// groups prints per-executor or per-tag stats (only present when the load
// has several).
func groups(b *strings.Builder, title string, gs []results.GroupSummary) {
	if len(gs) == 0 {
		return
	}
	fmt.Fprintf(b, "\n%s\n", title)
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	execs := gs[0].Kind != "" // executors carry a model; tags do not
	if execs {
		fmt.Fprintln(tw, "  executor\tmodel\twindow\tsent\ttarget/s\tachieved/s\tp50\tp90\tp99\tmax\tlag p99\terrors\t\toutcomes")
	} else {
		fmt.Fprintln(tw, "  tag\tsent\tachieved/s\tp50\tp90\tp99\tmax\terrors\t\toutcomes")
	}
	for _, g := range gs {
		st := g.Stats
		// Nothing sent has no latencies (not 0 ms), as in phaseRow.
		tail, lag := "-\t-\t-\t-", "-"
		if st.Answered() > 0 {
			tail = fmt.Sprintf("%s\t%s\t%s\t%s", ms(st.Latency.P50), ms(st.Latency.P90), ms(st.Latency.P99), ms(st.Latency.Max))
		}
		outcome := fmt.Sprintf("%s\t\t%s", verdict.FormatPercent(st.ErrorRate), causeLine(st.Causes, st.Scheduled))
		if !execs {
			fmt.Fprintf(tw, "  %s\t%d\t%.1f\t%s\t%s\n", g.Name, st.Sent, st.AchievedRate, tail, outcome)
			continue
		}
		model, target := "closed", "-"
		if g.Kind == "arrival-rate" {
			model, target = "open", fmt.Sprintf("%.1f", st.TargetRate)
			if st.Lag != nil && st.Sent > 0 {
				lag = ms(st.Lag.P99)
			}
		}
		window, achieved := fmt.Sprintf("%.1fs–%.1fs", float64(g.Start), float64(g.End)), fmt.Sprintf("%.1f", st.AchievedRate)
		if g.End <= g.Start && st.Scheduled == 0 {
			// The run stopped before this executor's start.
			window, target, achieved = fmt.Sprintf("not started (%.1fs)", float64(g.Start)), "-", "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n",
			g.Name, model, window, st.Sent, target, achieved, tail, lag, outcome)
	}
	tw.Flush()
}

// targetPart is the Load line's target rate. Only arrival-rate executors
// have one (the compiler refuses one that schedules nothing): a closed
// model's rate is what the system answers, so a run of VUs alone shows none
// (not "target 0/s"), and beside VUs the target says it covers the open
// executors only, or achieved would read as overshoot.
func targetPart(s *results.Summary) string {
	r := s.Run.Stats
	if r.TargetRate == 0 {
		return ""
	}
	drawn := ""
	if r.ProfileRate > 0 {
		drawn = fmt.Sprintf(" (a Poisson draw at %.1f/s)", r.ProfileRate)
	}
	for _, e := range s.Executors {
		if e.Kind == "vus" {
			return fmt.Sprintf(" · open-model target %.1f/s%s", r.TargetRate, drawn)
		}
	}
	return fmt.Sprintf(" · target %.1f/s%s", r.TargetRate, drawn)
}

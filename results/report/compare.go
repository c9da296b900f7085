package report

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/verdict"
)

// Metrics a comparison reports for the whole run and for each phase both
// runs have, in this order.
const (
	MetricP50          = "p50"
	MetricP90          = "p90"
	MetricP99          = "p99"
	MetricP999         = "p99.9"
	MetricMax          = "max"
	MetricErrorRate    = "error_rate"
	MetricAchievedRate = "achieved_rate"
)

// CompareMetrics lists every metric a comparison shows.
var CompareMetrics = []string{MetricP50, MetricP90, MetricP99, MetricP999, MetricMax, MetricErrorRate, MetricAchievedRate}

// DefaultJudged are the metrics that can make a comparison fail. p99.9 and
// max are shown but not judged by default: in a short run a single request
// decides them, and a threshold on noise only teaches people to ignore it.
var DefaultJudged = []string{MetricP50, MetricP90, MetricP99, MetricErrorRate, MetricAchievedRate}

// MinErrorRateIncrease is the smallest rise in error rate that counts as a
// regression, however large it is relatively: going from 0 to 1 failure in
// 10 000 requests is not a regression anyone should block a release on.
const MinErrorRateIncrease = 0.001 // 0.1 percentage points

// DefaultMinLatencyIncrease is the CLI's default for
// CompareOptions.MinLatencyIncrease: two runs of the same seed on
// loopback, where p99 is well under a millisecond, differ by +20% to +98%
// from scheduling noise alone (0.58ms against 1.15ms), and a relative
// threshold alone called that a regression.
const DefaultMinLatencyIncrease = time.Millisecond

// CompareOptions set what counts as a regression.
type CompareOptions struct {
	// Threshold is the relative change beyond which a judged metric
	// regresses: latency above A·(1+Threshold), achieved rate below
	// A·(1−Threshold), error rate up by more than Threshold relatively and
	// by at least MinErrorRateIncrease.
	Threshold float64
	// Judged are the metrics that can regress; nil means DefaultJudged.
	Judged []string
	// MinLatencyIncrease is the smallest rise of a latency percentile that
	// counts as a regression, however large it is relatively, as
	// MinErrorRateIncrease is for the error rate; 0: none.
	MinLatencyIncrease time.Duration
}

// Comparison is run B measured against run A (the baseline).
type Comparison struct {
	A, B      RunInfo
	Threshold float64
	Judged    []string
	// MinLatency is the smallest latency rise judged, in ms.
	MinLatency float64
	SLOs       []SLODelta
	Deltas     []Delta
	OnlyA      []string // phases only run A has
	OnlyB      []string
	Notes      []string // what makes the comparison weaker: different scenarios, an interrupted run
}

// RunInfo identifies one side of a comparison.
type RunInfo struct {
	Dir, Scenario, PlanHash, Verdict string
	Seed                             uint64
	Interrupted                      bool
	Error                            string // the run stopped on this error
}

// incomplete: the run did not measure what it planned (Ctrl-C, or an
// error once its load started). An abort objective's stop is not: that
// run failed, and its failing objective is the regression.
func (r RunInfo) incomplete() bool { return r.Interrupted || r.Error != "" }

// Inconclusive reports that a run compared did not finish (interrupted, or
// stopped by an error): its numbers cover part of the run, so the
// comparison cannot say "no regression", nor blame a regression on the
// change rather than on the stop.
func (c *Comparison) Inconclusive() bool { return c.A.incomplete() || c.B.incomplete() }

// Delta is one metric in one scope (the whole run, or a phase).
type Delta struct {
	Scope     string // "run" or the phase's name
	Metric    string
	A, B      float64 // latency in ms, error rate as a fraction, achieved rate per second
	Judged    bool
	Regressed bool
	// NoneA, NoneB: that side has nothing to measure the metric on in the
	// scope (a run stopped before the phase sent no request there).
	NoneA, NoneB bool
}

func (d Delta) noRequests() bool { return d.NoneA || d.NoneB }

// nothingToMeasure: no latency without a request answered, no error rate
// without one judged (all dropped is a 100% error rate; requests cut short
// by the run's stop count in neither); an achieved rate of 0 is a
// measurement, but not beside requests sent: the summary has no rate for
// a phase a stop cut to less than a second (its report shows "-"), and
// compare showed 0.0/s, -100%.
func nothingToMeasure(metric string, s results.StatsSummary) bool {
	switch metric {
	case MetricAchievedRate:
		return s.AchievedRate == 0 && s.Sent > 0
	case MetricErrorRate:
		return s.Judged() == 0
	}
	return s.Answered() == 0
}

// Change is (B−A)/A, NaN when A is 0.
func (d Delta) Change() float64 { return relChange(d.A, d.B) }

// SLODelta is one objective in both runs, matched by name.
type SLODelta struct {
	Name      string
	A, B      *results.ObjectiveResult // nil when the run did not have it
	Regressed bool                     // passed in A, fails in B
	Fixed     bool                     // failed in A, passes in B
	// Moved: its phase spans different windows in the two runs (a game
	// day and its replay, say), so pass and fail are not compared.
	Moved bool
}

// Compare measures run B against run A.
func Compare(a, b *results.Summary, dirA, dirB string, opts CompareOptions) *Comparison {
	judged := opts.Judged
	if judged == nil {
		judged = DefaultJudged
	}
	c := &Comparison{A: info(a, dirA), B: info(b, dirB), Threshold: opts.Threshold, Judged: judged,
		MinLatency: float64(opts.MinLatencyIncrease) / float64(time.Millisecond)}
	if a.PlanHash != b.PlanHash || a.Seed != b.Seed {
		c.Notes = append(c.Notes, fmt.Sprintf("the runs differ in scenario or seed (A: %s seed %d, B: %s seed %d): deltas compare different experiments",
			a.PlanHash, a.Seed, b.PlanHash, b.Seed))
	}
	for _, r := range []RunInfo{c.A, c.B} {
		switch {
		case r.Error != "":
			c.Notes = append(c.Notes, fmt.Sprintf("%s stopped on an error (%s): its numbers cover only part of the run", r.Dir, r.Error))
		case r.Interrupted:
			c.Notes = append(c.Notes, fmt.Sprintf("%s was interrupted: its numbers cover only part of the run", r.Dir))
		}
	}

	// Objectives, in A's order, then those only B has.
	bObj := map[string]*results.ObjectiveResult{}
	for i := range b.Objectives {
		bObj[b.Objectives[i].Name] = &b.Objectives[i]
	}
	moved := c.movedPhases(a, b)
	seen := map[string]bool{}
	for i := range a.Objectives {
		oa := &a.Objectives[i]
		d := SLODelta{Name: oa.Name, A: oa, B: bObj[oa.Name], Moved: moved[oa.Phase]}
		if d.B != nil && !d.Moved {
			d.Regressed = oa.Pass && !d.B.Pass
			d.Fixed = !oa.Pass && d.B.Pass
		}
		seen[oa.Name] = true
		c.SLOs = append(c.SLOs, d)
	}
	for i := range b.Objectives {
		if ob := &b.Objectives[i]; !seen[ob.Name] {
			c.SLOs = append(c.SLOs, SLODelta{Name: ob.Name, B: ob})
		}
	}

	// Whole run, then each phase both have, in A's order. A whole run cut
	// short (Ctrl-C, an abort objective) is a different window too: the
	// rate over the first seconds of a ramp is not the rate of the whole
	// run. Its objectives stay judged: an abort objective that stopped B
	// failed there, and that is the regression.
	c.deltas("run", a.Run.Stats, b.Run.Stats, !c.runMoved(a, b))
	bPh := map[string]results.PhaseSummary{}
	for _, p := range b.Phases {
		bPh[p.Name] = p
	}
	aPh := map[string]bool{}
	for _, p := range a.Phases {
		aPh[p.Name] = true
		if pb, ok := bPh[p.Name]; ok {
			c.deltas(p.Name, p.Stats, pb.Stats, !moved[p.Name])
		} else {
			c.OnlyA = append(c.OnlyA, p.Name)
		}
	}
	for _, p := range b.Phases {
		if !aPh[p.Name] {
			c.OnlyB = append(c.OnlyB, p.Name)
		}
	}
	return c
}

func info(s *results.Summary, dir string) RunInfo {
	return RunInfo{Dir: dir, Scenario: s.Scenario, PlanHash: s.PlanHash, Verdict: s.Verdict, Seed: s.Seed, Interrupted: s.Interrupted, Error: s.Error}
}

// movedPhases names the phases (other than the whole run) whose windows
// differ between the runs by more than 50 ms, with a note for each: the
// same name over different windows is not the same measurement (a game
// day's scripted window against its replay's, cut where a person removed
// the fault), so they are shown but not judged.
func (c *Comparison) movedPhases(a, b *results.Summary) map[string]bool {
	const slack = 0.05
	bPh := map[string]results.PhaseSummary{}
	for _, p := range b.Phases {
		bPh[p.Name] = p
	}
	moved := map[string]bool{}
	for _, pa := range a.Phases {
		pb, ok := bPh[pa.Name]
		if !ok || math.Abs(float64(pa.Start-pb.Start)) <= slack && math.Abs(float64(pa.End-pb.End)) <= slack {
			continue
		}
		moved[pa.Name] = true
		c.Notes = append(c.Notes, fmt.Sprintf("phase %s spans [%.2fs, %.2fs) in A and [%.2fs, %.2fs) in B: its deltas and objectives are shown, not judged",
			pa.Name, float64(pa.Start), float64(pa.End), float64(pb.Start), float64(pb.End)))
	}
	return moved
}

// runMoved reports, with a note, that one run's load was stopped early
// (Ctrl-C, an abort objective, an error) and so ran over a window more
// than 50 ms apart from the other's. Two whole runs of plans of different
// lengths are still compared: a longer rehearsal's p99 is the same
// measure, and the plans' difference is noted.
func (c *Comparison) runMoved(a, b *results.Summary) bool {
	const slack = 0.05
	cut := func(s *results.Summary) bool { return s.Interrupted || s.Aborted != "" || s.Error != "" }
	if !cut(a) && !cut(b) || math.Abs(float64(a.Run.End-b.Run.End)) <= slack {
		return false
	}
	c.Notes = append(c.Notes, fmt.Sprintf("the load ran [0s, %.2fs) in A and [0s, %.2fs) in B: the whole run's deltas are shown, not judged (its objectives are)",
		float64(a.Run.End), float64(b.Run.End)))
	return true
}

func (c *Comparison) deltas(scope string, a, b results.StatsSummary, judge bool) {
	vals := func(s results.StatsSummary) map[string]float64 {
		return map[string]float64{
			MetricP50: s.Latency.P50, MetricP90: s.Latency.P90, MetricP99: s.Latency.P99, MetricP999: s.Latency.P999,
			MetricMax: s.Latency.Max, MetricErrorRate: s.ErrorRate, MetricAchievedRate: s.AchievedRate,
		}
	}
	va, vb := vals(a), vals(b)
	for _, m := range CompareMetrics {
		d := Delta{Scope: scope, Metric: m, A: va[m], B: vb[m], Judged: judge && slices.Contains(c.Judged, m),
			NoneA: nothingToMeasure(m, a), NoneB: nothingToMeasure(m, b)}
		if d.Judged && !d.noRequests() {
			d.Regressed = regressed(m, d.A, d.B, c.Threshold, c.MinLatency)
		}
		c.Deltas = append(c.Deltas, d)
	}
}

// regressed judges one metric; minLatency (ms) is the smallest latency
// rise that counts.
func regressed(metric string, a, b, th, minLatency float64) bool {
	switch metric {
	case MetricErrorRate:
		return b-a > math.Max(th*a, MinErrorRateIncrease)
	case MetricAchievedRate:
		return b < a*(1-th)
	default: // latency: higher is worse; a baseline of 0 has nothing to compare
		return a > 0 && b > a*(1+th) && b-a >= minLatency
	}
}

// Regressions counts what went wrong: objectives that now fail, and judged
// metrics beyond the threshold.
func (c *Comparison) Regressions() int {
	return countIf(c.SLOs, func(s SLODelta) bool { return s.Regressed }) +
		countIf(c.Deltas, func(d Delta) bool { return d.Regressed })
}

// countIf counts the elements of xs for which f holds.
func countIf[T any](xs []T, f func(T) bool) int {
	n := 0
	for _, x := range xs {
		if f(x) {
			n++
		}
	}
	return n
}

func relChange(a, b float64) float64 {
	if a == 0 {
		if b == 0 {
			return 0
		}
		return math.NaN()
	}
	return (b - a) / a
}

func fmtChange(d Delta) string {
	if d.noRequests() {
		if d.Metric == MetricAchievedRate {
			return "n/a (no rate: under a second)"
		}
		return "n/a (no requests)"
	}
	if d.Metric == MetricErrorRate {
		return fmt.Sprintf("%+.2f pp", (d.B-d.A)*100)
	}
	ch := relChange(d.A, d.B)
	if math.IsNaN(ch) {
		return "n/a"
	}
	return fmt.Sprintf("%+.1f%%", ch*100)
}

// fmtValue is one side's value, "-" when it has nothing to measure.
func fmtValue(metric string, v float64, none bool) string {
	if none {
		return "-"
	}
	switch metric {
	case MetricErrorRate:
		return verdict.FormatPercent(v)
	case MetricAchievedRate:
		return fmt.Sprintf("%.1f/s", v)
	}
	return ms(v)
}

func mark(d Delta) string {
	switch {
	case d.Regressed:
		return "REGRESSION"
	case !d.Judged:
		return "(not judged)"
	}
	return ""
}

func objCell(o *results.ObjectiveResult) string {
	if o == nil {
		return "absent"
	}
	m := o.Measured
	if m == "" {
		m = "n/a"
	}
	if o.Pass {
		return m + " PASS"
	}
	return m + " FAIL"
}

func sloMark(s SLODelta) string {
	switch {
	case s.Regressed:
		return "REGRESSION (now failing)"
	case s.Fixed:
		return "fixed (now passing)"
	case s.Moved:
		return "(phase window differs: not judged)"
	case s.A == nil:
		return "only in B"
	case s.B == nil:
		return "only in A"
	}
	return ""
}

func sloChange(s SLODelta) string {
	if s.A == nil || s.B == nil {
		return ""
	}
	if s.A.Measured == "" || s.B.Measured == "" {
		return "n/a" // a side had nothing to measure
	}
	ch := relChange(s.A.Value, s.B.Value)
	if math.IsNaN(ch) {
		return "n/a"
	}
	return fmt.Sprintf("%+.1f%%", ch*100)
}

func (c *Comparison) summaryLine() string {
	n := c.Regressions()
	th := verdict.FormatPercent(c.Threshold)
	if c.Inconclusive() {
		var which []string
		for _, r := range []struct {
			k string
			r RunInfo
		}{{"A", c.A}, {"B", c.B}} {
			switch {
			case r.r.Error != "":
				which = append(which, r.k+" stopped on an error")
			case r.r.Interrupted:
				which = append(which, r.k+" was interrupted")
			}
		}
		return fmt.Sprintf("Inconclusive: %s, so its numbers cover only part of the run (%d judged differences beyond %s above, on what was measured).",
			strings.Join(which, " and "), n, th)
	}
	if n == 0 {
		return fmt.Sprintf("No regression: no objective newly failing, no judged metric worse by more than %s.", th)
	}
	word := "regressions"
	if n == 1 {
		word = "regression"
	}
	return fmt.Sprintf("%d %s: objectives newly failing or judged metrics worse by more than %s.", n, word, th)
}

// Text writes the comparison for a terminal.
func (c *Comparison) Text(w io.Writer) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "cascade compare: %s\n", c.B.Scenario)
	for _, side := range []struct {
		k string
		r RunInfo
	}{{"A", c.A}, {"B", c.B}} {
		fmt.Fprintf(b, "  %s  %s  (%s, seed %d, %s)\n", side.k, side.r.Dir, side.r.PlanHash, side.r.Seed, strings.ToUpper(side.r.Verdict))
	}
	fmt.Fprintf(b, "  threshold %s%s · judged: %s\n", verdict.FormatPercent(c.Threshold), c.floor(), strings.Join(c.Judged, " "))
	for _, n := range c.Notes {
		fmt.Fprintf(b, "  note: %s\n", n)
	}
	if len(c.SLOs) > 0 {
		b.WriteString("\nObjectives\n")
		tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  objective\tA\tB\tchange\t")
		for _, s := range c.SLOs {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", s.Name, objCell(s.A), objCell(s.B), sloChange(s), sloMark(s))
		}
		tw.Flush()
	}
	b.WriteString("\nLatency (from intended send) and rates\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  phase\tmetric\tA\tB\tchange\t")
	for _, d := range c.Deltas {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", d.Scope, d.Metric, fmtValue(d.Metric, d.A, d.NoneA), fmtValue(d.Metric, d.B, d.NoneB), fmtChange(d), mark(d))
	}
	tw.Flush()
	if len(c.OnlyA)+len(c.OnlyB) > 0 {
		var parts []string
		if len(c.OnlyA) > 0 {
			parts = append(parts, fmt.Sprintf("only in A %v", c.OnlyA))
		}
		if len(c.OnlyB) > 0 {
			parts = append(parts, fmt.Sprintf("only in B %v", c.OnlyB))
		}
		fmt.Fprintf(b, "  phases not compared: %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(b, "\n%s\n", c.summaryLine())
	_, err := io.WriteString(w, b.String())
	return err
}

// Markdown writes the comparison as a pull-request comment: a headline
// that says whether anything regressed, the objectives, and the metrics
// (the per-phase table folded away).
func (c *Comparison) Markdown(w io.Writer) error {
	b := &strings.Builder{}
	mdTitle(b, c.B.Scenario, c.Regressions(), c.Inconclusive(), "a run did not finish")
	b.WriteString("| | run | verdict | seed | plan |\n|---|---|---|---|---|\n")
	for _, side := range []struct {
		k string
		r RunInfo
	}{{"A (baseline)", c.A}, {"B", c.B}} {
		fmt.Fprintf(b, "| %s | `%s` | %s | %d | `%s` |\n", side.k, mdEscape(side.r.Dir), strings.ToUpper(side.r.Verdict), side.r.Seed, side.r.PlanHash)
	}
	fmt.Fprintf(b, "\nThreshold %s%s on %s.\n", verdict.FormatPercent(c.Threshold), c.floor(), mdList(c.Judged))
	for _, note := range c.Notes {
		fmt.Fprintf(b, "\n> **Note:** %s\n", mdEscape(note))
	}
	if len(c.SLOs) > 0 {
		b.WriteString("\n#### Objectives\n\n| objective | A | B | change | |\n|---|---|---|---|---|\n")
		for _, s := range c.SLOs {
			fmt.Fprintf(b, "| `%s` | %s | %s | %s | %s |\n", mdEscape(s.Name), objCell(s.A), objCell(s.B), sloChange(s), mdMark(sloMark(s), s.Regressed))
		}
	}
	table := func(scope func(string) bool) {
		b.WriteString("| phase | metric | A | B | change | |\n|---|---|--:|--:|--:|---|\n")
		for _, d := range c.Deltas {
			if scope(d.Scope) {
				fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", mdEscape(d.Scope), d.Metric, fmtValue(d.Metric, d.A, d.NoneA),
					fmtValue(d.Metric, d.B, d.NoneB), fmtChange(d), mdMark(mark(d), d.Regressed))
			}
		}
	}
	b.WriteString("\n#### Whole run (latency from the intended send time)\n\n")
	table(func(s string) bool { return s == "run" })
	hasPhases := slices.ContainsFunc(c.Deltas, func(d Delta) bool { return d.Scope != "run" })
	if hasPhases {
		b.WriteString("\n<details><summary>Per phase</summary>\n\n")
		table(func(s string) bool { return s != "run" })
		b.WriteString("\n</details>\n")
	}
	if len(c.OnlyA)+len(c.OnlyB) > 0 {
		fmt.Fprintf(b, "\nPhases not compared: only in A %s; only in B %s.\n", mdList(c.OnlyA), mdList(c.OnlyB))
	}
	fmt.Fprintf(b, "\n%s\n", c.summaryLine())
	_, err := io.WriteString(w, b.String())
	return err
}

// floor says the smallest latency rise judged, if any.
func (c *Comparison) floor() string {
	if c.MinLatency <= 0 {
		return ""
	}
	return ", latency also +" + ms(c.MinLatency) + " at least"
}

// mdTitle writes a comparison's Markdown headline: whether anything
// regressed, or why it cannot say.
func mdTitle(b *strings.Builder, scenario string, regressions int, inconclusive bool, why string) {
	head := "✅ no regression"
	switch {
	case inconclusive:
		head = "⚠️ inconclusive: " + why
	case regressions == 1:
		head = "❌ 1 regression"
	case regressions > 1:
		head = fmt.Sprintf("❌ %d regressions", regressions)
	}
	fmt.Fprintf(b, "### cascade compare: `%s` — %s\n\n", mdEscape(scenario), head)
}

func mdMark(s string, bad bool) string {
	if s == "" {
		return ""
	}
	if bad {
		return "**" + s + "**"
	}
	return s
}

func mdList(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = "`" + mdEscape(x) + "`"
	}
	return strings.Join(out, ", ")
}

// mdEscape keeps a value inside its table cell.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "`", "'").Replace(s)
}

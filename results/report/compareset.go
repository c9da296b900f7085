package report

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	mstats "github.com/aclements/go-moremath/stats"

	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/verdict"
)

// DefaultAlpha is the significance level of a comparison of repeated runs:
// benchstat's, so a Go team reads "~" the way it already does.
const DefaultAlpha = 0.05

// SetComparison is B's repeated runs (cascade run --repeat) measured against
// A's. One run against another cannot tell a change from noise: two runs of
// the same seed on one machine differ in p99 by tens of percent. So each
// metric of the whole run is taken over every run of each side, and a
// Mann–Whitney U test says whether the two sets differ, as benchstat does
// for benchmarks. A metric regresses only when the difference is
// significant (p < Alpha) and its medians are further apart than the
// thresholds of a single comparison.
//
// The judged metrics and the objectives are one family of tests, and their
// p-values are Holm-adjusted over it: at α 0.05 each, five metrics and an
// objective of an unchanged system would fail a CI gate in up to one
// comparison in six by chance alone (six tests at 3.2 %, the U test's
// largest level under 0.05 with 5 runs a side; benchstat, which gates
// nothing, does not adjust). Holm keeps that chance under α for the whole
// family.
type SetComparison struct {
	A, B       SetInfo
	Alpha      float64
	Threshold  float64
	Judged     []string
	MinLatency float64 // ms
	Metrics    []SetDelta
	// Phases are the phases every run of both sides has, each with the
	// judged metrics, shown and not judged: tested as a family they would
	// need many more runs, and an objective on a phase is how to gate it.
	Phases []SetPhase
	SLOs   []SetSLO
	Notes  []string
}

// SetInfo is one side: a repeat's directory and the runs it holds.
type SetInfo struct {
	Dir, Scenario string
	Seeds         []uint64
	// Left names runs that are not taken: interrupted, or stopped by an
	// error (they cover only part of the run).
	Left []string
}

// SetDelta is one metric of the whole run over both sides' runs.
type SetDelta struct {
	Metric     string
	A, B       []float64 // per run that measured it (latency in ms, error rate as a fraction, rate per second)
	MedA, MedB float64
	// P is the two-sided Mann–Whitney U test's p-value, Holm-adjusted over
	// the family when Judged; 1 when every value is the same, NaN when a
	// side measured nothing.
	P         float64
	Judged    bool
	Regressed bool
}

// Significant reports a difference unlikely to be noise at level alpha.
func (d SetDelta) Significant(alpha float64) bool { return !math.IsNaN(d.P) && d.P < alpha }

// SetPhase is one phase's metrics over both sides' runs, with raw p-values.
type SetPhase struct {
	Name    string
	Metrics []SetDelta
}

// SetSLO is one objective's pass count on both sides, matched by name.
type SetSLO struct {
	Name                       string
	PassA, RunsA, PassB, RunsB int
	P                          float64 // of the pass/fail indicators, as SetDelta.P (always judged)
	Regressed, Fixed           bool
}

// CompareSets measures B's runs against A's. Runs that did not finish are
// left out and named; a side with none left compares nothing.
func CompareSets(a, b []*results.Summary, dirA, dirB string, opts CompareOptions, alpha float64) *SetComparison {
	judged := opts.Judged
	if judged == nil {
		judged = DefaultJudged
	}
	c := &SetComparison{Alpha: alpha, Threshold: opts.Threshold, Judged: judged,
		MinLatency: float64(opts.MinLatencyIncrease) / float64(time.Millisecond)}
	a, c.A = keepWhole(a, dirA)
	b, c.B = keepWhole(b, dirB)
	for _, side := range []SetInfo{c.A, c.B} {
		if len(side.Left) > 0 {
			c.Notes = append(c.Notes, fmt.Sprintf("%s: left out %s, which did not finish (interrupted or stopped by an error)", side.Dir, strings.Join(side.Left, ", ")))
		}
	}
	if len(a) > 0 && len(b) > 0 && a[0].PlanHash != b[0].PlanHash {
		c.Notes = append(c.Notes, fmt.Sprintf("the sides ran different scenarios (A: %s %s, B: %s %s): deltas compare different experiments",
			a[0].Scenario, a[0].PlanHash, b[0].Scenario, b[0].PlanHash))
	}
	run := func(r *results.Summary) (results.StatsSummary, bool) { return r.Run.Stats, true }
	c.Metrics = setDeltas(a, b, CompareMetrics, judged, run)
	for _, name := range commonPhases(a, b) {
		phase := func(r *results.Summary) (results.StatsSummary, bool) {
			for _, ph := range r.Phases {
				if ph.Name == name {
					return ph.Stats, true
				}
			}
			return results.StatsSummary{}, false
		}
		c.Phases = append(c.Phases, SetPhase{Name: name, Metrics: setDeltas(a, b, judged, nil, phase)})
	}

	// Objectives in the order A's first run has them, then those only B has.
	var names []string
	for _, side := range [][]*results.Summary{a, b} {
		for _, r := range side {
			for _, o := range r.Objectives {
				if !slices.Contains(names, o.Name) {
					names = append(names, o.Name)
				}
			}
		}
	}
	for _, name := range names {
		ia, ib := passes(a, name), passes(b, name)
		c.SLOs = append(c.SLOs, SetSLO{Name: name, PassA: countIf(ia, passed), RunsA: len(ia), PassB: countIf(ib, passed), RunsB: len(ib), P: uTest(ia, ib)})
	}

	c.adjust()
	for i := range c.Metrics {
		d := &c.Metrics[i]
		d.Regressed = d.Judged && d.Significant(alpha) && regressed(d.Metric, d.MedA, d.MedB, c.Threshold, c.MinLatency)
	}
	for i := range c.SLOs {
		s := &c.SLOs[i]
		if s.RunsA > 0 && s.RunsB > 0 && !math.IsNaN(s.P) && s.P < alpha {
			rateA, rateB := float64(s.PassA)/float64(s.RunsA), float64(s.PassB)/float64(s.RunsB)
			s.Regressed, s.Fixed = rateB < rateA, rateB > rateA
		}
	}
	if c.tooFew() {
		m := max(c.family(), 1)
		c.Notes = append(c.Notes, fmt.Sprintf("with %d and %d runs no difference can reach p < %g over %d judged comparisons (the least p-value possible is %.3f, %.3f adjusted): run --repeat %d or more on each side",
			len(a), len(b), alpha, m, minP(len(a), len(b)), minP(len(a), len(b))*float64(m), runsNeeded(m, alpha)))
	}
	return c
}

// family is how many tests the p-values are adjusted over: the judged
// metrics and the objectives.
func (c *SetComparison) family() int {
	return countIf(c.Metrics, func(d SetDelta) bool { return d.Judged }) + len(c.SLOs)
}

// adjust replaces the family's p-values with Holm's adjusted ones: sorted
// ascending, the i-th (from 0) of m becomes the largest of (m−j)·p_j over
// j ≤ i, at most 1. A p-value that cannot be computed (NaN) takes part in
// nothing.
func (c *SetComparison) adjust() {
	var ps []*float64
	for i := range c.Metrics {
		if c.Metrics[i].Judged && !math.IsNaN(c.Metrics[i].P) {
			ps = append(ps, &c.Metrics[i].P)
		}
	}
	for i := range c.SLOs {
		if !math.IsNaN(c.SLOs[i].P) {
			ps = append(ps, &c.SLOs[i].P)
		}
	}
	slices.SortStableFunc(ps, func(x, y *float64) int { return cmp.Compare(*x, *y) })
	m, run := len(ps), 0.0
	for i, p := range ps {
		run = math.Max(run, math.Min(1, float64(m-i)**p))
		*p = run
	}
}

// metricOf reads one metric of a scope's stats.
var metricOf = map[string]func(s results.StatsSummary) float64{
	MetricP50:          func(s results.StatsSummary) float64 { return s.Latency.P50 },
	MetricP90:          func(s results.StatsSummary) float64 { return s.Latency.P90 },
	MetricP99:          func(s results.StatsSummary) float64 { return s.Latency.P99 },
	MetricP999:         func(s results.StatsSummary) float64 { return s.Latency.P999 },
	MetricMax:          func(s results.StatsSummary) float64 { return s.Latency.Max },
	MetricErrorRate:    func(s results.StatsSummary) float64 { return s.ErrorRate },
	MetricAchievedRate: func(s results.StatsSummary) float64 { return s.AchievedRate },
}

// setDeltas takes metrics over both sides' runs, in the scope stats picks
// from each run (the whole run, a phase); those in judged are judged.
func setDeltas(a, b []*results.Summary, metrics, judged []string, stats func(*results.Summary) (results.StatsSummary, bool)) []SetDelta {
	var out []SetDelta
	for _, m := range metrics {
		pick := func(runs []*results.Summary) []float64 {
			var xs []float64
			for _, r := range runs {
				if s, ok := stats(r); ok && !nothingToMeasure(m, s) {
					xs = append(xs, metricOf[m](s))
				}
			}
			return xs
		}
		d := SetDelta{Metric: m, A: pick(a), B: pick(b), Judged: slices.Contains(judged, m)}
		d.MedA, d.MedB, d.P = median(d.A), median(d.B), uTest(d.A, d.B)
		out = append(out, d)
	}
	return out
}

// commonPhases are the phases every run of both sides has, in the order
// of A's first run.
func commonPhases(a, b []*results.Summary) []string {
	if len(a) == 0 || len(b) == 0 {
		return nil
	}
	var out []string
	for _, ph := range a[0].Phases {
		all := true
		for _, r := range append(append([]*results.Summary(nil), a...), b...) {
			if !slices.ContainsFunc(r.Phases, func(p results.PhaseSummary) bool { return p.Name == ph.Name }) {
				all = false
				break
			}
		}
		if all {
			out = append(out, ph.Name)
		}
	}
	return out
}

// keepWhole drops the runs that did not finish.
func keepWhole(runs []*results.Summary, dir string) ([]*results.Summary, SetInfo) {
	info := SetInfo{Dir: dir}
	var kept []*results.Summary
	for _, r := range runs {
		if r.Interrupted || r.Error != "" {
			info.Left = append(info.Left, fmt.Sprintf("seed %d", r.Seed))
			continue
		}
		kept = append(kept, r)
		info.Seeds = append(info.Seeds, r.Seed)
		info.Scenario = r.Scenario
	}
	return kept, info
}

// passes is 1 for each run where the objective passed, 0 where it failed
// or is missing (it did not compile the same way: failed, as a repeat
// counts it).
func passes(runs []*results.Summary, name string) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		for _, o := range r.Objectives {
			if o.Name == name && o.Pass {
				out[i] = 1
			}
		}
	}
	return out
}

func passed(x float64) bool { return x != 0 }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return mstats.Sample{Xs: xs}.Quantile(0.5)
}

// uTest is the two-sided Mann–Whitney U test's p-value: 1 when every value
// on both sides is the same (nothing differs), NaN when a side is empty.
func uTest(a, b []float64) float64 {
	r, err := mstats.MannWhitneyUTest(a, b, mstats.LocationDiffers)
	switch {
	case errors.Is(err, mstats.ErrSamplesEqual):
		return 1
	case err != nil:
		return math.NaN()
	}
	return r.P
}

// minP is the least two-sided p-value the U test can give n1 and n2 runs
// without ties: both extreme orderings, out of C(n1+n2, n1).
func minP(n1, n2 int) float64 {
	if n1 == 0 || n2 == 0 {
		return 1
	}
	c := 1.0
	for i := 1; i <= n1; i++ {
		c = c * float64(n2+i) / float64(i)
	}
	return math.Min(1, 2/c)
}

// runsNeeded is the fewest runs a side, the same on both, with which a
// difference can be significant at alpha over a family of m tests.
func runsNeeded(m int, alpha float64) int {
	n := 2
	for minP(n, n)*float64(m) >= alpha && n < 100 {
		n++
	}
	return n
}

// tooFew reports that no difference could be significant with these many
// runs, once adjusted over the family: the comparison cannot say "no
// regression", only that it could not tell.
func (c *SetComparison) tooFew() bool {
	return minP(len(c.A.Seeds), len(c.B.Seeds))*float64(max(c.family(), 1)) >= c.Alpha
}

// Inconclusive reports that the comparison cannot tell: too few runs on a
// side for any difference to be significant.
func (c *SetComparison) Inconclusive() bool { return c.tooFew() }

// Regressions counts metrics and objectives that got significantly worse.
func (c *SetComparison) Regressions() int {
	return countIf(c.Metrics, func(d SetDelta) bool { return d.Regressed }) +
		countIf(c.SLOs, func(s SetSLO) bool { return s.Regressed })
}

func (c *SetComparison) summaryLine() string {
	th := verdict.FormatPercent(c.Threshold)
	n := c.Regressions()
	switch {
	case c.Inconclusive():
		return fmt.Sprintf("Inconclusive: %d and %d runs are too few for any difference to be significant at α %g.", len(c.A.Seeds), len(c.B.Seeds), c.Alpha)
	case n == 0:
		return fmt.Sprintf("No regression: no objective passing in fewer runs, no judged metric significantly (p < %g) worse by more than %s.", c.Alpha, th)
	case n == 1:
		return fmt.Sprintf("1 regression: significant (p < %g) and beyond %s.", c.Alpha, th)
	}
	return fmt.Sprintf("%d regressions: significant (p < %g) and beyond %s.", n, c.Alpha, th)
}

// spread is "median [min … max]" of one side, "-" when it measured nothing.
func spread(metric string, xs []float64, med float64) string {
	if len(xs) == 0 {
		return "-"
	}
	lo, hi := slices.Min(xs), slices.Max(xs)
	return fmt.Sprintf("%s [%s … %s]", fmtValue(metric, med, false), fmtValue(metric, lo, false), fmtValue(metric, hi, false))
}

// setChange is the medians' change, or "~" when the difference is not
// significant, as benchstat writes it.
func (c *SetComparison) setChange(d SetDelta) string {
	switch {
	case len(d.A) == 0 || len(d.B) == 0:
		return "n/a (no requests)"
	case !d.Significant(c.Alpha):
		return "~"
	}
	return fmtChange(Delta{Metric: d.Metric, A: d.MedA, B: d.MedB})
}

func fmtP(p float64) string {
	if math.IsNaN(p) {
		return "-"
	}
	return fmt.Sprintf("p=%.3f", p)
}

func setMark(d SetDelta) string {
	switch {
	case d.Regressed:
		return "REGRESSION"
	case !d.Judged:
		return "(not judged)"
	}
	return ""
}

func sloSetMark(s SetSLO) string {
	switch {
	case s.Regressed:
		return "REGRESSION (passes in fewer runs)"
	case s.Fixed:
		return "fixed (passes in more runs)"
	case s.RunsA == 0:
		return "only in B"
	case s.RunsB == 0:
		return "only in A"
	}
	return ""
}

func (c *SetComparison) header(b *strings.Builder) {
	fmt.Fprintf(b, "cascade compare: %s, %d runs against %d (Mann–Whitney U test, α %g, Holm-adjusted over %d judged comparisons)\n",
		c.B.Scenario, len(c.B.Seeds), len(c.A.Seeds), c.Alpha, c.family())
	for _, side := range []struct {
		k string
		s SetInfo
	}{{"A", c.A}, {"B", c.B}} {
		fmt.Fprintf(b, "  %s  %s  (seeds %s)\n", side.k, side.s.Dir, seedList(side.s.Seeds))
	}
}

func seedList(seeds []uint64) string {
	if len(seeds) == 0 {
		return "none"
	}
	parts := make([]string, len(seeds))
	for i, s := range seeds {
		parts[i] = fmt.Sprint(s)
	}
	return strings.Join(parts, " ")
}

// Text writes the comparison for a terminal.
func (c *SetComparison) Text(w io.Writer) error {
	b := &strings.Builder{}
	c.header(b)
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nWhole run\tA: median [min … max]\tB: median [min … max]\tchange\tp\t")
	for _, d := range c.Metrics {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", d.Metric, spread(d.Metric, d.A, d.MedA), spread(d.Metric, d.B, d.MedB), c.setChange(d), fmtP(d.P), setMark(d))
	}
	tw.Flush()
	if len(c.Phases) > 0 {
		tw = tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "\nPer phase (shown, not judged: raw p)\tA: median [min … max]\tB: median [min … max]\tchange\tp\t")
		for _, ph := range c.Phases {
			for _, d := range ph.Metrics {
				fmt.Fprintf(tw, "  %s %s\t%s\t%s\t%s\t%s\t\n", ph.Name, d.Metric, spread(d.Metric, d.A, d.MedA), spread(d.Metric, d.B, d.MedB), c.setChange(d), fmtP(d.P))
			}
		}
		tw.Flush()
	}
	if len(c.SLOs) > 0 {
		tw = tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "\nObjectives\tA passed\tB passed\tp\t")
		for _, s := range c.SLOs {
			fmt.Fprintf(tw, "  %s\t%d/%d\t%d/%d\t%s\t%s\n", s.Name, s.PassA, s.RunsA, s.PassB, s.RunsB, fmtP(s.P), sloSetMark(s))
		}
		tw.Flush()
	}
	if len(c.Notes) > 0 {
		fmt.Fprintln(b, "\nNotes")
		for _, n := range c.Notes {
			fmt.Fprintln(b, "  "+n)
		}
	}
	fmt.Fprintf(b, "\n%s\n", c.summaryLine())
	_, err := io.WriteString(w, b.String())
	return err
}

// Markdown writes the comparison for a pull-request comment, as
// Comparison.Markdown does for two runs.
func (c *SetComparison) Markdown(w io.Writer) error {
	b := &strings.Builder{}
	mdTitle(b, c.B.Scenario, c.Regressions(), c.Inconclusive(), "too few runs")
	b.WriteString("| | repeat | runs | seeds |\n|---|---|---|---|\n")
	for _, side := range []struct {
		k string
		s SetInfo
	}{{"A (baseline)", c.A}, {"B", c.B}} {
		fmt.Fprintf(b, "| %s | `%s` | %d | %s |\n", side.k, mdEscape(side.s.Dir), len(side.s.Seeds), seedList(side.s.Seeds))
	}
	fmt.Fprintf(b, "\nMann–Whitney U test at α %g, p-values Holm-adjusted over the %d judged comparisons (raw for those not judged); threshold %s on the medians of %s.\n",
		c.Alpha, c.family(), verdict.FormatPercent(c.Threshold), mdList(c.Judged))
	for _, note := range c.Notes {
		fmt.Fprintf(b, "\n> **Note:** %s\n", mdEscape(note))
	}
	if len(c.SLOs) > 0 {
		b.WriteString("\n#### Objectives\n\n| objective | A passed | B passed | p | |\n|---|---|---|---|---|\n")
		for _, s := range c.SLOs {
			fmt.Fprintf(b, "| `%s` | %d/%d | %d/%d | %s | %s |\n", mdEscape(s.Name), s.PassA, s.RunsA, s.PassB, s.RunsB, fmtP(s.P), mdMark(sloSetMark(s), s.Regressed))
		}
	}
	b.WriteString("\n#### Whole run\n\n| metric | A: median [min … max] | B: median [min … max] | change | p | |\n|---|---|---|---|---|---|\n")
	for _, d := range c.Metrics {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", d.Metric, spread(d.Metric, d.A, d.MedA), spread(d.Metric, d.B, d.MedB), c.setChange(d), fmtP(d.P), mdMark(setMark(d), d.Regressed))
	}
	if len(c.Phases) > 0 {
		b.WriteString("\n<details><summary>Per phase (shown, not judged: raw p)</summary>\n\n| phase | metric | A: median [min … max] | B: median [min … max] | change | p |\n|---|---|---|---|---|---|\n")
		for _, ph := range c.Phases {
			for _, d := range ph.Metrics {
				fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", mdEscape(ph.Name), d.Metric, spread(d.Metric, d.A, d.MedA), spread(d.Metric, d.B, d.MedB), c.setChange(d), fmtP(d.P))
			}
		}
		b.WriteString("\n</details>\n")
	}
	fmt.Fprintf(b, "\n%s\n", c.summaryLine())
	_, err := io.WriteString(w, b.String())
	return err
}

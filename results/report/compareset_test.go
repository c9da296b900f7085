package report

import (
	"bytes"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/results"
)

// runs makes one summary per p99 (ms), seeds 1.., each with the given
// objective results.
func runs(p99s []float64, pass ...bool) []*results.Summary {
	out := make([]*results.Summary, len(p99s))
	for i, p := range p99s {
		var objs []results.ObjectiveResult
		if i < len(pass) {
			objs = append(objs, results.ObjectiveResult{Name: "p99 < 25ms", Pass: pass[i], Measured: "x"})
		}
		s := summary(stats(5, 10, p, 2*p, 0, 100), nil, objs...)
		s.Seed = uint64(i + 1)
		out[i] = s
	}
	return out
}

func findSet(c *SetComparison, metric string) SetDelta {
	for _, d := range c.Metrics {
		if d.Metric == metric {
			return d
		}
	}
	return SetDelta{Metric: "missing"}
}

func TestCompareSetsTellsAShiftFromNoise(t *testing.T) {
	opts := CompareOptions{Threshold: 0.10, MinLatencyIncrease: time.Millisecond}
	a := runs([]float64{20, 14, 26, 20, 19})

	// Every B run slower than every A run: p = 2/252 = 0.0079, 0.040 once
	// Holm-adjusted over the five judged metrics (the others' p is 1), and
	// the medians 20 → 38 ms are beyond 10 % and 1 ms.
	c := CompareSets(a, runs([]float64{39, 27, 84, 38, 35}), "a", "b", opts, DefaultAlpha)
	d := findSet(c, MetricP99)
	if !d.Regressed || math.Abs(d.P-5*2.0/252) > 1e-9 || d.MedA != 20 || d.MedB != 38 {
		t.Fatalf("a clear shift: %+v", d)
	}
	if c.Inconclusive() || c.Regressions() != 1 {
		t.Fatalf("regressions %d, inconclusive %v; want 1 (p99 only: p50 and p90 did not move)", c.Regressions(), c.Inconclusive())
	}

	// The same spread, interleaved: a single pair of runs (26 against
	// 21, say) could read +24 %; the sets do not differ.
	c = CompareSets(a, runs([]float64{16, 26, 19, 21, 24}), "a", "b", opts, DefaultAlpha)
	if d := findSet(c, MetricP99); d.Regressed || d.Significant(DefaultAlpha) {
		t.Fatalf("noise called a change: %+v", d)
	}
	var out bytes.Buffer
	if err := c.Text(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "~ ") || !strings.Contains(out.String(), "No regression") {
		t.Fatalf("text:\n%s", out.String())
	}

	// Significant but within the threshold is not a regression either.
	c = CompareSets(a, runs([]float64{20.5, 14.5, 26.5, 20.5, 19.5}), "a", "b", opts, 0.9)
	if d := findSet(c, MetricP99); d.Regressed {
		t.Fatalf("a 2.5%% rise regressed beyond a 10%% threshold: %+v", d)
	}
}

func TestCompareSetsTooFewRunsIsInconclusive(t *testing.T) {
	// 3 against 3: even a complete separation gives p = 2/20 = 0.1.
	c := CompareSets(runs([]float64{10, 11, 12}), runs([]float64{50, 51, 52}), "a", "b", CompareOptions{Threshold: 0.1}, DefaultAlpha)
	if !c.Inconclusive() || c.Regressions() != 0 {
		t.Fatalf("3 vs 3: inconclusive %v, regressions %d", c.Inconclusive(), c.Regressions())
	}
	var out bytes.Buffer
	_ = c.Text(&out)
	if !strings.Contains(out.String(), "the least p-value possible is 0.100") || !strings.Contains(out.String(), "Inconclusive") {
		t.Fatalf("text:\n%s", out.String())
	}
	// 4 against 4 could alone (2/70 = 0.029), not over five judged
	// metrics (0.143); 5 against 5 can (0.040).
	if got := minP(4, 4); math.Abs(got-2.0/70) > 1e-12 {
		t.Fatalf("minP(4, 4) = %v", got)
	}
	if c := CompareSets(runs([]float64{10, 11, 12, 13}), runs([]float64{50, 51, 52, 53}), "a", "b", CompareOptions{Threshold: 0.1}, DefaultAlpha); !c.Inconclusive() ||
		!strings.Contains(strings.Join(c.Notes, "\n"), "run --repeat 5 or more") {
		t.Fatalf("4 vs 4 over five metrics: inconclusive %v, notes %v", c.Inconclusive(), c.Notes)
	}
	if CompareSets(runs([]float64{10, 11, 12, 13, 14}), runs([]float64{50, 51, 52, 53, 54}), "a", "b", CompareOptions{Threshold: 0.1}, DefaultAlpha).Regressions() != 1 {
		t.Fatal("5 vs 5, fully separated, did not regress")
	}
	for m, want := range map[int]int{1: 4, 5: 5, 10: 6, 30: 7} {
		if got := runsNeeded(m, DefaultAlpha); got != want {
			t.Errorf("runsNeeded(%d) = %d, want %d", m, got, want)
		}
	}
}

func TestCompareSetsObjectivesByPassCount(t *testing.T) {
	// Six a side, five metrics and the objective in the family: passing in
	// every run against in none is p = 2/924, 0.013 adjusted.
	p := []float64{20, 20, 20, 20, 20, 20}
	c := CompareSets(runs(p, true, true, true, true, true, true), runs(p, false, false, false, false, false, false), "a", "b", CompareOptions{Threshold: 0.1}, DefaultAlpha)
	if len(c.SLOs) != 1 || !c.SLOs[0].Regressed || c.SLOs[0].PassA != 6 || c.SLOs[0].PassB != 0 {
		t.Fatalf("6/6 → 0/6: %+v", c.SLOs)
	}
	// One flaky failure more is not significant.
	c = CompareSets(runs(p, true, true, true, true, true, true), runs(p, true, true, false, true, true, true), "a", "b", CompareOptions{Threshold: 0.1}, DefaultAlpha)
	if c.SLOs[0].Regressed || c.Regressions() != 0 {
		t.Fatalf("6/6 → 5/6 called a regression: %+v", c.SLOs)
	}
	var out bytes.Buffer
	_ = c.Markdown(&out)
	if !strings.Contains(out.String(), "| `p99 < 25ms` | 6/6 | 5/6 |") {
		t.Fatalf("markdown:\n%s", out.String())
	}
}

func TestCompareSetsLeavesOutRunsThatDidNotFinish(t *testing.T) {
	b := runs([]float64{39, 27, 84, 38, 35, 500})
	b[5].Interrupted = true
	c := CompareSets(runs([]float64{20, 14, 26, 20, 19}), b, "a", "b", CompareOptions{Threshold: 0.1}, DefaultAlpha)
	if d := findSet(c, MetricP99); len(d.B) != 5 || d.MedB != 38 {
		t.Fatalf("the interrupted run was taken: %+v", d)
	}
	if len(c.B.Left) != 1 || !strings.Contains(strings.Join(c.Notes, "\n"), "left out seed 6") {
		t.Fatalf("not said: %v %v", c.B.Left, c.Notes)
	}
}

// The phases every run has are shown with raw p-values and judge nothing:
// a phase twice as slow in B changes no verdict, and only the whole run's
// and the objectives' tests count in the adjustment.
func TestCompareSetsShowsPhasesUnjudged(t *testing.T) {
	withPhase := func(p99s []float64, phaseP99 float64) []*results.Summary {
		rs := runs(p99s)
		for i, r := range rs {
			r.Phases = []results.PhaseSummary{{Name: "fault", Stats: stats(5, 10, phaseP99+float64(i), 2*phaseP99, 0, 100)}}
		}
		return rs
	}
	p := []float64{20, 21, 22, 23, 24}
	c := CompareSets(withPhase(p, 30), withPhase(p, 60), "a", "b", CompareOptions{Threshold: 0.1}, DefaultAlpha)
	if len(c.Phases) != 1 || c.Phases[0].Name != "fault" {
		t.Fatalf("phases %+v", c.Phases)
	}
	var d SetDelta
	for _, x := range c.Phases[0].Metrics {
		if x.Metric == MetricP99 {
			d = x
		}
	}
	if d.Judged || d.Regressed || math.Abs(d.P-2.0/252) > 1e-9 || d.MedA != 32 || d.MedB != 62 {
		t.Fatalf("phase p99: %+v (want shown with its raw p, not judged)", d)
	}
	if c.Regressions() != 0 || c.family() != 5 {
		t.Fatalf("regressions %d, family %d: the phase must not count", c.Regressions(), c.family())
	}
	var out bytes.Buffer
	_ = c.Text(&out)
	if !strings.Contains(out.String(), "Per phase (shown, not judged: raw p)") || !regexp.MustCompile(`(?m)^\s+fault p99\s+32\.0ms .*\+93\.8%\s+p=0\.008`).MatchString(out.String()) {
		t.Errorf("text:\n%s", out.String())
	}
	// A phase one of the runs lacks (it stopped before it) is not shown.
	b := withPhase(p, 60)
	b[2].Phases = nil
	if c := CompareSets(withPhase(p, 30), b, "a", "b", CompareOptions{Threshold: 0.1}, DefaultAlpha); len(c.Phases) != 0 {
		t.Errorf("a phase not in every run was shown: %+v", c.Phases)
	}
}

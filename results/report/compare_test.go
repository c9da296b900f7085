package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cascadehq/cascade/results"
)

func stats(p50, p90, p99, maxv, errRate, achieved float64) results.StatsSummary {
	return results.StatsSummary{Sent: 1000, Scheduled: 1000, ErrorRate: errRate, AchievedRate: achieved,
		Latency: results.Percentiles{P50: p50, P90: p90, P99: p99, P999: maxv, Max: maxv}}
}

func summary(run results.StatsSummary, phases map[string]results.StatsSummary, objs ...results.ObjectiveResult) *results.Summary {
	s := &results.Summary{Scenario: "s", PlanHash: "sha256:1", Seed: 1, Verdict: "pass", Run: results.PhaseSummary{Name: "run", Stats: run}, Objectives: objs}
	for _, n := range []string{"before", "fault", "after", "extra"} {
		if st, ok := phases[n]; ok {
			s.Phases = append(s.Phases, results.PhaseSummary{Name: n, Stats: st})
		}
	}
	return s
}

func find(c *Comparison, scope, metric string) Delta {
	for _, d := range c.Deltas {
		if d.Scope == scope && d.Metric == metric {
			return d
		}
	}
	return Delta{Scope: "missing"}
}

func TestCompareThresholds(t *testing.T) {
	base := stats(10, 20, 100, 200, 0.01, 100)
	cases := []struct {
		name      string
		b         results.StatsSummary
		metric    string
		regressed bool
	}{
		{"p99 within threshold", stats(10, 20, 109.9, 200, 0.01, 100), MetricP99, false},
		{"p99 beyond threshold", stats(10, 20, 110.1, 200, 0.01, 100), MetricP99, true},
		{"p50 faster is fine", stats(5, 20, 100, 200, 0.01, 100), MetricP50, false},
		{"max not judged however bad", stats(10, 20, 100, 2000, 0.01, 100), MetricMax, false},
		{"error rate up 5% relatively: within", stats(10, 20, 100, 200, 0.0105, 100), MetricErrorRate, false},
		{"error rate up 20% relatively but 0.2pp", stats(10, 20, 100, 200, 0.012, 100), MetricErrorRate, true},
		{"error rate down", stats(10, 20, 100, 200, 0, 100), MetricErrorRate, false},
		{"achieved rate down 9%", stats(10, 20, 100, 200, 0.01, 91), MetricAchievedRate, false},
		{"achieved rate down 11%", stats(10, 20, 100, 200, 0.01, 89), MetricAchievedRate, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Compare(summary(base, nil), summary(tc.b, nil), "a", "b", CompareOptions{Threshold: 0.10})
			d := find(c, "run", tc.metric)
			if d.Regressed != tc.regressed {
				t.Fatalf("%s: %v → %v regressed=%v, want %v", tc.metric, d.A, d.B, d.Regressed, tc.regressed)
			}
			if want := 0; tc.regressed {
				want = 1
				if c.Regressions() != want {
					t.Fatalf("Regressions() = %d, want %d", c.Regressions(), want)
				}
			} else if c.Regressions() != want {
				t.Fatalf("Regressions() = %d, want %d", c.Regressions(), want)
			}
		})
	}
	// The floor: from 0 errors to 0.05% is below 0.1 percentage points.
	c := Compare(summary(stats(1, 1, 1, 1, 0, 1), nil), summary(stats(1, 1, 1, 1, 0.0005, 1), nil), "a", "b", CompareOptions{Threshold: 0.1})
	if c.Regressions() != 0 {
		t.Fatal("0 → 0.05% error rate counted as a regression")
	}
	// --judge max makes max count.
	c = Compare(summary(base, nil), summary(stats(10, 20, 100, 2000, 0.01, 100), nil), "a", "b", CompareOptions{Threshold: 0.1, Judged: []string{MetricMax}})
	if !find(c, "run", MetricMax).Regressed || find(c, "run", MetricP99).Judged {
		t.Fatal("Judged not honoured")
	}
}

func TestComparePhasesAndObjectives(t *testing.T) {
	pass := func(name string, v float64) results.ObjectiveResult {
		return results.ObjectiveResult{Name: name, Value: v, Measured: "m", Pass: true}
	}
	fail := func(name string, v float64) results.ObjectiveResult {
		o := pass(name, v)
		o.Pass = false
		return o
	}
	st := stats(10, 20, 30, 40, 0, 100)
	a := summary(st, map[string]results.StatsSummary{"before": st, "fault": st, "after": st},
		pass("p99 < 50ms", 30), fail("error_rate < 0%", 0.1), pass("gone", 1))
	b := summary(st, map[string]results.StatsSummary{"before": st, "fault": stats(10, 20, 90, 90, 0, 100), "extra": st},
		fail("p99 < 50ms", 60), pass("error_rate < 0%", 0), pass("new", 1))
	b.PlanHash = "sha256:2"
	c := Compare(a, b, "a", "b", CompareOptions{Threshold: 0.1})
	if !slicesEq(c.OnlyA, []string{"after"}) || !slicesEq(c.OnlyB, []string{"extra"}) {
		t.Fatalf("only A %v only B %v", c.OnlyA, c.OnlyB)
	}
	scopes := map[string]bool{}
	for _, d := range c.Deltas {
		scopes[d.Scope] = true
	}
	if len(scopes) != 3 || !scopes["run"] || !scopes["before"] || !scopes["fault"] {
		t.Fatalf("scopes %v", scopes)
	}
	if !find(c, "fault", MetricP99).Regressed || find(c, "before", MetricP99).Regressed {
		t.Fatal("phase deltas")
	}
	got := map[string]SLODelta{}
	for _, s := range c.SLOs {
		got[s.Name] = s
	}
	if !got["p99 < 50ms"].Regressed || !got["error_rate < 0%"].Fixed || got["gone"].B != nil || got["new"].A != nil {
		t.Fatalf("objectives %+v", c.SLOs)
	}
	// p99 in "fault" (and max, not judged) plus one objective newly failing.
	if n := c.Regressions(); n != 2 {
		t.Fatalf("%d regressions", n)
	}
	if len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "differ") {
		t.Fatalf("notes %v", c.Notes)
	}

	var text, md bytes.Buffer
	if err := c.Text(&text); err != nil {
		t.Fatal(err)
	}
	if err := c.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"REGRESSION (now failing)", "fixed (now passing)", "only in B", "2 regressions", "+200.0%", "only in A [after]"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	for _, want := range []string{"### cascade compare: `s` — ❌ 2 regressions", "| `p99 < 50ms` | m PASS | m FAIL | +100.0% | **REGRESSION (now failing)** |",
		"<details><summary>Per phase</summary>", "| fault | p99 | 30.0ms | 90.0ms | +200.0% | **REGRESSION** |", "> **Note:**"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	// A cell cannot break the table.
	if mdEscape("a|b\nc") != `a\|b c` {
		t.Error(mdEscape("a|b\nc"))
	}
}

func slicesEq(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

// A run stopped before a phase sent nothing in it: its latencies are not
// 0 ms, so no "-100%" and no judgement; all requests dropped is still an
// error rate, and an objective with nothing measured has no change.
func TestCompareSideWithoutRequests(t *testing.T) {
	st := stats(10, 20, 30, 40, 0, 100)
	obj := results.ObjectiveResult{Name: "after: p99 < 60ms", Value: 30, Measured: "30.0ms", Pass: true}
	a := summary(st, map[string]results.StatsSummary{"after": st, "fault": st}, obj)
	dropped := results.StatsSummary{Scheduled: 100, ErrorRate: 1}
	none := obj
	none.Value, none.Measured, none.Pass = 0, "", false
	b := summary(st, map[string]results.StatsSummary{"after": {}, "fault": dropped}, none)
	c := Compare(a, b, "a", "b", CompareOptions{Threshold: 0.1, Judged: []string{MetricP99, MetricErrorRate}})
	if d := find(c, "after", MetricP99); d.Regressed || !d.NoneB || d.NoneA {
		t.Errorf("after p99: %+v", d)
	}
	if d := find(c, "after", MetricErrorRate); d.Regressed || !d.NoneB {
		t.Errorf("after error rate: %+v", d)
	}
	if d := find(c, "fault", MetricErrorRate); !d.Regressed || d.NoneB {
		t.Errorf("every request dropped is a regressed error rate: %+v", d)
	}
	var text bytes.Buffer
	if err := c.Text(&text); err != nil {
		t.Fatal(err)
	}
	out := strings.Join(strings.Fields(text.String()), " ")
	if strings.Contains(out, "ms -100.0%") || !strings.Contains(out, "after p99 30.0ms - n/a (no requests)") ||
		!strings.Contains(out, "after: p99 < 60ms 30.0ms PASS n/a FAIL n/a") {
		t.Errorf("text:\n%s", out)
	}
}

// A game day and its replay: the fault's phase is the scripted window in
// one and the window the fault really ran in the other. The same name over
// different windows is shown, not judged, and says why.
func TestCompareMovedPhase(t *testing.T) {
	st := stats(10, 20, 30, 40, 0, 100)
	obj := results.ObjectiveResult{Name: "slow-api: p99 < 400ms", Phase: "slow-api", Value: 300, Measured: "300ms", Pass: true}
	a := summary(st, map[string]results.StatsSummary{"fault": st}, obj)
	a.Phases[0].Name, a.Phases[0].Start, a.Phases[0].End = "slow-api", 32.4, 42.4
	worse := stats(10, 20, 500, 600, 0, 100)
	failed := obj
	failed.Value, failed.Measured, failed.Pass = 500, "500ms", false
	b := summary(st, map[string]results.StatsSummary{"fault": worse}, failed)
	b.Phases[0].Name, b.Phases[0].Start, b.Phases[0].End = "slow-api", 32.4, 35.5
	c := Compare(a, b, "a", "b", CompareOptions{Threshold: 0.1})
	if n := c.Regressions(); n != 0 {
		t.Errorf("%d regressions over different windows", n)
	}
	if d := find(c, "slow-api", MetricP99); d.Judged || d.Regressed {
		t.Errorf("p99 of the moved phase: %+v", d)
	}
	if len(c.SLOs) != 1 || !c.SLOs[0].Moved || c.SLOs[0].Regressed {
		t.Errorf("objective: %+v", c.SLOs)
	}
	if len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "phase slow-api spans [32.40s, 42.40s) in A and [32.40s, 35.50s) in B") {
		t.Errorf("notes: %v", c.Notes)
	}
	// Within 50 ms it is the same window, judged.
	b.Phases[0].End = 42.43
	if c := Compare(a, b, "a", "b", CompareOptions{Threshold: 0.1}); c.Regressions() != 2 {
		t.Errorf("same window: %d regressions, want 2 (p99 and the objective)", c.Regressions())
	}
}

// A run stopped by an error covers only part of what was planned, as an
// interrupted one does: the comparison says so, with the error.
func TestCompareNotesARunStoppedByAnError(t *testing.T) {
	a := summary(stats(10, 20, 100, 200, 0, 100), nil)
	b := summary(stats(10, 20, 100, 200, 0, 100), nil)
	b.Verdict, b.Error = results.VerdictError, "write results: no space left on device"
	c := Compare(a, b, "base", "head", CompareOptions{Threshold: 0.1})
	if len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "head stopped on an error (write results: no space left on device)") {
		t.Fatalf("notes %q", c.Notes)
	}
	var out bytes.Buffer
	if err := c.Text(&out); err != nil || !strings.Contains(out.String(), "ERROR") {
		t.Fatalf("%v\n%s", err, out.String())
	}
}

// Two runs of the same seed on loopback, where latencies are well under a
// millisecond, measured p99 0.58ms and 1.15ms (+98%): scheduling noise,
// which a relative threshold alone called a regression. A rise below
// MinLatencyIncrease is not one; above it, the threshold decides as before.
func TestCompareMinLatencyIncrease(t *testing.T) {
	a := summary(stats(0.21, 0.33, 0.58, 2, 0, 300), nil)
	b := summary(stats(0.25, 0.43, 1.15, 3, 0, 300), nil)
	opts := CompareOptions{Threshold: 0.1, MinLatencyIncrease: DefaultMinLatencyIncrease}
	if c := Compare(a, b, "a", "b", opts); c.Regressions() != 0 {
		t.Errorf("sub-millisecond noise: %d regressions: %+v", c.Regressions(), c.Deltas)
	}
	if c := Compare(a, b, "a", "b", CompareOptions{Threshold: 0.1}); c.Regressions() != 3 {
		t.Errorf("without a floor: %d regressions, want 3 (p50, p90, p99)", c.Regressions())
	}
	slow := summary(stats(0.21, 0.33, 1.6, 2, 0, 300), nil)
	if d := find(Compare(a, slow, "a", "b", opts), "run", MetricP99); !d.Regressed {
		t.Errorf("p99 up 1.02ms and 176%%: %+v", d)
	}
	var out bytes.Buffer
	if err := Compare(a, b, "a", "b", opts).Text(&out); err != nil || !strings.Contains(out.String(), "latency also +1.00ms at least") {
		t.Errorf("the floor is not said: %v\n%s", err, out.String())
	}
}

// A run that did not finish (Ctrl-C, an error once its load started)
// covers part of what was planned: compared, it is inconclusive (the CLI
// exits 3), never "no regression". Its whole-run window differs, so the
// run's deltas are not judged: over the first 5 s of a ramp, the achieved
// rate was 11% below the baseline's and read as a regression.
func TestCompareIncompleteRun(t *testing.T) {
	a := summary(stats(10, 20, 30, 40, 0, 180), nil)
	a.Run.End = 10
	b := summary(stats(10, 20, 30, 40, 0, 160), nil)
	b.Run.End, b.Interrupted, b.Verdict = 5.01, true, results.VerdictInterrupted
	c := Compare(a, b, "base", "head", CompareOptions{Threshold: 0.1})
	if !c.Inconclusive() {
		t.Fatal("an interrupted run compared is conclusive")
	}
	if d := find(c, "run", MetricAchievedRate); d.Judged || d.Regressed {
		t.Errorf("achieved rate over a different window: %+v", d)
	}
	var out bytes.Buffer
	if err := c.Text(&out); err != nil || !strings.Contains(out.String(), "Inconclusive: B was interrupted") ||
		!strings.Contains(out.String(), "the load ran [0s, 10.00s) in A and [0s, 5.01s) in B") {
		t.Errorf("%v\n%s", err, out.String())
	}
	out.Reset()
	if err := c.Markdown(&out); err != nil || !strings.Contains(out.String(), "inconclusive") {
		t.Errorf("markdown: %v\n%s", err, out.String())
	}
	b.Interrupted, b.Error = false, "write results: no space left on device"
	if c := Compare(a, b, "base", "head", CompareOptions{Threshold: 0.1}); !c.Inconclusive() {
		t.Error("a run stopped by an error compared is conclusive")
	}
	// The baseline cut short makes it inconclusive as well.
	if c := Compare(b, a, "base", "head", CompareOptions{Threshold: 0.1}); !c.Inconclusive() {
		t.Error("an unfinished baseline compared is conclusive")
	}
}

// An abort objective stops a run early: that run finished (it failed), so
// the comparison is conclusive, the objective it failed is the regression,
// and only the whole run's deltas, over a shorter window, are not judged.
func TestCompareAbortedRun(t *testing.T) {
	obj := results.ObjectiveResult{Name: "max < 30ms", Phase: "run", Value: 20, Measured: "20.0ms", Pass: true}
	a := summary(stats(10, 20, 30, 40, 0, 180), nil, obj)
	a.Run.End = 10
	failed := obj
	failed.Value, failed.Measured, failed.Pass = 55, "55.0ms", false
	b := summary(stats(10, 20, 30, 40, 0, 150), nil, failed)
	b.Run.End, b.Aborted, b.Verdict = 4.2, "max < 30ms measured 55.0ms", results.VerdictFail
	c := Compare(a, b, "base", "head", CompareOptions{Threshold: 0.1})
	if c.Inconclusive() || c.Regressions() != 1 || !c.SLOs[0].Regressed {
		t.Errorf("aborted: inconclusive %v, %d regressions, %+v", c.Inconclusive(), c.Regressions(), c.SLOs)
	}
	// Two whole runs of plans of different lengths are judged as before.
	b.Aborted, b.Objectives = "", []results.ObjectiveResult{obj}
	if d := find(Compare(a, b, "base", "head", CompareOptions{Threshold: 0.1}), "run", MetricAchievedRate); !d.Judged || !d.Regressed {
		t.Errorf("achieved rate of two whole runs: %+v", d)
	}
}

// Requests the stop cut short (aborted) have no latency and are in no
// error rate: a side whose every request was cut short has nothing to
// measure, not a latency of 0 ms and an error rate of 0%.
func TestCompareAllAborted(t *testing.T) {
	a := summary(stats(10, 20, 30, 40, 0, 20), nil)
	b := summary(results.StatsSummary{Scheduled: 62, Sent: 62, Causes: map[string]int64{"aborted": 62}}, nil)
	c := Compare(a, b, "a", "b", CompareOptions{Threshold: 0.1})
	for _, m := range []string{MetricP50, MetricP99, MetricErrorRate} {
		if d := find(c, "run", m); !d.NoneB || d.Regressed {
			t.Errorf("%s: %+v", m, d)
		}
	}
}

// A run interrupted less than a second into a phase has no rate for it
// (the summary's 0, the report's "-"): compare showed "0.0/s", -100.0%,
// beside the hundred requests the phase did send.
func TestCompareAPhaseCutTooShortForARate(t *testing.T) {
	st := stats(10, 20, 30, 40, 0, 100)
	a := summary(st, map[string]results.StatsSummary{"after": st})
	cut := stats(10, 20, 30, 40, 0, 0)
	cut.Sent, cut.Scheduled = 100, 100
	b := summary(st, map[string]results.StatsSummary{"after": cut})
	b.Interrupted, b.Verdict = true, results.VerdictInterrupted
	b.Phases[0].End, b.Phases[0].PlannedEnd = 0.99, 4
	c := Compare(a, b, "a", "b", CompareOptions{Threshold: 0.1, Judged: DefaultJudged})
	if d := find(c, "after", MetricAchievedRate); !d.NoneB || d.NoneA || d.Regressed {
		t.Errorf("after achieved rate: %+v", d)
	}
	var text bytes.Buffer
	if err := c.Text(&text); err != nil {
		t.Fatal(err)
	}
	out := strings.Join(strings.Fields(text.String()), " ")
	if !strings.Contains(out, "after achieved_rate 100.0/s - n/a (no rate: under a second)") || strings.Contains(out, "0.0/s -100.0%") {
		t.Errorf("text:\n%s", text.String())
	}
}

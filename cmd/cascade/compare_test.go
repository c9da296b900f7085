package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/report"
)

// compareScenario is run twice: once with a fast upstream and once with a
// deliberately slower one, everything else equal (the same seed, so the
// same schedule of requests).
const compareScenario = `name: compare
seed: 21
upstreams:
  - {name: api, replicas: 2, latency: LATENCY}
gateway:
  routes:
    - {path: /, upstream: api, timeouts: {connect: 200ms, response_header: 1s, total: 2s}}
load:
  client_timeout: 2s
  stages:
    - {duration: 2s, rate: 60/s}
  requests:
    - {path: /}
faults:
  - {name: blip, kind: latency, target: api, start: 1s, duration: 500ms, params: {delay: 5ms}}
slo:
  - p99 < 100ms
  - error_rate < 1%
`

var (
	compareOnce sync.Once
	fastDir     string
	slowDir     string
	compareErr  string
)

// compareRuns makes the two runs once for the tests of this file.
func compareRuns(t *testing.T) (fast, slow string) {
	t.Helper()
	compareOnce.Do(func() {
		root, err := os.MkdirTemp("", "cascade-compare-")
		if err != nil {
			compareErr = err.Error()
			return
		}
		for _, r := range []struct {
			dir     *string
			latency string
		}{{&fastDir, "2ms"}, {&slowDir, "150ms"}} {
			f := filepath.Join(root, r.latency+".yaml")
			if err := os.WriteFile(f, []byte(strings.Replace(compareScenario, "LATENCY", r.latency, 1)), 0o644); err != nil {
				compareErr = err.Error()
				return
			}
			*r.dir = filepath.Join(root, "run-"+r.latency)
			if code, out, stderr := runCLI(context.Background(), "run", "--progress", "off", "--out", *r.dir, f); code != ExitPass && code != ExitFail {
				compareErr = "run " + r.latency + ": exit " + strconv.Itoa(code) + "\n" + out + stderr
				return
			}
		}
	})
	if compareErr != "" {
		t.Fatal(compareErr)
	}
	return fastDir, slowDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fastDir != "" {
		os.RemoveAll(filepath.Dir(fastDir))
	}
	os.Exit(code)
}

func TestCompareExitCodes(t *testing.T) {
	fast, slow := compareRuns(t)

	// Slower against the fast baseline: p50/p90/p99 regress, and the p99
	// objective flips to failing.
	code, out, stderr := runCLI(context.Background(), "compare", fast, slow)
	if code != ExitFail {
		t.Fatalf("fast→slow: exit %d\n%s%s", code, out, stderr)
	}
	for _, want := range []string{`p99 < 100ms .* PASS .* FAIL .*REGRESSION \(now failing\)`, `(?m)^\s+run\s+p50\s.*REGRESSION$`,
		`(?m)^\s+blip\s+p99\s.*REGRESSION$`, `(?m)^\s+run\s+error_rate\s+0%\s+0%\s+\+0\.00 pp\s*$`, `\d+ regressions:`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output does not match %q:\n%s", want, out)
		}
	}
	// The two files differ (in the upstream's latency), and the comparison says so.
	if !strings.Contains(out, "differ in scenario") {
		t.Errorf("different scenario files not noted:\n%s", out)
	}

	// The other way round everything got faster: no regression.
	if code, out, _ := runCLI(context.Background(), "compare", slow, fast); code != ExitPass || !strings.Contains(out, "No regression") {
		t.Fatalf("slow→fast: exit %d\n%s", code, out)
	}
	// A run against itself: every change is zero.
	if code, out, _ := runCLI(context.Background(), "compare", fast, fast); code != ExitPass || strings.Count(out, "+0.0%") < 10 {
		t.Fatalf("self: exit %d\n%s", code, out)
	}
	// A huge threshold lets latency through, but an objective that now
	// fails is a regression whatever the threshold. (p50 goes from ≈2-4 ms
	// to ≈150 ms: up to +7400 %, so the threshold must be above that; a
	// generator that sends on time measures the fast run closer to 2 ms.)
	code, out, _ = runCLI(context.Background(), "compare", "--threshold", "10000%", fast, slow)
	if code != ExitFail || !strings.Contains(out, "1 regression:") {
		t.Fatalf("threshold 10000%%: exit %d\n%s", code, out)
	}

	// Markdown for a pull request.
	code, out, _ = runCLI(context.Background(), "compare", "--markdown", fast, slow)
	if code != ExitFail || !strings.HasPrefix(out, "### cascade compare: `compare` — ❌") || !strings.Contains(out, "| run | p99 |") ||
		!strings.Contains(out, "<details><summary>Per phase</summary>") {
		t.Fatalf("markdown: exit %d\n%s", code, out)
	}
}

func TestCompareUsage(t *testing.T) {
	fast, _ := compareRuns(t)
	for _, args := range [][]string{
		{"compare", fast},
		{"compare", fast, filepath.Join(t.TempDir(), "nope")},
		{"compare", "--threshold", "ten", fast, fast},
		{"compare", "--threshold", "-5%", fast, fast},
		{"compare", "--threshold", "5", fast, fast}, // 5% or 500%? (it was read as 500%)
		{"compare", "--judge", "p77", fast, fast},
	} {
		if code, _, stderr := runCLI(context.Background(), args...); code != ExitUsage || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}

func TestReportHTMLAndCSV(t *testing.T) {
	fast, _ := compareRuns(t)
	html := filepath.Join(fast, report.HTMLFile)
	if err := os.Remove(html); err != nil {
		t.Fatalf("the run wrote no report.html: %v", err)
	}
	code, out, stderr := runCLI(context.Background(), "report", "--html", fast)
	if code != ExitPass && code != ExitFail {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(html); err != nil || !strings.Contains(stderr, "HTML report: "+html) || !strings.Contains(out, "Verdict:") {
		t.Fatalf("report --html: %v\nstdout %s\nstderr %s", err, out, stderr)
	}
	_, out, _ = runCLI(context.Background(), "report", "--html", "--open-path", fast)
	if strings.TrimSpace(out) != "file://"+html {
		t.Errorf("--open-path printed %q", out)
	}

	// CSV on stdout: only CSV there, one row per interval.
	_, out, _ = runCLI(context.Background(), "report", "--csv", "-", fast)
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("stdout is not CSV: %v\n%s", err, out)
	}
	r, err := results.Load(fast)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(r.Intervals)+1 || rows[0][0] != "t_s" {
		t.Fatalf("%d rows for %d intervals; header %v", len(rows), len(r.Intervals), rows[0])
	}
	// CSV to a file, the text report as usual on stdout.
	file := filepath.Join(t.TempDir(), "series.csv")
	_, out, _ = runCLI(context.Background(), "report", "--csv", file, fast)
	b, err := os.ReadFile(file)
	if err != nil || !strings.HasPrefix(string(b), "t_s,") || !strings.Contains(out, "Verdict:") {
		t.Fatalf("--csv FILE: %v %q", err, out)
	}

	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"report", "--open-path", fast}, ExitUsage},
		{[]string{"report", "--html", "--open-path", "--csv", "-", fast}, ExitUsage},
		// A file that cannot be written is 3, as for a full disk: the
		// flags were fine.
		{[]string{"report", "--csv", filepath.Join(t.TempDir(), "no", "such", "dir.csv"), fast}, ExitRunFailed},
	} {
		if code, _, stderr := runCLI(context.Background(), c.args...); code != c.want || stderr == "" {
			t.Errorf("%v: exit %d (want %d), stderr %q", c.args, code, c.want, stderr)
		}
	}
}

// A run that did not finish makes the comparison inconclusive: exit 3,
// never 0 ("no regression" about a run cut short) nor 1 (a regression that
// may be the stop's).
func TestCompareInterruptedRun(t *testing.T) {
	fast, _ := compareRuns(t)
	cut := filepath.Join(t.TempDir(), "cut")
	if err := os.CopyFS(cut, os.DirFS(fast)); err != nil {
		t.Fatal(err)
	}
	r, err := results.Load(cut)
	if err != nil {
		t.Fatal(err)
	}
	s := r.Summary
	s.Interrupted, s.Verdict, s.Run.End = true, results.VerdictInterrupted, s.Run.End/2
	b, err := json.Marshal(&s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cut, results.SummaryFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{fast, cut}, {cut, fast}} {
		code, out, stderr := runCLI(context.Background(), append([]string{"compare"}, args...)...)
		if code != ExitRunFailed || !strings.Contains(out, "Inconclusive: ") || !strings.Contains(out, "was interrupted") {
			t.Errorf("compare %v: exit %d\n%s%s", args, code, out, stderr)
		}
	}
	if code, _, stderr := runCLI(context.Background(), "compare", "--min-latency-change", "-1ms", fast, fast); code != ExitUsage || !strings.Contains(stderr, "--min-latency-change") {
		t.Errorf("negative --min-latency-change: exit %d %s", code, stderr)
	}
}

// Two repeats are compared as sets: a real slowdown is a regression with
// its p-value, the same scenario against itself is "~", and a repeat with
// too few runs for any p-value to reach α is inconclusive.
func TestCompareRepeats(t *testing.T) {
	root := t.TempDir()
	const scenario = `name: repeats
upstreams:
  - {name: api, latency: LATENCY}
gateway:
  routes: [{path: /, upstream: api}]
load:
  stages: [{duration: 1s, rate: 50/s}]
  requests: [{path: /}]
slo:
  - p50 < 20ms
`
	repeat := func(latency string) string {
		f := filepath.Join(root, latency+".yaml")
		if err := os.WriteFile(f, []byte(strings.Replace(scenario, "LATENCY", latency, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(root, "repeat-"+latency)
		if code, out, stderr := runCLI(context.Background(), "run", "--repeat", "6", "--progress", "off", "--out", dir, f); code != ExitPass && code != ExitFail {
			t.Fatalf("repeat %s: exit %d\n%s%s", latency, code, out, stderr)
		}
		return dir
	}
	fast, slow := repeat("2ms"), repeat("40ms")

	code, out, stderr := runCLI(context.Background(), "compare", fast, slow)
	if code != ExitFail {
		t.Fatalf("fast→slow: exit %d\n%s%s", code, out, stderr)
	}
	// 6 against 6, every slow run above every fast one: p = 2/924, 0.013
	// Holm-adjusted over five metrics and the objective.
	for _, want := range []string{`6 runs against 6 \(Mann–Whitney U test, α 0.05, Holm-adjusted over 6 judged comparisons\)`, `(?m)^\s+p50\s.*\+\d+\.\d%\s+p=0\.013\s+REGRESSION$`,
		`(?m)^\s+p50 < 20ms\s+6/6\s+0/6\s+p=0\.013\s+REGRESSION \(passes in fewer runs\)$`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output does not match %q:\n%s", want, out)
		}
	}
	if code, out, _ := runCLI(context.Background(), "compare", "--markdown", fast, slow); code != ExitFail || !strings.HasPrefix(out, "### cascade compare: `repeats` — ❌") {
		t.Errorf("markdown: exit %d\n%s", code, out)
	}
	if code, out, _ := runCLI(context.Background(), "compare", fast, fast); code != ExitPass || !strings.Contains(out, "No regression") || strings.Count(out, " ~ ") < 7 {
		t.Errorf("self: exit %d\n%s", code, out)
	}

	// The runs are found inside the repeat's folder wherever it moved.
	moved := filepath.Join(root, "moved")
	if err := os.Rename(slow, moved); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(context.Background(), "compare", fast, moved); code != ExitFail {
		t.Errorf("moved repeat: exit %d %s", code, stderr)
	}

	// Six against three cannot reach p < 0.05 over six comparisons however
	// far apart (2/84 × 6 = 0.143 at best): exit 3.
	rep := readRepeatReport(t, moved)
	rep.Dirs = rep.Dirs[:3]
	b, _ := json.Marshal(rep)
	if err := os.WriteFile(filepath.Join(moved, RepeatFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(context.Background(), "compare", fast, moved)
	if code != ExitRunFailed || !strings.Contains(out, "Inconclusive: 6 and 3 runs are too few") {
		t.Errorf("3 runs: exit %d\n%s", code, out)
	}

	// A repeat against a single run is a usage error; so is a bad --alpha.
	for _, args := range [][]string{{fast, filepath.Join(fast, filepath.Base(rep.Dirs[0]))}, {"--alpha", "5", fast, fast}} {
		if code, _, stderr := runCLI(context.Background(), append([]string{"compare"}, args...)...); code != ExitUsage || stderr == "" {
			t.Errorf("%v: exit %d %q", args, code, stderr)
		}
	}
}

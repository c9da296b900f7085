package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/run"
	"github.com/cascadehq/cascade/results"
)

const ladderScenario = `name: ladder
upstreams: [{name: api, replicas: 2, latency: 2ms}]
gateway:
  routes: [{path: /, upstream: api, timeouts: {connect: 100ms, response_header: RH, total: 500ms}}]
load:
  client_timeout: CLIENT
  stages: [{duration: 1s, rate: 10/s}]
  requests: [{path: /}]
`

func writeFile(t *testing.T, name, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A ladder's rungs are bounded: a rate or duration that is not a positive
// number in range is a usage error (NaN hung, 1e9/s ran on, 0 silently
// became the default).
func TestLadderFlags(t *testing.T) {
	good := writeFile(t, "good.yaml", strings.NewReplacer("RH", "250ms", "CLIENT", "800ms").Replace(ladderScenario))
	for _, args := range [][]string{{"--rate", "NaN"}, {"--rate", "1e9"}, {"--rate", "0"}, {"--rate", "-5"},
		{"--duration", "0s"}, {"--duration", "-1s"}, {"--duration", "11m"}} {
		code, _, stderr := runCLI(context.Background(), append(append([]string{"ladder"}, args...), "--out", filepath.Join(t.TempDir(), "l"), good)...)
		if code != ExitUsage || !strings.Contains(stderr, args[0]) {
			t.Errorf("%v: exit %d %s", args, code, stderr)
		}
	}
}

func TestLadder(t *testing.T) {
	good := writeFile(t, "good.yaml", strings.NewReplacer("RH", "250ms", "CLIENT", "800ms").Replace(ladderScenario))
	dir := filepath.Join(t.TempDir(), "l")
	code, out, stderr := runCLI(context.Background(), "ladder", "--rate", "10", "--duration", "1s", "--out", dir, good)
	if code != ExitPass {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	// A rung's directory re-judged offline gives the rung's verdict: it
	// was judged on the scenario's own objectives (none here: "nothing
	// judged"), over phases the rung never had.
	for _, rung := range []string{"gateway", "client", "cascade"} {
		code, rep, errs := runCLI(context.Background(), "report", filepath.Join(dir, rung))
		if code != ExitPass || !strings.Contains(rep, "PASS  timeouts answered by ") {
			t.Errorf("report of rung %s: exit %d\n%s\n%s", rung, code, rep, errs)
		}
	}
	for _, want := range []string{"timeout cascade: client 800.0ms > gateway 250.0ms/500.0ms",
		"gateway  275.0ms", "gateway at 250.0ms", "gateway_timeout[gateway] 10 at 25",
		"client   880.0ms", "client at 800.0ms", "client_timeout[client] 10 at ",
		"cascade  880.0ms", "Ladder: 3/3 rungs answered by the layer expected"} {
		if !strings.Contains(out, want) {
			t.Errorf("ladder output lacks %q:\n%s", want, out)
		}
	}
	// The gateway waits 1.2s for headers but the client only 800ms: in the
	// gateway's rung the client fires first.
	bad := writeFile(t, "bad.yaml", strings.NewReplacer("RH", "1200ms", "CLIENT", "800ms", "total: 500ms", "total: 1300ms").Replace(ladderScenario))
	badDir := filepath.Join(t.TempDir(), "l")
	code, out, stderr = runCLI(context.Background(), "ladder", "--duration", "1s", "--out", badDir, bad)
	if code != ExitFail {
		t.Fatalf("misordered ladder: exit %d\n%s\n%s", code, out, stderr)
	}
	if code, rep, errs := runCLI(context.Background(), "report", filepath.Join(badDir, "gateway")); code != ExitFail || !strings.Contains(rep, "fired instead of gateway") {
		t.Errorf("report of the failed gateway rung: exit %d\n%s\n%s", code, rep, errs)
	}
	for _, want := range []string{"gateway at 1.200s", "client_timeout[client] 10", "FAIL", "the outer layer client (800.0ms) fired instead of gateway"} {
		if !strings.Contains(out, want) {
			t.Errorf("misordered ladder output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr, "is not shorter than the client timeout") {
		t.Errorf("the static lint should warn too: %s", stderr)
	}
}

// h6 #9: with retries and no per-try timeout, response_header bounds each
// attempt, and the client sees the gateway's 504 after 3 × 200ms plus
// backoff: the gateway rung and the whole cascade's rung pass.
func TestLadderRetriedResponseHeader(t *testing.T) {
	src := `name: rh-retry
upstreams: [{name: api, replicas: 2, latency: 2ms}]
gateway:
  routes:
    - {path: /, upstream: api, timeouts: {connect: 100ms, response_header: 200ms, total: 2s}, retries: {retry_on: [reset], max_attempts: 3, backoff_base: 10ms, budget_percent: 100%}}
load:
  client_timeout: 3s
  stages: [{duration: 1s, rate: 10/s}]
  requests: [{path: /}]
`
	f := writeFile(t, "rh.yaml", src)
	code, out, stderr := runCLI(context.Background(), "ladder", "--duration", "1s", "--out", filepath.Join(t.TempDir(), "l"), f)
	if code != ExitPass {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{"timeout cascade: client 3.000s > gateway 200.0ms/400.0ms/600.0ms/2.000s",
		"gateway at 200.0ms", "Ladder: 3/3 rungs answered by the layer expected"} {
		if !strings.Contains(out, want) {
			t.Errorf("ladder output lacks %q:\n%s", want, out)
		}
	}
}

func TestRepeatReportsPassRates(t *testing.T) {
	src := `name: repeat
upstreams: [{name: api, latency: {dist: uniform, min: 1ms, max: 30ms}}]
gateway:
  routes: [{path: /, upstream: api}]
load:
  client_timeout: 1s
  stages: [{duration: 1s, rate: 40/s}]
  requests: [{path: /}]
slo:
  - p99 < 1s
  - max < 1ms
`
	f := writeFile(t, "r.yaml", src)
	dir := filepath.Join(t.TempDir(), "rep")
	code, out, stderr := runCLI(context.Background(), "run", "--repeat", "2", "--out", dir, f)
	if code != ExitFail {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{"2 runs (seeds 1..2)", "run 1 seed 1: FAIL (1/2 objectives passed)", "run 2 seed 2",
		"PASS  p99 < 1s   2/2", "FAIL  max < 1ms  0/2", "Verdict: FAIL"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	rep := readRepeatReport(t, dir)
	if len(rep.Seeds) != 2 || rep.Pass || len(rep.Objectives) != 2 || rep.Objectives[0].PassRate != 1 || rep.Objectives[1].PassRate != 0 || rep.Objectives[1].Flaky {
		t.Errorf("repeat.json = %+v", rep)
	}
	for _, d := range rep.Dirs {
		if _, err := os.Stat(filepath.Join(d, "junit.xml")); err != nil {
			t.Errorf("run %s wrote no junit.xml: %v", d, err)
		}
	}
}

func TestReportJUnit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	f := write(t, "1s", `"error_rate < 0.1%"`, "")
	if code, out, stderr := runCLI(context.Background(), "run", "--progress", "off", "--out", dir, f); code != ExitFail {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	b, err := os.ReadFile(filepath.Join(dir, "junit.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `<failure message="measured `) || !strings.Contains(string(b), `(bound &lt; 0.10%)`) {
		t.Errorf("junit.xml:\n%s", b)
	}
	again := filepath.Join(t.TempDir(), "again.xml")
	if code, _, stderr := runCLI(context.Background(), "report", "--junit", again, dir); code != ExitFail {
		t.Fatalf("report exit %d: %s", code, stderr)
	}
	b2, err := os.ReadFile(again)
	if err != nil || string(b2) != string(b) {
		t.Errorf("report --junit differs from the run's junit.xml:\n%s\n---\n%s", b2, b)
	}
}

func TestStabilityCallsFlaky(t *testing.T) {
	res := func(name string, pass bool, m string) results.ObjectiveResult {
		return results.ObjectiveResult{Name: name, Pass: pass, Measured: m}
	}
	st, pass := stability([][]results.ObjectiveResult{
		{res("p99 < 1s", true, "10ms"), res("opens within 1s", true, "800ms"), res("errors == 0", false, "3")},
		{res("p99 < 1s", true, "12ms"), res("opens within 1s", false, "1.2s"), res("errors == 0", false, "5")},
		{res("p99 < 1s", true, "11ms"), res("opens within 1s", true, "900ms"), res("errors == 0", false, "4")},
	})
	if pass || len(st) != 3 {
		t.Fatalf("pass %v, %d objectives", pass, len(st))
	}
	want := []struct {
		passed int
		flaky  bool
	}{{3, false}, {2, true}, {0, false}}
	for i, w := range want {
		if st[i].Passed != w.passed || st[i].Flaky != w.flaky || st[i].Runs != 3 {
			t.Errorf("%s: %+v, want passed %d flaky %v", st[i].Name, st[i], w.passed, w.flaky)
		}
	}
	if st[1].PassRate < 0.66 || st[1].PassRate > 0.67 || strings.Join(st[1].Measured, ",") != "800ms,1.2s,900ms" {
		t.Errorf("flaky one: %+v", st[1])
	}
	if _, pass := stability([][]results.ObjectiveResult{{res("a", true, "")}, {res("a", true, "")}}); !pass {
		t.Error("always passing: not a pass")
	}
}

// An interrupted ladder says so: the rung cut short is neither a pass nor a
// fail, and the rungs never run are not counted as judged.
func TestPrintLadderInterrupted(t *testing.T) {
	rung := func(name string, pass, interrupted bool) run.RungResult {
		return run.RungResult{Rung: run.Rung{Name: name, Expect: name}, Summary: &results.Summary{}, Pass: pass, Interrupted: interrupted}
	}
	var b strings.Builder
	printLadder(&b, []run.RungResult{rung("db", true, false), rung("upstream", true, false), rung("per_try", false, true)}, 6, true)
	out := b.String()
	for _, want := range []string{"INTERRUPTED", "interrupted after 2 of 6 rungs; 2 of them answered by the layer expected"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "FAIL") {
		t.Errorf("an interrupted rung printed as FAIL:\n%s", out)
	}
}

// A repeat stopped by Ctrl-C keeps the tally of the runs that finished,
// as a single run keeps what it measured: it printed "interrupted" and
// nothing else, and wrote no repeat.json, so the runs it had made were
// tallied nowhere. The run cut short is listed, not tallied.
func TestRepeatInterrupted(t *testing.T) {
	src := `name: repeat-stop
upstreams: [{name: api, latency: 1ms}]
gateway:
  routes: [{path: /, upstream: api}]
load:
  client_timeout: 1s
  stages: [{duration: 1s, rate: 20/s}]
  requests: [{path: /}]
slo:
  - p99 < 1s
`
	f := writeFile(t, "r.yaml", src)
	dir := filepath.Join(t.TempDir(), "rep")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Stop in the second run: the first takes a second of load.
	go cancelOnceMade(ctx, cancel, filepath.Join(dir, "02-seed2"), 300*time.Millisecond)
	code, out, stderr := runCLI(ctx, "run", "--repeat", "3", "--out", dir, f)
	if code != ExitInterrupted {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{"run 1 seed 1: PASS", "run 2 seed 2: INTERRUPTED", "PASS  p99 < 1s   1/1", "Verdict: INTERRUPTED after 1 of 3 runs"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	rep := readRepeatReport(t, dir)
	// Its one finished run passed, yet the repeat is not a pass: a CI
	// step that reads "pass" alone saw a repeat cut short as green.
	if !rep.Interrupted || rep.Pass || rep.Planned != 3 || len(rep.Seeds) != 1 || len(rep.Objectives) != 1 || rep.Objectives[0].Runs != 1 {
		t.Errorf("repeat.json = %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(dir, "03-seed3")); err == nil {
		t.Error("a third run started after the stop")
	}
}

// A ladder stopped by Ctrl-C says where its partial results are, as a run
// does, and the rung cut short shows its requests cut short: it printed
// "nothing (ok 0)" for a rung whose 10 requests were all in flight.
func TestLadderInterrupted(t *testing.T) {
	f := writeFile(t, "good.yaml", strings.NewReplacer("RH", "250ms", "CLIENT", "800ms").Replace(ladderScenario))
	dir := filepath.Join(t.TempDir(), "l")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// In the client rung, whose requests wait 880ms.
	go cancelOnceMade(ctx, cancel, filepath.Join(dir, "client"), 500*time.Millisecond)
	code, out, stderr := runCLI(ctx, "ladder", "--duration", "1s", "--out", dir, f)
	if code != ExitInterrupted || !strings.Contains(stderr, "cascade: interrupted; partial results in "+dir) {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	if !regexp.MustCompile(`client .*nothing \(ok 0, \d+ cut short by the stop\) .*INTERRUPTED`).MatchString(out) {
		t.Errorf("the rung cut short:\n%s", out)
	}
}

// cancelOnceMade calls cancel after when path exists: a stop signal in the
// middle of the run (or rung) that makes that directory.
func cancelOnceMade(ctx context.Context, cancel context.CancelFunc, path string, after time.Duration) {
	for {
		if _, err := os.Stat(path); err == nil {
			time.Sleep(after)
			cancel()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// readRepeatReport reads the repeat.json a run --repeat wrote into dir.
func readRepeatReport(t *testing.T, dir string) RepeatReport {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, RepeatFile))
	if err != nil {
		t.Fatal(err)
	}
	var rep RepeatReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// A rung the ladder could not run is a row of its own, with why under the
// table, and counts neither as answered nor as failed.
func TestPrintLadderListsSkippedRungs(t *testing.T) {
	pass := &results.Summary{}
	res := []run.RungResult{
		{Rung: run.Rung{Name: "gateway", Expect: "gateway", Timeout: 2 * time.Second, Delay: 2200 * time.Millisecond}, Summary: pass, Pass: true},
		{Rung: run.Rung{Name: "client", Expect: "client", Timeout: 3 * time.Second, Skip: "the gateway timeout cannot be lifted out of its way: own.conf does not use {{timeout}}, so the proxy keeps its own"}, Skipped: true},
		{Rung: run.Rung{Name: "cascade", Expect: "gateway", Timeout: 2 * time.Second, Delay: 3300 * time.Millisecond}, Summary: pass, Pass: true},
	}
	var b strings.Builder
	printLadder(&b, res, len(res)-1, false)
	out := b.String()
	for _, want := range []string{
		"client   -       client at 3.000s",
		"SKIPPED",
		"  client: not run: the gateway timeout cannot be lifted out of its way: own.conf does not use {{timeout}}",
		"Ladder: 2/2 rungs answered by the layer expected; 1 skipped\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ladder output lacks %q:\n%s", want, out)
		}
	}
	// Interrupted in the first rung: of the two that can run, not three.
	b.Reset()
	printLadder(&b, []run.RungResult{{Rung: res[0].Rung, Summary: pass, Interrupted: true}}, 2, true)
	if want := "Ladder: interrupted after 0 of 2 rungs"; !strings.Contains(b.String(), want) {
		t.Errorf("ladder output lacks %q:\n%s", want, b.String())
	}
}

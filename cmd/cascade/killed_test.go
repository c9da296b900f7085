package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/results"
)

// A run killed outright (SIGKILL: the OOM killer, CI's hard timeout) writes
// no summary; `cascade report` rebuilds a partial one from what the run
// streamed, says so first, and exits 3 as for a run stopped by an error.
// cascade load keeps its default 30 s client timeout: the run writes an
// interval as soon as every request of it has answered, so a kill 4 s in
// still leaves intervals (it held each one 31 s, and left none).
func TestReportOfAKilledRun(t *testing.T) {
	bin := buildCascade(t)
	const latency = 20 * time.Millisecond
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(latency)
		_, _ = w.Write([]byte("ok"))
	}))
	defer upstream.Close()
	dir := filepath.Join(t.TempDir(), "run")
	load := exec.Command(bin, "load", "--duration", "8s", "--rate", "50/s", "--progress", "off", "--out", dir,
		"--threshold", "p99 < 2s", "--threshold", "lag_p99 < 50ms", upstream.URL+"/x")
	var loadErr bytes.Buffer
	load.Stderr = &loadErr
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = load.Wait(); close(exited) }()
	defer func() {
		_ = load.Process.Kill() // a no-op once it was killed below
		<-exited
	}()
	intervals := filepath.Join(dir, results.IntervalsFile)
	lines := func() int {
		b, _ := os.ReadFile(intervals)
		return bytes.Count(b, []byte("\n"))
	}
	for deadline := time.Now().Add(20 * time.Second); lines() < 3; time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("cascade load ended before it was killed:\n%s", loadErr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("cascade load wrote %d intervals in 20 s; want 3 (an interval waits for its requests, not the 30 s client timeout)\n%s", lines(), loadErr.String())
		}
	}
	select {
	case <-exited:
		t.Fatalf("cascade load ended before it was killed: it wrote its intervals only at its end\n%s", loadErr.String())
	default:
	}
	// Still going, its directory looks the same: report says so, and
	// rebuilds nothing.
	live := exec.Command(bin, "report", dir)
	var liveOut bytes.Buffer
	live.Stdout, live.Stderr = &liveOut, &liveOut
	_ = live.Run()
	if code := live.ProcessState.ExitCode(); code != ExitUsage || !strings.Contains(liveOut.String(), fmt.Sprintf("the run is still going (process %d)", load.Process.Pid)) {
		t.Errorf("report of the run while it runs: exit %d, want %d naming the process\n%s", code, ExitUsage, liveOut.String())
	}
	if err := load.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited

	if _, err := os.Stat(filepath.Join(dir, results.SummaryFile)); err == nil {
		t.Fatal("the killed run wrote a summary")
	}
	// What the report must agree with: the whole lines of intervals.jsonl.
	_, recs, _, _, err := results.LoadPartialRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	var sent int64
	var through float64
	for _, r := range recs {
		sent += r.Stats.Sent
		through = float64(r.Start + r.Width)
	}
	if len(recs) < 3 || sent < 100 {
		t.Fatalf("%d intervals, %d requests sent", len(recs), sent)
	}

	junit := filepath.Join(t.TempDir(), "junit.xml")
	csv := filepath.Join(t.TempDir(), "series.csv")
	report := func(args ...string) (int, string, string) {
		t.Helper()
		cmd := exec.Command(bin, append(append([]string{"report"}, args...), dir)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if _, ok := err.(*exec.ExitError); err != nil && !ok {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
	}
	code, out, stderr := report("--html", "--junit", junit, "--csv", csv)
	if code != ExitRunFailed {
		t.Fatalf("report of a killed run: exit %d, want %d\n%s\n%s", code, ExitRunFailed, out, stderr)
	}
	for _, want := range []string{
		fmt.Sprintf("(KILLED: PARTIAL results, rebuilt up to %.1fs of 8.0s)", through),
		"PARTIAL: the run was killed before it wrote its summary",
		fmt.Sprintf("from the records it streamed up to %.1fs of the planned 8.0s (intervals.jsonl, events.jsonl, latency.hlog (as a check))", through),
		"an interval counts in the phase that holds its start",
		"absent, as kept only in the summary the run did not write: the scheduling lag",
		fmt.Sprintf("Load      %d requests sent of %d scheduled", sent, sent),
		"PASS        p99 < 2s",
		"NOT JUDGED  lag_p99 < 50ms",
		"Verdict: ERROR (the run was killed before it wrote its summary",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
	// The latencies are the upstream's: 20 ms and a little more, on a
	// loopback (and a busy machine).
	m := regexp.MustCompile(`Latency   p50 ([0-9.]+)ms  p90 [0-9.]+ms  p99 ([0-9.]+)ms`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no latency line:\n%s", out)
	}
	p50, _ := strconv.ParseFloat(m[1], 64)
	p99, _ := strconv.ParseFloat(m[2], 64)
	if p50 < 20 || p50 > 60 || p99 < p50 || p99 > 500 {
		t.Errorf("p50 %vms, p99 %vms for an upstream answering in 20 ms", p50, p99)
	}

	// The other outputs: never green.
	j, _ := os.ReadFile(junit)
	if !strings.Contains(string(j), `name="run completed"`) || !strings.Contains(string(j), `type="not_judged"`) || !strings.Contains(string(j), `value="error"`) {
		t.Errorf("junit:\n%s", j)
	}
	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	if !bytes.Contains(html, []byte("PARTIAL: the run was killed")) || !bytes.Contains(html, []byte(`class="verdict v-error"`)) {
		t.Error("the HTML report does not say the run was killed, or is not marked error")
	}
	if c, _ := os.ReadFile(csv); bytes.Count(c, []byte("\n")) != len(recs)+1 {
		t.Errorf("CSV: %d lines for %d intervals", bytes.Count(c, []byte("\n")), len(recs))
	}

	// The directory stays the evidence: reported again, it is still a
	// killed run.
	if _, err := os.Stat(filepath.Join(dir, results.SummaryFile)); err == nil {
		t.Fatal("report wrote summary.json into the killed run's directory")
	}
	code, again, _ := report()
	if code != ExitRunFailed || again != out {
		t.Errorf("reported again: exit %d\n%s", code, again)
	}
}

const mixedScenario = `name: mixed-kill
seed: 5
upstreams:
  - {name: api, latency: 20ms}
gateway:
  routes:
    - {path: /, upstream: api, timeouts: {connect: 200ms, response_header: 1s, total: 2s}}
load:
  - {name: open, rate: 50/s, duration: DURATION, client_timeout: 30s, requests: [{path: /o}]}
  - {name: vus, vus: 2, duration: DURATION, think: 30ms, client_timeout: 30s, requests: [{path: /v}]}
`

// A run that mixes an open-model executor and VUs, killed outright 3 s or
// so in, keeps its intervals: each is written once the arrival-rate
// executor recorded every request its schedule intends in it and every
// VU's latest send is past it. It held each one a whole client timeout
// (31 s here), and a kill that soon kept none. Run to its end, the same
// load writes each interval once and they add up to the summary: none was
// written while a request could still land in it.
func TestKilledMixedRunKeepsIntervals(t *testing.T) {
	bin := buildCascade(t)
	scen := func(dur string) string {
		p := filepath.Join(t.TempDir(), "mixed.yaml")
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(mixedScenario, "DURATION", dur)), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	starts := func(recs []results.IntervalRecord) (sent int64) {
		t.Helper()
		seen := map[results.Seconds]bool{}
		for _, r := range recs {
			if seen[r.Start] {
				t.Errorf("the interval at %v was written twice: a request landed in it after it was written", r.Start)
			}
			seen[r.Start] = true
			sent += r.Stats.Sent
		}
		return sent
	}

	dir := filepath.Join(t.TempDir(), "killed")
	// Ready within 20 s: an interval waits for its requests, not the
	// 30 s client timeout.
	killWhen(t, bin, []string{"run", "--progress", "off", "--out", dir, scen("20s")},
		func() bool { return intervalLines(dir) >= 3 })
	if _, err := os.Stat(filepath.Join(dir, results.SummaryFile)); err == nil {
		t.Fatal("the killed run wrote a summary")
	}
	_, recs, _, _, err := results.LoadPartialRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	// 50/s from the open executor and two VUs at ~50 ms a cycle (~40/s).
	if sent := starts(recs); len(recs) < 3 || sent < 3*60 {
		t.Fatalf("%d intervals, %d requests sent", len(recs), sent)
	}

	full := filepath.Join(t.TempDir(), "full")
	out, err := exec.Command(bin, "run", "--progress", "off", "--out", full, scen("4s")).CombinedOutput()
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatal(err)
	}
	r, err := results.Load(full)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if sent := starts(r.Intervals); sent != r.Summary.Run.Stats.Sent || len(r.Intervals) < 4 {
		t.Errorf("%d intervals sent %d requests, the summary %d", len(r.Intervals), sent, r.Summary.Run.Stats.Sent)
	}
}

// killWhen starts cascade with args, SIGKILLs it once ready says so, and
// returns what it printed.
func killWhen(t *testing.T, bin string, args []string, ready func() bool) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Kill() // a no-op once it was killed below
		<-exited
	}()
	for deadline := time.Now().Add(20 * time.Second); !ready(); time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("cascade %s ended before it was killed:\n%s", args[0], out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("cascade %s: not ready to be killed after 20 s\n%s", args[0], out.String())
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	return out.String()
}

// reportKilled reports a killed run's directory: what its whole intervals
// hold, and the report, which must exit 3.
func reportKilled(t *testing.T, bin, dir string) (sent int64, through float64, rep string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, results.SummaryFile)); err == nil {
		t.Fatal("the killed run wrote a summary")
	}
	_, recs, _, _, err := results.LoadPartialRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		sent += r.Stats.Sent
		through = float64(r.Start + r.Width)
	}
	cmd := exec.Command(bin, "report", dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != ExitRunFailed {
		t.Fatalf("report of a killed run: exit %d, want %d\n%s\n%s", code, ExitRunFailed, stdout.String(), stderr.String())
	}
	return sent, through, stdout.String()
}

func intervalLines(dir string) int {
	b, _ := os.ReadFile(filepath.Join(dir, results.IntervalsFile))
	return bytes.Count(b, []byte("\n"))
}

// A ladder's rung, or a game day, killed outright is rebuilt on the plan
// it ran, not on its scenario as written: a rung's (named by its
// load.start event: the rung, its rate and duration), a game day's (its
// gates' holds, from its events); the report does not warn that phases
// and objectives are the scenario's as written.
func TestReportOfAKilledRungOrGameDay(t *testing.T) {
	bin := buildCascade(t)
	t.Run("ladder rung", func(t *testing.T) {
		scenario := writeFile(t, "ladder.yaml", strings.NewReplacer("RH", "250ms", "CLIENT", "800ms").Replace(ladderScenario))
		out := filepath.Join(t.TempDir(), "ladder")
		dir := filepath.Join(out, "gateway") // the first rung: the innermost layer
		// The scenario's load is 1 s at 10/s; the rungs' 6 s at 20/s.
		// Killed past the scenario's 1 s: intervals its plan leaves out.
		killWhen(t, bin, []string{"ladder", "--rate", "20", "--duration", "6s", "--out", out, scenario},
			func() bool { return intervalLines(dir) >= 3 })
		sent, through, rep := reportKilled(t, bin, dir)
		if through < 2 {
			t.Fatalf("records through %.1fs; want past the scenario's 1 s", through)
		}
		for _, want := range []string{
			fmt.Sprintf("cascade: ladder-ladder-gateway  (KILLED: PARTIAL results, rebuilt up to %.1fs of 6.0s)", through),
			fmt.Sprintf("Load      %d requests sent", sent),
			"timeouts answered by gateway  measured n/a",
		} {
			if !strings.Contains(rep, want) {
				t.Errorf("the report lacks %q:\n%s", want, rep)
			}
		}
		if strings.Contains(rep, "a ladder rung") || strings.Contains(rep, "the scenario's as written") {
			t.Errorf("the report still doubts the plan it rebuilt on:\n%s", rep)
		}
	})
	t.Run("game day", func(t *testing.T) {
		scenario := writeFile(t, "gd.yaml", strings.Replace(gatedScenario, "client_timeout: 2s", "client_timeout: 300ms", 1))
		dir := filepath.Join(t.TempDir(), "gd")
		// Killed with its gate closed since 1 s, for over a second.
		killWhen(t, bin, []string{"gameday", "--progress", "off", "--out", dir, scenario}, func() bool {
			b, _ := os.ReadFile(filepath.Join(dir, results.EventsFile))
			return bytes.Contains(b, []byte(`"gate.close"`)) && intervalLines(dir) >= 3
		})
		_, through, rep := reportKilled(t, bin, dir)
		for _, want := range []string{
			// The scenario's 3 s and the gate held until the records end.
			fmt.Sprintf("(KILLED: PARTIAL results, rebuilt up to %.1fs of %.1fs)", through, 3+through-1),
			fmt.Sprintf("ready  1.0s–%.1fs", through), // from where the gate closed
			fmt.Sprintf("up to %.0fs of the planned %.0fs", through, 3+through-1),
		} {
			if !strings.Contains(rep, want) {
				t.Errorf("the report lacks %q:\n%s", want, rep)
			}
		}
		if strings.Contains(rep, "the scenario's as written") {
			t.Errorf("the report doubts the plan it rebuilt on:\n%s", rep)
		}
	})
}

const unrecordedScenario = `name: unrecorded-kill
seed: 5
upstreams:
  - {name: api, latency: 5ms}
gateway:
  routes:
    - {path: /, upstream: api, timeouts: {connect: 200ms, response_header: 1s, total: 2s}}
load:
  client_timeout: 3s
  stages: [{duration: 30s, rate: 50/s}]
  requests: [{path: /x}]
faults:
  - {name: slow, kind: latency, target: api, start: 20s, duration: 5s, params: {delay: 10ms}}
phases: [{name: sliver, start: 200ms, end: 800ms}]
slo:
  - p99 < 2s
  - {phase: sliver, objective: "p99 < 2s"}
  - {phase: slow, objective: "p50 < 1s"}
  - {phase: after, objective: "errors == 0"}
`

// A killed run's objectives on a phase its records hold nothing of (one
// past where they end, or one no interval starts in) are NOT JUDGED, with
// why: they read FAIL, "no requests were sent in phase after (planned
// [25.0s, 30.0s); the run stopped before it began)", of phases the run
// went on into past its records, while the phase table said "not
// recorded".
func TestKilledRunDoesNotJudgeWhatItDidNotRecord(t *testing.T) {
	bin := buildCascade(t)
	scen := filepath.Join(t.TempDir(), "unrecorded.yaml")
	if err := os.WriteFile(scen, []byte(unrecordedScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "killed")
	killWhen(t, bin, []string{"run", "--progress", "off", "--out", dir, scen},
		func() bool { return intervalLines(dir) >= 2 })
	_, through, rep := reportKilled(t, bin, dir)
	if through >= 20 {
		t.Fatalf("the records reach %.1fs, past the fault's start", through)
	}
	rep = strings.Join(strings.Fields(rep), " ")
	for _, want := range []string{
		"PASS p99 < 2s ",
		"NOT JUDGED sliver: p99 < 2s measured n/a (bound < 2.000s) not judged: no interval of the records starts in phase sliver [0.200s, 0.800s) (an interval counts in the phase that holds its start)",
		fmt.Sprintf("NOT JUDGED slow: p50 < 1s measured n/a (bound < 1.000s) not judged: phase slow [20.0s, 25.0s) is not recorded: the records end at %.1fs", through),
		fmt.Sprintf("NOT JUDGED after: errors == 0 measured n/a (bound == 0) not judged: phase after [25.0s, 30.0s) is not recorded: the records end at %.1fs", through),
		"3 not judged",
	} {
		if !strings.Contains(rep, want) {
			t.Errorf("the report does not say %q:\n%s", want, rep)
		}
	}
	if strings.Contains(rep, "the run stopped before it began") {
		t.Errorf("the report says the run stopped before a phase it ran past its records:\n%s", rep)
	}
}

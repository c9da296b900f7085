package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// target is a loopback server that records the requests it answers.
type target struct {
	url   string
	mu    sync.Mutex
	paths []string
	conc  int
	peak  int
}

func newTarget(t *testing.T, delay time.Duration) *target {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := &target{url: "http://" + ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.mu.Lock()
		tg.paths = append(tg.paths, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("X-Test"))
		tg.conc++
		tg.peak = max(tg.peak, tg.conc)
		tg.mu.Unlock()
		time.Sleep(delay)
		tg.mu.Lock()
		tg.conc--
		tg.mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return tg
}

var benchRE = regexp.MustCompile(`(?m)^BENCH_RESULT rps=([0-9.]+) p50_ms=([0-9.]+) p90_ms=([0-9.]+) p99_ms=([0-9.]+) p999_ms=([0-9.]+) min_ms=([0-9.]+) max_ms=([0-9.]+) errors=(\d+)$`)

func TestLoadOpenModel(t *testing.T) {
	tg := newTarget(t, 0)
	dir := filepath.Join(t.TempDir(), "run")
	code, out, errs := runCLI(context.Background(), "load", tg.url+"/items/{{seq}}?x=1", "--rate", "100/s", "--duration", "1s",
		"--method", "post", "-H", "X-Test: yes", "--body", `{"n": {{seq}}}`,
		"--threshold", "p99<1s", "--threshold", "error_rate<1%", "--bench-result", "--out", dir, "--progress", "off")
	if code != ExitPass {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	m := benchRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no BENCH_RESULT line in:\n%s", out)
	}
	if rps, _ := strconv.ParseFloat(m[1], 64); rps != 100 || m[8] != "0" {
		t.Fatalf("BENCH_RESULT %s", m[0])
	}
	if !strings.Contains(out, "PASS  p99<1s") || !strings.Contains(out, "Verdict: PASS (2/2") {
		t.Fatalf("summary:\n%s", out)
	}
	tg.mu.Lock()
	if len(tg.paths) != 100 || tg.paths[7] != "POST /items/7?x=1 yes" {
		t.Fatalf("target saw %d requests, e.g. %q", len(tg.paths), tg.paths[min(7, len(tg.paths)-1)])
	}
	tg.mu.Unlock()
	for _, f := range []string{"summary.json", "intervals.jsonl", "latency.hlog", "scenario.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("run directory lacks %s", f)
		}
	}
	// The run re-judges offline like any scenario run.
	if code, out, _ := runCLI(context.Background(), "report", dir); code != ExitPass || !strings.Contains(out, "Verdict: PASS") {
		t.Fatalf("report: exit %d\n%s", code, out)
	}
}

// A profile that holds less than one request still sends its first, at 0
// (as the pacer schedules it): 10/s for 100ms is one request, not an error.
func TestLoadOfOneRequest(t *testing.T) {
	tg := newTarget(t, 0)
	code, out, errs := runCLI(context.Background(), "load", tg.url+"/", "--rate", "10/s", "--duration", "100ms",
		"--out", filepath.Join(t.TempDir(), "run"), "--progress", "off")
	if code != ExitPass || !strings.Contains(out, "1 requests sent of 1 scheduled") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
}

// A repeated -H is sent, as curl sends it, not dropped for the last: one
// line of its values (the same message in HTTP), whatever the names' case.
func TestLoadRepeatedHeader(t *testing.T) {
	tg := newTarget(t, 0)
	code, out, errs := runCLI(context.Background(), "load", tg.url+"/", "--rate", "10/s", "--duration", "100ms",
		"-H", "X-Test: 1", "-H", "x-test: 2", "--out", filepath.Join(t.TempDir(), "run"), "--progress", "off")
	if code != ExitPass {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if len(tg.paths) != 1 || tg.paths[0] != "GET / 1, 2" {
		t.Fatalf("target saw %q", tg.paths)
	}
}

func TestLoadThresholdFails(t *testing.T) {
	tg := newTarget(t, 20*time.Millisecond)
	code, out, _ := runCLI(context.Background(), "load", tg.url, "--rate", "50/s", "--duration", "500ms",
		"--threshold", "p50<5ms", "--out", filepath.Join(t.TempDir(), "r"), "--progress", "off")
	if code != ExitFail || !strings.Contains(out, "FAIL  p50<5ms") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

// --abort-threshold is a threshold that stops the run as soon as it can no
// longer pass (k6's abortOnFail): every answer fails its expected status,
// so a 10 s run stops within a couple of seconds, exit 1, marked ABORTED,
// and the plain --threshold beside it is judged as usual.
func TestLoadAbortThreshold(t *testing.T) {
	tg := newTarget(t, 0)
	dir := filepath.Join(t.TempDir(), "r")
	start := time.Now()
	code, out, errOut := runCLI(context.Background(), "load", tg.url, "--rate", "50/s", "--duration", "10s", "--expect-status", "201",
		"--abort-threshold", "error_rate<5%", "--threshold", "p99<1s", "--out", dir, "--progress", "off")
	took := time.Since(start)
	if code != ExitFail || !strings.Contains(out, "ABORTED") || !strings.Contains(out, "PASS  p99<1s") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if took > 5*time.Second {
		t.Errorf("the run took %v: the abort threshold did not stop it", took)
	}
	r, err := results.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Summary.Aborted == "" {
		t.Errorf("summary.json has no aborted reason")
	}
}

// --expect-status and --expect-body decide which answers succeed, as k6's
// expectedStatuses and checks: the target's 200 with an empty body fails
// both, and error_rate sees it.
func TestLoadExpect(t *testing.T) {
	tg := newTarget(t, 0)
	for _, tc := range []struct {
		flags []string
		code  int
		says  string
	}{
		{[]string{"--expect-status", "2xx"}, ExitPass, "Outcomes  ok 5 (100.0%)"},
		{[]string{"--expect-status", "201,404"}, ExitFail, "status 200, expected 201 or 404"},
		{[]string{"--expect-body", "items"}, ExitFail, `status 200, body without "items" (in its first 0 bytes)`},
	} {
		args := append([]string{"load", tg.url, "--rate", "50/s", "--duration", "100ms", "--threshold", "error_rate == 0%",
			"--out", filepath.Join(t.TempDir(), "r"), "--progress", "off"}, tc.flags...)
		code, out, errs := runCLI(context.Background(), args...)
		if code != tc.code || !strings.Contains(out+errs, tc.says) {
			t.Errorf("%v: exit %d, want %d and %q\n%s%s", tc.flags, code, tc.code, tc.says, out, errs)
		}
		if tc.code == ExitFail && !strings.Contains(out, "unexpected_response[unknown] 5 (100.0%)") {
			t.Errorf("%v: outcomes not counted\n%s", tc.flags, out)
		}
	}
	if code, _, errs := runCLI(context.Background(), "load", tg.url, "--rate", "50/s", "--duration", "100ms", "--expect-status", "20x"); code != ExitUsage || !strings.Contains(errs, "--expect-status") {
		t.Errorf("a bad status: exit %d %s", code, errs)
	}
}

// A bound below 0.1 ms is printed in microseconds: in hundredths of a
// millisecond, p99<1us read "< 0.00ms".
func TestLoadMicrosecondBound(t *testing.T) {
	tg := newTarget(t, 2*time.Millisecond)
	code, out, _ := runCLI(context.Background(), "load", tg.url, "--rate", "50/s", "--duration", "300ms",
		"--threshold", "p99<1us", "--threshold", "lag_p99<50us", "--out", filepath.Join(t.TempDir(), "r"), "--progress", "off")
	if code != ExitFail || !strings.Contains(out, "(bound < 1.0µs)") || !strings.Contains(out, "(bound < 50.0µs)") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

// --vus and --conns are closed models: the target never holds more
// requests than there are VUs.
// The closed models, on event loops (the default) and on goroutines.
func TestLoadClosedModels(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(procs) }) // cascade load raises it for its loops
	for _, engine := range []string{"loop", "goroutines"} {
		t.Run(engine, func(t *testing.T) { testLoadClosedModels(t, engine) })
	}
}

func testLoadClosedModels(t *testing.T, engine string) {
	tg := newTarget(t, 5*time.Millisecond)
	code, out, errs := runCLI(context.Background(), "load", tg.url, "--engine", engine, "--vus", "3", "--think", "5ms", "--duration", "500ms",
		"--bench-result", "--out", filepath.Join(t.TempDir(), "r"), "--progress", "off")
	if code != ExitPass || benchRE.FindString(out) == "" {
		t.Fatalf("--vus: exit %d\n%s\n%s", code, out, errs)
	}
	tg.mu.Lock()
	n, peak := len(tg.paths), tg.peak
	tg.paths, tg.peak = nil, 0
	tg.mu.Unlock()
	// 3 VUs × 500 ms / (5 ms + 5 ms) ≈ 150 at most (far fewer on a busy machine).
	if peak > 3 || n < 10 || n > 160 {
		t.Fatalf("--vus 3: %d requests, peak concurrency %d", n, peak)
	}
	code, out, _ = runCLI(context.Background(), "load", tg.url, "--engine", engine, "--conns", "4", "--duration", "500ms",
		"--bench-result", "--out", filepath.Join(t.TempDir(), "r2"), "--progress", "off")
	m := benchRE.FindStringSubmatch(out)
	if code != ExitPass || m == nil {
		t.Fatalf("--conns: exit %d\n%s", code, out)
	}
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if rps, _ := strconv.ParseFloat(m[1], 64); tg.peak > 4 || rps < 20 {
		t.Fatalf("--conns 4: %s req/s, peak concurrency %d", m[1], tg.peak)
	}
}

func TestLoadRamp(t *testing.T) {
	tg := newTarget(t, 0)
	dir := filepath.Join(t.TempDir(), "r")
	code, out, _ := runCLI(context.Background(), "load", tg.url, "--ramp", "0:200/s:500ms,200/s:200/s:500ms", "--out", dir, "--progress", "off")
	// 0→200/s over 0.5 s schedules 50, then 100 at 200/s.
	if code != ExitPass || !strings.Contains(out, "150 requests sent of 150 scheduled") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	// A first ramp from a rate other than 0 (k6's startRate): 100→300/s
	// over 0.5 s schedules 100.
	code, out, _ = runCLI(context.Background(), "load", tg.url, "--ramp", "100/s:300/s:500ms", "--out", dir+"2", "--progress", "off")
	if code != ExitPass || !strings.Contains(out, "100 requests sent of 100 scheduled") {
		t.Fatalf("--ramp 100/s:300/s:500ms: exit %d\n%s", code, out)
	}
}

// --vus N with a ramp of VUs starts the ramp at N (k6's startVUs); before,
// N was ignored and the ramp started from nothing.
func TestLoadVUsStartTheRamp(t *testing.T) {
	for _, tc := range []struct {
		ramp string
		want string
	}{
		{"8:1s", `"start_vus":4`},
		{"4:8:1s", `"start_vus":4`},
		{"4:1s", `"vus":4`}, // a hold at N
	} {
		f := loadFlags{ramp: tc.ramp, vus: 4, timeout: time.Second, keepAlive: true, method: "GET", maxInFlight: 10, name: "load"}
		src, err := f.scenario(nil, "http://127.0.0.1:8080/")
		if err != nil {
			t.Fatalf("--vus 4 --ramp %s: %v", tc.ramp, err)
		}
		if !strings.Contains(strings.ReplaceAll(string(src), " ", ""), tc.want) {
			t.Errorf("--vus 4 --ramp %s: scenario lacks %s:\n%s", tc.ramp, tc.want, src)
		}
		if _, err := plan.CompileBytes("cascade-load.yaml", src, plan.Options{}); err != nil {
			t.Errorf("--vus 4 --ramp %s: %v", tc.ramp, err)
		}
	}
}

// --vus 0 with a ramp of VUs ramps up from none (k6's startVUs: 0), the
// only way to start a VU ramp at 0: the --ramp is VU counts because --vus
// was given. Before, --vus 0 counted as not given, and the ramp's counts
// were read as rates: a ramp to 4 VUs ran an open model at 4 requests/s.
func TestLoadVUsZeroStartsTheRamp(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(procs) }) // cascade load raises it for its loops
	tg := newTarget(t, 2*time.Millisecond)
	dir := filepath.Join(t.TempDir(), "r")
	code, out, errs := runCLI(context.Background(), "load", tg.url, "--vus", "0", "--ramp", "0:4:300ms,4:300ms", "--out", dir, "--progress", "off")
	if code != ExitPass {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	src, err := os.ReadFile(filepath.Join(dir, "scenario.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if s := string(src); !strings.Contains(s, `"ramp_to_vus":4`) || !strings.Contains(s, `"vus":4`) {
		t.Fatalf("--vus 0 --ramp 0:4:300ms,4:300ms is not a ramp of VUs:\n%s", s)
	}
	tg.mu.Lock()
	defer tg.mu.Unlock()
	// 4/s would be 2 requests; VUs answered in ~2 ms send hundreds.
	if n := len(tg.paths); n < 20 || tg.peak > 4 {
		t.Fatalf("%d requests, peak concurrency %d; want a closed model of at most 4 VUs\n%s", n, tg.peak, out)
	}
}

// A short closed-model run is a run: 2 VUs for 300ms (0.6 VU-seconds) were
// refused as "the stages run no VUs".
func TestLoadShortVUs(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(procs) })
	tg := newTarget(t, 0)
	code, out, errs := runCLI(context.Background(), "load", tg.url, "--vus", "2", "--duration", "300ms",
		"--out", filepath.Join(t.TempDir(), "r"), "--progress", "off")
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if code != ExitPass || len(tg.paths) == 0 {
		t.Fatalf("--vus 2 --duration 300ms: exit %d, %d requests\n%s\n%s", code, len(tg.paths), out, errs)
	}
}

// Per-tag rates are over the load's window, as the run's and each
// executor's are: a tag that is all of one executor's requests has that
// executor's rate. They were over the run's elapsed time, which ends with
// the last answer: 20 requests at 20/s read 20.0/s for the executor and
// 21.0/s for its one tag.
func TestTagRatesOverTheLoadWindow(t *testing.T) {
	tg := newTarget(t, 0)
	dir := t.TempDir()
	src := fmt.Sprintf(`name: two
gateway: {external: %q}
load:
  - {name: a, rate: 20/s, duration: 1s, requests: [{name: ta, path: /a}]}
  - {name: b, rate: 10/s, duration: 1s, requests: [{name: tb, path: /b}]}
`, tg.url)
	file := writeFile(t, "two.yaml", src)
	out := filepath.Join(dir, "r")
	if code, stdout, errs := runCLI(context.Background(), "run", "--progress", "off", "--out", out, file); code != ExitPass {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, errs)
	}
	run, err := results.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	s := run.Summary
	if len(s.Executors) != 2 || len(s.Tags) != 2 {
		t.Fatalf("executors %+v, tags %+v", s.Executors, s.Tags)
	}
	for i, e := range s.Executors {
		tag := s.Tags[i]
		if tag.Stats.Sent != e.Stats.Sent || tag.Stats.AchievedRate != e.Stats.AchievedRate {
			t.Errorf("tag %s: %d sent at %.3f/s; its executor %s: %d at %.3f/s", tag.Name, tag.Stats.Sent, tag.Stats.AchievedRate,
				e.Name, e.Stats.Sent, e.Stats.AchievedRate)
		}
	}
}

// The live view's "sent" rate counts requests sent, not requests due: with
// the in-flight cap full, 400/s due against 10 in flight of 50 ms each is at
// most 200/s sent and the rest dropped, yet the line read "target 400/s ·
// sent 400/s · ... dropped 418".
func TestLoadLiveSentRateLeavesOutDropped(t *testing.T) {
	tg := newTarget(t, 50*time.Millisecond)
	_, _, errs := runCLI(context.Background(), "load", tg.url, "--rate", "400/s", "--duration", "2500ms", "--max-in-flight", "10",
		"--out", filepath.Join(t.TempDir(), "r"), "--progress", "plain")
	// The length is 2.5s, not "2s" (%.0f).
	m := regexp.MustCompile(`s/2\.5s\] target 400/s · sent (\d+)/s · in flight \d+ · errors \d+ · dropped (\d+)`).FindStringSubmatch(errs)
	if m == nil {
		t.Fatalf("no progress line:\n%s", errs)
	}
	if sent, _ := strconv.Atoi(m[1]); sent > 250 {
		t.Fatalf("live view says sent %d/s with %s dropped; 10 in flight of 50 ms send at most 200/s:\n%s", sent, m[2], errs)
	}
}

// --vus N with --conns M is N VUs over at most M connections: a cap above
// N caps nothing. It ran max(N, M) VUs, so --vus 2 --conns 5 was 5 VUs.
func TestLoadConnsDoNotAddVUs(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(procs) })
	tg := newTarget(t, 20*time.Millisecond)
	code, out, errs := runCLI(context.Background(), "load", tg.url, "--vus", "2", "--conns", "5", "--duration", "500ms",
		"--out", filepath.Join(t.TempDir(), "r"), "--progress", "off")
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if code != ExitPass || tg.peak != 2 {
		t.Fatalf("--vus 2 --conns 5: exit %d, peak concurrency %d, want 2\n%s\n%s", code, tg.peak, out, errs)
	}
}

// achieved_rate as a share of the target compares the open-model
// executors' sends with their target: a closed-model executor beside them
// has no target, and its requests counted as achieved. An open executor
// that dropped 80% of its 200/s passed "achieved_rate >= 99%" at 190% of
// target, thanks to 340 requests of 2 VUs.
func TestAchievedRateLeavesOutClosedExecutors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/a" {
			time.Sleep(20 * time.Millisecond)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	dir := t.TempDir()
	src := fmt.Sprintf(`name: mix
gateway: {external: %q}
load:
  - {name: open, rate: 200/s, duration: 1s, max_in_flight: 1, requests: [{name: a, path: /a}]}
  - {name: closed, vus: 2, duration: 1s, think: 2ms, requests: [{name: b, path: /b}]}
slo:
  - achieved_rate >= 99%%
`, "http://"+ln.Addr().String())
	file := writeFile(t, "mix.yaml", src)
	out := filepath.Join(dir, "r")
	code, stdout, errs := runCLI(context.Background(), "run", "--progress", "off", "--out", out, file)
	if code != ExitFail || !strings.Contains(stdout, "FAIL  achieved_rate >= 99%") {
		t.Fatalf("exit %d, want 1: the open executor sent at most 50 of its 200/s\n%s\n%s", code, stdout, errs)
	}
	// The offline verdict agrees.
	if code, stdout, _ := runCLI(context.Background(), "report", out); code != ExitFail {
		t.Fatalf("report: exit %d\n%s", code, stdout)
	}
}

// An executor the interrupt came before has a window that ends where it
// starts, and no rate or latencies: it read "later open 3.0s–0.7s ... 0.0
// 0.00ms" (an end before the start, 0 ms for requests never sent).
func TestInterruptBeforeAnExecutorStarts(t *testing.T) {
	tg := newTarget(t, 0)
	dir := t.TempDir()
	src := fmt.Sprintf(`name: late
gateway: {external: %q}
load:
  - {name: now, rate: 50/s, duration: 5s, requests: [{name: a, path: /a}]}
  - {name: later, start: 3s, rate: 50/s, duration: 2s, requests: [{name: b, path: /b}]}
`, tg.url)
	file := writeFile(t, "late.yaml", src)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(700*time.Millisecond, cancel)
	out := filepath.Join(dir, "r")
	code, stdout, errs := runCLI(ctx, "run", "--progress", "off", "--out", out, file)
	if code != ExitInterrupted {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, errs)
	}
	run, err := results.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if e := run.Summary.Executors[1]; e.End < e.Start || e.Stats.AchievedRate != 0 {
		t.Errorf("executor later: window %.1fs-%.1fs, achieved %.1f/s", float64(e.Start), float64(e.End), e.Stats.AchievedRate)
	}
	row := regexp.MustCompile(`(?m)^ +later .*$`).FindString(stdout)
	if !strings.Contains(row, "not started") || strings.Contains(row, "ms") {
		t.Errorf("executor row %q: want 'not started' and no latencies\n%s", row, stdout)
	}
}

// A run stopped within its first second keeps no rate (as a phase reached
// for a sliver), and its Load line says so: it read "31 requests sent of
// 55 scheduled in 659ms · achieved 0.0/s", a rate measured at zero.
func TestInterruptInTheFirstSecondPrintsNoRate(t *testing.T) {
	tg := newTarget(t, 0)
	out := filepath.Join(t.TempDir(), "r")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(600*time.Millisecond, cancel)
	code, stdout, errs := runCLI(ctx, "load", tg.url+"/", "--rate", "100/s", "--duration", "10s", "--progress", "off", "--out", out)
	if code != ExitInterrupted {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, errs)
	}
	run, err := results.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if st := run.Summary.Run.Stats; st.Sent == 0 || run.Summary.Run.End >= 1 {
		t.Fatalf("%d sent, stopped at %vs: want a stop within the first second, with requests sent", st.Sent, run.Summary.Run.End)
	}
	line := regexp.MustCompile(`(?m)^Load .*$`).FindString(stdout)
	if strings.Contains(line, "achieved 0.0/s") || !strings.Contains(line, "no rate (stopped within the first second)") {
		t.Errorf("Load line %q: want no rate, said so, not 0.0/s\n%s", line, stdout)
	}
	// The offline report prints the same.
	if _, again, _ := runCLI(context.Background(), "report", out); regexp.MustCompile(`(?m)^Load .*$`).FindString(again) != line {
		t.Errorf("cascade report's Load line differs:\n%s", again)
	}
}

// A phase whose share of an even schedule is fractional is judged against
// the arrivals it holds: at 10/s, [250ms, 500ms) holds 2 (the mean is 2.5),
// and "achieved_rate >= 99%" failed at 80% with every request sent on time.
func TestAchievedRateOfAPhaseCountsEvenArrivals(t *testing.T) {
	tg := newTarget(t, 0)
	dir := t.TempDir()
	src := fmt.Sprintf(`name: ph
gateway: {external: %q}
load: {rate: 10/s, duration: 1s, requests: [{path: /}]}
phases:
  - {name: q2, start: 250ms, end: 500ms}
slo:
  - {phase: q2, objective: "achieved_rate >= 99%%"}
`, tg.url)
	file := writeFile(t, "ph.yaml", src)
	code, stdout, errs := runCLI(context.Background(), "run", "--progress", "off", "--out", filepath.Join(dir, "r"), file)
	if code != ExitPass {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, errs)
	}
}

// A phase in which only closed-model executors sent has no target rate:
// "achieved_rate >= 90%" over it says so, and what to write instead, where
// it said "too short a window for a rate (the run stopped in it)" of a
// phase the run went through whole. Nor has it a scheduling lag, which
// its VUs' requests keep none of.
func TestAchievedRateOfAPhaseOfVUsOnly(t *testing.T) {
	tg := newTarget(t, 0)
	src := fmt.Sprintf(`name: vuphase
gateway: {external: %q}
load:
  - {name: open, rate: 50/s, duration: 1s, requests: [{path: /a}]}
  - {name: closed, start: 1s, vus: 2, duration: 1s, think: 5ms, requests: [{path: /b}]}
phases:
  - {name: vus, start: 1s, end: 2s}
slo:
  - {phase: vus, objective: "achieved_rate >= 90%%"}
  - {phase: vus, objective: "lag_p99 < 1ms"}
`, tg.url)
	file := writeFile(t, "vuphase.yaml", src)
	code, stdout, errs := runCLI(context.Background(), "run", "--progress", "off", "--out", filepath.Join(t.TempDir(), "r"), file)
	if code != ExitFail {
		t.Fatalf("exit %d, want 1: nothing to judge is no pass\n%s\n%s", code, stdout, errs)
	}
	row := regexp.MustCompile(`(?m)^ *FAIL .*achieved_rate.*$`).FindString(stdout)
	if strings.Contains(row, "too short a window") || !strings.Contains(row, "closed-model (VU) executors, which have no target rate") {
		t.Errorf("objective %q: want why there is no target\n%s", row, stdout)
	}
	lag := regexp.MustCompile(`(?m)^ *FAIL .*lag_p99.*$`).FindString(stdout)
	if !strings.Contains(lag, "no open-model request was sent") {
		t.Errorf("objective %q: want why there is no lag\n%s", lag, stdout)
	}
}

// --requests is hey's -n: exactly that many, and the run ends when they
// are done, however long --duration (or its 10-minute default) allows; the
// rate is over the time the run took.
func TestLoadRequestsCount(t *testing.T) {
	tg := newTarget(t, 0)
	for _, args := range [][]string{{"--vus", "3"}, {"--conns", "4", "--duration", "1h"}} {
		start := time.Now()
		code, out, _ := runCLI(context.Background(), append([]string{"load", tg.url, "--requests", "300", "--bench-result",
			"--out", filepath.Join(t.TempDir(), "r"), "--progress", "off"}, args...)...)
		m := benchRE.FindStringSubmatch(out)
		if code != ExitPass || m == nil || !strings.Contains(out, "300 requests sent of 300 scheduled") {
			t.Fatalf("%v: exit %d\n%s", args, code, out)
		}
		took := time.Since(start)
		if rps, _ := strconv.ParseFloat(m[1], 64); took > 30*time.Second || rps < 300/took.Seconds() {
			t.Fatalf("%v: %s req/s reported, 300 requests in %v", args, m[1], took)
		}
	}
}

func TestLoadUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s"}, "--duration"},
		{[]string{"http://127.0.0.1:1/", "--duration", "1s"}, "give a load"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--vus", "2", "--duration", "1s"}, "exclude each other"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--ramp", "10/s:1s"}, "exclude each other"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--duration", "1s", "--think", "1s"}, "closed model"},
		{[]string{"http://127.0.0.1:1/", "--rate", "ten", "--duration", "1s"}, "--rate"},
		{[]string{"http://127.0.0.1:1/", "--ramp", "10/s"}, "FROM:TO:DURATION"},
		{[]string{"http://127.0.0.1:1/", "--ramp", "10/s:1s,50/s:60/s:1s"}, "starts at 50"},
		{[]string{"http://127.0.0.1:1/", "--vus", "10", "--ramp", "0:50:1s"}, "--vus 10 and --ramp's first FROM 0 disagree"},
		{[]string{"http://127.0.0.1:1/", "--vus", "0", "--ramp", "5:50:1s"}, "--vus 0 and --ramp's first FROM 5 disagree"},
		{[]string{"http://127.0.0.1:1/", "--vus", "0", "--duration", "1s"}, "--vus 0 runs no virtual users"},
		{[]string{"http://127.0.0.1:1/", "--vus", "0", "--rate", "10/s", "--duration", "1s"}, "--rate and --vus exclude each other"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--duration", "1s", "--threshold", "p99<fast"}, "p99"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--duration", "1s", "-H", "nocolon"}, "Name: value"},
		{[]string{"ftp://127.0.0.1:1/", "--rate", "10/s", "--duration", "1s"}, "http://"},
		{[]string{"127.0.0.1:1/x", "--rate", "10/s", "--duration", "1s"}, "e.g. http://127.0.0.1:1/x"},
		{[]string{"--rate", "10/s", "--duration", "1s"}, "give the URL to load, or --targets FILE"},
		{[]string{"http://198.51.100.7/", "--rate", "10/s", "--duration", "1s"}, "--allow-remote"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--duration", "1s", "--protocol", "h2"}, "https://"},
		{[]string{"http://127.0.0.1:1/", "--conns", "2", "--duration", "1s", "--engine", "fast"}, "--engine must be loop or goroutines"},
		{[]string{"http://127.0.0.1:1/", "--vus", "2", "--duration", "1s", "--max-in-flight", "5"}, "--max-in-flight applies to the open model"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--duration", "1s", "--max-in-flight", "0"}, "--max-in-flight 0 would drop every request"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--duration", "1s", "--engine", "goroutines"}, "--engine applies to the closed model"},
		{[]string{"http://127.0.0.1:1/", "--ramp", "1/s:100000h"}, "the load lasts 100000h0m0s; the limit is 24h0m0s"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--duration", "1s", "--requests", "5"}, "--requests bounds the closed model"},
		{[]string{"http://127.0.0.1:1/", "--vus", "2", "--requests", "-5"}, "--requests must be positive"},
		{[]string{"http://127.0.0.1:1/", "--vus", "2", "--duration", "1s", "--requests", "0"}, "--requests 0 would send nothing"},
		// The scenario's field names meant nothing to someone who typed flags.
		{[]string{"http://127.0.0.1:1/", "--conns", "100000", "--duration", "1s"}, "--conns 100000: at most 50000"},
		{[]string{"http://127.0.0.1:1/", "--vus", "100000", "--duration", "1s"}, "--vus 100000: at most 50000"},
		{[]string{"http://127.0.0.1:1/", "--vus", "0", "--ramp", "0:100000:1s"}, `--ramp item 1 "0:100000:1s": 100000 VUs, at most 50000`},
		{[]string{"http://127.0.0.1:1/", "--conns", "3", "--requests", "200000000"}, "--requests 200000000: at most 100000000"},
		{[]string{"http://127.0.0.1:1/", "--rate", "5/s", "--duration", "2s", "--timeout", "1000h"}, "--timeout 1000h0m0s is above the 1h0m0s limit"},
		{[]string{"http://127.0.0.1:1/", "--rate", "5/s", "--duration", "1s", "--threshold", "amplification<=1.5"}, "measured at cascade's fake upstreams"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--duration", "1s", "--threshold", "errors < NaN"}, "errors is a count"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--duration", "1s", "-H", "Connection: close"}, "--keep-alive=false"},
		{[]string{"http://127.0.0.1:1/%zz", "--rate", "10/s", "--duration", "1s"}, `invalid URL escape "%zz"`},
		{[]string{"http://u:pw@127.0.0.1:1/", "--rate", "10/s", "--duration", "1s"}, "credentials in the URL are not sent"},
		{[]string{"http://127.0.0.1:1/", "--method", "POST", "--body", "@/dev/zero", "--rate", "10/s", "--duration", "1s"}, "--body: /dev/zero is not a regular file"},
		{[]string{"http://127.0.0.1:1/", "--method", "POST", "--body", "@/nonexistent/order.json", "--rate", "10/s", "--duration", "1s"}, "--body: "},
		// A closed model has no target: judged, this failed on "too short
		// a window for a rate (the run stopped in it)" after a whole run.
		{[]string{"http://127.0.0.1:1/", "--vus", "2", "--duration", "1s", "--threshold", "achieved_rate>=99%"}, "a share of the target rate, and this load has none"},
		// Nor a scheduling lag: this passed at 1 µs whatever the generator did.
		{[]string{"http://127.0.0.1:1/", "--conns", "2", "--duration", "1s", "--threshold", "lag_p99<1ms"}, "lag is 0 by construction"},
		// An empty one listed the keys of a scenario's slo: entry.
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--duration", "1s", "--threshold", ""}, "not an empty string"},
		{[]string{"http://127.0.0.1:1/", "--rate", "10/s", "--duration", "1s", "--abort-threshold", " "}, "not an empty string"},
	} {
		code, _, errs := runCLI(context.Background(), append([]string{"load"}, tc.args...)...)
		// The user wrote flags, not the scenario file they become: no
		// position in it.
		if code != ExitUsage || !strings.Contains(errs, tc.msg) || strings.Contains(errs, "cascade-load.yaml") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errs, tc.msg)
		}
	}
}

func TestParseRamp(t *testing.T) {
	for _, tc := range []struct {
		in   string
		vus  bool
		want string
	}{
		{"0:100/s:10s", false, "[map[duration:10s ramp_to:100/s]]"},
		{"100/s:10s,100/s:5s", false, "[map[duration:10s ramp_to:100/s] map[duration:5s rate:100/s]]"},
		{"50/s:50/s:5s,0:2s", false, "[map[duration:5s rate:50/s] map[duration:2s ramp_to:0/s]]"},
		{"0:20:5s,20:10s", true, "[map[duration:5s ramp_to_vus:20] map[duration:10s vus:20]]"},
		{"100/s:500/s:10s,0:5s", false, "[map[duration:10s ramp_to:500/s] map[duration:5s ramp_to:0/s]] from 100"},
		{"5:20:5s", true, "[map[duration:5s ramp_to_vus:20]] from 5"},
	} {
		got, start, err := parseRamp(tc.in, tc.vus)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		s := fmtStages(got)
		if start != 0 {
			s += fmt.Sprintf(" from %g", start)
		}
		if s != tc.want {
			t.Errorf("%s: %s, want %s", tc.in, s, tc.want)
		}
	}
	for _, bad := range []string{"100/s:500/s:10s,200/s:300/s:1s", "0:100/s:0s", "100/s", "a:b:c:d",
		"0:200/s:2s,100/s:100/s:2s", "100/s:100/s:1s,200/s:200/s:1s"} { // a later hold must start where the last stage ended too
		if _, _, err := parseRamp(bad, false); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func fmtStages(st []map[string]any) string {
	var b strings.Builder
	b.WriteString("[")
	for i, m := range st {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString("map[duration:" + toS(m["duration"]))
		for _, k := range []string{"ramp_to", "ramp_to_vus", "rate", "vus"} {
			if v, ok := m[k]; ok {
				b.WriteString(" " + k + ":" + toS(v))
			}
		}
		b.WriteString("]")
	}
	return b.String() + "]"
}

func toS(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	}
	return "?"
}

func TestLoadThreadsFlag(t *testing.T) {
	for _, n := range []string{"0", "100000"} {
		code, _, stderr := runCLI(context.Background(), "load", "http://127.0.0.1:1/", "--conns", "1", "--duration", "1s", "--threads", n)
		if code != ExitUsage || !strings.Contains(stderr, "--threads must be 1-256") {
			t.Errorf("--threads %s: exit %d, %s", n, code, stderr)
		}
	}
}

// Without --threads, a closed model on this machine's target gets half the
// CPUs (the target needs the rest) but at least two; a remote one gets them
// all.
func TestDefaultLoops(t *testing.T) {
	for _, tc := range []struct {
		target string
		cpus   int
		want   int
	}{
		{"http://127.0.0.1:8080", 2, 2},
		{"http://127.0.0.1:8080", 1, 1},
		{"http://127.0.0.1:8080", 3, 2},
		{"http://127.0.0.1:8080", 8, 4},
		{"http://127.3.4.5:8080", 5, 2},
		{"http://localhost:8080", 16, 8},
		{"http://[::1]:8080", 4, 2},
		{"http://198.18.0.7:8080", 8, 8}, // remote (--allow-remote): never contacted here
		{"https://example.test", 4, 4},
	} {
		if got := defaultLoops(tc.target, tc.cpus); got != tc.want {
			t.Errorf("defaultLoops(%s, %d) = %d, want %d", tc.target, tc.cpus, got, tc.want)
		}
	}
}

// --ramp is typed by people: whatever parseRamp accepts must be stages the
// scenario compiler accepts too, so a bad --ramp is refused with the flag's
// message, not a scenario error about a file the user never wrote.
func FuzzParseRamp(f *testing.F) {
	for _, s := range []string{"0:100/s:10s", "100/s:500/s:10s,0:5s", "5:20:5s", "1e308/ms:1/s:1s", "0:0:1s", ":", ",", "1:2:3:4"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, vus bool) {
		stages, start, err := parseRamp(s, vus)
		if err != nil {
			return
		}
		if len(stages) == 0 || start < 0 || math.IsInf(start, 0) || math.IsNaN(start) {
			t.Fatalf("parseRamp(%q) = %v, start %v", s, stages, start)
		}
		f := loadFlags{ramp: s, timeout: time.Second, keepAlive: true, method: "GET", maxInFlight: 10, name: "load"}
		if vus {
			f.vus = 1
		}
		src, err := f.scenario(nil, "http://127.0.0.1:8080/")
		if err != nil && vus && strings.Contains(err.Error(), "disagree") {
			return // the first FROM is not --vus 1: refused, as it must be
		}
		if err != nil {
			t.Fatalf("--ramp %q parses but makes no scenario: %v", s, err)
		}
		if _, err := plan.CompileBytes("cascade-load.yaml", src, plan.Options{}); err != nil &&
			!strings.Contains(err.Error(), "schedule no requests") && !strings.Contains(err.Error(), "run no VUs") {
			t.Fatalf("--ramp %q parses but does not compile: %v\n%s", s, err, src)
		}
	})
}

// A run directory damaged the way a killed run or a bad copy leaves it (the
// last line of intervals.jsonl cut, summary.json cut) is refused by report
// and compare with the file, line and column of the damage, not a bare
// "unexpected EOF".
func TestReportLocatesDamage(t *testing.T) {
	tg := newTarget(t, 0)
	base := t.TempDir()
	good, bad := filepath.Join(base, "good"), filepath.Join(base, "bad")
	for _, dir := range []string{good, bad} {
		if code, out, errs := runCLI(context.Background(), "load", tg.url+"/", "--rate", "20/s", "--duration", "1500ms",
			"--out", dir, "--progress", "off"); code != ExitPass {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
	}
	cut := func(name string, keep func(b []byte) int) int {
		p := filepath.Join(bad, name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		n := keep(b)
		if err := os.WriteFile(p, b[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b[:n]), "\n") + 1
	}
	// The last interval line, cut after 10 bytes.
	line := cut("intervals.jsonl", func(b []byte) int {
		return strings.LastIndexByte(strings.TrimSuffix(string(b), "\n"), '\n') + 1 + 10
	})
	want := fmt.Sprintf("intervals.jsonl:%d:10: ", line)
	for _, args := range [][]string{{"report", bad}, {"compare", good, bad}} {
		if code, out, errs := runCLI(context.Background(), args...); code != ExitUsage || !strings.Contains(errs, want) {
			t.Errorf("%s: exit %d, stderr %q, want it to name %q\n%s", args[0], code, errs, want, out)
		}
	}
	line = cut("summary.json", func(b []byte) int { return len(b) / 2 })
	want = fmt.Sprintf("summary.json:%d:", line)
	for _, args := range [][]string{{"report", bad}, {"compare", good, bad}} {
		if code, _, errs := runCLI(context.Background(), args...); code != ExitUsage || !strings.Contains(errs, want) {
			t.Errorf("%s: exit %d, stderr %q, want it to name %q", args[0], code, errs, want)
		}
	}
}

// The per-tag rates are over the load's window, as the run's is, so they
// add up to it: they were over the whole elapsed time, which includes the
// wait for the last answers (against a 150 ms target, 2 tags at 20/s for
// 1 s read 17.4/s together).
func TestTagRatesAddUpToTheRun(t *testing.T) {
	tg := newTarget(t, 150*time.Millisecond)
	dir := t.TempDir()
	src := fmt.Sprintf(`name: tags
gateway: {external: %q}
load:
  rate: 20/s
  duration: 1s
  requests:
    - {name: a, path: /a, weight: 3}
    - {name: b, path: /b}
`, tg.url)
	file := writeFile(t, "s.yaml", src)
	out := filepath.Join(dir, "run")
	if code, stdout, errs := runCLI(context.Background(), "run", file, "--out", out, "--progress", "off"); code != ExitPass {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, errs)
	}
	b, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Run struct {
			Stats struct {
				Sent     int64   `json:"sent"`
				Achieved float64 `json:"achieved_rate"`
			} `json:"stats"`
		} `json:"run"`
		Tags []struct {
			Name  string `json:"name"`
			Stats struct {
				Sent     int64   `json:"sent"`
				Achieved float64 `json:"achieved_rate"`
			} `json:"stats"`
		} `json:"tags"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	var sent int64
	var rate float64
	for _, tag := range s.Tags {
		sent += tag.Stats.Sent
		rate += tag.Stats.Achieved
	}
	if len(s.Tags) != 2 || sent != s.Run.Stats.Sent || s.Run.Stats.Sent != 20 || math.Abs(rate-s.Run.Stats.Achieved) > 0.01 {
		t.Fatalf("run: %d sent at %.3f/s; tags %+v: %d sent at %.3f/s", s.Run.Stats.Sent, s.Run.Stats.Achieved, s.Tags, sent, rate)
	}
}

// A binary body file holds "{{" here and there, which a template takes for
// a variable: such a file could not be sent at all. --raw-body sends it
// byte for byte, on both HTTP/1.1 clients, and the refusal without it says
// so.
func TestLoadRawBody(t *testing.T) {
	body := []byte("\x00\x01{{seq}} {{ not a variable \xfe\xff}}")
	for i := range 70000 { // larger than a socket buffer
		body = append(body, byte(i*7), byte(i>>3))
	}
	file := filepath.Join(t.TempDir(), "blob.bin")
	if err := os.WriteFile(file, body, 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got [][]byte
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String() + "/upload"

	code, _, errs := runCLI(context.Background(), "load", url, "--method", "POST", "--body", "@"+file, "--vus", "1", "--requests", "3",
		"--out", filepath.Join(t.TempDir(), "r"), "--progress", "off")
	if code != ExitUsage || !strings.Contains(errs, "--raw-body") {
		t.Fatalf("without --raw-body: exit %d, want %d and a hint naming --raw-body:\n%s", code, ExitUsage, errs)
	}
	for _, client := range [][]string{nil, {"--nethttp"}} {
		mu.Lock()
		got = nil
		mu.Unlock()
		args := append([]string{"load", url, "--method", "POST", "--body", "@" + file, "--raw-body", "--vus", "1", "--requests", "3",
			"--out", filepath.Join(t.TempDir(), "r"), "--progress", "off"}, client...)
		if code, out, errs := runCLI(context.Background(), args...); code != ExitPass {
			t.Fatalf("%v: exit %d\n%s\n%s", client, code, out, errs)
		}
		mu.Lock()
		if len(got) != 3 {
			t.Fatalf("%v: the server got %d requests, want 3", client, len(got))
		}
		for _, b := range got {
			if !bytes.Equal(b, body) {
				t.Fatalf("%v: the server got %d bytes starting %q, want the file's %d bytes", client, len(b), b[:min(len(b), 24)], len(body))
			}
		}
		mu.Unlock()
	}
	code, _, errs = runCLI(context.Background(), "load", url, "--raw-body", "--vus", "1", "--requests", "1",
		"--out", filepath.Join(t.TempDir(), "r"), "--progress", "off")
	if code != ExitUsage || !strings.Contains(errs, "--raw-body") {
		t.Fatalf("--raw-body without a body: exit %d, want %d naming the flag:\n%s", code, ExitUsage, errs)
	}
}

// report --hgrm writes HdrHistogram's percentile distribution (wrk2's
// --latency spectrum): its total count is the run's requests, its 50th
// percentile the summary's p50, and a bad phase is a usage error; load
// --latency prints it after the summary.
func TestReportHGRM(t *testing.T) {
	tg := newTarget(t, 2*time.Millisecond)
	dir := filepath.Join(t.TempDir(), "r")
	code, out, errOut := runCLI(context.Background(), "load", tg.url, "--rate", "200/s", "--duration", "1s", "--latency", "--out", dir, "--progress", "off")
	if code != 0 {
		t.Fatalf("load: exit %d\n%s\n%s", code, out, errOut)
	}
	// --latency prints the same spectrum after the summary, as wrk2 does.
	if !regexp.MustCompile(`(?s)Verdict:.*Value\tPercentile\tTotalCount\t1/\(1-Percentile\).*Total count    =\s+200\]`).MatchString(out) {
		t.Errorf("load --latency: no percentile distribution of 200 requests after the summary\n%s", out)
	}
	r, err := results.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, of := range []string{"latency", "service"} {
		file := filepath.Join(t.TempDir(), of+".hgrm")
		if code, out, errOut := runCLI(context.Background(), "report", "--hgrm", file, "--hgrm-of", of, dir); code != 0 {
			t.Fatalf("report: exit %d\n%s\n%s", code, out, errOut)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var p50 float64
		var last int64
		rows := 0
		for _, line := range strings.Split(string(b), "\n") {
			var v, q, inv float64
			var n int64
			if _, err := fmt.Sscanf(line, "%f %f %d %f", &v, &q, &n, &inv); err != nil {
				continue
			}
			rows++
			if q >= 0.5 && p50 == 0 {
				p50 = v
			}
			last = n
		}
		want := r.Summary.Run.Stats.Latency.P50
		if of == "service" {
			want = r.Summary.Run.Stats.Service.P50
		}
		if rows < 10 || last != r.Summary.Run.Stats.Sent || math.Abs(p50-want) > 0.01*want+0.002 {
			t.Errorf("%s: %d rows, total count %d (sent %d), p50 %.3f ms (summary %.3f)\n%s", of, rows, last, r.Summary.Run.Stats.Sent, p50, want, b)
		}
		if !strings.Contains(string(b), "#[Total count") && !strings.Contains(string(b), "Total count") {
			t.Errorf("%s: no HdrHistogram footer\n%s", of, b)
		}
	}
	if code, _, errOut := runCLI(context.Background(), "report", "--hgrm", "-", "--hgrm-phase", "nope", dir); code != ExitUsage || !strings.Contains(errOut, `no phase "nope"`) {
		t.Errorf("a phase the run lacks: exit %d, %s", code, errOut)
	}
}

// A warning about a flag names the flag: --insecure on an http:// target
// warned "cascade-load.yaml:5:70: load.insecure_skip_verify: ...", a file
// and a field the user never wrote.
func TestLoadWarningNamesTheFlag(t *testing.T) {
	tg := newTarget(t, 0)
	code, stdout, errs := runCLI(context.Background(), "load", tg.url+"/", "--rate", "10/s", "--duration", "100ms", "--insecure",
		"--progress", "off", "--out", filepath.Join(t.TempDir(), "r"))
	if code != ExitPass {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, errs)
	}
	w := regexp.MustCompile(`(?m)^ *warning: .*$`).FindString(stdout)
	if !strings.Contains(w, "--insecure") || strings.Contains(w, "cascade-load.yaml") || strings.Contains(w, "insecure_skip_verify") {
		t.Errorf("warning %q: want it to name --insecure, not the scenario cascade load wrote\n%s", w, stdout)
	}
}

// --progress bars where no terminal is (a pipe, a log) shows plain lines,
// and says why: mpb drew nothing there, and the run showed no progress.
func TestLoadProgressBarsWithoutATerminal(t *testing.T) {
	tg := newTarget(t, 0)
	code, out, errs := runCLI(context.Background(), "load", tg.url+"/", "--rate", "50/s", "--duration", "2500ms",
		"--out", filepath.Join(t.TempDir(), "run"), "--progress", "bars")
	if code != ExitPass {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(errs, "progress: no terminal to draw bars on; plain lines instead") || !strings.Contains(errs, "target 50/s · sent") {
		t.Errorf("no progress on stderr:\n%s", errs)
	}
}

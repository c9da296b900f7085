package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/spf13/cobra"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/results"
)

const scenario = `name: cli-test
seed: 4
upstreams:
  - name: api
    replicas: 2
    latency: 2ms
gateway:
  LISTEN
  routes:
    - {path: /, upstream: api, timeouts: {connect: 200ms, response_header: 500ms, total: 1s}}
load:
  client_timeout: 2s
  stages:
    - {duration: DURATION, rate: 50/s}
  requests:
    - {path: /}
faults:
  - {name: broken, kind: error, target: "api[0]", start: 500ms, duration: 500ms, params: {status: 503}}
slo:
  - SLO
`

func write(t *testing.T, dur, slo, listen string) string {
	t.Helper()
	src := strings.NewReplacer("DURATION", dur, "SLO", slo, "LISTEN", listen).Replace(scenario)
	p := filepath.Join(t.TempDir(), "s.yaml")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCLI(ctx context.Context, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := cli(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestExitPassAndOfflineReport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	f := write(t, "1500ms", `"error_rate < 30%"`, "")
	code, out, stderr := runCLI(context.Background(), "run", "--progress", "off", "--out", dir, f)
	if code != ExitPass {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{"Phases", "broken", "upstream_error", "PASS  error_rate < 30%", "Verdict: PASS"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	r, err := results.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Summary.Verdict != "pass" || r.Summary.Run.Stats.Sent != 75 || len(r.Intervals) < 2 || len(r.Events) == 0 {
		t.Fatalf("summary %+v, %d intervals, %d events", r.Summary.Run.Stats, len(r.Intervals), len(r.Events))
	}
	// The faulty replica answered 503 for half a second: about 12 requests.
	if n := r.Summary.Run.Stats.Causes["upstream_error"]; n < 8 || n > 16 {
		t.Errorf("upstream_error count %d, want ≈12", n)
	}
	code, out2, _ := runCLI(context.Background(), "report", dir)
	if code != ExitPass || !strings.Contains(out2, "PASS  error_rate < 30%") {
		t.Fatalf("report exit %d:\n%s", code, out2)
	}
	// A second run into the same directory would lose this one's results: a
	// usage error (the user named the directory), found before anything runs.
	code, _, stderr = runCLI(context.Background(), "run", "--progress", "off", "--out", dir, f)
	if code != ExitUsage || !strings.Contains(stderr, "does not write over earlier results") {
		t.Fatalf("second run into %s: exit %d %s", dir, code, stderr)
	}
	if again, err := results.Load(dir); err != nil || again.Summary.Started != r.Summary.Started {
		t.Fatalf("the first run's results changed: %v", err)
	}
}

func TestExitFail(t *testing.T) {
	f := write(t, "1s", `"error_rate == 0%"`, "")
	code, out, _ := runCLI(context.Background(), "run", "--progress", "off", "--out", t.TempDir(), f)
	if code != ExitFail || !strings.Contains(out, "FAIL  error_rate == 0%") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

func TestExitUsage(t *testing.T) {
	bad := write(t, "1s", `"q99 < 1s"`, "")
	code, _, stderr := runCLI(context.Background(), "run", bad)
	if code != ExitUsage || !strings.Contains(stderr, "s.yaml:20:5: slo[0]") || !strings.Contains(stderr, `unknown metric "q99"`) {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if code, _, _ := runCLI(context.Background(), "validate", bad); code != ExitUsage {
		t.Fatalf("validate bad: exit %d", code)
	}
	good := write(t, "1s", `"p99 < 1s"`, "")
	if code, out, _ := runCLI(context.Background(), "validate", good); code != ExitPass || !strings.Contains(out, "valid") {
		t.Fatalf("validate good: exit %d %s", code, out)
	}
	if code, _, _ := runCLI(context.Background(), "run"); code != ExitUsage {
		t.Fatalf("missing argument: exit %d", code)
	}
	if code, _, _ := runCLI(context.Background(), "run", "--nope", good); code != ExitUsage {
		t.Fatalf("unknown flag: exit %d", code)
	}
	for _, n := range []string{"0", "-1", "1001"} {
		if code, _, stderr := runCLI(context.Background(), "run", "--repeat", n, good); code != ExitUsage || !strings.Contains(stderr, "between 1 and 1000") {
			t.Fatalf("--repeat %s: exit %d %s", n, code, stderr)
		}
	}
	for _, args := range [][]string{{"run", "--progress", "fancy", good}, {"run", "--repeat", "2", "--progress", "fancy", good}} {
		if code, _, stderr := runCLI(context.Background(), args...); code != ExitUsage || !strings.Contains(stderr, "--progress must be") {
			t.Fatalf("%v: exit %d %s", args, code, stderr)
		}
	}
	if code, _, _ := runCLI(context.Background(), "run", filepath.Join(t.TempDir(), "missing.yaml")); code != ExitUsage {
		t.Fatalf("missing file: exit %d", code)
	}
	if code, _, _ := runCLI(context.Background(), "report", t.TempDir()); code != ExitUsage {
		t.Fatalf("report on a non-run dir: exit %d", code)
	}
}

func TestExitRunFailed(t *testing.T) {
	// Occupy a port below the ephemeral range (the plan refuses ports in it).
	var ln net.Listener
	for port := 21000; ln == nil && port < 21100; port++ {
		ln, _ = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	}
	if ln == nil {
		t.Fatal("no free port in 21000-21099")
	}
	defer ln.Close()
	f := write(t, "1s", `"p99 < 1s"`, "listen: "+ln.Addr().String())
	code, _, stderr := runCLI(context.Background(), "run", "--progress", "off", "--out", t.TempDir(), f)
	if code != ExitRunFailed || !strings.Contains(stderr, "address already in use") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

func TestInterruptWritesPartialResults(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	f := write(t, "20s", `"p99 < 1s"`, "")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(1500*time.Millisecond, cancel)
	start := time.Now()
	code, out, _ := runCLI(ctx, "run", "--progress", "off", "--out", dir, f)
	if code != ExitInterrupted {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("interrupt took %s to stop a 20s run", el)
	}
	b, err := os.ReadFile(filepath.Join(dir, results.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var s results.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if !s.Interrupted || s.Verdict != "interrupted" || s.Run.Stats.Sent < 50 || s.Run.Stats.Sent > 100 {
		t.Fatalf("interrupted=%v verdict=%s sent=%d", s.Interrupted, s.Verdict, s.Run.Stats.Sent)
	}
	if !strings.Contains(out, "INTERRUPTED") {
		t.Fatalf("report does not say it was interrupted:\n%s", out)
	}
	r, err := results.Load(dir)
	if err != nil || len(r.Intervals) == 0 {
		t.Fatalf("intervals of the partial run: %v %d", err, len(r.Intervals))
	}
}

func TestSchema(t *testing.T) {
	code, out, _ := runCLI(context.Background(), "schema")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var s map[string]any
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"client_timeout"`, `"response_header"`, `"latency"`, `"probability"`, `"ramp_to"`} {
		if !strings.Contains(out, want) {
			t.Errorf("schema lacks %s", want)
		}
	}
}

func TestHelpHasExamples(t *testing.T) {
	for _, cmd := range []string{"run", "validate", "schema", "report", "gateway"} {
		code, out, _ := runCLI(context.Background(), cmd, "--help")
		if code != 0 || !strings.Contains(out, "Examples:") {
			t.Errorf("%s --help: exit %d, no example:\n%s", cmd, code, out)
		}
	}
}

// Commands are added by several people at once; a merge must not register
// one twice (cobra would list it twice and dispatch to the first).
func TestCommandsRegisteredOnce(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range newRoot(io.Discard, io.Discard).Commands() {
		if seen[c.Name()] {
			t.Errorf("command %q is registered twice", c.Name())
		}
		seen[c.Name()] = true
	}
}

// Ctrl-C while the run is still setting up (here: seeding a large SQLite
// database) exits 130 like any interrupt: it is no setup failure (exit 3).
// Like a failed setup, it sent no request, and leaves no run directory
// that would refuse the same command run again.
func TestInterruptDuringSetupExits130(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	f := filepath.Join(t.TempDir(), "s.yaml")
	src := `name: slow-setup
upstreams:
  - name: orders
    kind: database
    database: {driver: sqlite, customers: 10000, orders_per_customer: 100}
gateway:
  routes:
    - {path: /, upstream: orders}
load:
  stages:
    - {duration: 5s, rate: 10/s}
  requests:
    - {path: /orders/history}
`
	if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Cancel once the database file exists: the seed is under way.
		for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
			if m, _ := filepath.Glob(filepath.Join(tmp, "cascade-slowdb-*", "orders.db")); len(m) > 0 {
				time.Sleep(50 * time.Millisecond)
				break
			}
		}
		cancel()
	}()
	dir := filepath.Join(t.TempDir(), "run")
	code, out, stderr := runCLI(ctx, "run", "--progress", "off", "--out", dir, f)
	if code != ExitInterrupted {
		t.Fatalf("exit %d, want %d\n%s%s", code, ExitInterrupted, out, stderr)
	}
	if strings.Contains(stderr, "setup failed") || !strings.Contains(stderr, "interrupted during setup: upstream orders (no request was sent; "+dir+" was removed)") {
		t.Errorf("stderr:\n%s", stderr)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the interrupted setup left %s: %v", dir, err)
	}
}

// upstreams.jsonl as a consumer reads it: an upstream's in_flight_max is
// the largest in-flight count summed over its replicas, the sum its
// in_flight_mean averages, so never below the mean (it was the largest
// replica's alone: mean 8.5, max 5).
func TestUpstreamsInFlightMaxIsNotBelowTheMean(t *testing.T) {
	src := strings.NewReplacer("latency: 2ms", "latency: 40ms", "rate: 50/s", "rate: 200/s", "DURATION", "1500ms",
		"LISTEN", "", "SLO", `"error_rate < 100%"`).Replace(scenario)
	f := filepath.Join(t.TempDir(), "s.yaml")
	if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "run")
	if code, out, errs := runCLI(context.Background(), "run", "--progress", "off", "--out", dir, f); code != ExitPass {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	recs, err := results.LoadUpstreams(dir)
	if err != nil || len(recs) == 0 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	busy := false
	for _, r := range recs {
		if float64(r.InFlightMax) < r.InFlightMean {
			t.Errorf("second %v: in_flight_max %d below in_flight_mean %v", r.Start, r.InFlightMax, r.InFlightMean)
		}
		busy = busy || r.InFlightMean >= 4
	}
	if !busy {
		t.Fatalf("no second with 4 requests in flight on average: %+v", recs)
	}
}

// Stopped less than an interval into the run, the summary keeps no rate
// for it, and the achieved_rate objective says why: not "the profile
// scheduled nothing" beside a summary that counts what it scheduled.
func TestInterruptEarlyExplainsTheMissingRate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	f := write(t, "20s", `"achieved_rate >= 90%"`, "")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	code, out, _ := runCLI(ctx, "run", "--progress", "off", "--out", dir, f)
	if code != ExitInterrupted {
		t.Fatalf("exit %d\n%s", code, out)
	}
	r, err := results.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Summary.Run.Stats.Scheduled; n == 0 || r.Summary.Run.End >= 1 || len(r.Summary.Objectives) != 1 {
		t.Fatalf("scheduled %d, stopped at %vs, %d objectives: want a stop within the first second", n, r.Summary.Run.End, len(r.Summary.Objectives))
	}
	if ev := r.Summary.Objectives[0].Evidence; !strings.Contains(ev, "too short a window for a rate") {
		t.Fatalf("evidence %q", ev)
	}
}

// validate reads merge keys as YAML 1.1 does: the keys written beside a
// merge override the merged ones (strict decoding called them duplicates),
// and an error in what an alias brings is told at the alias.
func TestValidateMergeKeys(t *testing.T) {
	dir := t.TempDir()
	src := `name: merge
upstreams:
  - &api {name: api, replicas: 2, latency: 2ms}
  - <<: *api
    name: search
gateway:
  routes:
    - &route {path: /, upstream: api, timeouts: {connect: 200ms, total: 1s}}
    - {<<: *route, path: /search, upstream: search}
load: {rate: 10/s, duration: 1s, requests: [{path: /}, {path: /search}]}
faults:
  - {name: slow, kind: latency, target: api, start: 0s, params: &p {delay: 5ms}}
  - {name: broken, kind: error, target: search, start: 0s, params: PARAMS}
`
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(strings.Replace(src, "PARAMS", "{status: 503}", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCLI(context.Background(), "validate", good); code != ExitPass || !strings.Contains(out, "valid (2 upstreams, 2 faults") {
		t.Fatalf("validate: exit %d %s%s", code, out, errs)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(src, "PARAMS", "*p", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	want := `bad.yaml:13:68: faults[1].params: unknown field "delay" (via alias *p, defined at line 12 column 69); expected one of: body, match, probability, status`
	if code, _, errs := runCLI(context.Background(), "validate", bad); code != ExitUsage || !strings.Contains(errs, want) {
		t.Fatalf("validate: exit %d %s; want %d and %s", code, errs, ExitUsage, want)
	}
}

// validate on a scenario file with a key that is wrong: each error names
// file:line:column, the path, and what was expected.
func TestValidateSaysWhatIsWrongWithAKey(t *testing.T) {
	for _, c := range []struct{ name, from, to, want string }{
		{"a misspelt fault parameter", "params: {status: 503}", "params: {stauts: 503}",
			`s.yaml:18:91: faults[0].params: unknown field "stauts" (did you mean "status"?); expected one of: body, match, probability, status`},
		{"a misspelt field", "    replicas: 2", "    replicaz: 2",
			`s.yaml:5:5: upstreams[0]: unknown field "replicaz" (did you mean "replicas"?); expected one of: body_size, concurrency, container, database, ignore_cancel, kind, latency, listen, name, replicas, status`},
		{"a key written twice", "    replicas: 2", "    replicas: 2\n    replicas: 3",
			`s.yaml:6:5: upstreams[0]: duplicate key "replicas" (first written at line 5 column 5); a mapping takes each key once`},
		{"an explicit key", "seed: 4", "? seed\n: 4",
			`s.yaml:2:1: seed: the explicit key form (?) is not supported; write the key plainly, as seed: followed by its value`},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := strings.Replace(strings.NewReplacer("DURATION", "1s", "SLO", `"p99 < 1s"`, "LISTEN", "").Replace(scenario), c.from, c.to, 1)
			f := filepath.Join(t.TempDir(), "s.yaml")
			if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := runCLI(context.Background(), "validate", f)
			if code != ExitUsage || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d:\n%s\nwant %d and\n%s", code, stderr, ExitUsage, c.want)
			}
		})
	}
}

// cascade gameday is cascade run with --live set: its help must not offer
// --repeat (a game day runs once; the flag is refused) nor describe
// --control as needing a --live it does not show.
func TestGameDayHelpOffersOnlyWhatWorks(t *testing.T) {
	code, out, _ := runCLI(context.Background(), "gameday", "--help")
	if code != 0 {
		t.Fatalf("gameday --help: exit %d", code)
	}
	for _, bad := range []string{"--repeat", "--live", "with --live"} {
		if strings.Contains(out, bad) {
			t.Errorf("gameday --help mentions %q:\n%s", bad, out)
		}
	}
	if !strings.Contains(out, "--control") {
		t.Errorf("gameday --help lacks --control:\n%s", out)
	}
	// cascade run keeps both.
	_, out, _ = runCLI(context.Background(), "run", "--help")
	for _, want := range []string{"--repeat", "--live", "with --live"} {
		if !strings.Contains(out, want) {
			t.Errorf("run --help lacks %q", want)
		}
	}
}

// Examples are copied into shells: a template such as {{rand_int 1 1000}}
// holds spaces, so unquoted it splits the URL into three arguments and
// cascade load exits 2. Every {{...}} in an example must sit inside quotes.
func TestHelpExamplesQuoteTemplates(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, line := range strings.Split(c.Example, "\n") {
			quoted := false
		scan:
			for i, r := range line {
				switch {
				case r == '\'':
					quoted = !quoted
				case r == '#' && !quoted:
					break scan // a comment, not run
				case strings.HasPrefix(line[i:], "{{") && !quoted:
					t.Errorf("%s: example has an unquoted template: %s", c.CommandPath(), strings.TrimSpace(line))
				}
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot(io.Discard, io.Discard))
}

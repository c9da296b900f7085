package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/gameday"
)

const gatedScenario = `name: cli-gameday
seed: 4
upstreams:
  - {name: api, replicas: 2, latency: 2ms}
gateway:
  routes:
    - {path: /, upstream: api, timeouts: {connect: 200ms, response_header: 500ms, total: 1s}}
load:
  client_timeout: 2s
  stages:
    - {duration: 3s, rate: 50/s}
  requests:
    - {path: /}
phases:
  - {name: ready, start: 1s, gate: manual, max_hold: 1m}
slo:
  - error_rate < 5%
`

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A game day driven from the CLI, as people would: list, add (from flags
// and from a file), a malformed fault, remove, open the gate, stop; then
// export the journal and replay it.
func TestGameDayCLI(t *testing.T) {
	tmp := t.TempDir()
	f := filepath.Join(tmp, "g.yaml")
	if err := os.WriteFile(f, []byte(gatedScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	// A gated scenario needs a game day.
	if code, _, stderr := runCLI(context.Background(), "run", "--progress", "off", "--out", filepath.Join(tmp, "plain"), f); code != ExitUsage || !strings.Contains(stderr, "cascade gameday") {
		t.Errorf("plain run of a gated scenario: %d %s", code, stderr)
	}
	if code, _, stderr := runCLI(context.Background(), "gameday", "--control", "0.0.0.0:0", "--out", filepath.Join(tmp, "pub"), f); code != ExitUsage || !strings.Contains(stderr, "loopback") {
		t.Errorf("public control address: %d %s", code, stderr)
	}
	// A repeat has no control API: it dropped --live and cascade gameday
	// (the gates then failed the setup, exit 3, naming cascade gameday),
	// and --control without --live was ignored.
	for _, args := range [][]string{
		{"gameday", "--repeat", "2", "--out", filepath.Join(tmp, "rep1"), f},
		{"run", "--live", "--repeat", "2", "--out", filepath.Join(tmp, "rep2"), f},
	} {
		if code, _, stderr := runCLI(context.Background(), args...); code != ExitUsage || !strings.Contains(stderr, "--repeat runs the scenario unattended") {
			t.Errorf("%v: %d %s", args, code, stderr)
		}
	}
	if code, _, stderr := runCLI(context.Background(), "run", "--repeat", "2", "--out", filepath.Join(tmp, "rep3"), f); code != ExitUsage || !strings.Contains(stderr, "manual gates") {
		t.Errorf("repeated run of a gated scenario: %d %s", code, stderr)
	}
	if code, _, stderr := runCLI(context.Background(), "run", "--control", "127.0.0.1:0", "--out", filepath.Join(tmp, "ctl"), f); code != ExitUsage || !strings.Contains(stderr, "applies with --live") {
		t.Errorf("--control without --live: %d %s", code, stderr)
	}

	dir := filepath.Join(tmp, "run")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() { done <- cli(ctx, []string{"gameday", "--progress", "off", "--out", dir, f}, &out, &errb) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, gameday.ControlFile)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no control file; stderr:\n%s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	verb := func(args ...string) (int, string, string) {
		t.Helper()
		return runCLI(context.Background(), args...)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, o, _ := verb("fault", "ls", "--run", dir)
		if strings.Contains(o, "gate ready closed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never gated: %s", o)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, o, e := verb("fault", "add", "--run", dir, "--who", "alice", "--kind", "latency", "--target", "api", "--params", "{delay: 5ms}", "--name", "slowish"); code != 0 || !strings.Contains(o, "slowish: latency on api started") {
		t.Errorf("fault add: %d %q %q", code, o, e)
	}
	if code, _, e := verb("fault", "add", "--run", dir, "--kind", "latency", "--target", "api", "--params", "{delay: 5}"); code != ExitUsage || !strings.Contains(e, "params.delay: expected a duration") {
		t.Errorf("malformed fault: %d %q", code, e)
	}
	ff := filepath.Join(tmp, "fault.yaml")
	os.WriteFile(ff, []byte("name: from-file\nkind: error\ntarget: \"api[1]\"\nparams: {status: 503, probability: 0.01}\nduration: 500ms\n"), 0o644)
	t.Setenv(gameday.EnvRun, dir) // found without --run
	t.Setenv("CASCADE_WHO", "bob")
	if code, o, e := verb("fault", "add", "--file", ff); code != 0 || !strings.Contains(o, "from-file: error on api[1]") {
		t.Errorf("fault add --file: %d %q %q", code, o, e)
	}
	if code, o, _ := verb("fault", "ls"); code != 0 || !strings.Contains(o, "slowish") || !strings.Contains(o, "alice") || !strings.Contains(o, "bob") {
		t.Errorf("fault ls: %d\n%s", code, o)
	}
	if code, o, e := verb("fault", "rm", "slowish"); code != 0 || !strings.Contains(o, "slowish: removed") {
		t.Errorf("fault rm: %d %q %q", code, o, e)
	}
	if code, _, e := verb("fault", "rm", "nope"); code != ExitFail || !strings.Contains(e, "no such fault") {
		t.Errorf("fault rm nope: %d %q", code, e)
	}
	if code, o, e := verb("phase", "next"); code != 0 || !strings.Contains(o, "gate ready opened") {
		t.Errorf("phase next: %d %q %q", code, o, e)
	}
	if code, _, e := verb("phase", "next"); code != ExitFail || !strings.Contains(e, "no gate is waiting") {
		t.Errorf("phase next again: %d %q", code, e)
	}
	time.Sleep(500 * time.Millisecond)
	if code, o, e := verb("stop"); code != 0 || !strings.Contains(o, "stopping") {
		t.Errorf("stop: %d %q %q", code, o, e)
	}
	select {
	case code := <-done:
		if code != ExitPass {
			t.Errorf("gameday exit %d\n%s\n%s", code, out.String(), errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the game day did not end after stop")
	}
	for _, want := range []string{"control API http://127.0.0.1:", "token", "dashboard http://127.0.0.1:"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errb.String())
		}
	}
	if code, _, e := verb("fault", "ls"); code != ExitUsage || !strings.Contains(e, "no live run") {
		t.Errorf("fault ls after the end: %d %q", code, e)
	}
	j, err := gameday.ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	var who []string
	for _, e := range j {
		who = append(who, e.Who+":"+e.Action)
	}
	if got := strings.Join(who, " "); !strings.Contains(got, "alice:fault.add") || !strings.Contains(got, "bob:fault.add") || !strings.Contains(got, "bob:stop") {
		t.Errorf("journal: %s", got)
	}

	// The report, rewritten later, draws the target the run followed
	// (the hold included), not the scripted profile.
	st, ok := gameday.RanStages(dir)
	var total time.Duration
	for _, x := range st {
		total += x.Duration
	}
	if !ok || len(st) != 3 || total <= 3*time.Second {
		t.Errorf("ran stages %+v (total %s)", st, total)
	}
	if code, _, e := verb("report", "--html", dir); code != ExitPass {
		t.Errorf("report --html: %d %s", code, e)
	}

	// The export replays: a plain run of it passes.
	code, exported, e := verb("gameday", "export", dir)
	if code != 0 || !strings.Contains(exported, "added by hand by alice") || !strings.Contains(exported, "was a manual gate") {
		t.Fatalf("export: %d %q\n%s", code, e, exported)
	}
	rf := filepath.Join(tmp, "replay.yaml")
	os.WriteFile(rf, []byte(exported), 0o644)
	if code, o, e := verb("run", "--progress", "off", "--out", filepath.Join(tmp, "replay"), rf); code != ExitPass {
		t.Errorf("replay: %d\n%s\n%s\n%s", code, o, e, exported)
	}
}

// A game day follows one load profile. A load of several executors side
// by side was not refused and panicked at its first request (the script's
// transport had the top-level config's requests: none); it is now refused
// before anything starts, at the load's line.
func TestGameDayRefusesExecutorList(t *testing.T) {
	tmp := t.TempDir()
	f := filepath.Join(tmp, "mixed.yaml")
	const scenario = `name: mixed-live
upstreams:
  - {name: api, latency: 2ms}
gateway:
  routes:
    - {path: /, upstream: api}
load:
  - {name: open, executor: constant-arrival-rate, rate: 20/s, duration: 2s, requests: [{path: /}]}
  - {name: closed, executor: constant-vus, vus: 2, duration: 2s, requests: [{path: /x}]}
`
	if err := os.WriteFile(f, []byte(scenario), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"run", "--live", "--progress", "off", "--out", filepath.Join(tmp, "a"), f},
		{"gameday", "--progress", "off", "--out", filepath.Join(tmp, "b"), f},
	} {
		code, _, stderr := runCLI(context.Background(), args...)
		if code != ExitUsage || !strings.Contains(stderr, f+":8:3: load: a game day") || !strings.Contains(stderr, "a list of 2 executors side by side") {
			t.Errorf("%v: exit %d, stderr:\n%s", args, code, stderr)
		}
		if _, err := os.Stat(args[len(args)-2]); !os.IsNotExist(err) {
			t.Errorf("%v: a refused game day left %s (%v)", args, args[len(args)-2], err)
		}
	}
}

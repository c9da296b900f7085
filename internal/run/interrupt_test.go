package run

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// slowSetupScenario seeds a million SQLite rows before the load can start:
// a setup step that takes seconds and honours its context, as a
// PostgreSQL container or an image build does, without needing Docker.
const slowSetupScenario = `name: slow-setup
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
slo:
  - p99 < 1s
`

// waitForSeed cancels the run once the upstream's database file exists in
// tmp: the run is then in its setup, seeding.
func waitForSeed(t *testing.T, tmp string, cancel context.CancelFunc) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if m, _ := filepath.Glob(filepath.Join(tmp, "cascade-slowdb-*", "orders.db")); len(m) > 0 {
			time.Sleep(50 * time.Millisecond) // well into the seed's inserts
			cancel()
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	t.Error("the run made no database in a minute")
}

// Ctrl-C during setup is an interrupt (exit 130 with a summary), not a
// setup failure (exit 3 with nothing to report on).
func TestInterruptDuringSetup(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where the SQLite file goes, and is watched for
	p, err := plan.CompileBytes("slow-setup.yaml", []byte(slowSetupScenario), plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); waitForSeed(t, tmp, cancel) }()
	dir := filepath.Join(t.TempDir(), "out")
	var stdout bytes.Buffer
	start := time.Now()
	o, err := Run(ctx, p, Options{OutDir: dir, Progress: ProgressOff, Stdout: &stdout})
	<-done
	if err != nil {
		t.Fatalf("interrupted during setup: error %v, want an interrupted outcome", err)
	}
	if !o.Interrupted || o.Pass {
		t.Fatalf("outcome %+v, want interrupted", o)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("the interrupted setup took %s to end", el)
	}
	r, err := results.Load(dir)
	if err != nil {
		t.Fatalf("cascade report cannot read the run directory: %v", err)
	}
	s := r.Summary
	if !s.Interrupted || s.Verdict != results.VerdictInterrupted || s.Run.Stats.Sent != 0 {
		t.Errorf("summary: interrupted=%v verdict=%q sent=%d", s.Interrupted, s.Verdict, s.Run.Stats.Sent)
	}
	if !strings.Contains(strings.Join(s.Warnings, "\n"), "interrupted during setup: upstream orders") {
		t.Errorf("summary warnings %q do not say where the setup stopped", s.Warnings)
	}
	if !strings.Contains(stdout.String(), "INTERRUPTED") || !strings.Contains(stdout.String(), "interrupted during setup") {
		t.Errorf("report:\n%s", stdout.String())
	}
	if m, _ := filepath.Glob(filepath.Join(tmp, "cascade-*")); len(m) > 0 {
		t.Errorf("the interrupted setup left %v", m)
	}
	t.Logf("stopped after %s; report:\n%s", time.Since(start), stdout.String())
	if _, err := os.Stat(filepath.Join(dir, "junit.xml")); err != nil {
		t.Errorf("junit.xml: %v", err)
	}
}

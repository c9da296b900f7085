package run

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// Ctrl-C during setup is an interrupt, not a setup failure, but like one
// it sent no request and measured nothing: the run takes back its
// directory (it wrote a summary of nothing there, and the same --out was
// refused until the user removed it) and says which step it stopped.
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
	if !errors.Is(err, ErrInterruptedInSetup) || errors.Is(err, ErrSetup) {
		t.Fatalf("interrupted during setup: outcome %+v, error %v; want ErrInterruptedInSetup", o, err)
	}
	if !strings.Contains(err.Error(), "interrupted during setup: upstream orders (no request was sent; "+dir+" was removed)") {
		t.Errorf("the error does not say where the setup stopped, or what became of the directory: %v", err)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("the interrupted setup took %s to end", el)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the interrupted setup left its run directory: %v", err)
	}
	if stdout.Len() > 0 {
		t.Errorf("a report of a run that never started:\n%s", stdout.String())
	}
	if m, _ := filepath.Glob(filepath.Join(tmp, "cascade-*")); len(m) > 0 {
		t.Errorf("the interrupted setup left %v", m)
	}
}

// A stop signal during a setup step that does not watch its context (an
// in-process replica starts in microseconds) still ends the run in its
// setup: no load is started only to be stopped at once, and no run
// directory with a summary of nothing is left.
func TestInterruptBeforeLoadStarts(t *testing.T) {
	p, err := plan.CompileBytes("quick.yaml", []byte(`name: quick
upstreams: [{name: api}]
gateway: {routes: [{path: /, upstream: api}]}
load: {stages: [{duration: 2s, rate: 10/s}], requests: [{path: /}]}
`), plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := filepath.Join(t.TempDir(), "out")
	var stdout bytes.Buffer
	o, err := Run(ctx, p, Options{OutDir: dir, Progress: ProgressOff, Stdout: &stdout})
	if !errors.Is(err, ErrInterruptedInSetup) {
		t.Fatalf("cancelled before the load: outcome %+v, error %v; want ErrInterruptedInSetup", o, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the interrupted setup left its run directory: %v", err)
	}
	if stdout.Len() > 0 {
		t.Errorf("a report of a run that never started:\n%s", stdout.String())
	}
}

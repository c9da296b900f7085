package run

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cascadehq/cascade/internal/tcptest"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// setupScenario is a one-second run whose upstream and gateway listen
// where upstreamListen and gatewayListen say ("" for a port the kernel
// picks).
func setupScenario(t *testing.T, upstreamListen, gatewayListen string) *plan.Plan {
	t.Helper()
	up, gw := "", ""
	if upstreamListen != "" {
		up = fmt.Sprintf("listen: [%q]", upstreamListen)
	}
	if gatewayListen != "" {
		gw = fmt.Sprintf("listen: %q", gatewayListen)
	}
	src := fmt.Sprintf(`name: setup-fails
upstreams:
  - name: api
    latency: 1ms
    %s
gateway:
  %s
  routes:
    - {path: /, upstream: api}
load:
  stages:
    - {duration: 1s, rate: 20/s}
  requests:
    - {path: /}
slo:
  - error_rate < 1%%
`, up, gw)
	p, err := plan.CompileBytes("setup-fails.yaml", []byte(src), plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// entries lists dir, or says it is not there.
func entries(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return fmt.Sprint(names)
}

// A run whose setup fails sent no request and measured nothing: it leaves
// its --out as it found it, so the same command runs once the cause is
// fixed (it left a few empty files, and the next run into the directory
// was refused, exit 2). A directory that was there before stays, and so
// does anything that was not the run's.
func TestSetupFailureLeavesTheRunDirectoryAsItWas(t *testing.T) {
	t.Run("the gateway's port is taken", func(t *testing.T) {
		ln := tcptest.HoldLowPort(t)
		p := setupScenario(t, "", ln.Addr().String())
		root := t.TempDir()
		dir := filepath.Join(root, "results", "run")
		_, err := Run(context.Background(), p, Options{OutDir: dir, Progress: ProgressOff})
		if !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("Run: %v, want a setup failure", err)
		}
		if want := filepath.Join(root, "results") + " was removed"; !strings.Contains(err.Error(), "no request was sent; "+want) {
			t.Errorf("the error does not say what became of the directory: %v", err)
		}
		if ents, _ := os.ReadDir(root); len(ents) != 0 {
			t.Fatalf("the failed setup left %s in %s", entries(root), root)
		}
		// Fixed: the same command runs.
		ln.Close()
		o, err := Run(context.Background(), p, Options{OutDir: dir, Progress: ProgressOff})
		if err != nil || !o.Pass {
			t.Fatalf("the run after the port was freed: %v", err)
		}
		if _, err := results.Load(dir); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("an upstream's port is taken, into a directory that was there", func(t *testing.T) {
		ln := tcptest.HoldLowPort(t)
		p := setupScenario(t, ln.Addr().String(), "")
		dir := t.TempDir()
		_, err := Run(context.Background(), p, Options{OutDir: dir, Progress: ProgressOff})
		if !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), "upstream api") {
			t.Fatalf("Run: %v, want the upstream's setup failure", err)
		}
		if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
			t.Fatalf("%s holds %s; want it there, and empty as it was", dir, entries(dir))
		}
	})
	t.Run("a parent that holds the user's files", func(t *testing.T) {
		ln := tcptest.HoldLowPort(t)
		p := setupScenario(t, "", ln.Addr().String())
		parent := t.TempDir()
		notes := filepath.Join(parent, "notes.txt")
		if err := os.WriteFile(notes, []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(parent, "run")
		if _, err := Run(context.Background(), p, Options{OutDir: dir, Progress: ProgressOff}); !errors.Is(err, ErrSetup) {
			t.Fatalf("Run: %v", err)
		}
		if got := entries(parent); got != "[notes.txt]" {
			t.Fatalf("%s holds %s, want notes.txt alone", parent, got)
		}
	})
	t.Run("a game day's control address is taken", func(t *testing.T) {
		ln := tcptest.HoldLowPort(t)
		p := setupScenario(t, "", "")
		dir := filepath.Join(t.TempDir(), "gameday")
		_, err := Run(context.Background(), p, Options{OutDir: dir, Progress: ProgressOff, Live: &LiveOptions{Listen: ln.Addr().String()}})
		if !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), "control API") {
			t.Fatalf("Run: %v", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the failed game day left %s: %s", dir, entries(dir))
		}
	})
	t.Run("a game day of several executors", func(t *testing.T) {
		p := setupScenario(t, "", "")
		one := p.Load
		p.Load.Executors = []loadgen.Config{one, one}
		dir := filepath.Join(t.TempDir(), "gameday")
		_, err := Run(context.Background(), p, Options{OutDir: dir, Progress: ProgressOff, Live: &LiveOptions{Listen: "127.0.0.1:0"}})
		if err == nil || !strings.Contains(err.Error(), "a game day (cascade gameday, cascade run --live) drives one load profile") {
			t.Fatalf("Run: %v", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the refused game day left %s: %s", dir, entries(dir))
		}
	})
	t.Run("the default directory", func(t *testing.T) {
		ln := tcptest.HoldLowPort(t)
		p := setupScenario(t, "", ln.Addr().String())
		wd := t.TempDir()
		t.Chdir(wd)
		if _, err := Run(context.Background(), p, Options{Progress: ProgressOff}); !errors.Is(err, ErrSetup) {
			t.Fatalf("Run: %v", err)
		}
		if got := entries(wd); got != "[]" {
			t.Fatalf("the failed setup left %s in the working directory", got)
		}
	})
}

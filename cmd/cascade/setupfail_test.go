package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/tcptest"
	"github.com/cascadehq/cascade/results"
)

// gone fails the test when path exists.
func gone(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		ents, _ := os.ReadDir(path)
		t.Errorf("%s is still there (%v): %v", path, err, ents)
	}
}

// A setup that fails (the gateway's port is taken) exits 3 with why on
// stderr, and leaves no run directory: the same command, run again once the
// port is free, runs (it was refused, exit 2, for the few empty files the
// failed setup had left). A directory with the user's files in it is still
// refused, and left as it was.
func TestSetupFailureDoesNotBlockTheSameOut(t *testing.T) {
	bin := buildCascade(t)
	ln := tcptest.HoldLowPort(t)
	f := write(t, "1s", `"p99 < 1s"`, "listen: "+ln.Addr().String())
	root := t.TempDir()
	dir := filepath.Join(root, "ci", "run")
	cascade := func(args ...string) (int, string) {
		t.Helper()
		return exitAndStderr(t, exec.Command(bin, args...))
	}
	for i := 1; i <= 2; i++ {
		code, stderr := cascade("run", "--progress", "off", "--out", dir, f)
		if code != ExitRunFailed {
			t.Fatalf("run %d with the port taken: exit %d, want %d:\n%s", i, code, ExitRunFailed, stderr)
		}
		if !strings.Contains(stderr, "address already in use") || !strings.Contains(stderr, "no request was sent; "+filepath.Join(root, "ci")+" was removed") {
			t.Errorf("run %d: stderr does not say why, or what became of the directory:\n%s", i, stderr)
		}
		gone(t, filepath.Join(root, "ci"))
	}
	ln.Close()
	if code, stderr := cascade("run", "--progress", "off", "--out", dir, f); code != ExitPass {
		t.Fatalf("the same command once the port is free: exit %d:\n%s", code, stderr)
	}
	if _, err := results.Load(dir); err != nil {
		t.Fatal(err)
	}

	mine := filepath.Join(root, "mine")
	if err := os.Mkdir(mine, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mine, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stderr := cascade("run", "--progress", "off", "--out", mine, f); code != ExitUsage || !strings.Contains(stderr, "already holds files") {
		t.Fatalf("a directory with the user's files: exit %d:\n%s", code, stderr)
	}
	if ents, _ := os.ReadDir(mine); len(ents) != 1 || ents[0].Name() != "notes.txt" {
		t.Fatalf("%s holds %v, want notes.txt alone", mine, ents)
	}
	// --out naming a file is the same kind of mistake (exit 2), not a
	// setup that broke (it was exit 3, "not a directory").
	file := filepath.Join(mine, "notes.txt")
	if code, stderr := cascade("run", "--progress", "off", "--out", file, f); code != ExitUsage || !strings.Contains(stderr, file+" is a file, not a directory") {
		t.Fatalf("--out a file: exit %d:\n%s", code, stderr)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "mine" {
		t.Fatalf("%s now holds %q (%v), want the user's text", file, b, err)
	}
}

// The commands that run a scenario more than once, or run it live, do as
// cascade run does when a run's setup fails: exit 3 and no directory left
// when nothing ran; when a later run fails, the runs before it are kept and
// the error says so.
func TestSetupFailureInRepeatsLaddersAndGameDays(t *testing.T) {
	ln := tcptest.HoldLowPort(t)
	taken := write(t, "1s", `"p99 < 1s"`, "listen: "+ln.Addr().String())
	tmp := t.TempDir()
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"repeat", []string{"run", "--repeat", "2", "--out", filepath.Join(tmp, "repeat"), taken}, "run 1 (seed 4): run setup failed"},
		{"ladder", []string{"ladder", "--duration", "1s", "--out", filepath.Join(tmp, "ladder"), taken}, "run setup failed"},
		{"gameday", []string{"gameday", "--progress", "off", "--out", filepath.Join(tmp, "gameday"), taken}, "run setup failed"},
		{"game day's control API", []string{"gameday", "--progress", "off", "--control", ln.Addr().String(), "--out", filepath.Join(tmp, "control"),
			write(t, "1s", `"p99 < 1s"`, "")}, "control API"},
	} {
		code, out, stderr := runCLI(context.Background(), c.args...)
		if code != ExitRunFailed || !strings.Contains(stderr, c.want) || !strings.Contains(stderr, "address already in use") ||
			!strings.Contains(stderr, "no request was sent") {
			t.Errorf("%s: exit %d (want %d, and why on stderr):\n%s%s", c.name, code, ExitRunFailed, out, stderr)
		}
		if strings.Contains(out, "interrupted") {
			t.Errorf("%s: a setup failure reported as an interrupt:\n%s", c.name, out)
		}
		gone(t, c.args[len(c.args)-2])
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("%s holds %v", tmp, ents)
	}

	// The second run cannot start (its directory holds the user's files,
	// put there while the first one runs: --out was checked empty before
	// it): the first one's results stay, and the error says where.
	free := write(t, "1s", `"p99 < 1s"`, "")
	out := filepath.Join(tmp, "repeat2")
	notes := filepath.Join(out, "02-seed5", "notes.txt")
	placed := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := os.Stat(filepath.Join(out, "01-seed4", results.ScenarioFile)); err == nil {
				if err := os.MkdirAll(filepath.Dir(notes), 0o755); err != nil {
					placed <- err
					return
				}
				placed <- os.WriteFile(notes, []byte("mine"), 0o644)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		placed <- errors.New("the first run never started")
	}()
	code, _, stderr := runCLI(context.Background(), "run", "--repeat", "2", "--out", out, free)
	if err := <-placed; err != nil {
		t.Fatal(err)
	}
	if code != ExitUsage || !strings.Contains(stderr, "run 2 (seed 5): ") || !strings.Contains(stderr, "the run before it is kept in "+out) {
		t.Fatalf("repeat whose second run cannot start: exit %d:\n%s", code, stderr)
	}
	if _, err := results.Load(filepath.Join(out, "01-seed4")); err != nil {
		t.Errorf("the first run's results: %v", err)
	}
	if b, err := os.ReadFile(notes); err != nil || string(b) != "mine" {
		t.Errorf("notes.txt: %q, %v", b, err)
	}
}

package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/report"
)

// cascadeLimited runs the built binary with its file size limit at blocks
// of 512 bytes (0: no file may grow), so that a write fails partway as on
// a full disk: a Go program ignores the SIGXFSZ that comes with it, and
// its write gets EFBIG. It returns the exit code and stderr.
func cascadeLimited(t *testing.T, bin string, blocks int, args ...string) (int, string) {
	t.Helper()
	sh := append([]string{"-c", `ulimit -f "$0" && exec "$@"`, strconv.Itoa(blocks), bin}, args...)
	return exitAndStderr(t, exec.Command("/bin/sh", sh...))
}

// exitAndStderr runs cmd to its end and returns its exit code and stderr;
// a command that could not run at all fails the test. One still running
// after childDeadline is sent SIGQUIT, so that the test fails with every
// goroutine's stack (Go prints them on SIGQUIT) instead of hanging until
// the test binary's own timeout, with nothing to say where it stuck.
func exitAndStderr(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(childDeadline):
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		t.Fatalf("%v still ran after %v: sent SIGQUIT; its stderr:\n%s", cmd.Args, childDeadline, stderr.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// childDeadline bounds a cascade child of these tests: each runs a few
// seconds of load.
const childDeadline = 90 * time.Second

// A report output that cannot be written whole (the disk refuses it
// partway) leaves the file the user had under that name as it was, and no
// temporary file beside it: --csv and --junit truncated it first, and left
// it empty.
func TestReportOutputsWholeOrNothing(t *testing.T) {
	bin := buildCascade(t)
	fast, _ := compareRuns(t)
	dir := t.TempDir()
	for _, c := range []struct{ flag, name, old string }{
		{"--csv", "series.csv", "t_s,the user's last series\n"},
		{"--junit", "junit.xml", "<testsuites name=\"the user's last run\"/>\n"},
	} {
		path := filepath.Join(dir, c.name)
		if err := os.WriteFile(path, []byte(c.old), 0o644); err != nil {
			t.Fatal(err)
		}
		code, stderr := cascadeLimited(t, bin, 0, "report", c.flag, path, fast)
		// 3, as for any output the command could not write: the input
		// was fine (2 would send the user looking for a typo).
		if code != ExitRunFailed || !strings.Contains(stderr, "write "+path+": file too large") {
			t.Errorf("report %s %s on a full disk: exit %d, want %d and an error naming the file:\n%s", c.flag, path, code, ExitRunFailed, stderr)
		}
		if b, _ := os.ReadFile(path); string(b) != c.old {
			t.Errorf("%s after the failed write: %q, want the user's file as it was", c.name, b)
		}
		// And with room, it is written.
		if code, stderr := cascadeLimited(t, bin, 1<<20, "report", c.flag, path, fast); code != ExitPass && code != ExitFail {
			t.Fatalf("report %s %s: exit %d:\n%s", c.flag, path, code, stderr)
		}
		if b, _ := os.ReadFile(path); len(b) < 100 || string(b) == c.old {
			t.Errorf("%s was not rewritten: %q", c.name, b)
		}
	}
	// report.html, rewritten in the run directory, was already written so.
	html := filepath.Join(fast, report.HTMLFile)
	old, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	if code, stderr := cascadeLimited(t, bin, 0, "report", "--html", fast); code != ExitRunFailed || !strings.Contains(stderr, "file too large") {
		t.Errorf("report --html on a full disk: exit %d, want %d:\n%s", code, ExitRunFailed, stderr)
	}
	if b, _ := os.ReadFile(html); string(b) != string(old) {
		t.Errorf("report.html changed (%d bytes, was %d)", len(b), len(old))
	}
	for _, d := range []string{dir, fast} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("%s: a temporary file was left: %s", d, e.Name())
			}
		}
	}
}

// --repeat and ladder write several runs under their --out: one that
// already holds files is refused before the first run starts, exit 2, as a
// single run refuses it. --repeat put its runs' folders beside the user's
// files and wrote its repeat.json over theirs.
func TestRepeatAndLadderRefuseAnOutInUse(t *testing.T) {
	f := write(t, "1s", `"p99 < 1s"`, "")
	for _, c := range []struct {
		name string
		args []string
	}{
		{"repeat", []string{"run", "--repeat", "2", "--progress", "off"}},
		{"ladder", []string{"ladder", "--duration", "1s"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			mine := map[string]string{"notes.txt": "mine", RepeatFile: `{"scenario": "an earlier repeat"}`}
			if err := os.Mkdir(out, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, body := range mine {
				if err := os.WriteFile(filepath.Join(out, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			code, stdout, stderr := runCLI(context.Background(), append(c.args, "--out", out, f)...)
			if code != ExitUsage || !strings.Contains(stderr, out+" already holds files") || !strings.Contains(stderr, "does not write over earlier results") {
				t.Fatalf("exit %d, want %d and why:\n%s%s", code, ExitUsage, stdout, stderr)
			}
			if took := time.Since(start); took > 500*time.Millisecond || strings.Contains(stdout, "run 1 seed") || strings.Contains(stdout, "rung") {
				t.Errorf("refused after %v, having run:\n%s", took, stdout)
			}
			ents, _ := os.ReadDir(out)
			if len(ents) != len(mine) {
				t.Errorf("%s holds %d entries, want the user's %d: %v", out, len(ents), len(mine), ents)
			}
			for name, body := range mine {
				if b, _ := os.ReadFile(filepath.Join(out, name)); string(b) != body {
					t.Errorf("%s: %q, want %q", name, b, body)
				}
			}
		})
	}
}

// A run whose results cannot be written once its load started (the disk
// fills up: here the access log, which grows fastest, passes the file size
// limit) stops its load there, exits 3, and keeps what it measured: a
// summary marked with the error, which report reads (exit 3, as the run),
// and a junit.xml that is not green. It left no summary.json, which
// report refused and which kept the directory from being used again.
// When even the summary cannot be written, the error says what was kept.
func TestRunFailingMidLoadKeepsWhatItMeasured(t *testing.T) {
	bin := buildCascade(t)
	f := write(t, "8s", `"p99 < 1s"`, "")
	dir := filepath.Join(t.TempDir(), "run")
	// 32 KiB: the access log passes it in about 3 s, and the summary
	// (about 8 KiB) stays below it.
	code, stderr := cascadeLimited(t, bin, 64, "run", "--progress", "off", "--out", dir, f)
	if code != ExitRunFailed || !strings.Contains(stderr, "access log: write "+filepath.Join(dir, "access.jsonl")+": file too large") ||
		!strings.Contains(stderr, "what the run measured until then is kept in "+dir+", its summary marked with this error") {
		t.Fatalf("exit %d, want %d, why, and what was kept:\n%s", code, ExitRunFailed, stderr)
	}
	r, err := results.Load(dir)
	if err != nil {
		t.Fatalf("the run directory: %v", err)
	}
	s := r.Summary
	if s.Verdict != results.VerdictError || !strings.Contains(s.Error, "file too large") || s.Run.Stats.Sent == 0 || s.Elapsed >= s.Planned-1 {
		t.Errorf("summary: verdict %q, error %q, %d sent in %.1fs of %.1fs (want the load stopped at the error)",
			s.Verdict, s.Error, s.Run.Stats.Sent, s.Elapsed, s.Planned)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "junit.xml")); err != nil || !strings.Contains(string(b), "the run stopped on an error") {
		t.Errorf("junit.xml: %v\n%s", err, b)
	}
	code, out, errs := runCLI(context.Background(), "report", dir)
	if code != ExitRunFailed || !strings.Contains(out, "STOPPED BY AN ERROR") || !strings.Contains(out, "Verdict: ERROR (the run stopped: ") ||
		!strings.Contains(out, "PASS  p99 < 1s") {
		t.Errorf("report: exit %d:\n%s%s", code, out, errs)
	}

	// The disk refuses the summary too (1 KiB): nothing report can read,
	// and the error lists what is there.
	dir2 := filepath.Join(t.TempDir(), "run")
	code, stderr = cascadeLimited(t, bin, 2, "run", "--progress", "off", "--out", dir2, f)
	if code != ExitRunFailed || !strings.Contains(stderr, "the summary could not be written either") ||
		!strings.Contains(stderr, "it keeps access.jsonl (1024 bytes)") || !strings.Contains(stderr, "scenario.yaml (") {
		t.Fatalf("summary refused too: exit %d:\n%s", code, stderr)
	}
}

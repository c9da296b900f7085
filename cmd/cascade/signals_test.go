package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cascadehq/cascade/results"
)

// dbScenario is a long run whose upstream keeps an SQLite database in a
// temporary directory: something on disk the run must remove.
func dbScenario(name string) string {
	return fmt.Sprintf(`name: %s
upstreams:
  - name: orders
    kind: database
    database: {pool_size: 2}
gateway:
  routes:
    - {path: /, upstream: orders}
load:
  stages:
    - {duration: 60s, rate: 20/s}
  requests:
    - {path: /orders/history}
`, name)
}

// runProc is a `cascade run` subprocess.
type runProc struct {
	cmd  *exec.Cmd
	dir  string // its run directory
	tmp  string // its TMPDIR
	done chan struct{}

	mu     sync.Mutex
	stderr []string
	err    error // from Wait, once done is closed
}

// startRun starts `cascade run` on src with its own TMPDIR (or tmp, when
// given) and returns once the load runs (its first progress line). The
// process is killed when the test ends, if it has not exited.
func startRun(t *testing.T, bin, src, tmp string) *runProc {
	t.Helper()
	dir := t.TempDir()
	scen := filepath.Join(dir, "s.yaml")
	if err := os.WriteFile(scen, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if tmp == "" {
		tmp = filepath.Join(dir, "tmp")
		if err := os.Mkdir(tmp, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r := &runProc{dir: filepath.Join(dir, "out"), tmp: tmp, done: make(chan struct{})}
	r.cmd = exec.Command(bin, "run", "--progress", "plain", "--out", r.dir, scen)
	r.cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	})
	loading := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			r.mu.Lock()
			r.stderr = append(r.stderr, sc.Text())
			r.mu.Unlock()
			if strings.HasPrefix(sc.Text(), "[") {
				once.Do(func() { close(loading) })
			}
		}
		err := r.cmd.Wait()
		r.mu.Lock()
		r.err = err
		r.mu.Unlock()
		close(r.done)
	}()
	select {
	case <-loading:
	case <-r.done:
		t.Fatalf("the run ended before its load started:\n%s", r.log())
	case <-time.After(2 * time.Minute):
		t.Fatalf("no progress line in 2 minutes:\n%s", r.log())
	}
	return r
}

func (r *runProc) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.stderr, "\n")
}

// waitLine waits until stderr has a line containing s.
func (r *runProc) waitLine(t *testing.T, s string, within time.Duration) bool {
	t.Helper()
	for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if strings.Contains(r.log(), s) {
			return true
		}
	}
	return false
}

// wait returns the exit code, -1 when killed by a signal.
func (r *runProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(3 * time.Minute):
		t.Fatalf("still running 3 minutes on:\n%s", r.log())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var ee *exec.ExitError
	if errors.As(r.err, &ee) {
		return ee.ExitCode()
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return 0
}

// tempEntries lists the run's TMPDIR.
func (r *runProc) tempEntries() []string {
	entries, _ := os.ReadDir(r.tmp)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// A run killed outright leaves its temporary database behind, named after
// its process; `cascade cleanup` removes it once that process is gone,
// and keeps a live run's.
func TestCleanupRemovesAKilledRunsTempFiles(t *testing.T) {
	bin := buildCascade(t)
	killed := startRun(t, bin, dbScenario("killed"), "")
	live := startRun(t, bin, dbScenario("live"), killed.tmp)
	if err := killed.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed.wait(t)
	pid := killed.cmd.Process.Pid
	var left string
	for _, n := range killed.tempEntries() {
		if strings.HasPrefix(n, fmt.Sprintf("cascade-slowdb-%d.", pid)) {
			left = n
		}
	}
	if left == "" {
		t.Fatalf("the killed run (pid %d) left no temporary database named after it: %v", pid, killed.tempEntries())
	}
	cleanup := func(runPID int) string {
		cmd := exec.Command(bin, "cleanup", "--run", fmt.Sprintf("x-20260101-000000-%d", runPID))
		cmd.Env = append(os.Environ(), "TMPDIR="+killed.tmp)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cleanup: %v\n%s", err, out)
		}
		return string(out)
	}
	out := cleanup(pid)
	if !strings.Contains(out, "removed "+filepath.Join(killed.tmp, left)) {
		t.Errorf("cleanup did not report removing %s:\n%s", left, out)
	}
	out = cleanup(live.cmd.Process.Pid)
	if !strings.Contains(out, "kept ") || !strings.Contains(out, "still running") {
		t.Errorf("cleanup of a live run's files does not say it kept them:\n%s", out)
	}
	names := killed.tempEntries()
	if len(names) != 1 || !strings.HasPrefix(names[0], fmt.Sprintf("cascade-slowdb-%d.", live.cmd.Process.Pid)) {
		t.Errorf("after cleanup the shared TMPDIR holds %v, want only the live run's database", names)
	}
	if err := live.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := live.wait(t); code != ExitInterrupted {
		t.Errorf("the live run: exit %d", code)
	}
	if names := live.tempEntries(); len(names) != 0 {
		t.Errorf("left after the live run's Ctrl-C: %v", names)
	}
}

// A closed terminal (SIGHUP) stops a run the way Ctrl-C does: exit 130, a
// summary, and nothing left behind.
func TestHangupStopsARunCleanly(t *testing.T) {
	bin := buildCascade(t)
	r := startRun(t, bin, dbScenario("hangup"), "")
	if err := r.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t); code != ExitInterrupted {
		t.Fatalf("SIGHUP: exit %d, want %d\n%s", code, ExitInterrupted, r.log())
	}
	if _, err := results.Load(r.dir); err != nil {
		t.Errorf("no readable run directory after SIGHUP: %v", err)
	}
	if names := r.tempEntries(); len(names) != 0 {
		t.Errorf("left in TMPDIR after SIGHUP: %v", names)
	}
}

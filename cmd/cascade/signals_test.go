package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	cleanup := func(runPID int, flags ...string) string {
		cmd := exec.Command(bin, append([]string{"cleanup", "--run", fmt.Sprintf("x-20260101-000000-%d", runPID)}, flags...)...)
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
	if !strings.Contains(out, "kept ") || !strings.Contains(out, "still running") || !strings.Contains(out, "--force removes them") {
		t.Errorf("cleanup of a live run's files does not say it kept them, and why:\n%s", out)
	}
	names := killed.tempEntries()
	if len(names) != 1 || !strings.HasPrefix(names[0], fmt.Sprintf("cascade-slowdb-%d.", live.cmd.Process.Pid)) {
		t.Errorf("after cleanup the shared TMPDIR holds %v, want only the live run's database", names)
	}
	// Forced: gone from under the live run (SQLite keeps its open files).
	out = cleanup(live.cmd.Process.Pid, "--force")
	if names := killed.tempEntries(); len(names) != 0 || !strings.Contains(out, "removed ") {
		t.Errorf("cleanup --force left %v:\n%s", names, out)
	}
	if err := live.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := live.wait(t); code != ExitInterrupted {
		t.Errorf("the live run: exit %d", code)
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

// A second Ctrl-C, pressed while the run stops, does not kill it: the run
// stops waiting for work in flight but still removes everything it started
// (its temporary database, its containers) and exits 130; the first
// Ctrl-C's notice names the run for `cascade cleanup --run`.
func TestSecondSignalStillRemovesWhatTheRunStarted(t *testing.T) {
	bin := buildCascade(t)
	d := dockerOrNil(t)
	src := dbScenario("twice")
	if d != nil {
		src = strings.Replace(src, "upstreams:\n", "upstreams:\n  - {name: boxed, container: true}\n", 1)
	}
	r := startRun(t, bin, src, "")
	listening := listenAddrs(t, r.dir)
	if len(listening) == 0 {
		t.Fatal("the run's events name no listener")
	}
	t.Logf("the run listens on %v", listening)
	if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if !r.waitLine(t, "cascade: stopping run ", 10*time.Second) {
		t.Fatalf("no notice on the first Ctrl-C:\n%s", r.log())
	}
	// At once: the run is now stopping, and has barely begun to.
	if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("second Ctrl-C: %v (the run ended before it could be sent)", err)
	}
	if code := r.wait(t); code != ExitInterrupted {
		t.Fatalf("two Ctrl-C: exit %d, want %d\n%s", code, ExitInterrupted, r.log())
	}
	log := r.log()
	if !strings.Contains(log, "not waiting for the upstreams' work in flight; still removing") {
		t.Errorf("no notice on the second Ctrl-C:\n%s", log)
	}
	// The hurry cuts a container's graceful stop short; the run then
	// removes it by label. It warned that the stop "left something
	// behind" (context canceled) when nothing was left.
	if strings.Contains(log, "left something behind") {
		t.Errorf("a hurried stop reported as a leftover:\n%s", log)
	}
	m := regexp.MustCompile("`cascade cleanup --run ([^`]+)`").FindStringSubmatch(log)
	if m == nil || !strings.HasPrefix(m[1], "twice-") || !strings.HasSuffix(m[1], fmt.Sprintf("-%d", r.cmd.Process.Pid)) {
		t.Errorf("the notice does not name the run for cascade cleanup:\n%s", log)
	}
	if names := r.tempEntries(); len(names) != 0 {
		t.Errorf("left in TMPDIR after two Ctrl-C: %v", names)
	}
	for _, addr := range listening {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after the run", addr)
		}
	}
	if _, err := results.Load(r.dir); err != nil {
		t.Errorf("no readable run directory: %v", err)
	}
	if d != nil && m != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if left, err := d.List(ctx, m[1]); err != nil || len(left) != 0 {
			t.Errorf("containers left after two Ctrl-C: %v (err %v)", left, err)
		}
	}
}

// listenAddrs reads the addresses the run's upstreams and gateway listened
// on from its events (flushed each second while it runs).
func listenAddrs(t *testing.T, dir string) []string {
	t.Helper()
	var addrs []string
	for end := time.Now().Add(10 * time.Second); len(addrs) == 0 && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(filepath.Join(dir, results.EventsFile))
		for _, line := range strings.Split(string(b), "\n") {
			var e struct {
				Type   string         `json:"type"`
				Target string         `json:"target"`
				Attrs  map[string]any `json:"attrs"`
			}
			if json.Unmarshal([]byte(line), &e) != nil {
				continue
			}
			switch e.Type {
			case "upstream.listen":
				if a, ok := e.Attrs["addr"].(string); ok {
					addrs = append(addrs, a)
				}
			case "load.start":
				if u, err := url.Parse(e.Target); err == nil && u.Host != "" {
					addrs = append(addrs, u.Host)
				}
			}
		}
	}
	return addrs
}

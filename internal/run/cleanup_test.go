package run

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/faults/packet"
	"github.com/cascadehq/cascade/internal/owner"
)

// deadProcess is a process that ran and was reaped.
func deadProcess(t *testing.T) owner.Process {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	p := owner.Process{PID: cmd.Process.Pid, Start: 1}
	if p.Alive() {
		t.Skipf("pid %d was reused at once", p.PID)
	}
	return p
}

// The temporary directories of a process that is gone are removed; those
// of a live one are kept and said to be kept, with why.
func TestTempCleaner(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dead := deadProcess(t)
	deadDir := filepath.Join(tmp, fmt.Sprintf("cascade-build-%s-123", dead))
	if err := os.MkdirAll(filepath.Join(deadDir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	live, err := owner.MkdirTemp("slowdb")
	if err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(tmp, "cascade-slowdb-1809971418") // an older cascade's: no owner to ask
	if err := os.Mkdir(old, 0o755); err != nil {
		t.Fatal(err)
	}

	// One run's: another run id (PID) touches nothing.
	c, err := tempCleaner{}.Clean(context.Background(), CleanupOptions{RunID: fmt.Sprintf("x-20260101-000000-%d", dead.PID+1)})
	if err != nil || len(c.Removed)+len(c.Kept) != 0 {
		t.Fatalf("another run's cleanup: %+v %v", c, err)
	}
	c, err = tempCleaner{}.Clean(context.Background(), CleanupOptions{RunID: fmt.Sprintf("x-20260101-000000-%d", dead.PID)})
	if err != nil || len(c.Removed) != 1 || c.Removed[0] != deadDir {
		t.Fatalf("the dead run's cleanup: %+v %v", c, err)
	}
	if _, err := os.Stat(deadDir); !os.IsNotExist(err) {
		t.Fatalf("%s survived: %v", deadDir, err)
	}

	// Every run's: the live process's directory stays.
	c, err = tempCleaner{}.Clean(context.Background(), CleanupOptions{})
	if err != nil || len(c.Removed) != 0 || len(c.Kept) != 1 || !strings.Contains(c.Kept[0], live) || !strings.Contains(c.Kept[0], "still running") {
		t.Fatalf("cleanup beside a live process: %+v %v", c, err)
	}
	for _, d := range []string{live, old} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
}

func TestRunProcess(t *testing.T) {
	id := runID("a b/c")
	pid, made, ok := runProcess(id)
	if !ok || pid != os.Getpid() || time.Since(made) > time.Minute || time.Since(made) < -time.Second {
		t.Fatalf("runProcess(%q) = %d, %s, %v", id, pid, made, ok)
	}
	for _, bad := range []string{"no-such-run-x1", "x-2026-1", "x-20260101-000000-0", "x-20260101-000000-"} {
		if _, _, ok := runProcess(bad); ok {
			t.Errorf("runProcess(%q) accepted", bad)
		}
	}
}

// A namespace named like a run's link is kept while a process holds it (a
// thread inside it, or an open handle, as a live run holds its own), and
// removed once nothing does; --force removes it anyway.
func TestNetnsCleanerKeepsAHeldNamespace(t *testing.T) {
	requireRoot(t)
	id := runID(uniqueName("held"))
	name := linkPrefix(id, 0) + "-g"
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	clean := func(force bool) Cleaned {
		t.Helper()
		c, err := netnsCleaner{}.Clean(context.Background(), CleanupOptions{RunID: id, Force: force})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	exists := func() bool { _, err := os.Stat("/run/netns/" + name); return err == nil }

	// A process inside it.
	holder := exec.Command("ip", "netns", "exec", name, "sleep", "60")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Process.Kill(); _ = holder.Wait() }()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if pids, _ := packet.Holders(name); slices.Contains(pids, holder.Process.Pid) {
			break
		}
	}
	c := clean(false)
	want := fmt.Sprintf("netns %s (in use by process %d)", name, holder.Process.Pid)
	if len(c.Removed) != 0 || !slices.Contains(c.Kept, want) || !exists() {
		t.Fatalf("with a process inside: %+v, want %q kept", c, want)
	}
	_ = holder.Process.Kill()
	_ = holder.Wait()

	// An open handle: this process.
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	c = clean(false)
	want = fmt.Sprintf("netns %s (in use by process %d)", name, os.Getpid())
	if len(c.Removed) != 0 || !slices.Contains(c.Kept, want) || !exists() {
		t.Fatalf("with a handle open: %+v, want %q kept", c, want)
	}
	c = clean(true)
	if len(c.Kept) != 0 || !slices.Contains(c.Removed, "netns "+name) || exists() {
		t.Fatalf("forced: %+v", c)
	}
	f.Close()

	// Nobody holds it: a killed run's leftover.
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", name, err, out)
	}
	if c = clean(false); len(c.Kept) != 0 || !slices.Contains(c.Removed, "netns "+name) || exists() {
		t.Fatalf("held by nobody: %+v", c)
	}
}

// Without root, cleanup cannot remove namespaces, but it can see them: a
// killed root run's leftovers are listed with what removing them needs
// (an error: cascade cleanup exits non-zero), not reported as "nothing to
// clean".
func TestNetnsCleanerUnprivilegedListsLeftovers(t *testing.T) {
	dir := t.TempDir()
	noRoot := func() error { return fmt.Errorf("%w: missing CAP_NET_ADMIN", packet.ErrPrivileges) }
	c := netnsCleaner{dir: dir, privileged: noRoot}
	if _, err := c.Clean(context.Background(), CleanupOptions{}); !errors.Is(err, ErrNothingToClean) {
		t.Errorf("no leftovers, no root: %v, want ErrNothingToClean", err)
	}
	id := runID(uniqueName("left"))
	stem := linkPrefix(id, 0)
	for _, n := range []string{stem + "-g", stem + "-u", "someone-elses"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.Clean(context.Background(), CleanupOptions{})
	if err == nil || errors.Is(err, ErrNothingToClean) || !errors.Is(err, packet.ErrPrivileges) {
		t.Fatalf("leftovers, no root: %v, want an error that needs root", err)
	}
	for _, want := range []string{"2 namespaces", stem + "-g", stem + "-u", "needs root"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "someone-elses") {
		t.Errorf("%q lists a namespace that is not a run's", err)
	}
	// --run narrows the listing to that run's.
	if _, err := c.Clean(context.Background(), CleanupOptions{RunID: runID(uniqueName("other"))}); !errors.Is(err, ErrNothingToClean) {
		t.Errorf("another run's id: %v, want ErrNothingToClean", err)
	}
}

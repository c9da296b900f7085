package run

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

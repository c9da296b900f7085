package owner

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSelfIsAlive(t *testing.T) {
	me := Self()
	if me.PID != os.Getpid() || me.Start == 0 {
		t.Fatalf("Self() = %+v", me)
	}
	if !me.Alive() {
		t.Fatal("this process is not alive")
	}
	back, err := Parse(me.String())
	if err != nil || back != me {
		t.Fatalf("Parse(%q) = %+v, %v", me.String(), back, err)
	}
	// The same PID with another start time is another process: the
	// kernel gave the PID again after the owner died.
	if (Process{PID: me.PID, Start: me.Start + 1}).Alive() {
		t.Error("a PID reused by a later process looks like the owner")
	}
	if !RunningSince(me.PID, time.Now()) {
		t.Error("RunningSince(self, now) = false")
	}
	if RunningSince(me.PID, time.Now().Add(-24*time.Hour*365*30)) {
		t.Error("RunningSince(self, long before it started) = true: a reused PID would look alive")
	}
	for _, bad := range []string{"", "12", "x.1", "0.5", "12.x", "-3.4"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

// A process that exited is dead, and so is one that exited and was not yet
// reaped (a zombie holds nothing but its PID).
func TestExitedProcessIsDead(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	st, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	p := Process{PID: pid, Start: st.start}
	if !p.Alive() {
		t.Fatal("a running child is not alive")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if s, err := readStat(pid); err == nil && s.dead {
			break
		}
	}
	if p.Alive() {
		t.Error("a killed, unreaped child (a zombie) is alive")
	}
	_ = cmd.Wait()
	if p.Alive() || RunningSince(pid, time.Now()) {
		t.Error("a reaped child is alive")
	}
}

func TestTempDirsNameTheirOwner(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	dir, err := MkdirTemp("slowdb")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(dir), "cascade-slowdb-"+Self().String()+"-") {
		t.Fatalf("MkdirTemp made %s", dir)
	}
	// Not ours: an older cascade's name, a file, another program's dir.
	for _, n := range []string{"cascade-build-1809971418", "cascade-x", "other-1.2-3"} {
		if err := os.Mkdir(filepath.Join(os.TempDir(), n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(os.TempDir(), "cascade-build-1.2-3"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := TempDirs()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Path != dir || got[0].Kind != "slowdb" || got[0].Owner != Self() {
		t.Fatalf("TempDirs() = %+v, want only %s", got, dir)
	}
	if _, err := MkdirTemp("../x"); err == nil {
		t.Error("MkdirTemp accepted a kind with a path in it")
	}
}

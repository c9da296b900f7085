package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cascadehq/cascade/faults/packet"
)

const packetScenario = `name: pkt-cli
upstreams:
  - {name: api}
gateway:
  routes:
    - {path: /, upstream: api}
load:
  stages:
    - {duration: 60s, rate: 20/s}
  requests:
    - {path: /}
faults:
  - {name: lossy, kind: packet, target: api, start: 0s, params: {loss: 1%}}
`

// unprivileged returns a command that runs bin without CAP_NET_ADMIN and
// CAP_SYS_ADMIN: as root, through setpriv with both dropped from the
// bounding set; otherwise as it is.
func unprivileged(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	if packet.CheckPrivileges() != nil {
		return exec.Command(bin, args...)
	}
	sp, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("running as root and no setpriv to drop capabilities with")
	}
	return exec.Command(sp, append([]string{"--bounding-set=-net_admin,-sys_admin", bin}, args...)...)
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// Packet faults without the capabilities: run stops at once with exit 3
// naming them; validate says the scenario needs root, and fails with exit 2
// under --check-privileges.
func TestPacketFaultsWithoutPrivileges(t *testing.T) {
	bin := buildCascade(t)
	dir := t.TempDir()
	scen := filepath.Join(dir, "pkt.yaml")
	if err := os.WriteFile(scen, []byte(packetScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := unprivileged(t, bin, "run", "--progress", "off", "--out", filepath.Join(dir, "out"), scen).CombinedOutput()
	if code := exitCode(err); code != ExitRunFailed || !strings.Contains(string(out), "CAP_NET_ADMIN") || !strings.Contains(string(out), "packet faults on api") {
		t.Errorf("run without privileges: exit %d, want %d naming CAP_NET_ADMIN and the upstream:\n%s", code, ExitRunFailed, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Error("the refused run still made its run directory")
	}
	out, err = unprivileged(t, bin, "validate", scen).CombinedOutput()
	if exitCode(err) != 0 || !strings.Contains(string(out), "need root") {
		t.Errorf("validate: %v\n%s", err, out)
	}
	out, err = unprivileged(t, bin, "validate", "--check-privileges", scen).CombinedOutput()
	if code := exitCode(err); code != ExitUsage || !strings.Contains(string(out), "CAP_NET_ADMIN") {
		t.Errorf("validate --check-privileges: exit %d, want %d:\n%s", code, ExitUsage, out)
	}
}

// startPacketRun starts a run of packetScenario and returns it once its
// packet link is up, with the link's namespaces and the run's id (from its
// packet.link event; events are flushed every second).
func startPacketRun(t *testing.T, bin string) (cmd *exec.Cmd, names []string, runID string) {
	t.Helper()
	dir := t.TempDir()
	scen := filepath.Join(dir, "pkt.yaml")
	if err := os.WriteFile(scen, []byte(packetScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	outDir := filepath.Join(dir, "out")
	cmd = exec.Command(bin, "run", "--progress", "plain", "--out", outDir, scen)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "[") {
			break // the load runs
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); runID == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		b, _ := os.ReadFile(filepath.Join(outDir, "events.jsonl"))
		for _, line := range bytes.Split(b, []byte("\n")) {
			var e struct {
				Type  string            `json:"type"`
				Attrs map[string]string `json:"attrs"`
			}
			if json.Unmarshal(line, &e) == nil && e.Type == "packet.link" {
				runID, names = e.Attrs["run_id"], []string{e.Attrs["gateway_netns"], e.Attrs["upstream_netns"]}
			}
		}
	}
	if runID == "" {
		t.Fatal("no packet.link event")
	}
	return cmd, names, runID
}

func netnsList(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v %s", err, out)
	}
	return string(out)
}

// SIGTERM or SIGINT: the run removes its namespaces itself on the way out.
// Killed outright (SIGKILL) it cannot: cascade cleanup --run removes them,
// and only that run's.
func TestPacketRunNamespacesRemoved(t *testing.T) {
	if err := packet.CheckPrivileges(); err != nil {
		if os.Getenv("CASCADE_REQUIRE_ROOT") == "1" {
			t.Fatalf("CASCADE_REQUIRE_ROOT=1 but: %v", err)
		}
		t.Skipf("skipping: %v (set CASCADE_REQUIRE_ROOT=1 to make this a failure)", err)
	}
	bin := buildCascade(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd, names, _ := startPacketRun(t, bin)
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		if code := exitCode(cmd.Wait()); code != ExitInterrupted {
			t.Errorf("%s: exit %d, want %d", sig, code, ExitInterrupted)
		}
		for _, n := range names {
			if strings.Contains(netnsList(t), n) {
				t.Errorf("%s: namespace %s left behind", sig, n)
			}
		}
	}

	cmd, names, runID := startPacketRun(t, bin)
	other, otherNames, _ := startPacketRun(t, bin) // a live run that cleanup --run must leave alone
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for _, n := range names {
		if !strings.Contains(netnsList(t), n) {
			t.Fatalf("namespace %s is gone before cleanup: was it killed at all?", n)
		}
	}
	// Without the capabilities, cleanup cannot remove them, but says they
	// are there and what removing them needs, and fails.
	out, err := unprivileged(t, bin, "cleanup", "--run", runID).CombinedOutput()
	if code := exitCode(err); code != ExitRunFailed || !strings.Contains(string(out), "needs root") {
		t.Errorf("unprivileged cleanup: exit %d, want %d saying it needs root:\n%s", code, ExitRunFailed, out)
	}
	for _, n := range names {
		if !strings.Contains(string(out), n) {
			t.Errorf("unprivileged cleanup does not name %s:\n%s", n, out)
		}
	}
	out, err = exec.Command(bin, "cleanup", "--run", runID).CombinedOutput()
	if err != nil {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	list := netnsList(t)
	for _, n := range names {
		if strings.Contains(list, n) {
			t.Errorf("namespace %s survived cleanup:\n%s", n, out)
		}
		if !strings.Contains(string(out), "removed netns "+n) {
			t.Errorf("cleanup did not report %s:\n%s", n, out)
		}
	}
	for _, n := range otherNames {
		if !strings.Contains(list, n) {
			t.Errorf("cleanup --run %s removed another run's namespace %s", runID, n)
		}
	}
	if err := other.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(other.Wait()); code != ExitInterrupted {
		t.Errorf("the other run: exit %d", code)
	}
}

package toxiapi

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// findCLI looks for toxiproxy-cli on PATH, then where the bench installer
// puts it ($BENCH_TOOLS, default /tmp/bench-peers/bin).
func findCLI(t *testing.T) string {
	if p, err := exec.LookPath("toxiproxy-cli"); err == nil {
		return p
	}
	dir := os.Getenv("BENCH_TOOLS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "bench-peers", "bin")
	}
	p := filepath.Join(dir, "toxiproxy-cli")
	if _, err := os.Stat(p); err != nil {
		t.Skip("toxiproxy-cli not found on PATH or in $BENCH_TOOLS (bench/install-peers.sh installs it)")
	}
	return p
}

// The real toxiproxy-cli drives the API.
func TestToxiproxyCLI(t *testing.T) {
	cli := findCLI(t)
	_, api := startAPI(t)
	up := echoUpstream(t)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(cli, append([]string{"-h", api}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("toxiproxy-cli %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("create", "-l", "127.0.0.1:0", "-u", up, "cli")
	run("toxic", "add", "-t", "latency", "-a", "latency=120", "-a", "jitter=0", "cli")
	run("toxic", "add", "-t", "slicer", "--upstream", "-a", "average_size=10", "-a", "size_variation=2", "-a", "delay=50", "cli")
	run("toxic", "update", "-n", "latency_downstream", "-a", "jitter=3", "cli")
	out := run("inspect", "cli")
	if !strings.Contains(out, "latency=120") || !strings.Contains(out, "jitter=3") || !strings.Contains(out, "slicer_upstream") {
		t.Errorf("inspect:\n%s", out)
	}
	listen := ""
	for _, f := range strings.Fields(run("list")) {
		if strings.HasPrefix(f, "127.0.0.1:") && f != up {
			listen = f
		}
	}
	if d, err := roundTrip(t, listen); err != nil || d < 117*time.Millisecond { // 120 ± 3
		t.Errorf("through the CLI-made proxy %s: %v, %v; want >= 117ms", listen, d, err)
	}
	run("toggle", "cli")
	if !strings.Contains(run("list"), "disabled") {
		t.Error("toggle did not disable the proxy")
	}
	run("toxic", "delete", "-n", "latency_downstream", "cli")
	run("delete", "cli")
	if strings.Contains(run("list"), "cli") {
		t.Error("proxy still listed after delete")
	}
}

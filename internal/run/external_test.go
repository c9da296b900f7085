package run

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/tcptest"
)

// A third-party gateway's active health checks are told from traffic when
// its configuration puts cascade's mark on them, as the README shows for
// HAProxy: the replicas count them apart, and amplification stays at 1.
// HAProxy runs here as a plain process (no Docker), from the Debian
// package CI installs.
func TestExternalGatewayMarkedHealthChecks(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/haproxy"); err != nil {
			if os.Getenv("CASCADE_REQUIRE_DOCKER") == "1" {
				t.Fatal("haproxy is not installed, and CI installs it (.ci/docker.sh)")
			}
			t.Skip("skipping: haproxy is not installed (apt-get install haproxy)")
		}
	}
	held := tcptest.HoldLowPort(t) // so that the next is another
	up := held.Addr().(*net.TCPAddr).Port
	gw := tcptest.FreeLowPort(t)
	held.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	conf := fmt.Sprintf(`global
    maxconn 256
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:%d
    default_backend be
backend be
    option httpchk
    http-check send meth GET uri /health hdr X-Cascade-Health-Check 1
    server u0 127.0.0.1:%d check inter 100ms rise 1 fall 1000
`, gw, up)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", cfg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) // ours, by PID
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", gw))
		if err == nil {
			r.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy on :%d never answered: %v", gw, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	out, objs := judgeScenario(t, fmt.Sprintf(`name: haproxy-health-checks
upstreams:
  - {name: api, listen: ["127.0.0.1:%d"], latency: 1ms}
gateway:
  external: http://127.0.0.1:%d
load:
  stages: [{duration: 2s, rate: 50/s}]
  requests: [{path: /x}]
slo:
  - {objective: "amplification <= 1", upstream: api}
`, up, gw))
	var arrivals, checks int64
	for _, rec := range loadUpstreams(t, out.Dir) {
		arrivals += rec.Arrivals
		checks += rec.HealthChecks
	}
	sent := out.Summary.Run.Stats.Sent
	t.Logf("%d requests sent, %d arrivals, %d health checks; outcomes %v", sent, arrivals, checks, out.Summary.Run.Stats.Causes)
	if checks < 5 {
		t.Errorf("%d health checks counted apart in 2 s of checks every 100 ms", checks)
	}
	// HAProxy may answer the first requests 503 itself, before its checks
	// have seen the replica come up: those never arrive.
	ok := out.Summary.Run.Stats.Causes["ok"]
	if ok < sent*8/10 || arrivals != ok {
		t.Errorf("%d arrivals for %d requests answered (of %d sent): the health checks were counted as traffic", arrivals, ok, sent)
	}
	expect(t, get(t, objs, "amplification <= 1 (api)"), true)
}

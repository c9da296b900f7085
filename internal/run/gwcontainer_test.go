package run

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/internal/containers"
	"github.com/cascadehq/cascade/internal/containers/containerstest"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// gwContainerScenario puts kind in a container in front of an upstream of
// replicas that turns slow (3 s) from 1 s to 3 s of the load; the proxy's
// timeout is 600 ms, the client's 5 s.
func gwContainerScenario(name, kind string, replicas int) string {
	return fmt.Sprintf(`name: %s
seed: 5
upstreams:
  - {name: api, replicas: %d, latency: 2ms}
gateway:
  container: {kind: %s, timeout: 600ms}
load:
  client_timeout: 5s
  stages: [{duration: 4s, rate: 20/s}]
  requests: [{path: /orders}]
faults:
  - {name: slow, kind: latency, target: api, start: 1s, duration: 2s, params: {delay: 3s}}
slo:
  - client_timeout_count == 0
  - {phase: before, objective: "error_rate == 0%%"}
  - {phase: slow, objective: "gateway_timeout_rate > 90%%"}
  - {phase: slow, cascade: gateway, tolerance: 150ms}
`, name, replicas, kind)
}

func requireGatewayBinary(t *testing.T, kind string) {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/" + kind); err != nil {
		containerstest.SkipUnlessRequired(t, fmt.Errorf("%s is not installed (apt-get install -y --no-install-recommends %s): %w", kind, kind, err))
	}
}

// nginx and HAProxy in a container, in front of a slow upstream: their
// 504s are gateway_timeout, decided by the gateway layer at the proxy's
// timeout, never the client's; the configuration they ran with is kept;
// and no container is left once the run returns.
func TestGatewayContainerTimeoutCascade(t *testing.T) {
	d := containerstest.Connect(t)
	for _, kind := range []string{"nginx", "haproxy"} {
		t.Run(kind, func(t *testing.T) {
			requireGatewayBinary(t, kind)
			out, objs, slow := runGatewayContainer(t, d, kind, 1)
			for _, o := range []string{"client_timeout_count == 0", "before: error_rate == 0%", "slow: gateway_timeout_rate > 90%", "slow: timeouts answered by gateway"} {
				expect(t, get(t, objs, o), true)
			}
			// The service time of the 504s: the proxy's timer, not ours.
			if p50 := ms(slow.Service.P50); p50 < 580*time.Millisecond || p50 > 800*time.Millisecond {
				t.Errorf("the slow phase's 504s took %v (p50), want about 600ms", p50)
			}
			conf, err := os.ReadFile(filepath.Join(out.Dir, GatewayConfigFile(kind)))
			if err != nil || !strings.Contains(string(conf), "600ms") {
				t.Errorf("the configuration kept in the run directory: %v\n%s", err, conf)
			}
		})
	}
}

// nginx's defaults with two replicas that both hang: the first request is
// passed on to the second server when the first times out
// (proxy_next_upstream error timeout), so its 504 comes at 2 × the
// timeout; each timeout also counts as a failure of its server (max_fails
// 1, fail_timeout 10s), so with both servers failed nginx answers the
// rest at once with 502 ("no live upstreams"), for 10 s. HAProxy answers
// 504 at its timeout, every time.
func TestGatewayContainerTwoReplicas(t *testing.T) {
	d := containerstest.Connect(t)
	t.Run("nginx", func(t *testing.T) {
		requireGatewayBinary(t, "nginx")
		_, objs, slow := runGatewayContainer(t, d, "nginx", 2)
		gt, bg := slow.Causes["gateway_timeout"], slow.Causes["bad_gateway"]
		if gt < 1 || gt > 3 || bg < 30 {
			t.Errorf("slow phase: %d gateway_timeout, %d bad_gateway; want a first 504 or two, then 502s", gt, bg)
		}
		if mx := ms(slow.Service.Max); mx < 1180*time.Millisecond || mx > 1500*time.Millisecond {
			t.Errorf("the slowest answer took %v, want about 2 × 600ms", mx)
		}
		expect(t, get(t, objs, "slow: timeouts answered by gateway"), true)
	})
	t.Run("haproxy", func(t *testing.T) {
		requireGatewayBinary(t, "haproxy")
		_, objs, slow := runGatewayContainer(t, d, "haproxy", 2)
		expect(t, get(t, objs, "slow: gateway_timeout_rate > 90%"), true)
		expect(t, get(t, objs, "slow: timeouts answered by gateway"), true)
		if mx := ms(slow.Service.Max); mx > 800*time.Millisecond {
			t.Errorf("the slowest answer took %v, want about 600ms", mx)
		}
	})
}

// A configuration of your own (the README's, for nginx, with
// proxy_next_upstream off): its placeholders are filled in, it runs, and
// with one attempt per request nginx answers 504 at its timeout even with
// two replicas.
func TestGatewayContainerOwnConfig(t *testing.T) {
	d := containerstest.Connect(t)
	requireGatewayBinary(t, "nginx")
	conf, err := filepath.Abs("testdata/nginx-one-attempt.conf")
	if err != nil {
		t.Fatal(err)
	}
	name := uniqueName("gwc-own")
	src := strings.Replace(gwContainerScenario(name, "nginx", 2), "container: {kind: nginx, timeout: 600ms}",
		fmt.Sprintf("container: {kind: nginx, timeout: 600ms, config: %q, ready: /up}", conf), 1)
	out, objs := judgeScenario(t, src)
	slow := phase(t, out.Summary, "slow")
	t.Logf("%s: slow phase %v, service p50 %.1fms max %.1fms", name, slow.Causes, slow.Service.P50, slow.Service.Max)
	expect(t, get(t, objs, "slow: gateway_timeout_rate > 90%"), true)
	expect(t, get(t, objs, "slow: timeouts answered by gateway"), true)
	kept, err := os.ReadFile(filepath.Join(out.Dir, GatewayConfigFile("nginx")))
	if err != nil || strings.Contains(string(kept), "{{") || !strings.Contains(string(kept), "location = /up") ||
		strings.Count(string(kept), "        server 127.0.0.1:") != 2 || !strings.Contains(string(kept), "max_fails=0;") {
		t.Errorf("the configuration as run: %v\n%s", err, kept)
	}
	if left := leftovers(t, d, name); len(left) > 0 {
		t.Errorf("containers left after the run: %v", left)
	}
}

func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

// runGatewayContainer runs gwContainerScenario and checks what every
// proxy run must: the summary names the proxy, and no container is left.
func runGatewayContainer(t *testing.T, d *containers.Docker, kind string, replicas int) (*Outcome, map[string]results.ObjectiveResult, results.StatsSummary) {
	t.Helper()
	name := uniqueName("gwc-" + kind)
	out, objs := judgeScenario(t, gwContainerScenario(name, kind, replicas))
	s := out.Summary
	slow := phase(t, s, "slow")
	t.Logf("%s: gateway %s, target %s, took %.1fs; slow phase: %v, service p50 %.1fms max %.1fms",
		name, s.Gateway, s.Target, float64(s.Elapsed), slow.Causes, slow.Service.P50, slow.Service.Max)
	if s.Gateway != results.GatewayContainerPrefix+kind || !strings.HasPrefix(s.Target, "http://127.0.0.1:") {
		t.Errorf("gateway %q, target %q", s.Gateway, s.Target)
	}
	if left := leftovers(t, d, name); len(left) > 0 {
		t.Errorf("containers left after the run: %v", left)
	}
	return out, objs, slow
}

// Without Docker a gateway container fails the run's setup at once, saying
// Docker is needed (and where it looked), not after a wait.
func TestGatewayContainerWithoutDocker(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "docker.sock"))
	p, err := plan.CompileBytes("nodocker.yaml", []byte(gwContainerScenario("nodocker", "nginx", 1)), plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err = Run(ctx, p, Options{OutDir: filepath.Join(t.TempDir(), "out"), Progress: ProgressOff})
	if !errors.Is(err, ErrSetup) || !errors.Is(err, containers.ErrNoDocker) || !strings.Contains(err.Error(), "gateway nginx: this scenario runs containers and needs Docker") {
		t.Fatalf("err = %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %v to say Docker is missing", took)
	}
}

// Containerised replicas start concurrently; when one fails, the others,
// already serving, are removed by the upstream's own start, before the
// run's label sweep (env.close) gets to them.
func TestReplicaStartFailureRemovesTheOthers(t *testing.T) {
	d := containerstest.Connect(t)
	staticCascade(t)
	name := uniqueName("spawn-fail")
	env := newUpstreamEnv(name, 1, event.Discard, event.NewClock(), "")
	defer env.close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const n = 4
	uc, err := env.prepare(ctx, faults.UpstreamConfig{Name: "api", Replicas: n, Container: &faults.ContainerConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	spawn := uc.Spawn
	var ready atomic.Int32
	boom := errors.New("replica 1 failed")
	uc.Spawn = func(ctx context.Context, i int, replica string) (faults.Process, error) {
		if i == 1 {
			for ready.Load() < n-1 && ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond) // fail once the others serve
			}
			return nil, boom
		}
		p, err := spawn(ctx, i, replica)
		if err == nil {
			ready.Add(1)
		}
		return p, err
	}
	start := time.Now()
	err = faults.NewUpstream(uc, faults.Options{}).StartContext(ctx)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	t.Logf("%d replicas started concurrently and removed after the failure in %v", ready.Load(), time.Since(start))
	if ready.Load() != n-1 {
		t.Errorf("%d replicas started beside the failing one, want %d", ready.Load(), n-1)
	}
	if left := leftovers(t, d, name); len(left) > 0 {
		t.Errorf("containers left after the failed start: %v", left)
	}
}

// A fixed proxy port is never handed to a replica that starts before the
// proxy: freePort skips what reserve kept.
func TestReservedPortIsNotHandedOut(t *testing.T) {
	e := newUpstreamEnv("reserve", 1, nil, nil, "")
	first, err := e.freePort()
	if err != nil {
		t.Fatal(err)
	}
	// The same seed draws the same first port: reserved, it is skipped.
	e2 := newUpstreamEnv("reserve", 1, nil, nil, "")
	e2.reserve(first)
	for range 50 {
		p, err := e2.freePort()
		if err != nil {
			t.Fatal(err)
		}
		if p == first {
			t.Fatalf("freePort handed out the reserved port %d", p)
		}
	}
}

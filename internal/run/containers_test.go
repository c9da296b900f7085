package run

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/containers"
	"github.com/cascadehq/cascade/internal/containers/containerstest"
)

// These tests need Docker: they skip without it, and fail under
// CASCADE_REQUIRE_DOCKER=1.

// leftovers lists the containers whose name carries prefix.
func leftovers(t *testing.T, d *containers.Docker, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names, err := d.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.Contains(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}

func uniqueName(base string) string {
	return fmt.Sprintf("%s-%d", base, time.Now().UnixNano()%1_000_000)
}

// staticCascade builds (or finds) the static cascade binary once per test,
// with a budget of its own: a cold CGO_ENABLED=0 build of the whole
// command takes minutes on a busy 2-core machine.
func staticCascade(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin, err := staticBinary(ctx, "", func(_ string, f func() error) error { return f() })
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvUpstreamBinary, bin)
	return bin
}

func TestContainerisedUpstreamTakesInstanceFaults(t *testing.T) {
	d := containerstest.Connect(t)
	staticCascade(t)
	name := uniqueName("ctr-upstream")
	s := runScenario(t, fmt.Sprintf(`name: %s
seed: 4
upstreams:
  - name: api
    replicas: 2
    latency: 2ms
    body_size: 128
    container: true
gateway:
  routes:
    - {path: /, upstream: api, timeouts: {connect: 200ms, response_header: 600ms, total: 1s}}
load:
  client_timeout: 3s
  stages:
    - {duration: 7s, rate: 40/s}
  requests:
    - {path: /}
faults:
  - {name: freeze, kind: pause, target: "api[0]", start: 1s, duration: 1500ms}
  - {name: bounce, kind: restart, target: "api[1]", start: 3500ms, duration: 2s, params: {delay: 1s}}
  - {name: gone, kind: kill, target: "api[0]", start: 5500ms}
`, name))
	if before := phase(t, s, "before").Causes; before["ok"] == 0 || len(before) != 1 {
		t.Errorf("before the faults: %v, want every request ok from the containers", before)
	}
	if c := phase(t, s, "freeze").Causes; c["gateway_timeout"] == 0 {
		t.Errorf("a paused container: %v, want gateway_timeout", c)
	}
	if c := phase(t, s, "bounce").Causes; c["upstream_connect_failure"]+c["upstream_reset"] == 0 {
		t.Errorf("a restarting container: %v, want connect failures", c)
	}
	if c := phase(t, s, "gone").Causes; c["upstream_connect_failure"]+c["upstream_reset"] == 0 {
		t.Errorf("a killed container: %v", c)
	}
	for _, f := range s.Faults {
		if f.Fired == 0 {
			t.Errorf("%s never took effect: %+v", f.Name, f)
		}
	}
	if left := leftovers(t, d, name); len(left) != 0 {
		t.Fatalf("the run left containers behind: %v", left)
	}
}

func TestNamedImageUpstream(t *testing.T) {
	d := containerstest.Connect(t)
	bin := staticCascade(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	img, err := d.BuildBinaryImage(ctx, "upstream", bin)
	if err != nil {
		t.Fatal(err)
	}
	port, err := containers.FreePort(rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1)))
	if err != nil {
		t.Fatal(err)
	}
	name := uniqueName("named-image")
	s := runScenario(t, fmt.Sprintf(`name: %s
upstreams:
  - name: teapot
    container:
      image: %s
      port: %d
      cmd: [upstream, --listen, "127.0.0.1:%d", --name, teapot, --latency, 30ms]
gateway:
  routes:
    - {path: /, upstream: teapot}
load:
  stages:
    - {duration: 2s, rate: 20/s}
  requests:
    - {path: /}
`, name, img.Ref, port, port))
	if c := s.Run.Stats.Causes; c["ok"] < 30 {
		t.Fatalf("causes %v: the named image serves", c)
	}
	if p50 := s.Run.Stats.Latency.P50; p50 < 30 {
		t.Fatalf("p50 %.1fms: the image's own --latency 30ms is missing", p50)
	}
	if left := leftovers(t, d, name); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

func TestDatabaseUpstreamCascadePostgresContainer(t *testing.T) {
	d := containerstest.Connect(t)
	s := runScenario(t, dbScenario("{driver: postgres, container: true, pool_size: 2, statement_timeout: 300ms, upstream_timeout: 1s}"))
	checkDBCascade(t, s)
	if left := leftovers(t, d, "db-cascade"); len(left) != 0 {
		t.Fatalf("the PostgreSQL container was left behind: %v", left)
	}
}

// TestCleanupRemovesALeftoverRun: cleanup removes the container of a run
// whose process is gone, and keeps (and says so) that of a run whose
// process still runs, unless forced.
func TestCleanupRemovesALeftoverRun(t *testing.T) {
	if env := os.Getenv("CASCADE_TEST_LEFTOVER"); env != "" {
		leftoverRun(t, env) // the child below: a run that dies without cleaning up
		return
	}
	d := containerstest.Connect(t)
	bin := staticCascade(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	img, err := d.BuildBinaryImage(ctx, "upstream", bin)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	start := func(id string) (*containers.Container, error) {
		port, err := containers.FreePort(rng)
		if err != nil {
			return nil, err
		}
		return d.Run(ctx, id, containers.Spec{Name: "api-0", Image: img.Ref, Port: port,
			Cmd: []string{"upstream", "--listen", fmt.Sprintf("127.0.0.1:%d", port)}, WaitLog: UpstreamReadyLine})
	}

	// A run that was killed: its process started a container and is gone.
	dead := runID(uniqueName("killed-run"))
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCleanupRemovesALeftoverRun$")
	child.Env = append(os.Environ(), "CASCADE_TEST_LEFTOVER="+dead+" "+img.Ref)
	if out, err := child.CombinedOutput(); err != nil {
		t.Fatalf("the run to be killed: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = d.Cleanup(context.Background(), dead) })
	if left := leftovers(t, d, dead); len(left) != 1 {
		t.Fatalf("the killed run left %v, want its one container", left)
	}
	// A run in progress: this process.
	live := runID(uniqueName("live-run"))
	c, err := start(live)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Terminate(context.Background()) })

	rep, err := Cleanup(ctx, CleanupOptions{RunID: dead})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep) == 0 || len(rep[0].Removed) != 1 || !strings.Contains(rep[0].Removed[0], dead) {
		t.Fatalf("cleanup report %+v, want the killed run's container removed", rep)
	}
	if left := leftovers(t, d, dead); len(left) != 0 {
		t.Fatalf("still there: %v", left)
	}

	rep, err = Cleanup(ctx, CleanupOptions{RunID: live})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%s (process %d that started it is still running)", c.Name, os.Getpid())
	if len(rep) == 0 || len(rep[0].Removed) != 0 || !slices.Contains(rep[0].Kept, want) {
		t.Fatalf("cleanup report %+v, want %q kept", rep, want)
	}
	if left := leftovers(t, d, live); len(left) != 1 {
		t.Fatalf("a live run's container is gone: %v", left)
	}
	rep, err = Cleanup(ctx, CleanupOptions{RunID: live, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep) == 0 || !slices.Contains(rep[0].Removed, c.Name) {
		t.Fatalf("forced cleanup report %+v, want %s removed", rep, c.Name)
	}
}

// leftoverRun starts one container for run id from image and exits
// without removing it, as a killed run would.
func leftoverRun(t *testing.T, env string) {
	id, image, _ := strings.Cut(env, " ")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := containers.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	port, err := containers.FreePort(rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Run(ctx, id, containers.Spec{Name: "api-0", Image: image, Port: port,
		Cmd: []string{"upstream", "--listen", fmt.Sprintf("127.0.0.1:%d", port)}, WaitLog: UpstreamReadyLine}); err != nil {
		t.Fatal(err)
	}
}

package containers_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cascadehq/cascade/internal/containers"
	"github.com/cascadehq/cascade/internal/containers/containerstest"
	"github.com/cascadehq/cascade/internal/event"
)

// These tests need no daemon: they prove refusals happen before any traffic.

func TestConnectRefusesRemoteDockerHost(t *testing.T) {
	t.Setenv("DOCKER_HOST", "tcp://192.0.2.10:2375") // TEST-NET-1: never routed
	_, err := containers.Connect(context.Background())
	if !errors.Is(err, containers.ErrNotLoopback) {
		t.Fatalf("Connect with DOCKER_HOST=tcp://192.0.2.10:2375: err = %v, want ErrNotLoopback", err)
	}
}

func TestConnectRefusesRemotePublishedHost(t *testing.T) {
	t.Setenv(containers.EnvHostOverride, "10.1.2.3")
	_, err := containers.Connect(context.Background())
	if !errors.Is(err, containers.ErrNotLoopback) {
		t.Fatalf("Connect with %s=10.1.2.3: err = %v, want ErrNotLoopback", containers.EnvHostOverride, err)
	}
}

func TestConnectWithoutDaemonSaysWhatToDo(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "docker.sock"))
	_, err := containers.Connect(context.Background())
	if !errors.Is(err, containers.ErrNoDocker) {
		t.Fatalf("err = %v, want ErrNoDocker", err)
	}
	for _, want := range []string{"docker daemon not reachable at unix://", "start dockerd, see .ci/docker.sh"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// buildHTTPD builds testdata/httpd as a static binary; version distinguishes
// builds so a test can change the binary's content.
func buildHTTPD(t *testing.T, version string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "httpd")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", out, "./testdata/httpd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build testdata/httpd: %v\n%s", err, b)
	}
	return out
}

func get(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", url, resp.Status, b)
	}
	return string(b)
}

func newRand(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	t.Logf("port seed %d", seed)
	return rand.New(rand.NewPCG(seed, 0))
}

func TestScratchUpstreamImage(t *testing.T) {
	events := &event.Memory{}
	d := containerstest.Connect(t, containers.WithEvents(events, event.NewClock()))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Images are removed after the run's containers (cleanups run last-in,
	// first-out), or the daemon refuses to remove an image in use.
	var refs []string
	t.Cleanup(func() { removeImages(t, refs...) })
	run := containerstest.RunID(t, d)

	bin := buildHTTPD(t, "v1-"+run) // unique content: the first build is a real build
	img, err := d.BuildBinaryImage(ctx, "test-httpd", bin)
	if err != nil {
		t.Fatal(err)
	}
	refs = append(refs, img.Ref)
	t.Logf("first build: %s built=%v in %v (%d bytes)", img.Ref, img.Built, img.Took, img.Size)
	if !img.Built {
		t.Errorf("first build of a new binary was skipped")
	}
	again, err := d.BuildBinaryImage(ctx, "test-httpd", bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second build: %s built=%v in %v", again.Ref, again.Built, again.Took)
	if again.Built || again.Ref != img.Ref {
		t.Errorf("unchanged binary: second build %+v, want skipped with ref %s", again, img.Ref)
	}
	other, err := d.BuildBinaryImage(ctx, "test-httpd", buildHTTPD(t, "v2-"+run))
	if err != nil {
		t.Fatal(err)
	}
	refs = append(refs, other.Ref)
	if other.Ref == img.Ref || !other.Built {
		t.Errorf("changed binary: got %+v, want a new build with a new tag", other)
	}

	port, err := containers.FreePort(newRand(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Run(ctx, run, containers.Spec{
		Name:     "upstream-0",
		Image:    img.Ref,
		Cmd:      []string{"--listen", fmt.Sprintf("127.0.0.1:%d", port), "a", "b"},
		Env:      map[string]string{"GREETING": "hello"},
		Port:     port,
		WaitHTTP: "/healthz",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("container %s ready in %v at %s", c.Name, c.Ready, c.Addr)
	if got, want := get(t, "http://"+c.Addr+"/"), "v1-"+run+" hello a,b\n"; got != want {
		t.Errorf("GET / = %q, want %q", got, want)
	}

	// Pause: the kernel still completes the connect, but nothing answers.
	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	hung := &http.Client{Timeout: 300 * time.Millisecond}
	if resp, err := hung.Get("http://" + c.Addr + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("paused container answered %s", resp.Status)
	}
	if err := c.Unpause(ctx); err != nil {
		t.Fatal(err)
	}
	if got := get(t, "http://"+c.Addr+"/healthz"); got != "ok\n" {
		t.Errorf("after Unpause: %q", got)
	}
	// Stop and Start: refused while stopped, ready again after Start.
	if err := c.Stop(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", c.Addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("stopped container still accepts connections")
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got := get(t, "http://"+c.Addr+"/healthz"); got != "ok\n" {
		t.Errorf("after Start: %q", got)
	}

	inspect := dockerInspect(t, c.ID, "{{.HostConfig.NetworkMode}} {{index .Config.Labels \"cascade.run\"}} {{index .Config.Labels \"cascade.managed\"}}")
	if want := "host " + run + " true"; inspect != want {
		t.Errorf("network mode and labels = %q, want %q", inspect, want)
	}
	if err := c.Terminate(ctx); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", c.Addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Terminate", c.Addr)
	}
	if names, err := d.List(ctx, run); err != nil || len(names) != 0 {
		t.Errorf("after Terminate, run lists %v (err %v)", names, err)
	}
	var got []string
	for _, e := range events.Events() {
		if e.Target == c.Name || e.Type == "image.build" {
			got = append(got, e.Type)
		}
	}
	want := []string{"image.build", "image.build", "container.ready", "container.pause", "container.unpause", "container.stop", "container.start", "container.terminate"}
	if !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

func TestMissingImageFailsWithoutPull(t *testing.T) {
	d := containerstest.Connect(t)
	run := containerstest.RunID(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := d.Run(ctx, run, containers.Spec{Name: "x", Image: "cascade/does-not-exist:" + run})
	if !errors.Is(err, containers.ErrImageMissing) {
		t.Fatalf("err = %v, want ErrImageMissing", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %v: looks like it tried to pull", took)
	}
}

// TestCleanupRemovesOnlyTheRun starts containers for two runs and one
// container cascade does not manage, then cleans up one run.
func TestCleanupRemovesOnlyTheRun(t *testing.T) {
	d := containerstest.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	img, err := d.BuildBinaryImage(ctx, "test-httpd", buildHTTPD(t, "cleanup"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeImages(t, img.Ref) }) // after the containers: last in, first out
	runA := containerstest.RunID(t, d)
	runB := containerstest.RunID(t, d)
	// Start the three at once, as a run starts its replicas: one Docker
	// handle is shared by concurrent Runs.
	r := newRand(t)
	specs := []struct{ run, name string }{{runA, "up-0"}, {runA, "up-1"}, {runB, "up-0"}}
	started := make([]*containers.Container, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, s := range specs {
		port, err := containers.FreePort(r)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			started[i], errs[i] = d.Run(ctx, s.run, containers.Spec{
				Name: s.name, Image: img.Ref, Port: port, WaitHTTP: "/healthz",
				Cmd: []string{"--listen", fmt.Sprintf("127.0.0.1:%d", port)},
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, c := range started {
		t.Logf("%s ready in %v", c.Name, c.Ready)
	}
	a0, a1, b0 := started[0], started[1], started[2]
	// A container with no cascade labels, created (not started) with the
	// plain CLI, as another user of this daemon would.
	stranger := "cascade-test-stranger-" + runA
	if out, err := exec.CommandContext(ctx, "docker", "create", "--network", "host", "--name", stranger, img.Ref, "--listen", "127.0.0.1:1").CombinedOutput(); err != nil {
		t.Fatalf("docker create: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", stranger).Run() })

	removed, err := d.Cleanup(ctx, runA)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{a0.Name, a1.Name}; !slices.Equal(removed, want) {
		t.Errorf("Cleanup(%s) removed %v, want %v", runA, removed, want)
	}
	if names, _ := d.List(ctx, runA); len(names) != 0 {
		t.Errorf("run A still has %v", names)
	}
	if names, _ := d.List(ctx, runB); !slices.Equal(names, []string{b0.Name}) {
		t.Errorf("run B has %v, want [%s]", names, b0.Name)
	}
	if got := get(t, "http://"+b0.Addr+"/healthz"); got != "ok\n" {
		t.Errorf("run B's container answers %q", got)
	}
	if out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{.Name}}", stranger).CombinedOutput(); err != nil {
		t.Errorf("unmanaged container gone after Cleanup: %v %s", err, out)
	}

	// CleanupAll removes every cascade-managed container on the daemon,
	// including those of tests running concurrently in other packages, so it
	// is exercised only on request, and only when run B's is the only one.
	if os.Getenv("CASCADE_TEST_CLEANUP_ALL") != "1" {
		t.Log("not calling CleanupAll: set CASCADE_TEST_CLEANUP_ALL=1 on a daemon no one else uses")
		return
	}
	all, err := d.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(all, []string{b0.Name}) {
		t.Logf("not calling CleanupAll: other cascade containers exist: %v", all)
		return
	}
	removed, err = d.CleanupAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{b0.Name}) {
		t.Errorf("CleanupAll removed %v, want [%s]", removed, b0.Name)
	}
	if out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{.Name}}", stranger).CombinedOutput(); err != nil {
		t.Errorf("unmanaged container gone after CleanupAll: %v %s", err, out)
	}
}

func TestPostgres(t *testing.T) {
	d := containerstest.Connect(t)
	run := containerstest.RunID(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	port, err := containers.FreePort(newRand(t))
	if err != nil {
		t.Fatal(err)
	}
	pg, err := d.RunPostgres(ctx, run, containers.PostgresSpec{Port: port, Settings: map[string]string{"max_connections": "20"}})
	if errors.Is(err, containers.ErrPostgresNotInstalled) {
		containerstest.SkipUnlessRequired(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s built=%v in %v (%d MB); container ready in %v; DSN %s",
		pg.Image.Ref, pg.Image.Built, pg.Image.Took, pg.Image.Size>>20, pg.Ready, pg.DSN)

	// A tool missing from the assembled root filesystem shows up in the log
	// as "sh: 1: X: not found" during initdb.
	logs, err := pg.Logs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(logs), "not found") || strings.Contains(string(logs), "ERROR") {
		t.Errorf("postgres log reports problems:\n%s", logs)
	}

	connect := func() *pgx.Conn {
		c, err := pgx.Connect(ctx, pg.DSN)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		return c
	}
	a, b := connect(), connect()

	var maxConns string
	if err := a.QueryRow(ctx, "SHOW max_connections").Scan(&maxConns); err != nil || maxConns != "20" {
		t.Errorf("max_connections = %q (err %v), want the setting passed in", maxConns, err)
	}
	start := time.Now()
	if _, err := a.Exec(ctx, "SELECT pg_sleep(0.1)"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 100*time.Millisecond || took > 5*time.Second {
		t.Errorf("pg_sleep(0.1) took %v", took)
	}

	if _, err := a.Exec(ctx, "CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts VALUES (1, 100)"); err != nil {
		t.Fatal(err)
	}
	txA, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer txA.Rollback(context.Background())
	if _, err := txA.Exec(ctx, "SELECT * FROM accounts WHERE id = 1 FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exec(ctx, "SET lock_timeout = '100ms'"); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, err = b.Exec(ctx, "UPDATE accounts SET balance = 0 WHERE id = 1")
	took := time.Since(start)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
		t.Fatalf("contended UPDATE: err = %v, want SQLSTATE 55P03 (lock_not_available)", err)
	}
	if took < 100*time.Millisecond || took > 5*time.Second {
		t.Errorf("lock_timeout 100ms fired after %v", took)
	}

	if err := pg.Terminate(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestGateways puts nginx and HAProxy containers in front of two in-process
// upstreams on loopback and checks both upstreams get traffic through each.
func TestGateways(t *testing.T) {
	d := containerstest.Connect(t)
	run := containerstest.RunID(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var hits [2]atomic.Int64
	var upstreams []string
	for i := range hits {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			hits[i].Add(1)
			fmt.Fprintf(w, "upstream %d\n", i)
		}))
		t.Cleanup(srv.Close)
		upstreams = append(upstreams, strings.TrimPrefix(srv.URL, "http://"))
	}
	r := newRand(t)
	for _, gw := range []struct {
		kind string
		run  func(context.Context, string, containers.GatewaySpec) (*containers.Container, error)
	}{
		{"nginx", d.RunNginx},
		{"haproxy", d.RunHAProxy},
	} {
		t.Run(gw.kind, func(t *testing.T) {
			port, err := containers.FreePort(r)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			c, err := gw.run(ctx, run, containers.GatewaySpec{Port: port, Upstreams: upstreams, UpstreamTimeout: 2 * time.Second})
			if errors.Is(err, containers.ErrGatewayNotInstalled) {
				containerstest.SkipUnlessRequired(t, err)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: image + start %v (container ready in %v)", gw.kind, time.Since(start), c.Ready)
			defer c.Terminate(ctx)
			before := [2]int64{hits[0].Load(), hits[1].Load()}
			for range 10 {
				if body := get(t, "http://"+c.Addr+"/x"); !strings.HasPrefix(body, "upstream ") {
					t.Fatalf("GET through %s: %q", gw.kind, body)
				}
			}
			for i := range hits {
				if n := hits[i].Load() - before[i]; n < 2 {
					t.Errorf("upstream %d got %d of 10 requests through %s: not balanced", i, n, gw.kind)
				}
			}
		})
	}
}

// TestFailedStartLeavesNothing checks that a container which exits, or never
// gets ready, is removed and its log explains why.
func TestFailedStartLeavesNothing(t *testing.T) {
	d := containerstest.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	img, err := d.BuildBinaryImage(ctx, "test-httpd", buildHTTPD(t, "cleanup"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeImages(t, img.Ref) })
	run := containerstest.RunID(t, d)
	r := newRand(t)

	port, err := containers.FreePort(r)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = d.Run(ctx, run, containers.Spec{
		Name: "bad-flag", Image: img.Ref, Port: port, WaitHTTP: "/healthz",
		Cmd: []string{"--no-such-flag"}, StartupTimeout: 20 * time.Second,
	})
	t.Logf("exiting container: %v", err)
	if err == nil || !strings.Contains(err.Error(), "flag provided but not defined") {
		t.Errorf("exiting container: err = %v, want its log in the error", err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("an exited container took %v to report: the wait should notice the exit", took)
	}

	// A container that runs but never serves where the spec says: the
	// error says what was waited for, and how long, not just "context
	// deadline exceeded".
	elsewhere, err := containers.FreePort(r)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Run(ctx, run, containers.Spec{
		Name: "wrong-port", Image: img.Ref, Port: port, WaitHTTP: "/healthz",
		Cmd: []string{"--listen", fmt.Sprintf("127.0.0.1:%d", elsewhere)}, StartupTimeout: 2 * time.Second,
	})
	t.Logf("never ready: %v", err)
	want := fmt.Sprintf("not ready within 2s: GET http://127.0.0.1:%d/healthz never answered below 400", port)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("never-ready container: err = %v, want %q", err, want)
	}

	// Another process holds PostgreSQL's port: the server cannot bind.
	held, err := containers.FreePort(r)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", held))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = d.RunPostgres(ctx, run, containers.PostgresSpec{Port: held, StartupTimeout: 30 * time.Second})
	if errors.Is(err, containers.ErrPostgresNotInstalled) {
		containerstest.SkipUnlessRequired(t, err)
	}
	t.Logf("postgres on a taken port: %v", err)
	if err == nil || !strings.Contains(err.Error(), "Address already in use") {
		t.Errorf("postgres on a taken port: err = %v, want the bind failure from its log", err)
	}
	if names, err := d.List(ctx, run); err != nil || len(names) != 0 {
		t.Errorf("failed starts left %v (err %v)", names, err)
	}
}

// TestCleanupImages removes cascade's image cache and nothing else.
func TestCleanupImages(t *testing.T) {
	d := containerstest.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	img, err := d.BuildBinaryImage(ctx, "test-httpd", buildHTTPD(t, "images-"+strconv.FormatInt(time.Now().UnixNano(), 36)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", img.Ref).Run() })
	// An image that is not cascade's: an empty root filesystem.
	other := "cascade-test-unlabelled:" + strconv.FormatInt(time.Now().UnixNano(), 36)
	imp := exec.CommandContext(ctx, "docker", "import", "-", other)
	imp.Stdin = strings.NewReader(string(make([]byte, 1024))) // an empty tar: two zero blocks
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", other).Run() })

	// Only the test image's repository: other packages' tests may be about
	// to run containers from cascade's other images on this daemon.
	removed, err := d.CleanupImages(ctx, "test-httpd")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, img.Ref) {
		t.Errorf("CleanupImages removed %v, not %s", removed, img.Ref)
	}
	if ok, err := d.HasImage(ctx, img.Ref); err != nil || ok {
		t.Errorf("%s still present (err %v)", img.Ref, err)
	}
	if ok, err := d.HasImage(ctx, other); err != nil || !ok {
		t.Errorf("unlabelled image %s removed (err %v)", other, err)
	}
}

func dockerInspect(t *testing.T, id, format string) string {
	t.Helper()
	out, err := exec.Command("docker", "inspect", "-f", format, id).CombinedOutput()
	if err != nil {
		t.Fatalf("docker inspect: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// removeImages removes test-only images (the httpd builds), which unlike
// cascade's own images are not worth keeping as a cache.
func removeImages(t *testing.T, refs ...string) {
	for _, ref := range refs {
		if out, err := exec.Command("docker", "rmi", ref).CombinedOutput(); err != nil {
			t.Logf("docker rmi %s: %v %s", ref, err, out)
		}
	}
}

// An interrupted or killed build leaves the steps it committed as untagged
// (dangling) images. Each carries cascade's labels (the Dockerfile sets
// them right after FROM), so CleanupImages finds and removes them.
func TestCleanupImagesRemovesAnInterruptedBuildsSteps(t *testing.T) {
	d := containerstest.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const name = "test-dangling"
	img, err := d.BuildBinaryImage(ctx, name, buildHTTPD(t, "dangling-"+strconv.FormatInt(time.Now().UnixNano(), 36)))
	if err != nil {
		t.Fatal(err)
	}
	if !img.Built {
		t.Fatalf("%s came from the cache: the test needs a fresh build", img.Ref)
	}
	// What a build stopped after its COPY step leaves: that step's image,
	// untagged and with no child. Removing the final image but not its
	// parents (--no-prune) makes exactly that.
	if out, err := exec.CommandContext(ctx, "docker", "rmi", "--no-prune", img.Ref).CombinedOutput(); err != nil {
		t.Fatalf("docker rmi --no-prune: %v\n%s", err, out)
	}
	dangling := func() []string {
		out, err := exec.Command("docker", "images", "-q", "--no-trunc", "--filter", "dangling=true",
			"--filter", "label="+containers.LabelImageRepo+"=cascade/"+name).CombinedOutput()
		if err != nil {
			t.Fatalf("docker images: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	left := dangling()
	t.Cleanup(func() {
		for _, id := range dangling() {
			_ = exec.Command("docker", "rmi", id).Run()
		}
	})
	if len(left) == 0 {
		t.Fatal("the build's steps carry no cascade label: nothing could find what an interrupted build leaves")
	}
	removed, err := d.CleanupImages(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range left {
		if !slices.Contains(removed, "<none>@"+id) {
			t.Errorf("CleanupImages removed %v, not the dangling %s", removed, id)
		}
	}
	if left := dangling(); len(left) != 0 {
		t.Errorf("dangling cascade images survive CleanupImages: %v", left)
	}
}

// A Ctrl-C that cuts a container's create request short must not leave the
// container the daemon went on to make ("Created", found by nothing). The
// child process talks to the daemon through a proxy that holds the
// create's answer: the daemon has made the container, and the run is
// interrupted before it hears so. (A child, because testcontainers keeps
// the daemon address it found for the life of a process.)
func TestInterruptedCreateLeavesNoContainer(t *testing.T) {
	if env := os.Getenv("CASCADE_TEST_HELD_CREATE"); env != "" {
		interruptedCreate(t, env)
		return
	}
	d := containerstest.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	img, err := d.BuildBinaryImage(ctx, "test-httpd", buildHTTPD(t, "held-create"))
	if err != nil {
		t.Fatal(err)
	}
	run := containerstest.RunID(t, d)
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestInterruptedCreateLeavesNoContainer$", "-test.v")
	child.Env = append(os.Environ(), "CASCADE_TEST_HELD_CREATE="+run+" "+img.Ref)
	out, err := child.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "interrupted create returned") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	time.Sleep(500 * time.Millisecond) // anything still in flight lands
	if left, err := d.List(ctx, run); err != nil || len(left) != 0 {
		t.Fatalf("an interrupted create left %v (err %v)", left, err)
	}
}

func interruptedCreate(t *testing.T, env string) {
	run, image, _ := strings.Cut(env, " ")
	daemon := strings.TrimPrefix(cmp.Or(os.Getenv("DOCKER_HOST"), containers.DefaultDockerHost), "unix://")
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	created := make(chan struct{})
	var once sync.Once
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.Out.URL.Scheme, r.Out.URL.Host = "http", "docker" },
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", daemon)
		}},
		ModifyResponse: func(res *http.Response) error {
			if res.Request.Method == http.MethodPost && strings.HasSuffix(res.Request.URL.Path, "/containers/create") {
				once.Do(func() { close(created) })
				// The daemon made it; hold the answer until the caller
				// gave up (or for long enough to see that it will not).
				select {
				case <-res.Request.Context().Done():
				case <-time.After(time.Second):
				}
			}
			return nil
		},
	}
	srv := &http.Server{Handler: proxy}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	t.Setenv("DOCKER_HOST", "unix://"+sock)

	d, err := containers.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-created; cancel() }() // the Ctrl-C
	port, err := containers.FreePort(rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Run(ctx, run, containers.Spec{Name: "held", Image: image, Port: port, WaitHTTP: "/healthz",
		Cmd: []string{"--listen", fmt.Sprintf("127.0.0.1:%d", port)}})
	if err == nil {
		t.Fatal("Run succeeded although interrupted during its create")
	}
	t.Logf("interrupted create returned: %v", err)
}

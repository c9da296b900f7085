package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/containers"
)

// buildCascade builds this command as a static binary (so it can also go
// into a FROM scratch image for containerised replicas).
func buildCascade(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cascade")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// dockerOrNil connects when a daemon answers; these tests add a container
// to the run only then.
func dockerOrNil(t *testing.T) *containers.Docker {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := containers.Connect(ctx)
	if err != nil {
		if os.Getenv("CASCADE_REQUIRE_DOCKER") == "1" {
			t.Fatalf("CASCADE_REQUIRE_DOCKER=1 but: %v", err)
		}
		t.Logf("no Docker (%v): the signal test covers in-process resources only", err)
		return nil
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestSignalsRemoveEverythingARunStarted(t *testing.T) {
	bin := buildCascade(t)
	d := dockerOrNil(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			name := fmt.Sprintf("sig-%d-%d", sig, time.Now().UnixNano()%1_000_000)
			container := ""
			if d != nil {
				container = "  - {name: boxed, container: true}\n"
			}
			src := fmt.Sprintf(`name: %s
upstreams:
  - name: orders
    kind: database
    database: {pool_size: 2}
%sgateway:
  routes:
    - {path: /, upstream: orders}
load:
  stages:
    - {duration: 60s, rate: 20/s}
  requests:
    - {path: /orders/history}
`, name, container)
			dir := t.TempDir()
			scen := filepath.Join(dir, "s.yaml")
			if err := os.WriteFile(scen, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			tmp := filepath.Join(dir, "tmp") // the run's temporary files land here
			if err := os.Mkdir(tmp, 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "run", "--progress", "plain", "--out", filepath.Join(dir, "out"), scen)
			cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stdout bytes.Buffer
			cmd.Stdout = &stdout
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Wait for the first progress line: the load is running.
			sc := bufio.NewScanner(stderr)
			var log []string
			deadline := time.AfterFunc(3*time.Minute, func() { _ = cmd.Process.Kill() })
			defer deadline.Stop()
			for sc.Scan() {
				log = append(log, sc.Text())
				if strings.HasPrefix(sc.Text(), "[") {
					break
				}
			}
			if entries, _ := os.ReadDir(tmp); len(entries) == 0 {
				t.Fatalf("the run made no temporary database; stderr:\n%s", strings.Join(log, "\n"))
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			go func() {
				for sc.Scan() {
				}
			}()
			err = cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != ExitInterrupted {
				t.Fatalf("exit: %v, want %d\nstdout:\n%s", err, ExitInterrupted, stdout.String())
			}
			if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("left in TMPDIR after %s: %v", sig, names)
			}
			if d != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				all, err := d.List(ctx, "")
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range all {
					if strings.Contains(n, name) {
						t.Errorf("container %s survived %s", n, sig)
					}
				}
			}
		})
	}
}

func TestCleanupCommand(t *testing.T) {
	var out, errb bytes.Buffer
	code := cli(context.Background(), []string{"cleanup", "--run", "no-such-run-x1"}, &out, &errb)
	if code != ExitPass {
		t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "containers") {
		t.Fatalf("output %q names no cleaner", out.String())
	}
	// A malformed id is a usage error, as any bad flag: it exited 3, the
	// code of a cleanup that failed.
	errb.Reset()
	code = cli(context.Background(), []string{"cleanup", "--run", "bad id!"}, &out, &errb)
	if code != ExitUsage || !strings.Contains(errb.String(), "--run: ") {
		t.Fatalf("a malformed run id: exit %d %s", code, errb.String())
	}
}

func TestFaultsCommandListsLayers(t *testing.T) {
	var out, errb bytes.Buffer
	if code := cli(context.Background(), []string{"faults"}, &out, &errb); code != ExitPass {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"slow_query", "database", "close_mid_response", "http", "pause", "instance"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("cascade faults lacks %q", want)
		}
	}
}

func TestUpstreamCommandServesAndStops(t *testing.T) {
	var out, errb bytes.Buffer
	if code := cli(context.Background(), []string{"upstream", "--listen", "10.0.0.1:19001"}, &out, &errb); code != ExitUsage {
		t.Fatalf("a non-loopback listen address: exit %d", code)
	}
	if code := cli(context.Background(), []string{"upstream", "--listen", "127.0.0.1:0", "--latency", "{dist: nope}"}, &out, &errb); code != ExitUsage {
		t.Fatalf("a bad --latency: exit %d", code)
	}
	// The position is in the flag's value as typed: the misspelt field
	// starts at column 27, and the flag is named once.
	errb.Reset()
	if code := cli(context.Background(), []string{"upstream", "--listen", "127.0.0.1:0", "--latency", "{dist: normal, mean: 5ms, stdev: 1ms}"}, &out, &errb); code != ExitUsage ||
		!strings.HasPrefix(errb.String(), `cascade: --latency:1:27: unknown field "stdev"`) {
		t.Fatalf("a misspelt --latency field: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	pr, pw, _ := os.Pipe()
	go func() {
		done <- cli(ctx, []string{"upstream", "--listen", "127.0.0.1:0", "--name", "api", "--index", "3", "--status", "418", "--latency", "{dist: uniform, min: 1ms, max: 2ms}"}, pw, &errb)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, "api[3] on 127.0.0.1:") {
		t.Fatalf("ready line %q", line)
	}
	addr := strings.TrimSpace(line[strings.LastIndex(line, " ")+1:])
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 418 || res.Header.Get("X-Cascade-Replica") != "api[3]" {
		t.Fatalf("status %d replica %q", res.StatusCode, res.Header.Get("X-Cascade-Replica"))
	}
	cancel()
	if code := <-done; code != ExitPass {
		t.Fatalf("exit %d after the signal", code)
	}
}

// A run killed outright (SIGKILL) cannot remove its nginx container;
// `cascade cleanup --run` finds it by its labels and removes it.
func TestCleanupRemovesAKilledRunsGatewayContainer(t *testing.T) {
	d := dockerOrNil(t)
	if d == nil {
		t.Skip("skipping: no Docker")
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
		if os.Getenv("CASCADE_REQUIRE_DOCKER") == "1" {
			t.Fatalf("CASCADE_REQUIRE_DOCKER=1 but nginx is not installed (.ci/docker.sh installs it): %v", err)
		}
		t.Skipf("skipping: nginx is not installed: %v", err)
	}
	bin := buildCascade(t)
	name := fmt.Sprintf("killed-nginx-%d", time.Now().UnixNano()%1_000_000)
	dir := t.TempDir()
	scen := filepath.Join(dir, "s.yaml")
	src := fmt.Sprintf(`name: %s
upstreams:
  - {name: api, latency: 1ms}
gateway:
  container: {kind: nginx, timeout: 1s}
load:
  stages: [{duration: 60s, rate: 20/s}]
  requests: [{path: /}]
`, name)
	if err := os.WriteFile(scen, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--progress", "plain", "--out", filepath.Join(dir, "out"), scen)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.AfterFunc(3*time.Minute, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "[") { // the load is running
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var left string
	all, err := d.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range all {
		if strings.Contains(n, name) && strings.HasSuffix(n, "-nginx") {
			left = n
		}
	}
	if left == "" {
		t.Fatalf("no nginx container of run %s after the kill (have %v)", name, all)
	}
	id := strings.TrimSuffix(strings.TrimPrefix(left, "cascade-"), "-nginx")
	out, err := exec.Command(bin, "cleanup", "--run", id).CombinedOutput()
	if err != nil || !strings.Contains(string(out), left) {
		t.Fatalf("cascade cleanup --run %s: %v\n%s", id, err, out)
	}
	if all, _ = d.List(ctx, id); len(all) > 0 {
		t.Errorf("left after cascade cleanup: %v", all)
	}
}

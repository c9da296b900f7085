package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

type gwLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *gwLogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *gwLogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestGatewayCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"gateway"},
		{"gateway", "--upstream", "http://127.0.0.1:1", "--config", "x.yaml"},
		{"gateway", "--upstream", "ftp://x"},
		{"gateway", "--upstream", "http://127.0.0.1:1", "--enable", "teleport"},
		{"gateway", "--upstream", "http://127.0.0.1:1", "--admin-listen", "0.0.0.0:9901"},
		{"gateway", "--config", "/nonexistent.yaml"},
		{"gateway", "--upstream", "http://127.0.0.1:1", "--loops", "-2"},
		{"gateway", "--upstream", "http://127.0.0.1:1", "--loops", "100000"},
		{"gateway", "--upstream", "http://127.0.0.1:1", "--drain-timeout", "-1s"},
		{"gateway", "--upstream", "http://203.0.113.9:80"},
		{"gateway", "--upstream", "http://127.0.0.1:1", "--listen", "0.0.0.0:0"},
		{"faultproxy", "--upstream", "203.0.113.9:80"},
	} {
		var out, errb bytes.Buffer
		if code := cli(context.Background(), args, &out, &errb); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, ExitUsage, errb.String())
		}
	}
}

// Every problem of the config file and of the flags comes in one report,
// the file's with file:line:column: before, the file's came first, then
// (once fixed) --enable's, then --listen's, then --loops', and a malformed
// listen address only at the listen.
func TestGatewayConfigErrorsInOneRound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gw.yaml")
	os.WriteFile(path, []byte(`listen: nope
upstreams:
  - name: api
    targets: [http://127.0.0.1:9001]
    limits: {max_requests: -3}
routes:
  - {path: api, upstream: api}
  - {path: /b, upstream: missing}
`), 0o644)
	var out, errb bytes.Buffer
	code := cli(context.Background(), []string{"gateway", "--config", path, "--enable", "teleport", "--loops", "-5",
		"--drain-timeout", "-1s", "--admin-listen", "0.0.0.0:1", "--propagate", "trace_id"}, &out, &errb)
	if code != ExitUsage {
		t.Errorf("exit %d, want %d", code, ExitUsage)
	}
	for _, want := range []string{
		path + `:1:9: listen: "nope": expected host:port`,
		path + `:5:28: upstreams[0].limits.max_requests: must be at least 1`,
		path + `:7:12: routes[0].path: path "api" must start with /`,
		path + `:8:26: routes[1].upstream: unknown upstream "missing"`,
		`--enable: unknown feature "teleport"`,
		`--loops -5: expected`,
		`--drain-timeout -1s: expected`,
		`--admin-listen: "0.0.0.0:1": the admin listener binds to loopback only`,
		`--propagate: unknown value "trace_id"`,
	} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("missing %q in:\n%s", want, errb.String())
		}
	}
	// A file that does not decode: its error, and the flags' still.
	os.WriteFile(path, []byte("routes: [{path: /, upstream: api, tiemouts: {}}]\n"), 0o644)
	errb.Reset()
	cli(context.Background(), []string{"gateway", "--config", path, "--enable", "teleport", "--listen", "0.0.0.0:80"}, &out, &errb)
	for _, want := range []string{path + `:1:35: routes[0]: unknown field "tiemouts"`, `--enable: unknown feature`, `--listen: "0.0.0.0:80" is not a loopback address`} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("missing %q in:\n%s", want, errb.String())
		}
	}
	// Go's ":port" habit is every interface: the error says what to write.
	errb.Reset()
	cli(context.Background(), []string{"gateway", "--upstream", "http://127.0.0.1:1", "--listen", ":18191"}, &out, &errb)
	if want := `(":18191" listens on every interface; write 127.0.0.1:18191)`; !strings.Contains(errb.String(), want) {
		t.Errorf("missing %q in:\n%s", want, errb.String())
	}
}

// cascade gateway --upstream URL serves, logs, and stops on its context,
// on goroutines and on an event loop.
func TestGatewayCommandServes(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0)) // --loops sets it
	for _, loops := range []string{"0", "1"} {
		t.Run("loops="+loops, func(t *testing.T) { testGatewayCommandServes(t, loops) })
	}
}

func testGatewayCommandServes(t *testing.T, loops string) {
	up := helloServer(t)
	logPath := filepath.Join(t.TempDir(), "access.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb gwLogBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli(ctx, []string{"gateway", "--upstream", "http://" + up, "--listen", "127.0.0.1:0",
			"--enable", "breaker,retries,limits,p2c", "--access-log", logPath, "--admin-listen", "127.0.0.1:0", "--loops", loops}, &out, &errb)
	}()
	re := regexp.MustCompile(`listening on (http://\S+)`)
	var url string
	deadline := time.Now().Add(5 * time.Second)
	for url == "" && time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(errb.String()); m != nil {
			url = m[1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	if url == "" {
		t.Fatalf("no listening line: %s", errb.String())
	}
	res, err := http.Get(url + "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "hi" || res.Header.Get("X-Request-Id") == "" {
		t.Errorf("answer %q, headers %v", b, res.Header)
	}
	if !strings.Contains(errb.String(), "/metrics") {
		t.Errorf("no metrics line: %s", errb.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != ExitPass {
			t.Errorf("exit %d: %s", code, errb.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the gateway did not stop")
	}
	log, _ := os.ReadFile(logPath)
	if !strings.Contains(string(log), `"uri":"/x"`) || !strings.Contains(string(log), `"cause":"ok"`) {
		t.Errorf("access log: %s", log)
	}
}

// The gateway's and the fault proxy's logs are appended to: a start that
// fails on a taken port leaves an earlier run's lines as they were, and a
// run that serves adds its own after them.
func TestLogsAreAppendedTo(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	const earlier = "{\"earlier\":\"run\"}\n"
	for _, c := range []struct{ name, flag string }{
		{"gateway", "--access-log"}, {"gateway", "--events"}, {"faultproxy", "--events"},
	} {
		path := filepath.Join(dir, c.name+c.flag+".jsonl")
		if err := os.WriteFile(path, []byte(earlier), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{c.name, "--upstream", "http://127.0.0.1:1", "--listen", taken.Addr().String(), c.flag, path}
		var out, errb bytes.Buffer
		if code := cli(context.Background(), args, &out, &errb); code != ExitRunFailed {
			t.Errorf("%v: exit %d, want %d: %s", args, code, ExitRunFailed, errb.String())
		}
		// The gateway's events may say what it did before the listen
		// failed (endpoint.add); the earlier lines come first, untouched.
		if b, _ := os.ReadFile(path); !strings.HasPrefix(string(b), earlier) {
			t.Errorf("%s %s after a failed start holds %q, want the earlier run's %q first", c.name, c.flag, b, earlier)
		}
	}

	logPath := filepath.Join(dir, "gateway--access-log.jsonl")
	url, errb, stop := serve(t, []string{"gateway", "--upstream", "http://" + helloServer(t), "--listen", "127.0.0.1:0",
		"--access-log", logPath}, regexp.MustCompile(`listening on (http://\S+)`))
	res, err := http.Get(url + "/appended")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if code := stop(); code != ExitPass {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	b, _ := os.ReadFile(logPath)
	if !strings.HasPrefix(string(b), earlier) || !strings.Contains(string(b), `"uri":"/appended"`) {
		t.Errorf("access log after a second run:\n%s\nwant the earlier line, then /appended", b)
	}
}

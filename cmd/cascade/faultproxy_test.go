package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// helloServer is an upstream that answers "hi" at once.
func helloServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") })}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// serve runs a serving command until the test ends and returns its stderr
// once re matched in it (the first submatch).
func serve(t *testing.T, args []string, re *regexp.Regexp) (string, *lockedBuffer, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() { done <- cli(ctx, args, &out, &errb) }()
	stop := func() int {
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not stop", args[0])
			return -1
		}
	}
	t.Cleanup(func() { cancel() })
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(errb.String()); m != nil {
			return m[1], &errb, stop
		}
		select {
		case code := <-done:
			t.Fatalf("%v exited %d: %s", args, code, errb.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("%v: no line matching %s: %s", args, re, errb.String())
	return "", nil, nil
}

func timedGet(t *testing.T, url string) (time.Duration, string, error) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	start := time.Now()
	res, err := c.Get(url)
	if err != nil {
		return time.Since(start), "", err
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	return time.Since(start), string(b), err
}

var listenLine = regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)

// cascade faultproxy --latency delays every answer by at least the latency;
// a --toxic on the upstream stream acts too; the stats say so at the end.
func TestFaultProxyCommand(t *testing.T) {
	up := helloServer(t)
	addr, errb, stop := serve(t, []string{"faultproxy", "--listen", "127.0.0.1:0", "--upstream", "http://" + up,
		"--latency", "80ms", "--toxic", "slicer:average_size=4,size_variation=1,delay=100,stream=upstream"}, listenLine)
	for i := 0; i < 3; i++ {
		d, body, err := timedGet(t, "http://"+addr+"/")
		if err != nil || body != "hi" {
			t.Fatalf("through the proxy: %q, %v", body, err)
		}
		if d < 80*time.Millisecond || d > 2*time.Second {
			t.Errorf("answer after %v, want >= 80ms (and well under 2s)", d)
		}
	}
	if code := stop(); code != ExitPass {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	out := errb.String()
	for _, want := range []string{"latency_downstream downstream jitter=0,latency=80", "slicer_upstream upstream",
		"latency_downstream: acted on 3 of 3 connections, 3 messages"} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
}

// --api serves Toxiproxy's API with the proxy in it: a PATCH through the API
// changes the latency live.
func TestFaultProxyCommandAPI(t *testing.T) {
	up := helloServer(t)
	apiRE := regexp.MustCompile(`Toxiproxy API on http://(\S+) `)
	addr, errb, stop := serve(t, []string{"faultproxy", "--upstream", up, "--latency", "10ms", "--api", "127.0.0.1:0"}, listenLine)
	deadline := time.Now().Add(5 * time.Second)
	var api string
	for api == "" && time.Now().Before(deadline) {
		if m := apiRE.FindStringSubmatch(errb.String()); m != nil {
			api = m[1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	if api == "" {
		t.Fatalf("no API line: %s", errb.String())
	}
	res, err := http.Get("http://" + api + "/proxies")
	if err != nil {
		t.Fatal(err)
	}
	var proxies map[string]struct {
		Listen string `json:"listen"`
	}
	err = json.NewDecoder(res.Body).Decode(&proxies)
	res.Body.Close()
	if err != nil || proxies["faultproxy"].Listen != addr {
		t.Fatalf("GET /proxies: %v %+v, want the proxy %s", err, proxies, addr)
	}
	body := strings.NewReader(`{"attributes": {"latency": 150}}`)
	res, err = http.Post("http://"+api+"/proxies/faultproxy/toxics/latency_downstream", "application/json", body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("update the toxic: %v %v", res.Status, err)
	}
	res.Body.Close()
	if d, _, err := timedGet(t, "http://"+addr+"/"); err != nil || d < 150*time.Millisecond {
		t.Errorf("after the update: %v, %v; want >= 150ms", d, err)
	}
	// Deleting the proxy through the API closes it, as toxiproxy-server
	// does, and the terminal says so instead of going quiet.
	req, _ := http.NewRequest(http.MethodDelete, "http://"+api+"/proxies/faultproxy", nil)
	if res, err = http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE the proxy: %v %v", res, err)
	}
	res.Body.Close()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("the deleted proxy still accepts on %s", addr)
	}
	if want := `proxy "faultproxy" deleted through the Toxiproxy API: ` + addr + " no longer listens"; !strings.Contains(errb.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, errb.String())
	}
	if code := stop(); code != ExitPass {
		t.Errorf("exit %d", code)
	}
}

func TestFaultProxyCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"faultproxy"}, // no upstream
		{"faultproxy", "--upstream", "127.0.0.1:1", "--listen", "0.0.0.0:9000"},
		{"faultproxy", "--upstream", "127.0.0.1:1", "--toxic", "teleport"},
		{"faultproxy", "--upstream", "127.0.0.1:1", "--toxic", "latency:latncy=5"},
		{"faultproxy", "--upstream", "127.0.0.1:1", "--toxic", "latency:latency=-5"},
		{"faultproxy", "--upstream", "127.0.0.1:1", "--toxic", "latency:toxicity=2"},
		{"faultproxy", "--upstream", "127.0.0.1:1", "--toxic", "latency:stream=sideways"},
		{"faultproxy", "--upstream", "127.0.0.1:1", "--jitter", "5ms"},
		{"faultproxy", "--upstream", "nonsense"},
		{"toxiproxy", "--listen", "0.0.0.0:8474"},
		{"toxiproxy", "--listen", "127.0.0.1:0", "--config", "/nonexistent.json"},
	} {
		var out, errb bytes.Buffer
		if code := cli(context.Background(), args, &out, &errb); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, ExitUsage, errb.String())
		}
	}
}

func TestParseToxicFlag(t *testing.T) {
	s, err := parseToxicFlag("reset_peer:timeout=250ms,request_toxicity=10%,toxicity=0.5,stream=upstream,name=rst")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "rst" || s.Stream.String() != "upstream" || s.Toxicity != 0.5 || s.RequestToxicity != 0.1 {
		t.Errorf("spec %+v", s)
	}
	if a := s.Toxic; a == nil {
		t.Fatal("no toxic")
	}
	b, _ := json.Marshal(s.Toxic)
	if !strings.Contains(string(b), "250000000") {
		t.Errorf("timeout not read as 250ms: %s", b)
	}
	if _, err := parseToxicFlag("blackhole:no_accept=true"); err != nil {
		t.Errorf("a boolean attribute: %v", err)
	}
}

// findToxiproxyCLI finds toxiproxy-cli on PATH or where the bench installer
// puts it; "" when absent.
func findToxiproxyCLI() string {
	if p, err := exec.LookPath("toxiproxy-cli"); err == nil {
		return p
	}
	dir := os.Getenv("BENCH_TOOLS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "bench-peers", "bin")
	}
	p := filepath.Join(dir, "toxiproxy-cli")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// cascade toxiproxy is driven by the real toxiproxy-cli when it is there,
// else by raw HTTP in the same shape: create a proxy (from --config), add a
// latency toxic, see it through the proxy, remove it.
func TestToxiproxyCommand(t *testing.T) {
	up := helloServer(t)
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := free.Addr().String()
	free.Close()
	config := filepath.Join(t.TempDir(), "proxies.json")
	os.WriteFile(config, []byte(`[{"name": "hello", "listen": "`+listen+`", "upstream": "`+up+`"}]`), 0o644)
	api, errb, stop := serve(t, []string{"toxiproxy", "--listen", "127.0.0.1:0", "--config", config},
		regexp.MustCompile(`API on http://(\S+)`))
	cliPath := findToxiproxyCLI()
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(cliPath, append([]string{"-h", api}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("toxiproxy-cli %v: %v\n%s", args, err, out)
		}
	}
	post := func(path, body string) {
		t.Helper()
		res, err := http.Post("http://"+api+path, "application/json", strings.NewReader(body))
		if err != nil || res.StatusCode >= 300 {
			t.Fatalf("POST %s: %v %v", path, res, err)
		}
		res.Body.Close()
	}
	if cliPath != "" {
		run("toxic", "add", "-t", "latency", "-a", "latency=120", "hello")
	} else {
		t.Log("toxiproxy-cli not found (bench/install-peers.sh installs it): driving the API with raw HTTP")
		post("/proxies/hello/toxics", `{"type": "latency", "stream": "downstream", "attributes": {"latency": 120}}`)
	}
	if d, body, err := timedGet(t, "http://"+listen+"/"); err != nil || body != "hi" || d < 120*time.Millisecond {
		t.Errorf("through the toxic: %v %q %v, want >= 120ms", d, body, err)
	}
	if cliPath != "" {
		run("toxic", "remove", "-n", "latency_downstream", "hello")
	} else {
		req, _ := http.NewRequest(http.MethodDelete, "http://"+api+"/proxies/hello/toxics/latency_downstream", nil)
		if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusNoContent {
			t.Fatalf("DELETE toxic: %v %v", res, err)
		}
	}
	if d, _, err := timedGet(t, "http://"+listen+"/"); err != nil || d > 100*time.Millisecond {
		t.Errorf("without the toxic: %v %v, want well under 100ms", d, err)
	}
	if code := stop(); code != ExitPass {
		t.Errorf("exit %d: %s", code, errb.String())
	}
	if c, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
		c.Close()
		t.Errorf("the proxy still listens on %s after the server stopped", listen)
	}
}

// --events logs every toxic's start and stop: the toxics still in place
// when the command is stopped end with a fault.stop carrying what they did
// (there was none, so the log had starts without stops).
func TestFaultProxyEventsEndWithStops(t *testing.T) {
	up := helloServer(t)
	log := filepath.Join(t.TempDir(), "events.jsonl")
	addr, errb, stop := serve(t, []string{"faultproxy", "--listen", "127.0.0.1:0", "--upstream", "http://" + up,
		"--latency", "10ms", "--toxic", "bandwidth:rate=1000", "--events", log}, listenLine)
	for range 2 {
		if _, body, err := timedGet(t, "http://"+addr+"/"); err != nil || body != "hi" {
			t.Fatalf("through the proxy: %q, %v", body, err)
		}
	}
	if code := stop(); code != ExitPass {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	started, stopped := map[string]bool{}, map[string]map[string]any{}
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var e struct {
			Type  string         `json:"type"`
			Attrs map[string]any `json:"attrs"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		name, _ := e.Attrs["toxic"].(string)
		switch e.Type {
		case "fault.start":
			started[name] = true
		case "fault.stop":
			stopped[name] = e.Attrs
		}
	}
	if len(started) != 2 {
		t.Fatalf("fault.start for %v, want the two toxics:\n%s", started, b)
	}
	for name := range started {
		a, ok := stopped[name]
		if !ok {
			t.Errorf("toxic %s started and never stopped:\n%s", name, b)
			continue
		}
		if a["took_effect"] != true {
			t.Errorf("fault.stop of %s: %v, want took_effect after 2 requests through it", name, a)
		}
	}
}

package toxiapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/tcptest"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"

	"github.com/cascadehq/cascade/faults/tcpfault"
)

// startAPI serves the API on loopback until the test ends.
func startAPI(t *testing.T) (*Server, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, Config{Rand: rand.New(rand.NewPCG(3, 4))})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); cancel() })
	return s, addr.String()
}

func echoUpstream(t *testing.T) string {
	return tcptest.Serve(t, func(c net.Conn) { io.Copy(c, c) })
}

// roundTrip sends one byte through addr and times the echo.
func roundTrip(t *testing.T, addr string) (time.Duration, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		return 0, err
	}
	_, err = io.ReadFull(c, make([]byte, 1))
	return time.Since(start), err
}

// The real Toxiproxy Go client (v2.5.0) drives the API end to end.
func TestToxiproxyGoClient(t *testing.T) {
	_, api := startAPI(t)
	up := echoUpstream(t)
	cl := toxiclient.NewClient(api)

	p, err := cl.CreateProxy("redis", "127.0.0.1:0", up)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Enabled || p.Listen == "127.0.0.1:0" || p.Upstream != up {
		t.Fatalf("created %+v: want enabled, with the bound port", p)
	}
	if _, err := cl.CreateProxy("redis", "127.0.0.1:0", up); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("duplicate create: %v, want HTTP 409", err)
	}

	tox, err := p.AddToxic("", "latency", "", 1, toxiclient.Attributes{"latency": 150, "jitter": 0})
	if err != nil {
		t.Fatal(err)
	}
	if tox.Name != "latency_downstream" || tox.Stream != "downstream" || tox.Toxicity != 1 || tox.Attributes["latency"] != float64(150) {
		t.Errorf("toxic %+v", tox)
	}
	if d, err := roundTrip(t, p.Listen); err != nil || d < 150*time.Millisecond {
		t.Errorf("round trip %v, %v: want >= 150ms", d, err)
	}

	if _, err := p.UpdateToxic("latency_downstream", -1, toxiclient.Attributes{"latency": 10}); err != nil {
		t.Fatal(err)
	}
	toxics, err := p.Toxics()
	if err != nil || len(toxics) != 1 || toxics[0].Attributes["latency"] != float64(10) || toxics[0].Toxicity != 1 {
		t.Fatalf("toxics after update: %+v, %v", toxics, err)
	}
	if d, err := roundTrip(t, p.Listen); err != nil || d >= 150*time.Millisecond {
		t.Errorf("after update round trip %v, %v: want ~10ms", d, err)
	}

	_, err = p.AddToxic("bad", "latency", "upstream", 1, toxiclient.Attributes{"latncy": 1})
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "valid: jitter, latency") {
		t.Errorf("unknown attribute: %v, want a 400 listing the valid ones", err)
	}
	_, err = p.AddToxic("", "nope", "", 1, nil)
	if err == nil || !strings.Contains(err.Error(), "invalid toxic type") {
		t.Errorf("unknown type: %v", err)
	}

	if err := p.Disable(); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(t, p.Listen); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("disabled proxy: %v, want connection refused", err)
	}
	if err := p.Enable(); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(t, p.Listen); err != nil {
		t.Errorf("re-enabled proxy: %v", err)
	}

	all, err := cl.Proxies()
	if err != nil || len(all) != 1 || len(all["redis"].ActiveToxics) != 1 {
		t.Fatalf("proxies %+v, %v", all, err)
	}
	if err := p.RemoveToxic("latency_downstream"); err != nil {
		t.Fatal(err)
	}
	if err := p.RemoveToxic("latency_downstream"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("second removal: %v, want 404", err)
	}

	p.AddToxic("to", "timeout", "upstream", 1, toxiclient.Attributes{"timeout": 0})
	p.Disable()
	if err := cl.ResetState(); err != nil {
		t.Fatal(err)
	}
	got, err := cl.Proxy("redis")
	if err != nil || !got.Enabled || len(got.ActiveToxics) != 0 {
		t.Errorf("after reset: %+v, %v; want enabled, no toxics", got, err)
	}

	made, err := cl.Populate([]toxiclient.Proxy{
		{Name: "redis", Listen: got.Listen, Upstream: up, Enabled: true},
		{Name: "pg", Listen: "localhost:0", Upstream: up, Enabled: true},
	})
	if err != nil || len(made) != 2 {
		t.Fatalf("populate: %+v, %v", made, err)
	}
	if _, err := roundTrip(t, made[1].Listen); err != nil {
		t.Errorf("populated proxy: %v", err)
	}
	if err := got.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Proxy("redis"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("deleted proxy: %v, want 404", err)
	}
}

func do(t *testing.T, method, url, body string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Raw HTTP: the status codes and bodies Toxiproxy clients in other
// languages rely on, and the extensions.
func TestRawAPI(t *testing.T) {
	s, api := startAPI(t)
	base := "http://" + api
	up := echoUpstream(t)
	cases := []struct {
		method, path, body string
		status             int
		has                string
	}{
		{"GET", "/version", "", 200, `"version":"cascade"`},
		{"POST", "/proxies", `{"name":"a","upstream":"` + up + `"}`, 201, `"listen":"127.0.0.1:`},
		{"POST", "/proxies", `{"name":"b","listen":"0.0.0.0:0","upstream":"` + up + `"}`, 400, "loopback"},
		{"POST", "/proxies", `{"upstream":"` + up + `"}`, 400, `missing required field: name`},
		{"POST", "/proxies", `{`, 400, `bad request body`},
		{"GET", "/proxies/zzz", "", 404, `{"error":"proxy not found","status":404}`},
		{"POST", "/proxies/a/toxics", `{"type":"latency","stream":"sideways"}`, 400, "stream was invalid"},
		{"POST", "/proxies/a/toxics", `{"type":"latency","attributes":{"latency":"soon"}}`, 400, `attribute \"latency\"`},
		{"POST", "/proxies/a/toxics", `{"type":"latency","toxicity":2}`, 400, "outside [0, 1]"},
		{"POST", "/proxies/a/toxics", `{"type":"latency","request_toxicity":0.25,"attributes":{"latency":5}}`, 200, `"request_toxicity":0.25`},
		{"POST", "/proxies/a/toxics", `{"type":"latency"}`, 409, "toxic already exists"},
		{"GET", "/proxies/a/toxics/latency_downstream", "", 200, `"stats":{`},
		{"PATCH", "/proxies/a/toxics/latency_downstream", `{"attributes":{"jitter":2}}`, 200, `"attributes":{"jitter":2,"latency":5}`},
		{"GET", "/proxies/a/toxics/nope", "", 404, "toxic not found"},
		{"GET", "/proxies/a/stats", "", 200, `"toxics_added":1`},
		{"POST", "/proxies/a", `{"upstream":"nope"}`, 400, `bad request body: upstream \"nope\"`},
		{"POST", "/proxies/a", `{"upstream":""}`, 400, "bad request body"},
		{"POST", "/proxies/a", `{"listen":"nope"}`, 400, "bad request body"},
		{"POST", "/proxies/a", `{"upstream":"10.1.2.3:80"}`, 400, "not a loopback address"},
		{"DELETE", "/proxies/a/toxics/latency_downstream", "", 204, ""},
		{"POST", "/populate", `[{"name":"c","upstream":"` + up + `"},{"name":"d"}]`, 400, "missing required field: upstream at proxy 2"},
		{"PUT", "/proxies", "", 405, ""},
		{"DELETE", "/proxies/a", "", 204, ""},
		{"POST", "/reset", "", 204, ""},
	}
	for _, c := range cases {
		status, body := do(t, c.method, base+c.path, c.body)
		if status != c.status || !strings.Contains(body, c.has) {
			t.Errorf("%s %s %s: %d %s; want %d containing %s", c.method, c.path, c.body, status, body, c.status, c.has)
		}
	}
	if _, ok := s.Proxy("c"); ok {
		t.Error("a populate that failed validation created a proxy")
	}
	if st, body := do(t, "GET", base+"/proxies", "", "User-Agent", "Mozilla/5.0"); st != 403 {
		t.Errorf("browser request: %d %s, want 403", st, body)
	}
	if st, body := do(t, "GET", base+"/proxies", "", "Host", "evil.example:8474"); st != 403 {
		t.Errorf("non-loopback Host: %d %s, want 403", st, body)
	}
	var m map[string]any
	if _, body := do(t, "GET", base+"/proxies", ""); json.Unmarshal([]byte(body), &m) != nil || len(m) != 0 {
		t.Errorf("GET /proxies after deleting everything: %s", body)
	}
}

func TestStartRefusesNonLoopback(t *testing.T) {
	s, err := New(context.Background(), Config{Rand: rand.New(rand.NewPCG(1, 1))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start("0.0.0.0:0"); err == nil {
		s.Close()
		t.Fatal("API started on 0.0.0.0")
	}
}

// POST /proxies refuses an upstream off loopback with a 400 (toxiproxy-cli
// prints it), unless the server was started with AllowRemote.
func TestCreateRefusesRemoteUpstream(t *testing.T) {
	_, addr := startAPI(t)
	api := "http://" + addr
	st, body := do(t, "POST", api+"/proxies", `{"name":"r","listen":"127.0.0.1:0","upstream":"203.0.113.9:80"}`)
	if st != 400 || !strings.Contains(body, "not a loopback address") {
		t.Fatalf("remote upstream: %d %s", st, body)
	}
	if st, body := do(t, "GET", api+"/proxies", ""); strings.TrimSpace(body) != "{}" {
		t.Fatalf("a proxy was created anyway: %d %s", st, body)
	}
	// Moving an existing proxy's upstream off loopback is the same client
	// error, not a server fault.
	if st, body := do(t, "POST", api+"/proxies", `{"name":"ok","listen":"127.0.0.1:0","upstream":"`+echoUpstream(t)+`"}`); st != 201 {
		t.Fatalf("create: %d %s", st, body)
	}
	st, body = do(t, "POST", api+"/proxies/ok", `{"upstream":"203.0.113.9:80"}`)
	if st != 400 || !strings.Contains(body, "not a loopback address") {
		t.Fatalf("update to a remote upstream: %d %s", st, body)
	}
}

// A proxy handed over with AddProxy is driven by the API but owned by its
// maker: Server.Close leaves it running.
func TestAddProxyOwnership(t *testing.T) {
	s, api := startAPI(t)
	up := echoUpstream(t)
	p, err := tcpfault.New(tcpfault.Config{Name: "mine", Listen: "127.0.0.1:0", Upstream: up, Rand: rand.New(rand.NewPCG(9, 9))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := s.AddProxy(p); err != nil {
		t.Fatal(err)
	}
	if st, body := do(t, "POST", "http://"+api+"/proxies/mine/toxics", `{"type":"latency","attributes":{"latency":80}}`); st != 200 {
		t.Fatalf("add toxic to an added proxy: %d %s", st, body)
	}
	if d, err := roundTrip(t, p.Addr()); err != nil || d < 80*time.Millisecond {
		t.Errorf("through the added proxy: %v, %v", d, err)
	}
	s.Close()
	if _, err := roundTrip(t, p.Addr()); err != nil {
		t.Errorf("Server.Close stopped a proxy it does not own: %v", err)
	}
}

// Populating the same list again keeps the proxies it names as they are,
// toxics included, also when an upstream is written as a URL (which the
// API accepts): the stored upstream is host:port, and comparing it with
// the URL as written replaced the proxy, dropping its toxics and cutting
// its connections, on every populate.
func TestPopulateAgainKeepsURLUpstreamProxy(t *testing.T) {
	s, api := startAPI(t)
	base := "http://" + api
	up := echoUpstream(t)
	list := `[{"name":"u","listen":"127.0.0.1:0","upstream":"http://` + up + `/"}]`
	if st, body := do(t, "POST", base+"/populate", list); st != 201 {
		t.Fatalf("populate: %d %s", st, body)
	}
	p, _ := s.Proxy("u")
	list = strings.Replace(list, "127.0.0.1:0", p.Addr(), 1)
	if st, body := do(t, "POST", base+"/proxies/u/toxics", `{"type":"latency","attributes":{"latency":5}}`); st != 200 {
		t.Fatalf("add toxic: %d %s", st, body)
	}
	if st, body := do(t, "POST", base+"/populate", list); st != 201 || !strings.Contains(body, `"latency_downstream"`) {
		t.Errorf("populate again: %d %s; want the proxy kept with its toxic", st, body)
	}
	if q, _ := s.Proxy("u"); q != p {
		t.Error("populate again replaced the proxy")
	}
}

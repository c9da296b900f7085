package plan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gcScenario is a scenario whose gateway section is gw (indented under
// gateway:) and whose upstreams section is ups.
func gcScenario(ups, gw, extra string) string {
	return "name: gc\nupstreams:\n" + ups + "gateway:\n" + gw + `load:
  client_timeout: 5s
  stages: [{duration: 2s, rate: 10/s}]
  requests: [{path: /}]
` + extra
}

// gateway.container compiles with its defaults filled in, and its timeout
// is the gateway layer of the cascade: nginx passes a timed-out GET on to
// each replica in turn, so the client may see 1 × or 2 × the timeout with
// two replicas; HAProxy answers at its timeout.
func TestGatewayContainerCompiles(t *testing.T) {
	p, err := CompileBytes("gc.yaml", []byte(gcScenario("  - {name: api, replicas: 2, latency: 5ms}\n",
		"  container: {kind: nginx, timeout: 1s}\n", "slo:\n  - {cascade: gateway}\n")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := p.GatewayContainer
	if g == nil || p.Gateway != nil || p.External != "" {
		t.Fatalf("gateway container %+v, gateway %+v, external %q", g, p.Gateway, p.External)
	}
	if g.Kind != "nginx" || g.Port != 0 || g.Upstream != "api" || g.Replicas != 2 || g.Timeout != time.Second ||
		g.Ready != DefaultGatewayReady || g.Config != "" || !g.Declared {
		t.Errorf("gateway container = %+v", g)
	}
	if got := Chain(p); got != "client 5.000s > gateway 1.000s/2.000s" {
		t.Errorf("chain = %q", got)
	}
	if len(p.Warnings) != 0 {
		t.Errorf("warnings: %v", p.Warnings)
	}

	p, err = CompileBytes("gc.yaml", []byte(gcScenario("  - {name: api, replicas: 2}\n  - {name: other}\n",
		"  container: {kind: haproxy, upstream: api, port: 18080}\n", "")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if g := p.GatewayContainer; g.Port != 18080 || g.Timeout != DefaultGatewayContainerTimeout || g.Upstream != "api" {
		t.Errorf("gateway container = %+v", g)
	}
	// The default 30 s is not shorter than the client's 5 s: said.
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0].String(), "gc.yaml:6:14: gateway.container.timeout: haproxy timeout 30s is not shorter than the client timeout 5s") {
		t.Errorf("warnings: %v", p.Warnings)
	}
	if got := Chain(p); got != "client 5.000s > gateway 30.00s" {
		t.Errorf("chain = %q", got)
	}
}

// Mistakes in gateway.container are reported at their place in the file.
func TestGatewayContainerErrorsPositioned(t *testing.T) {
	two := "  - {name: api}\n  - {name: web}\n"
	one := "  - {name: api, latency: 5ms}\n"
	for _, tc := range []struct {
		ups, gw, extra string
		want           []string
	}{
		{one, "  external: http://127.0.0.1:8080\n  container: {kind: nginx}\n", "", []string{
			"gc.yaml:6:14: gateway.container: container and external exclude each other"}},
		{one, "  container: {kind: nginx}\n  routes: [{path: /, upstream: api}]\n", "", []string{
			"gc.yaml:5:14: gateway.container: container and routes/listen/upstreams/admin_listen exclude each other"}},
		{one, "  container: {kind: envoy}\n", "", []string{
			`gc.yaml:5:21: gateway.container.kind: unknown kind "envoy" (valid: haproxy, nginx)`}},
		{one, "  container: {port: 8080}\n", "", []string{
			"gc.yaml:5:14: gateway.container: a gateway container needs a kind (valid: haproxy, nginx)"}},
		{one, "  container: {kind: nginx, port: 40000}\n", "", []string{
			"gc.yaml:5:34: gateway.container.port: port 40000: give 1024-32767"}},
		{one, "  container: {kind: nginx, port: 80}\n", "", []string{
			"gc.yaml:5:34: gateway.container.port: port 80: the proxy runs as an unprivileged user, which cannot bind below 1024"}},
		{one, "  container: {kind: nginx, upstream: apx}\n", "", []string{
			`gc.yaml:5:38: gateway.container.upstream: unknown upstream "apx" (declared: api)`}},
		{two, "  container: {kind: haproxy}\n", "", []string{
			"gc.yaml:6:14: gateway.container: name the upstream the haproxy container proxies to: upstream: one of api, web"}},
		{one, "  container: {kind: nginx, timeout: 500us}\n", "", []string{
			"gc.yaml:5:37: gateway.container.timeout: timeout 500µs is below 1ms"}},
		{one, "  container: {kind: nginx, ready: /up}\n", "", []string{
			"gc.yaml:5:35: gateway.container.ready: the generated configuration answers /cascade-health"}},
		{one, "  container: {kind: nginx, config: missing.conf}\n", "", []string{
			"gc.yaml:5:36: gateway.container.config:", "missing.conf: no such file"}},
		{"  - {name: api, listen: [\"127.0.0.1:18080\"]}\n", "  container: {kind: nginx, port: 18080}\n", "", []string{
			"gc.yaml:5:34: gateway.container.port: listen address 127.0.0.1:18080 is already used by upstreams[0].listen[0]"}},
		{one, "  container: {kind: nginx}\n", "faults:\n  - {kind: packet, target: api, start: 0s, params: {loss: 10%}}\n", []string{
			"gc.yaml:11:12: faults[0].kind: packet faults need cascade's built-in gateway", "nginx container"}},
	} {
		_, err := CompileBytes("gc.yaml", []byte(gcScenario(tc.ups, tc.gw, tc.extra)), Options{})
		if err == nil {
			t.Errorf("%s: no error", tc.gw)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: missing %q in:\n%v", tc.gw, w, err)
			}
		}
	}
}

// A configuration file of your own is read relative to the scenario,
// its placeholders checked before any run, and it must say where it
// listens; a timeout it renders with {{timeout}} is the gateway layer.
func TestGatewayContainerConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	scenario := filepath.Join(dir, "s.yaml")
	compile := func(gw string) (*Plan, error) {
		write("s.yaml", gcScenario("  - {name: api, replicas: 2}\n", gw, ""))
		return CompileFile(scenario, Options{})
	}

	write("good.conf", "frontend fe\n    bind {{listen}}\n    monitor-uri {{ready}}\n    timeout server {{ timeout }}\nbackend be\n    {{servers}}\n")
	p, err := compile("  container: {kind: haproxy, config: good.conf, timeout: 800ms}\n")
	if err != nil {
		t.Fatal(err)
	}
	if g := p.GatewayContainer; !strings.Contains(g.Config, "{{servers}}") || g.ConfigFile != filepath.Join(dir, "good.conf") || !g.Declared {
		t.Errorf("gateway container = %+v", g)
	}
	if got := Chain(p); got != "client 5.000s > gateway 800.0ms" {
		t.Errorf("chain = %q", got)
	}

	// Without timeout:, the file's timeouts are unknown, {{timeout}} or
	// not (its default renders, and is no layer).
	write("fixed.conf", "frontend fe\n    bind {{listen}}\n    timeout server 2s\nbackend be\n    {{servers}}\n")
	for _, f := range []string{"fixed.conf", "good.conf"} {
		if p, err = compile("  container: {kind: haproxy, config: " + f + "}\n"); err != nil {
			t.Fatal(err)
		} else if got := Chain(p); got != "client 5.000s" {
			t.Errorf("%s: chain = %q", f, got)
		}
	}
	// A timeout the file does not render is judged, not applied: said.
	if p, err = compile("  container: {kind: haproxy, config: fixed.conf, timeout: 2s}\n"); err != nil {
		t.Fatal(err)
	} else if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0].String(), "gateway.container.timeout: fixed.conf does not use {{timeout}}") {
		t.Errorf("warnings: %v", p.Warnings)
	}

	write("typo.conf", "frontend fe\n    bind {{listen}}\nbackend be\n    {{server}}\n")
	if _, err = compile("  container: {kind: haproxy, config: typo.conf}\n"); err == nil ||
		!strings.Contains(err.Error(), "s.yaml:5:38: gateway.container.config: typo.conf: line 4: unknown placeholder {{server}} (placeholders: {{listen}}, {{port}}") {
		t.Errorf("typo: %v", err)
	}

	write("nowhere.conf", "frontend fe\n    bind 127.0.0.1:8080\nbackend be\n    {{servers}}\n")
	if _, err = compile("  container: {kind: haproxy, config: nowhere.conf}\n"); err == nil || !strings.Contains(err.Error(), "names no place to listen") {
		t.Errorf("no listen: %v", err)
	}
	if _, err = compile("  container: {kind: haproxy, config: nowhere.conf, port: 8080}\n"); err != nil {
		t.Errorf("a fixed port in the file, given as port: %v", err)
	}

	write("noservers.conf", "frontend fe\n    bind {{listen}}\nbackend be\n    server a 127.0.0.1:1\n")
	if p, err = compile("  container: {kind: haproxy, config: noservers.conf}\n"); err != nil {
		t.Fatal(err)
	} else if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0].Msg, "names none of upstream api's replicas") {
		t.Errorf("warnings: %v", p.Warnings)
	}

	// Re-judging a recorded run reads no file.
	if _, err := CompileBytes(filepath.Join(dir, "gone", "s.yaml"), []byte(gcScenario("  - {name: api}\n", "  container: {kind: nginx, config: x.conf}\n", "")), Options{Offline: true}); err != nil {
		t.Errorf("offline: %v", err)
	}
}

// An autoscaler cannot scale what the proxy's configuration, written at
// its start, does not name.
func TestGatewayContainerAutoscaleNeedsOracle(t *testing.T) {
	src := gcScenario("  - {name: api, replicas: 2}\n", "  container: {kind: nginx}\n",
		"autoscale:\n  - {upstream: api, min_replicas: 1, max_replicas: 4, metric: in_flight, target: 10}\n")
	_, err := CompileBytes("gc.yaml", []byte(src), Options{})
	if err == nil || !strings.Contains(err.Error(), "the nginx container's configuration is written once") {
		t.Errorf("err = %v", err)
	}
}

// A configuration of your own is held to loopback like everything else:
// a listen on every interface or a server elsewhere is refused at the
// config field, naming the file's line, unless --allow-remote.
func TestGatewayContainerConfigStaysOnLoopback(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte("events {}\nhttp {\n  upstream api { {{servers}} }\n  server {\n    listen {{port}};\n    location / { proxy_pass http://10.1.2.3:80; }\n  }\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := "name: t\nupstreams: [{name: api}]\ngateway:\n  container: {kind: nginx, config: nginx.conf, port: 18199}\nload:\n  rate: 10/s\n  duration: 1s\n  requests: [{path: /}]\n"
	scen := filepath.Join(dir, "s.yaml")
	if err := os.WriteFile(scen, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := CompileFile(scen, Options{})
	for _, want := range []string{"gateway.container.config: nginx.conf line 5: listen {{port}} listens on every interface",
		"nginx.conf line 6: proxy_pass http://10.1.2.3:80 is not a loopback address"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to say %q", err, want)
		}
	}
	if _, err := CompileFile(scen, Options{AllowRemote: true}); err != nil {
		t.Errorf("with --allow-remote: %v", err)
	}
}

package plan

import (
	"os"
	"strings"
	"testing"
)

// The gateway section shown in README.md ("The gateway") compiles, and
// every part of it reaches the plan. It is read from the README itself: a
// copy in testdata had drifted from it (fields added to the README were
// never compiled).
func TestGatewaySectionCompiles(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## The gateway\n")
	if !ok {
		t.Fatal(`README.md has no "## The gateway" section`)
	}
	_, block, ok := strings.Cut(section, "```yaml\n")
	block, _, ok2 := strings.Cut(block, "```\n")
	if !ok || !ok2 || !strings.HasPrefix(block, "gateway:\n") {
		t.Fatalf("the section's first YAML block is not a gateway: section:\n%.200s", block)
	}
	src := "name: gateway-full\nupstreams:\n  - {name: api, replicas: 2}\n" + block +
		"load:\n  stages: [{duration: 1s, rate: 10/s}]\n  requests: [{path: /api/x}]\n"
	p, err := CompileBytes("README.md", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := p.Gateway
	if g.AdminListen != "127.0.0.1:9901" || len(g.Upstreams) != 1 || len(g.Routes) != 1 {
		t.Fatalf("gateway = %+v", g)
	}
	u, r := g.Upstreams[0], g.Routes[0]
	if u.Breaker == nil || u.Breaker.MinimumCalls != 20 || u.Limits == nil || u.Limits.MaxConnections != 100 ||
		u.Limits.MaxPending != 50 || u.HealthCheck == nil || u.Outlier == nil || u.Balance.Policy != "p2c_ewma" || len(u.Weights) != 2 {
		t.Errorf("upstream = %+v", u)
	}
	if r.Retries == nil || r.Retries.MaxAttempts != 3 || r.RateLimit == nil || r.Fallback == nil || r.Fallback.Cache == nil ||
		r.Fallback.Static == nil || r.Timeouts.PerTry.D().String() != "800ms" || r.Timeouts.Idle.D().String() != "1s" ||
		r.Retries.BackoffMax.D().String() != "250ms" {
		t.Errorf("route = %+v", r)
	}
	if u.Breaker.MaxWaitInHalfOpen.D().String() != "30s" {
		t.Errorf("breaker = %+v", u.Breaker)
	}
}

// Gateway mistakes in a scenario are reported at their place in the file.
func TestGatewayErrorsPositioned(t *testing.T) {
	src := `name: t
upstreams:
  - {name: api, replicas: 2}
gateway:
  admin_listen: 0.0.0.0:9901
  upstreams:
    - name: api
      targets: [http://127.0.0.1:1]
      weights: [1, 2, 3]
      breaker: {sliding_window_type: rolling}
    - name: apx
  routes:
    - path: /
      upstream: api
      timeouts: {total: 1s, per_try: 1s}
      retries: {retry_on: [sometimes]}
      fallback: {on: [always]}
load:
  stages: [{duration: 1s, rate: 1/s}]
  requests: [{path: /}]
`
	_, err := CompileBytes("gw.yaml", []byte(src), Options{})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"gw.yaml:5:17: gateway.admin_listen",
		"gw.yaml:8:16: gateway.upstreams[0].targets: in a scenario the targets of \"api\" are its replicas",
		"gw.yaml:9:16: gateway.upstreams[0].weights: 3 weights for 2",
		"gw.yaml:10:38: gateway.upstreams[0].breaker.sliding_window_type",
		"gw.yaml:11:13: gateway.upstreams[1].name: unknown upstream \"apx\"",
		"gw.yaml:15:38: gateway.routes[0].timeouts.per_try: per-try timeout 1s is not shorter than the total 1s",
		"Envoy ignores such a per-try timeout silently",
		"gw.yaml:16:28: gateway.routes[0].retries.retry_on[0]",
		"gw.yaml:17:17: gateway.routes[0].fallback: a fallback needs cache, static or both",
		"gw.yaml:17:23: gateway.routes[0].fallback.on[0]",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	// The built-in gateway's sections make no sense with your own gateway.
	ext := strings.Replace(src, "  admin_listen: 0.0.0.0:9901\n", "  external: http://127.0.0.1:8080\n", 1)
	if _, err := CompileBytes("gw.yaml", []byte(ext), Options{}); err == nil || !strings.Contains(err.Error(), "exclude each other") {
		t.Errorf("external with upstreams: %v", err)
	}
}

// The README's annotated scenario ("A scenario, line by line") is a whole
// file a reader copies: it compiles as written, without warnings.
func TestReadmeScenarioCompiles(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## A scenario, line by line\n")
	if !ok {
		t.Fatal(`README.md has no "## A scenario, line by line" section`)
	}
	_, block, ok := strings.Cut(section, "```yaml\n")
	block, _, ok2 := strings.Cut(block, "```\n")
	if !ok || !ok2 || !strings.HasPrefix(block, "name: ") {
		t.Fatalf("the section's first YAML block is not a scenario:\n%.200s", block)
	}
	p, err := CompileBytes("README.md", []byte(block), Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Objectives) != 5 || len(p.Timeline) != 1 {
		t.Errorf("plan: %d objectives, %d faults; want 5 and 1", len(p.Objectives), len(p.Timeline))
	}
}

package run

import (
	"strings"
	"testing"
)

// The gateway's real breaker and outlier detector, judged from their events
// and what reached the upstreams.
func TestBreakerThroughTheGateway(t *testing.T) {
	_, objs := judgeScenario(t, `
name: breaker
seed: 21
upstreams:
  - {name: payments, replicas: 2, latency: 2ms}
  - {name: catalog, replicas: 3, latency: 2ms}
gateway:
  upstreams:
    - name: payments
      breaker: {sliding_window_type: count, sliding_window_size: 20, minimum_calls: 10, failure_rate_threshold: 50%, wait_duration_in_open: 500ms, permitted_calls_in_half_open: 3}
    - name: catalog
      outlier: {consecutive_5xx: 5, base_ejection_time: 1s, max_ejection_percent: 34%}
  routes:
    - {path: /pay, upstream: payments, timeouts: {total: 1s}}
    - {path: /catalog, upstream: catalog, timeouts: {total: 1s}}
load:
  client_timeout: 2s
  stages: [{duration: 5s, rate: 100/s}]
  requests: [{path: /pay, method: POST}, {path: /catalog}]
faults:
  - {name: down, kind: error, target: payments, start: 1s, duration: 2s, params: {status: 503}}
  - {name: bad, kind: error, target: "catalog[2]", start: 1s, duration: 2s, params: {status: 500}}
slo:
  - {breaker: payments, opens_within: 1s, closes_within: 1500ms, after: down}
  - {breaker: payments, opens_within: 1ms, after: down}
  - {breaker: payments, blocks_while_open: true, half_open_probes: 3}
  - {breaker: payments, half_open_probes: 1}
  - {outlier: "catalog[2]", ejects_within: 1s, after: bad, blocks_while_ejected: true}
  - {outlier: "catalog[0]", ejects_within: 1s, after: bad}
  - {phase: down, objective: "breaker_opens >= 1", upstream: payments}
`)
	o := get(t, objs, "breaker payments opens within 1s")
	expect(t, o, true, "fault down started at", "breaker payments opened at", "reason failure_rate")
	if o.Value <= 0 || o.Value > 1 {
		t.Errorf("opened after %vs", o.Value)
	}
	expect(t, get(t, objs, "breaker payments opens within 1ms"), false)
	expect(t, get(t, objs, "breaker payments closes within 1.5s"), true, "fault down ended at", "breaker payments closed at")
	b := get(t, objs, "no requests reach payments while its breaker is open")
	expect(t, b, true, "0 requests reached it while open")
	if b.Facts["episodes"] < 1 || b.Facts["time_s"] < 0.5 {
		t.Errorf("open episodes %v", b.Facts)
	}
	p := get(t, objs, "breaker payments half-open probes <= 3")
	expect(t, p, true)
	if p.Value < 1 || p.Value > 3 {
		t.Errorf("probes per half-open state = %v, want 1..3", p.Value)
	}
	if p.Value > 1 {
		expect(t, get(t, objs, "breaker payments half-open probes <= 1"), false)
	}
	expect(t, get(t, objs, "catalog[2] is ejected within 1s"), true, "catalog[2] was ejected at", "reason consecutive_5xx")
	expect(t, get(t, objs, "no requests reach catalog[2] while ejected"), true, "0 requests reached it while ejected")
	expect(t, get(t, objs, "catalog[0] is ejected within 1s"), false, "no outlier.eject event for catalog[0]")
	expect(t, get(t, objs, "down: breaker_opens >= 1 (payments)"), true)
}

// Retries counted where they land: a route that retries 503s amplifies the
// load on a half-failing upstream; retrying POSTs is caught; no attempt
// starts after the deadline.
func TestRetriesAtTheUpstream(t *testing.T) {
	src := `
name: retries
seed: 5
upstreams: [{name: api, replicas: 2, latency: 2ms}]
gateway:
  routes:
    - path: /
      upstream: api
      timeouts: {total: 1s}
      retries: {retry_on: ["503"], max_attempts: 3, backoff_base: 5ms, budget_percent: 100%, min_retry_concurrency: 100, retry_non_idempotent: NONIDEM}
load:
  client_timeout: 2s
  stages: [{duration: 3s, rate: 60/s}]
  requests: [{path: /a}, {path: /b, method: POST}]
faults:
  - {name: flaky, kind: error, target: api, start: 1s, duration: 1s, params: {status: 503, probability: 50%}}
slo:
  - {phase: flaky, objective: "amplification <= 1.2"}
  - {phase: flaky, objective: "amplification <= 2.5"}
  - {phase: before, objective: "amplification <= 1.05"}
  - non_idempotent_retries == 0
  - late_attempts == 0
  - {objective: "retries >= 10", upstream: api}
`
	_, objs := judgeScenario(t, strings.Replace(src, "NONIDEM", "true", 1))
	a := get(t, objs, "flaky: amplification <= 1.2")
	expect(t, a, false, "attempts reached the upstreams for")
	if a.Value < 1.3 || a.Value > 2.2 {
		t.Errorf("amplification with 50%% 503s and 3 attempts = %v, want ~1.75", a.Value)
	}
	expect(t, get(t, objs, "flaky: amplification <= 2.5"), true)
	expect(t, get(t, objs, "before: amplification <= 1.05"), true)
	n := get(t, objs, "non_idempotent_retries == 0")
	expect(t, n, false, "retries of non-idempotent requests (POST, PATCH)")
	if n.Value < 5 {
		t.Errorf("non-idempotent retries = %v", n.Value)
	}
	expect(t, get(t, objs, "late_attempts == 0"), true)
	expect(t, get(t, objs, "retries >= 10 (api)"), true)

	_, objs = judgeScenario(t, strings.Replace(src, "NONIDEM", "false", 1))
	expect(t, get(t, objs, "non_idempotent_retries == 0"), true, "0 retries of non-idempotent")
}

// The gateway's active health checks are not traffic: a replica ejected for
// failing /x keeps being probed on /health (as in Envoy), and neither those
// probes nor the healthy replicas' count as requests that reached an
// upstream. They are recorded apart, per replica.
func TestHealthChecksAreNotTraffic(t *testing.T) {
	out, objs := judgeScenario(t, `
name: health-checks
seed: 11
upstreams: [{name: api, replicas: 3, latency: 2ms}]
gateway:
  upstreams:
    - name: api
      health_check: {path: /health, interval: 100ms, timeout: 100ms}
      outlier: {consecutive_5xx: 3, base_ejection_time: 1500ms, max_ejection_percent: 34%}
  routes:
    - {path: /, upstream: api, timeouts: {connect: 1s, total: 1500ms}}
load:
  client_timeout: 2s
  stages: [{duration: 3s, rate: 30/s}]
  requests: [{path: /x}]
faults:
  - {name: bad2, kind: error, target: "api[2]", start: 500ms, duration: 1s, params: {status: 500, match: {path: /x}}}
slo:
  - {outlier: "api[2]", ejects_within: 500ms, blocks_while_ejected: true, after: bad2}
  - amplification <= 1.02
  - upstream_requests <= 90
`)
	// The probes sent to api[2] while it was ejected (10 a second for
	// 1.5 s) are not requests reaching it. A request the gateway sent just
	// before the ejection may still arrive more than the verdict's 5 ms
	// later on a loaded machine (CI failed once on one such), so this
	// allows two; fifteen probes counted would fail it.
	if b := get(t, objs, "no requests reach api[2] while ejected"); b.Value > 2 {
		t.Errorf("%v requests reached api[2] while ejected: the probes were counted as traffic (%s)", b.Value, b.Evidence)
	}
	a := get(t, objs, "amplification <= 1.02")
	expect(t, a, true)
	near(t, "amplification", a.Value, 1, 0.001)
	u := get(t, objs, "upstream_requests <= 90")
	expect(t, u, true)
	if sent := float64(out.Summary.Run.Stats.Sent); u.Value != sent {
		// A request the gateway answered itself never reached an
		// upstream: with a loopback connect timed out by a starved
		// goroutine (CI failed once, 89 for 90, with connect: 100ms).
		t.Errorf("upstream_requests = %v for %v requests sent without retries; outcomes %v", u.Value, sent, out.Summary.Run.Stats.Causes)
	}
	var checks, ofEjected int64
	for _, rec := range loadUpstreams(t, out.Dir) {
		checks += rec.HealthChecks
		for _, rr := range rec.PerReplica {
			if rr.Replica == "api[2]" {
				ofEjected += rr.HealthChecks
			}
		}
	}
	// 3 s at 10 checks a second on each of 3 replicas.
	if checks < 45 || ofEjected < 15 {
		t.Errorf("health checks recorded: %d in all, %d on api[2]; want about 90 and 30", checks, ofEjected)
	}
}

// amplification for one upstream divides by the client requests the run
// really sent on the routes to it: with a mix of equal weights the draws
// are uneven, and without retries each upstream's amplification is exactly
// 1, not arrivals over a third of the requests.
func TestAmplificationPerUpstreamIsExact(t *testing.T) {
	out, objs := judgeScenario(t, `
name: routed
seed: 3
upstreams:
  - {name: ua, latency: 1ms}
  - {name: ub, latency: 1ms}
  - {name: uc, latency: 1ms}
gateway:
  routes:
    - {path: /a, upstream: ua}
    - {path: /b, upstream: ub}
    - {path: /c, upstream: uc}
load:
  client_timeout: 2s
  stages: [{duration: 2s, rate: 45/s}]
  requests: [{path: /a}, {path: /b}, {path: /c}]
slo:
  - {objective: "amplification <= 1", upstream: ua}
  - {objective: "amplification <= 1", upstream: ub}
  - {objective: "amplification >= 1", upstream: uc}
`)
	var total float64
	for _, up := range []string{"ua", "ub", "uc"} {
		o := get(t, objs, "amplification "+map[string]string{"ua": "<=", "ub": "<=", "uc": ">="}[up]+" 1 ("+up+")")
		expect(t, o, true, "client requests routed to "+up)
		near(t, "amplification of "+up, o.Value, 1, 1e-9)
		total += o.Facts["client_requests"]
	}
	if sent := float64(out.Summary.Run.Stats.Sent); total != sent {
		t.Errorf("requests routed to the three upstreams: %v, want the %v sent", total, sent)
	}
}

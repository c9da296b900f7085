package run

import (
	"strings"
	"testing"
)

// A load step beyond what two replicas with 2 workers each can serve: the
// autoscaler (in-flight per replica, target 3) adds replicas behind the
// gateway, within a sync or two of the step.
func TestAutoscalerScalesUpOnLoadStep(t *testing.T) {

	out, objs := judgeScenario(t, `
name: scale
seed: 8
upstreams: [{name: api, replicas: 2, latency: 20ms, concurrency: 1}]
gateway:
  routes: [{path: /, upstream: api, timeouts: {response_header: 2s, total: 2s}}]
load:
  client_timeout: 3s
  stages:
    - {duration: 3s, rate: 20/s}
    - {duration: 5s, rate: 200/s}
  requests: [{path: /}]
autoscale:
  - upstream: api
    min_replicas: 2
    max_replicas: 8
    metric: in_flight
    target: "3"
    sync_period: 500ms
    behavior:
      scale_up: {policies: [{type: pods, value: 4, period: 500ms}]}
slo:
  - {autoscale: api, scales_up_within: 2s, after: "stage[1]"}
  - {autoscale: api, scales_up_within: 300ms, after: "stage[1]"}
  - {autoscale: api, reaches: 4}
  - {autoscale: api, reaches: max}
  - {autoscale: api, direction_changes: 0}
`)
	up := get(t, objs, "api scales up within 2s")
	expect(t, up, true, "stage[1] (200/s) at 3.000s", "api scaled 2 →")
	near(t, "scale-up delay", up.Value, 0.5, 0.51)
	expect(t, get(t, objs, "api scales up within 300ms"), false)
	r := get(t, objs, "api reaches 4 replicas")
	expect(t, r, true, "reached")
	if r.Facts["reached_s"] < 3 {
		t.Errorf("reached at %v, before the step", r.Facts["reached_s"])
	}
	expect(t, get(t, objs, "api changes direction <= 0 times"), true, "0 changes of direction")
	// The replicas really served: the upstream records show more than two.
	most := 0
	for _, rec := range loadUpstreams(t, out.Dir) {
		most = max(most, rec.Replicas)
	}
	if most < 4 {
		t.Errorf("at most %d replicas served requests: the autoscaler's replicas did not join the balancer", most)
	}
}

// Load that alternates between high and low with no scale-down
// stabilization: the autoscaler follows it up and down, which
// direction_changes calls flapping.
func TestAutoscalerFlapping(t *testing.T) {

	_, objs := judgeScenario(t, `
name: flap
seed: 8
upstreams: [{name: api, replicas: 2, latency: 20ms, concurrency: 1}]
gateway:
  routes: [{path: /, upstream: api, timeouts: {response_header: 2s, total: 2s}}]
load:
  client_timeout: 3s
  stages:
    - {duration: 2s, rate: 200/s}
    - {duration: 2s, rate: 10/s}
    - {duration: 2s, rate: 200/s}
    - {duration: 2s, rate: 10/s}
  requests: [{path: /}]
autoscale:
  - upstream: api
    min_replicas: 2
    max_replicas: 6
    metric: in_flight
    target: "3"
    sync_period: 500ms
    behavior:
      scale_up: {policies: [{type: pods, value: 4, period: 500ms}]}
      scale_down: {stabilization_window: 0s, policies: [{type: pods, value: 4, period: 500ms}]}
slo:
  - {autoscale: api, direction_changes: 1}
  - {autoscale: api, direction_changes: 10}
`)
	f := get(t, objs, "api changes direction <= 1 times")
	expect(t, f, false, "changes of direction")
	if f.Value < 2 {
		t.Errorf("direction changes = %v, want >= 2 (up, down, up, down)", f.Value)
	}
	expect(t, get(t, objs, "api changes direction <= 10 times"), true)
}

// Oracle mode scales nothing; the verdict replays a Kubernetes HPA over the
// recorded request rate. 100/s over 2 replicas is 50/s each: a 40/s target
// would have scaled to 3; a 48/s target sits inside the 10% dead band, so an
// HPA would never have moved. One sync over the whole run: on a loaded
// machine the load generator's stalls and catch-ups move requests between
// shorter windows, and the test is about the algorithm, not the machine.
func TestAutoscaleOracle(t *testing.T) {

	src := `
name: oracle
seed: 8
upstreams: [{name: api, replicas: 2, latency: 2ms}]
gateway:
  routes: [{path: /, upstream: api}]
load:
  client_timeout: 2s
  stages: [{duration: 8s, rate: 100/s}]
  requests: [{path: /}]
autoscale:
  - {upstream: api, mode: oracle, min_replicas: 2, max_replicas: 6, metric: request_rate, target: TARGET, sync_period: 8s}
slo:
  - {autoscale: api, reaches: 3}
  - {autoscale: api, no_dead_band: true}
  - {autoscale: api, scales_up_within: 9s, after: "stage[0]"}
`
	out, objs := judgeScenario(t, strings.Replace(src, "TARGET", "40/s", 1))
	expect(t, get(t, objs, "api (oracle) reaches 3 replicas"), true, "replayed over the recorded metrics (oracle)")
	expect(t, get(t, objs, "api (oracle) metric never sits"), true)
	expect(t, get(t, objs, "api (oracle) scales up within 9s"), true)
	for _, rec := range loadUpstreams(t, out.Dir) {
		if rec.Replicas > 2 {
			t.Fatalf("oracle mode scaled for real: %d replicas at %v", rec.Replicas, rec.Start)
		}
	}

	_, objs = judgeScenario(t, strings.Replace(src, "TARGET", "48/s", 1))
	expect(t, get(t, objs, "api (oracle) reaches 3 replicas"), false, "at most 2 replicas")
	db := get(t, objs, "api (oracle) metric never sits")
	expect(t, db, false, "inside the tolerance dead band", "a target below 43.6/s would have scaled")
	if db.Facts["above_in_band"] != 1 || db.Facts["syncs"] != 1 {
		t.Errorf("dead-band syncs = %v, want the one sync", db.Facts)
	}
}

package run

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/results/verdict"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// The gateway rung lifts the per-try timeout out of the way; the
// response_header timeout then bounds each retried attempt, and the rung is
// judged on that cascade, not on the file's (where per_try answers first).
func TestLadderJudgesEachRungOnItsOwnCascade(t *testing.T) {
	src := `name: rh-pt
upstreams: [{name: api, latency: 2ms}]
gateway:
  routes:
    - {path: /, upstream: api, timeouts: {response_header: 300ms, per_try: 200ms, total: 2s}, retries: {retry_on: [reset], max_attempts: 3}}
load:
  client_timeout: 3s
  stages: [{duration: 1s, rate: 10/s}]
  requests: [{path: /}]
`
	p, err := plan.CompileBytes("rh-pt.yaml", []byte(src), plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := plan.Chain(p); got != "client 3.000s > gateway 300.0ms/2.000s > per_try 200.0ms/400.0ms/600.0ms" {
		t.Fatalf("the file's cascade: %s", got)
	}
	rungs, err := Ladder(p, LadderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rungs {
		names = append(names, r.Name)
		if r.Name != "gateway" {
			continue
		}
		c := r.Plan.Objectives[0].(*verdict.Cascade)
		want := []time.Duration{300 * time.Millisecond, 600 * time.Millisecond, 900 * time.Millisecond, 2 * time.Second}
		for _, l := range c.Layers {
			if l.Name == "gateway" && !slices.Equal(l.Timeouts, want) {
				t.Errorf("gateway rung judged on gateway timeouts %v, want %v", l.Timeouts, want)
			}
			if l.Name == "per_try" {
				t.Errorf("gateway rung still lists the per_try layer it lifted: %v", l.Timeouts)
			}
		}
	}
	if got := strings.Join(names, ","); got != "per_try,gateway,client,cascade" {
		t.Fatalf("rungs %s", got)
	}
}

package run

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/results"
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

// A rung's delay lasts until the run stops, not until its load does: with
// a --duration shorter than the per-try timeout, every retry is sent after
// the load ended. When the delay ended with the load, those retries were
// answered on time ("ok"), the rung saw no timeout at all and failed with
// "the cascade was not exercised" on a cascade ordered right.
func TestLadderDelayOutlastsTheLoad(t *testing.T) {
	src := `name: short-rung
upstreams: [{name: api, replicas: 2, latency: 1ms}]
gateway:
  routes:
    - {path: /, upstream: api, timeouts: {per_try: 150ms, total: 1s}, retries: {retry_on: [reset], max_attempts: 2, backoff_base: 5ms}}
load:
  client_timeout: 2s
  stages: [{duration: 1s, rate: 10/s}]
  requests: [{path: /}]
`
	p, err := plan.CompileBytes("short-rung.yaml", []byte(src), plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const load = 100 * time.Millisecond
	rungs, err := Ladder(p, LadderOptions{Rate: 20, Duration: load})
	if err != nil {
		t.Fatal(err)
	}
	var perTry Rung
	for _, r := range rungs {
		for _, e := range r.Plan.Timeline {
			if e.Duration != 0 {
				t.Errorf("rung %s: fault %s lasts %v: it must last until the run stops", r.Name, e.Name, e.Duration)
			}
		}
		if r.Name == "per_try" {
			perTry = r
		}
	}
	if perTry.Plan == nil {
		t.Fatalf("no per_try rung in %v", rungs)
	}
	res, err := RunLadder(context.Background(), []Rung{perTry}, t.TempDir(), Options{Progress: ProgressOff})
	if err != nil {
		t.Fatal(err)
	}
	st := res[0].Summary.Run.Stats
	if !res[0].Pass || st.Causes["per_try_timeout"] != st.Sent || st.Sent == 0 {
		t.Errorf("per_try rung: pass %v, sent %d, causes %v: every request's retry must time out too (%s)",
			res[0].Pass, st.Sent, st.Causes, res[0].Summary.Objectives[0].Evidence)
	}
}

// A proxy configuration of your own that does not render {{timeout}} keeps
// its own timeout whatever a rung asks, so the client rung, which needs the
// gateway's lifted out of its way, cannot run: it is listed as skipped,
// with why, not run against a gateway still firing (nor dropped without a
// word). With {{timeout}} in the file, every rung runs.
func TestLadderSkipsRungsOutsideAnUnliftableGateway(t *testing.T) {
	dir := t.TempDir()
	conf := func(name, timeout string) {
		text := "frontend fe\n    bind {{listen}}\n    monitor-uri {{ready}}\n    timeout server " + timeout + "\nbackend be\n    {{servers}}\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf("fixed.conf", "2s")
	conf("rendered.conf", "{{timeout}}")
	for _, tc := range []struct{ config, rungs, skip string }{
		{"fixed.conf", "gateway,client(skipped),cascade", "the gateway timeout cannot be lifted out of its way: fixed.conf does not use {{timeout}}, so the proxy keeps its own"},
		{"rendered.conf", "gateway,client,cascade", ""},
	} {
		src := `name: own-conf
upstreams: [{name: api, latency: 2ms}]
gateway:
  container: {kind: haproxy, config: ` + tc.config + `, timeout: 2s}
load:
  client_timeout: 3s
  stages: [{duration: 1s, rate: 10/s}]
  requests: [{path: /}]
`
		path := filepath.Join(dir, "s.yaml")
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := plan.CompileFile(path, plan.Options{})
		if err != nil {
			t.Fatal(err)
		}
		rungs, err := Ladder(p, LadderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range rungs {
			n := r.Name
			if r.Skip != "" {
				n += "(skipped)"
				if r.Skip != tc.skip || r.Plan != nil {
					t.Errorf("%s: rung %s skipped with %q (plan %v), want %q", tc.config, r.Name, r.Skip, r.Plan != nil, tc.skip)
				}
			}
			names = append(names, n)
		}
		if got := strings.Join(names, ","); got != tc.rungs {
			t.Errorf("%s: rungs %s, want %s", tc.config, got, tc.rungs)
		}
		// cascade report on a rung's directory compiles offline, without
		// the config file: a rung that ran must be found there (the
		// skip judged the offline stand-in text, and "client" was lost).
		if tc.skip == "" {
			q, err := plan.CompileFile(path, plan.Options{Offline: true})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := RungPlan(q, results.LadderRung{Rung: "client", Rate: 10, Duration: results.Sec(2 * time.Second)}); err != nil {
				t.Errorf("%s offline: %v", tc.config, err)
			}
		}
	}
}

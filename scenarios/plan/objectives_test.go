package plan

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/yamlfile"
	"github.com/cascadehq/cascade/results/verdict"
)

// typed is a scenario whose slo: list is filled in by each case; line 24 is
// the first objective.
const typed = `name: typed
upstreams:
  - {name: api, replicas: 2, latency: 5ms}
  - {name: pay, latency: 5ms}
gateway:
  # pay has a breaker and api outlier detection, for the objectives that judge them
  upstreams: [{name: pay, breaker: {}}, {name: api, outlier: {}}]
  routes: [{path: /, upstream: api, timeouts: {connect: 100ms, response_header: 1s, total: 2s}}, {path: /pay, upstream: pay, timeouts: {response_header: 1s, total: 2s}}]
load:
  client_timeout: 3s
  stages:
    - {duration: 4s, rate: 10/s}
    - {duration: 4s, rate: 100/s}
  requests:
    - {path: /}
faults:
  - {name: outage, kind: error, target: pay, start: 1s, duration: 1s}
  - {name: slow, kind: latency, target: api, start: 3s, duration: 1s, params: {delay: 20ms}}
autoscale:
  - {upstream: api, min_replicas: 2, max_replicas: 6, metric: in_flight, target: "4", sync_period: 1s}
phases:
  - {name: mine, start: 5s, end: 7s}
slo:
`

func compileSLO(t *testing.T, slo string) (*Plan, error) {
	t.Helper()
	return CompileBytes("typed.yaml", []byte(typed+slo), Options{})
}

func TestTypedObjectivesCompile(t *testing.T) {
	p, err := compileSLO(t, `  - {objective: "p99 < 300ms", every: 2s, abort: true}
  - {phase: mine, objective: "amplification <= 1.5", upstream: pay}
  - {recovers_within: 2s, after: slow, band: 2, hold: 1s}
  - {recovers_within: 2s, after: "stage[1]", baseline: before}
  - {breaker: pay, opens_within: 500ms, closes_within: 2s, after: outage, half_open_probes: 3, blocks_while_open: true}
  - {outlier: "api[1]", ejects_within: 1s, returns_within: 5s, blocks_while_ejected: true, after: slow}
  - {autoscale: api, scales_up_within: 3s, after: "stage[1]", reaches: max, direction_changes: 1, no_dead_band: true}
  - {cascade: innermost, tolerance: 50ms}
  - {name: named, objective: "errors < 5", abort: true}
`)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range p.Objectives {
		switch x := o.(type) {
		case *verdict.Window:
			kinds["window"]++
			if x.Every != 2*time.Second {
				t.Errorf("every = %v", x.Every)
			}
		case *verdict.Threshold:
			kinds["threshold"]++
		case *verdict.Recovery:
			kinds["recovery"]++
		case *verdict.Transition:
			kinds["transition"]++
		case *verdict.Blocked:
			kinds["blocked"]++
		case *verdict.Probes:
			kinds["probes"]++
		case *verdict.Scaling:
			kinds["scaling"]++
			if x.Assert == verdict.Reaches && x.N != 6 {
				t.Errorf("reaches max = %d, want max_replicas 6", x.N)
			}
		case *verdict.Cascade:
			kinds["cascade"]++
			if x.Expect != "gateway" {
				t.Errorf("innermost = %q, want gateway", x.Expect)
			}
		}
	}
	want := map[string]int{"window": 1, "threshold": 2, "recovery": 2, "transition": 4, "blocked": 2, "probes": 1, "scaling": 4, "cascade": 1}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%d %s objectives, want %d (all: %v)", kinds[k], k, n, kinds)
		}
	}
	if len(p.Aborts) != 2 {
		t.Errorf("%d abort objectives, want 2", len(p.Aborts))
	}
	if got := Chain(p); got != "client 3.000s > gateway 1.000s/2.000s" {
		t.Errorf("chain = %q", got)
	}
}

// Quoted keys are the same keys: JSON written as YAML (what `cascade load`
// writes for --abort-threshold, what a generator of scenarios writes) once
// read `"abort"` with its quotes and named no objective.
func TestObjectiveWithQuotedKeys(t *testing.T) {
	p, err := compileSLO(t, `  - {"objective": "p99 < 300ms", "abort": true}
  - {'breaker': pay, "opens_within": 500ms, after: outage}
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Objectives) != 2 || len(p.Aborts) != 1 {
		t.Fatalf("%d objectives, %d aborts; want 2 and 1", len(p.Objectives), len(p.Aborts))
	}
}

func TestTypedObjectiveErrors(t *testing.T) {
	cases := []struct {
		slo, want, pos string
	}{
		{`  - {every: 2s}`, "an objective needs one of", "typed.yaml:24:5"},
		{`  - {objective: "p99 < 1s", breaker: pay}`, "objective and breaker exclude each other", "typed.yaml:24:"},
		{`  - {objective: "p99 < 1s", opens_within: 1s}`, "opens_within does not apply to a threshold objective", "typed.yaml:24:"},
		{`  - {objective: "p99 < 1s", every: 1500ms}`, "whole number of seconds", "slo[0].every"},
		{`  - {objective: "lag_p99 < 1s", every: 2s}`, "do not keep the scheduling lag", "slo[0].every"},
		{`  - {objective: "p99 > 1s", abort: true}`, "only an upper bound", "slo[0].abort"},
		{`  - {phase: mine, objective: "error_rate < 1%", abort: true}`, "only over the whole run", "slo[0].abort"},
		{`  - {objective: "p99 < 1s", upstream: api}`, "upstream applies to metrics measured at the upstreams", "slo[0].upstream"},
		{`  - {objective: "orphans == 0", upstream: nope}`, `unknown upstream "nope"`, "slo[0].upstream"},
		{`  - {recovers_within: 2s}`, "after is required with several faults", "slo[0]"},
		{`  - {recovers_within: 2s, after: nope}`, `after "nope" is not a fault (outage, slow)`, "slo[0].after"},
		{`  - {recovers_within: 2s, after: "stage[7]"}`, "stage[7] does not exist", "slo[0].after"},
		{`  - {recovers_within: 2s, after: slow, baseline: nope}`, `unknown phase "nope"`, "slo[0].baseline"},
		{`  - {recovers_within: 2s, after: slow, band: 0.5}`, "must be a number from 1", "slo[0].band"},
		{`  - {recovers_within: 2s, after: slow, band: .nan}`, "must be a number from 1", "slo[0].band"},
		{`  - {recovers_within: 2s, after: slow, band: .inf}`, "must be a number from 1", "slo[0].band"},
		{`  - {breaker: nope, opens_within: 1s}`, `unknown upstream "nope"`, "slo[0].breaker"},
		{`  - {breaker: pay}`, "say what to judge", "slo[0].breaker"},
		{`  - {breaker: pay, opens_within: 1s}`, "after is required with several faults", "slo[0]"},
		{`  - {outlier: "api[5]", blocks_while_ejected: true}`, "index 5 does not exist", "slo[0].outlier"},
		{`  - {autoscale: pay, reaches: 2}`, `no autoscaler for "pay"`, "slo[0].autoscale"},
		{`  - {autoscale: api, reaches: 9}`, "above the autoscaler's max_replicas (6)", "slo[0].reaches"},
		{`  - {autoscale: api, reaches: lots}`, "replica count or", "slo[0].reaches"},
		{`  - {cascade: db}`, `"db" is not a layer that declares a timeout here`, "slo[0].cascade"},
		{`  - {gateway_adds: "p99 < 5ms"}`, "needs direct load", "slo[0].gateway_adds"},
		{`  - {objective: "p99 < 1s", hold: 1s}`, "hold does not apply", "slo[0].hold"},
		// h6 #14: each refused where it is written, saying what was expected.
		{`  - {recovers_within: 2s, after: "stage[99999999999999999999]"}`, "stage[0] to stage[1]: stage[99999999999999999999] does not exist", "typed.yaml:24:34: slo[0].after"},
		{`  - {objective: "p(99 < 10ms"}`, "unbalanced parenthesis", "typed.yaml:24:17: slo[0].objective"},
		{`  - {objective: "requests == 1.5"}`, "requests is a count: expected a whole number, got 1.5", "typed.yaml:24:17: slo[0].objective"},
		{`  - {objective: "p99 < 0ms"}`, "never below 0: this can never pass", "typed.yaml:24:17: slo[0].objective"},
		{`  - {objective: "error_rate > 100%"}`, "error_rate is never above 100%: this can never pass", "typed.yaml:24:17: slo[0].objective"},
		{`  - {phase: slow, objective: "gateway_timeout_rate > 100%"}`, "gateway_timeout_rate is never above 100%: this can never pass", "slo[0].objective"},
		{`  - {objective: "error_rate >= 101%"}`, `percentage "101%" is outside 0%..100%`, "slo[0].objective"},
		{`  - {objective: "error_rate == 150%"}`, `percentage "150%" is outside 0%..100%`, "slo[0].objective"},
		{`  - achieved_rate >= 195rps`, `achieved_rate is a rate or a share of the target rate: expected e.g. 195/s or 98%, got "195rps"`, "typed.yaml:24:5: slo[0]"},
		{`  - {objective: "client_gone_rate < 1%"}`, "the client never receives it", "typed.yaml:24:17: slo[0].objective"},
		{`  - {recovers_within: 2s, after: run}`, "when the load ends (8s): nothing is recorded after it, so this can never pass", "typed.yaml:24:34: slo[0].after"},
		{`  - {recovers_within: 2s, after: after}`, "when the load ends (8s)", "slo[0].after"}, // the phase after the last fault
		// Nothing to judge: a breaker or outlier detection the gateway does
		// not have never opens nor ejects; "breaker_opens == 0" passed.
		{`  - {breaker: api, opens_within: 1s, after: slow}`, `upstream "api" has no breaker`, "typed.yaml:24:15: slo[0].breaker"},
		{`  - {outlier: "pay[0]", ejects_within: 1s, after: outage}`, `upstream "pay" has no outlier detection`, "typed.yaml:24:15: slo[0].outlier"},
		{`  - {objective: "breaker_opens == 0", upstream: api}`, `upstream "api" has none (gateway.upstreams[].breaker): it is always 0`, "typed.yaml:24:49: slo[0].upstream"},
		{`  - {objective: "ejections == 0", upstream: pay}`, `upstream "pay" has none (gateway.upstreams[].outlier)`, "slo[0].upstream"},
		// A bare number where a rate is meant: error_rate < 1 was 100%,
		// achieved_rate >= 98 was 98/s.
		{`  - {objective: "error_rate < 1"}`, "write 1 with a % sign (as a fraction, 1 would be 100.0%, not 1%)", "typed.yaml:24:17: slo[0].objective"},
		{`  - achieved_rate >= 98`, "write 98/s for a rate, or 98% for a share of the target rate", "typed.yaml:24:5: slo[0]"},
		// A fraction's share is its percentage: it suggested "0.98%".
		{`  - achieved_rate >= 0.98`, "write 0.98/s for a rate, or 98% for a share of the target rate", "typed.yaml:24:5: slo[0]"},
		{`  - achieved_rate >= 0.29`, "write 0.29/s for a rate, or 29% for a share of the target rate", "typed.yaml:24:5: slo[0]"},
		{"  - p99 < 1s\n  - p99 < 1s", `objective "p99 < 1s" is also slo[0]'s name`, "typed.yaml:25:5: slo[1]"},
		{"  - {name: fast, objective: \"p99 < 1s\"}\n  - {name: fast, objective: \"p50 < 1s\"}", `objective "fast" is also slo[0]'s name`, "slo[1].name"},
	}
	for _, tc := range cases {
		t.Run(tc.slo, func(t *testing.T) {
			_, err := compileSLO(t, tc.slo+"\n")
			if err == nil {
				t.Fatal("compiled")
			}
			var es yamlfile.Errors
			if !errors.As(err, &es) || len(es) != 1 {
				t.Fatalf("want one error, got %v", err)
			}
			if !strings.Contains(es[0].Error(), tc.want) || !strings.Contains(es[0].Error(), tc.pos) {
				t.Errorf("error %q: want %q at %q", es[0].Error(), tc.want, tc.pos)
			}
			if es[0].Line == 0 {
				t.Errorf("error %q has no position", es[0].Error())
			}
		})
	}
}

func TestAutoscaleSpecErrors(t *testing.T) {
	base := strings.Replace(typed, `  - {upstream: api, min_replicas: 2, max_replicas: 6, metric: in_flight, target: "4", sync_period: 1s}`, "AUTOSCALE", 1)
	cases := []struct{ spec, want, pos string }{
		{`  - {upstream: nope, max_replicas: 3, metric: in_flight, target: "4"}`, `unknown upstream "nope"`, "autoscale[0].upstream"},
		{`  - {upstream: api, max_replicas: 3, metric: cpu, target: "4"}`, `unknown metric "cpu"`, "autoscale[0].metric"},
		{`  - {upstream: api, max_replicas: 3, metric: p95_latency, target: "4"}`, "must be a duration", "autoscale[0].target"},
		{`  - {upstream: api, min_replicas: 3, max_replicas: 6, metric: in_flight, target: "4"}`, "starts with 2 replicas, outside", "autoscale[0].min_replicas"},
		{`  - {upstream: api, max_replicas: 3, metric: in_flight, target: "4", behavior: {scale_up: {policies: [{type: pods, value: 0, period: 1s}]}}}`, "must be greater than 0", "autoscale[0].behavior.scale_up.policies[0].value"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			_, err := CompileBytes("typed.yaml", []byte(strings.Replace(base, "AUTOSCALE", tc.spec, 1)), Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.pos) {
				t.Fatalf("error %v: want %q at %q", err, tc.want, tc.pos)
			}
		})
	}
	// A fault on a replica the autoscaler may remove.
	src := strings.Replace(base, "AUTOSCALE", `  - {upstream: api, min_replicas: 1, max_replicas: 4, metric: in_flight, target: "4"}`, 1)
	src = strings.Replace(src, "target: api, start: 3s", `target: "api[1]", start: 3s`, 1)
	if _, err := CompileBytes("typed.yaml", []byte(src), Options{}); err == nil || !strings.Contains(err.Error(), "which its autoscaler may remove") {
		t.Fatalf("error %v", err)
	}
}

func TestCascadeLintOrdering(t *testing.T) {
	src := strings.Replace(typed, "client_timeout: 3s", "client_timeout: 1500ms", 1)
	p, err := CompileBytes("typed.yaml", []byte(src+"  - p99 < 1s\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 2 {
		t.Fatalf("warnings = %v: want one per route whose total (2s) is not shorter than the client's 1.5s", p.Warnings)
	}
	for i, w := range p.Warnings {
		if !strings.Contains(w.Msg, "gateway total timeout 2s is not shorter than the client timeout 1.5s") || !strings.Contains(w.Pos, "timeouts.total") {
			t.Errorf("warning %d = %v", i, w)
		}
	}
}

func TestWindowOnPhaseWithoutWholeSecond(t *testing.T) {
	src := strings.Replace(typed, "  - {name: mine, start: 5s, end: 7s}", "  - {name: mine, start: 5s, end: 7s}\n  - {name: half, start: 5500ms, end: 6500ms}", 1)
	cases := []struct {
		slo, warn string
	}{
		{`  - {phase: half, objective: "p99 < 1s", every: 1s}`, "phase half [5.5s, 6.5s) holds no whole second"},
		{`  - {phase: mine, objective: "p99 < 1s", every: 1s}`, ""},
		{`  - {objective: "p99 < 1s", every: 2s}`, ""},
		{`  - {phase: half, objective: "p99 < 1s"}`, ""}, // a threshold judges the phase's own histograms
	}
	for _, tc := range cases {
		t.Run(tc.slo, func(t *testing.T) {
			p, err := CompileBytes("typed.yaml", []byte(src+tc.slo+"\n"), Options{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range p.Warnings {
				if strings.Contains(w.Msg, "whole second") {
					got = append(got, w.Pos+": "+w.Msg)
				}
			}
			switch {
			case tc.warn == "" && len(got) > 0:
				t.Errorf("warned %v", got)
			case tc.warn != "" && (len(got) != 1 || !strings.Contains(got[0], tc.warn) || !strings.Contains(got[0], "typed.yaml:25:") || !strings.Contains(got[0], "slo[0].every")):
				t.Errorf("warnings %v: want %q at slo[0].every", got, tc.warn)
			}
		})
	}
}

// A route that retries timeouts without a per-try timeout shorter than its
// response_header one shows the client the gateway's 504 after k attempts
// that each hit response_header: the cascade lists k × it while it is
// under the total.
func TestRetriedResponseHeaderTimeoutInCascade(t *testing.T) {
	const src = `name: rh
upstreams:
  - {name: api, latency: 5ms}
gateway:
  routes:
    - {path: /, upstream: api, timeouts: {TIMEOUTS}, retries: {RETRIES}}
load:
  client_timeout: 3s
  stages:
    - {duration: 2s, rate: 10/s}
  requests:
    - {path: /}
slo:
  - {cascade: gateway}
`
	cases := []struct {
		timeouts, retries, want string
	}{
		{"response_header: 200ms, total: 2s", "retry_on: [reset], max_attempts: 3",
			"client 3.000s > gateway 200.0ms/400.0ms/600.0ms/2.000s"},
		{"response_header: 200ms, total: 2s", "max_attempts: 3", // the default retry_on has reset
			"client 3.000s > gateway 200.0ms/400.0ms/600.0ms/2.000s"},
		{"response_header: 200ms, total: 2s", "retry_on: [gateway_error], max_attempts: 3",
			"client 3.000s > gateway 200.0ms/400.0ms/600.0ms/2.000s"},
		// Not retried on a timeout: the 504 comes after one attempt.
		{"response_header: 200ms, total: 2s", "retry_on: [503], max_attempts: 3",
			"client 3.000s > gateway 200.0ms/2.000s"},
		{"response_header: 200ms, total: 2s", "retry_on: [connect_failure], max_attempts: 3",
			"client 3.000s > gateway 200.0ms/2.000s"},
		// Only the multiples under the total: the total cuts the rest.
		{"response_header: 200ms, total: 500ms", "retry_on: [reset], max_attempts: 5",
			"client 3.000s > gateway 200.0ms/400.0ms/500.0ms"},
		// A shorter per-try timeout bounds each attempt instead.
		{"response_header: 200ms, per_try: 150ms, total: 2s", "retry_on: [reset], max_attempts: 3",
			"client 3.000s > gateway 200.0ms/2.000s > per_try 150.0ms/300.0ms/450.0ms"},
	}
	for _, tc := range cases {
		t.Run(tc.timeouts+" "+tc.retries, func(t *testing.T) {
			y := strings.NewReplacer("TIMEOUTS", tc.timeouts, "RETRIES", tc.retries).Replace(src)
			p, err := CompileBytes("rh.yaml", []byte(y), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got := Chain(p); got != tc.want {
				t.Errorf("cascade %q, want %q", got, tc.want)
			}
		})
	}
}

// A recovery found at its limit must have `hold` of load left to be held
// over; when the file leaves less, validate says so (the verdict would pass
// on the shorter stretch).
func TestRecoveryHoldPastTheLoadIsWarned(t *testing.T) {
	for _, tc := range []struct {
		slo  string
		want string // "" for no warning
	}{
		{`  - {recovers_within: 2s, after: slow, hold: 2s}`, ""},
		{`  - {recovers_within: 2s, after: slow, hold: 3s}`, "the load ends 4s after the end of fault slow (at 4s): a recovery found at the 2s limit could be held only 2s of the 3s hold"},
		{`  - {recovers_within: 3s, after: slow}`, "held only 1s of the 3s hold, and would pass on that; give the load 2s more after it"},
		{`  - {recovers_within: 6s, after: slow}`, "held only 0s of the 3s hold"},
	} {
		p, err := compileSLO(t, tc.slo+"\n")
		if err != nil {
			t.Fatalf("%s: %v", tc.slo, err)
		}
		var got []string
		for _, w := range p.Warnings {
			if strings.Contains(w.Msg, "hold") {
				got = append(got, w.String())
			}
		}
		switch {
		case tc.want == "" && len(got) > 0:
			t.Errorf("%s: warned %q", tc.slo, got)
		case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want) || !strings.Contains(got[0], "typed.yaml:24:5: slo[0]")):
			t.Errorf("%s: warnings %q, want one at slo[0] with %q", tc.slo, got, tc.want)
		}
	}
}

// reaches at or below the replicas the upstream starts with holds before
// any scaling: validate says so where it is written.
func TestReachesAtTheStartWarns(t *testing.T) {
	for slo, warn := range map[string]bool{
		`  - {autoscale: api, reaches: 2}`: true, // api starts with 2
		`  - {autoscale: api, reaches: 3}`: false,
	} {
		p, err := compileSLO(t, slo+"\n")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, w := range p.Warnings {
			if strings.Contains(w.Msg, "holds before any scaling") {
				got = append(got, w.Pos+": "+w.Msg)
			}
		}
		if warn != (len(got) == 1) || warn && !strings.Contains(got[0], "typed.yaml:24:31: slo[0].reaches: api starts with 2 replicas") {
			t.Errorf("%s: warnings %v (want one: %v)", slo, got, warn)
		}
	}
}

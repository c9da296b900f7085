package plan

import (
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/loadgen"
)

const gated = `name: g
upstreams:
  - {name: api, replicas: 2, latency: 5ms}
gateway:
  routes:
    - {path: /, upstream: api, timeouts: {connect: 100ms, response_header: 1s, total: 2s}}
load:
  client_timeout: 3s
  stages:
    - {duration: 4s, ramp_to: 100/s}
    - {duration: 6s, rate: 300/s}
  requests:
    - {path: /}
phases:
  - {name: warm, start: 0s, end: 4s}
  - {name: ops-ready, start: 4s, gate: manual, max_hold: 2m}
faults:
  - {name: slow, kind: latency, target: api, start: 6s, duration: 2s, params: {delay: 20ms}}
safety:
  - error_rate < 20%
  - {objective: "p99 < 2s", window: 10s, on_breach: continue}
slo:
  - {phase: ops-ready, objective: "error_rate < 1%"}
`

func TestGatesAndSafetyCompile(t *testing.T) {
	p, err := CompileBytes("g.yaml", []byte(gated), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Gates) != 1 {
		t.Fatalf("gates: %+v", p.Gates)
	}
	g := p.Gates[0]
	// A gate at a stage boundary holds the stage that just ran: the ramp's
	// end (100/s), not the next stage's 300/s.
	if g.Name != "ops-ready" || g.At != 4*time.Second || g.MaxHold != 2*time.Minute || g.Rate != 100 {
		t.Errorf("gate = %+v", g)
	}
	if p.Bound() != 10*time.Second+2*time.Minute {
		t.Errorf("bound = %s", p.Bound())
	}
	found := false
	for _, ph := range p.Phases {
		if ph.Name == "ops-ready" {
			found = ph.Start == 4*time.Second && ph.End == 4*time.Second
		}
	}
	if !found {
		t.Errorf("the gate's phase is not a zero-length phase at 4s: %+v", p.Phases)
	}
	if len(p.Safety) != 2 || !p.Safety[0].Stop || p.Safety[0].Window != DefaultSafetyWait || p.Safety[1].Stop || p.Safety[1].Window != 10*time.Second {
		t.Errorf("safety = %+v", p.Safety)
	}
}

func TestGateAndSafetyErrors(t *testing.T) {
	rep := func(old, new string) string {
		if !strings.Contains(gated, old) {
			panic("test bug: " + old)
		}
		return strings.Replace(gated, old, new, 1)
	}
	cases := []struct {
		name, src, path, contains string
	}{
		{"unknown gate", rep("gate: manual", "gate: auto"), "phases[1].gate", `unknown gate "auto"`},
		{"gate with end", rep("gate: manual,", "gate: manual, end: 9s,"), "phases[1].end", "end does not apply"},
		{"gate after the load", rep("start: 4s, gate", "start: 10s, gate"), "phases[1].start", "the gate is at 10s, when the load ends at 10s"},
		{"hold over the limit", rep("max_hold: 2m", "max_hold: 2h"), "phases[1].max_hold", "above the limit of 1h0m0s"},
		{"max_hold without gate", rep("end: 4s}", "end: 4s, max_hold: 1m}"), "phases[0].max_hold", "add gate: manual"},
		{"gate name taken", rep("name: ops-ready", "name: slow"), "phases[1].name", `phase "slow" already exists`},
		{"bad safety objective", rep("  - error_rate < 20%", "  - error_rate < 20"), "safety[0]", "error_rate is a rate of requests"},
		{"bad on_breach", rep("on_breach: continue", "on_breach: pause"), "safety[1].on_breach", "stop or continue"},
		{"window too short", rep("window: 10s", "window: 100ms"), "safety[1].window", "outside 1s–5m0s"},
		{"safety not a mapping", rep("  - error_rate < 20%", "  - [1]"), "", "a safety check is a string"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CompileBytes("g.yaml", []byte(tc.src), Options{})
			if err == nil {
				t.Fatalf("no error for:\n%s", tc.src)
			}
			e := first(t, err)
			if e.File != "g.yaml" || e.Line == 0 {
				t.Errorf("not positioned: %v", err)
			}
			if tc.path != "" && e.Path != tc.path {
				t.Errorf("path = %q, want %q (%v)", e.Path, tc.path, err)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not mention %q", err, tc.contains)
			}
		})
	}
}

// A gate cannot be held past the run's hard limits, whatever max_hold says.
func TestGateBoundedByRunLimits(t *testing.T) {
	src := strings.Replace(gated, "{duration: 6s, rate: 300/s}", "{duration: 23h59m, rate: 1/s}", 1)
	_, err := CompileBytes("g.yaml", []byte(src), Options{})
	if err == nil || !strings.Contains(err.Error(), "with every gate held to its max_hold the load lasts") {
		t.Fatalf("err = %v", err)
	}
	src = strings.Replace(gated, "{duration: 4s, ramp_to: 100/s}", "{duration: 4s, ramp_to: 50000/s}", 1)
	src = strings.Replace(src, "max_hold: 2m", "max_hold: 1h", 1)
	_, err = CompileBytes("g.yaml", []byte(src), Options{})
	if err == nil || !strings.Contains(err.Error(), "requests; the limit is") {
		t.Fatalf("err = %v", err)
	}
}

func TestRateBefore(t *testing.T) {
	st := []loadgen.Stage{{Duration: 2 * time.Second, From: 0, To: 100}, {Duration: 2 * time.Second, From: 300, To: 300}}
	for _, tc := range []struct {
		at   time.Duration
		want float64
	}{{0, 0}, {time.Second, 50}, {2 * time.Second, 100}, {3 * time.Second, 300}, {4 * time.Second, 300}} {
		if got := RateBefore(st, tc.at); got != tc.want {
			t.Errorf("RateBefore(%s) = %v, want %v", tc.at, got, tc.want)
		}
	}
}

// A live fault is compiled by the file's own compiler: a mistake gets the
// same message, positioned in the document sent.
func TestCompileFaultSameMessagesAsAFile(t *testing.T) {
	p, err := CompileBytes("g.yaml", []byte(gated), Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := p.CompileFault("req", []byte("{kind: latency, target: \"api[1]\", params: {delay: 50ms}, duration: 3s}"), "manual-latency-1")
	if err != nil {
		t.Fatal(err)
	}
	if e.Name != "manual-latency-1" || e.Replica != 1 || e.Duration != 3*time.Second || e.Start != 0 {
		t.Errorf("entry = %+v", e)
	}
	// Without a duration it lasts until removed, not to the end of the load.
	e, err = p.CompileFault("req", []byte("kind: error\ntarget: api\nname: boom\n"), "x")
	if err != nil || e.Duration != 0 || e.Name != "boom" {
		t.Errorf("entry = %+v, %v", e, err)
	}
	for _, tc := range []struct{ fileFault, live, want string }{
		{"params: {delay: 20ms}", "{kind: latency, target: api, params: {delay: 20}}", "params.delay: expected a duration"},
		{"kind: latency", "{kind: latensy, target: api}", `kind: unknown fault kind "latensy"`},
		{"target: api, start", "{kind: latency, target: nope, params: {delay: 1ms}}", `target: unknown upstream "nope" (declared: api)`},
		{"params: {delay: 20ms}", "{kind: latency, target: api, params: {dealy: 20ms}}", `unknown field "dealy"`},
	} {
		_, ferr := p.CompileFault("req", []byte(tc.live), "x")
		if ferr == nil || !strings.Contains(ferr.Error(), tc.want) || !strings.HasPrefix(ferr.Error(), "req:1:") {
			t.Errorf("live %s: %v, want %q at req:1:…", tc.live, ferr, tc.want)
		}
		// The same mistake in a file says the same after the position.
		bad := strings.Replace(gated, "params: {delay: 20ms}", "params: {delay: 20}", 1)
		switch {
		case strings.Contains(tc.live, "latensy"):
			bad = strings.Replace(gated, "kind: latency", "kind: latensy", 1)
		case strings.Contains(tc.live, "nope"):
			bad = strings.Replace(gated, "target: api, start", "target: nope, start", 1)
		case strings.Contains(tc.live, "dealy"):
			bad = strings.Replace(gated, "params: {delay: 20ms}", "params: {dealy: 20ms}", 1)
		}
		_, fileErr := CompileBytes("g.yaml", []byte(bad), Options{})
		if fileErr == nil || !strings.Contains(fileErr.Error(), tc.want) {
			t.Errorf("file: %v, want %q", fileErr, tc.want)
		}
	}
	if _, err := p.CompileFault("req", []byte("{kind: latency, target: api, start: 5s, params: {delay: 1ms}}"), "x"); err == nil || !strings.Contains(err.Error(), "start does not apply") {
		t.Errorf("start: %v", err)
	}
}

package plan

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/yamlfile"
)

const good = `name: t
upstreams:
  - name: api
    replicas: 2
    latency: 5ms
gateway:
  routes:
    - path: /
      upstream: api
      timeouts: {connect: 100ms, response_header: 1s, total: 2s}
load:
  client_timeout: 3s
  stages:
    - {duration: 2s, rate: 10/s}
  requests:
    - {path: /}
faults:
  - {name: slow, kind: latency, target: api, start: 1s, duration: 500ms, params: {delay: 20ms}}
slo:
  - p99 < 1s
  - {phase: slow, objective: "error_rate < 1%"}
`

func TestGoodScenarioCompiles(t *testing.T) {
	p, err := CompileBytes("good.yaml", []byte(good), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Duration != 2*time.Second || len(p.Timeline) != 1 || len(p.Objectives) != 2 {
		t.Fatalf("plan: duration %s, %d faults, %d objectives", p.Duration, len(p.Timeline), len(p.Objectives))
	}
	var names []string
	for _, ph := range p.Phases {
		names = append(names, ph.Name)
	}
	if got := strings.Join(names, ","); got != "run,before,slow,after" {
		t.Fatalf("derived phases = %s", got)
	}
	if len(p.Warnings) != 0 {
		t.Fatalf("unexpected warnings: %v", p.Warnings)
	}
}

// Derived phases read in time order: the gap after a fault comes before
// the next fault, not after every fault. With two faults the list was
// before, one, two, after-one, after.
func TestDerivedPhasesInTimeOrder(t *testing.T) {
	src := strings.Replace(good, "    - {duration: 2s, rate: 10/s}", "    - {duration: 10s, rate: 10/s}", 1)
	src = strings.Replace(src, "  - {name: slow, kind: latency, target: api, start: 1s, duration: 500ms, params: {delay: 20ms}}\n",
		`  - {name: two, kind: latency, target: api, start: 5s, duration: 1s, params: {delay: 20ms}}
  - {name: one, kind: latency, target: api, start: 1s, duration: 2s, params: {delay: 20ms}}
  - {name: wide, kind: latency, target: api, start: 1500ms, duration: 2500ms, params: {delay: 20ms}}
  - {name: three, kind: latency, target: api, start: 8s, params: {delay: 20ms}}
`, 1)
	src = strings.Replace(src, "  - {phase: slow, objective: \"error_rate < 1%\"}\n", "", 1)
	p, err := CompileBytes("order.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, ph := range p.Phases {
		got = append(got, fmt.Sprintf("%s[%v,%v)", ph.Name, ph.Start, ph.End))
		if i > 1 && ph.Start < p.Phases[i-1].Start {
			t.Errorf("%s starts at %v, before %s (%v) listed ahead of it", ph.Name, ph.Start, p.Phases[i-1].Name, p.Phases[i-1].Start)
		}
	}
	want := "run[0s,10s) before[0s,1s) one[1s,3s) wide[1.5s,4s) after-wide[4s,5s) two[5s,6s) after-two[6s,8s) three[8s,10s)"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("phases\n got %s\nwant %s", g, want)
	}
}

// replace swaps one line of the good file for a bad one.
func replace(old, new string) string {
	if !strings.Contains(good, old) {
		panic("test bug: " + old)
	}
	return strings.Replace(good, old, new, 1)
}

func TestBadScenarios(t *testing.T) {
	cases := []struct {
		name     string
		src      string
		line     int
		col      int
		path     string // expected field path in the message
		contains string
	}{
		{"unknown field", replace("    replicas: 2", "    replicaz: 2"), 4, 5, "", `unknown field "replicaz"`},
		{"bad duration", replace("client_timeout: 3s", "client_timeout: 3x"), 12, 19, "load.client_timeout", `invalid duration "3x"`},
		{"duration without unit", replace("client_timeout: 3s", "client_timeout: 3"), 12, 19, "load.client_timeout", "has no unit"},
		{"unbounded client timeout", replace("client_timeout: 3s", "client_timeout: 1000h"), 12, 19, "load.client_timeout", "above the 1h0m0s limit"},
		{"negative client timeout", replace("client_timeout: 3s", "client_timeout: -1s"), 12, 19, "load.client_timeout", "is negative"},
		{"bad percentage", replace("params: {delay: 20ms}", "params: {delay: 20ms, probability: 150%}"), 18, 109, "", "outside 0%..100%"},
		{"dangling route upstream", replace("      upstream: api", "      upstream: apx"), 9, 17, "gateway.routes[0].upstream", `unknown upstream "apx"`},
		{"fault targets nothing", replace("target: api, start", "target: nope, start"), 18, 41, "faults[0].target", `unknown upstream "nope"`},
		{"fault replica out of range", replace("target: api, start", `target: "api[5]", start`), 18, 41, "faults[0].target", "index 5 does not exist"},
		{"unknown fault kind", replace("kind: latency", "kind: latensy"), 18, 24, "faults[0].kind", `unknown fault kind "latensy"`},
		{"unknown fault param", replace("params: {delay: 20ms}", "params: {dealy: 20ms}"), 18, 83, "", `unknown field "dealy"`},
		{"unknown phase", replace("{phase: slow,", "{phase: slw,"), 21, 13, "slo[1].phase", `unknown phase "slw"`},
		{"bad objective", replace("  - p99 < 1s", "  - p99 < 1"), 20, 5, "slo[0]", "p99 is a latency"},
		{"unknown metric", replace("  - p99 < 1s", "  - q99 < 1s"), 20, 5, "slo[0]", `unknown metric "q99"`},
		{"a colon after the metric", replace("  - p99 < 1s", "  - p99: < 1s"), 20, 5, "slo[0].p99", `"p99: < 1s" reads as a mapping (the colon after p99): write the objective as one string, - "p99 < 1s"`},
		{"a colon and a quoted bound", replace("  - p99 < 1s", `  - error_rate: "<= 1%"`), 20, 5, "slo[0].error_rate", `write the objective as one string, - "error_rate <= 1%"`},
		{"bad rate", replace("rate: 10/s", "rate: 10/y"), 14, 28, "load.stages[0].rate", "unit must be /s"},
		{"connect longer than total", replace("{connect: 100ms,", "{connect: 3s,"), 10, 27, "gateway.routes[0].timeouts.connect", "connect 3s is longer than total 2s: it can never fire"},
		{"packet loss past 100%", replace("kind: latency, target: api, start: 1s, duration: 500ms, params: {delay: 20ms}", "kind: packet, target: api, start: 1s, duration: 500ms, params: {loss: 150%}"), 18, 88, "faults[0].params.loss", `percentage "150%" is outside 0%..100%`},
		{"header longer than total", replace("response_header: 1s", "response_header: 5s"), 10, 51, "gateway.routes[0].timeouts.response_header", "longer than total"},
		{"non-loopback external", replace("  routes:", "  external: http://203.0.113.9:80\n  routes:"), 7, 13, "gateway.external", "not a loopback address"},
		{"syntax error", replace("  - {path: /}", "  - {path: /"), 17, 1, "", "must be specified"},
		{"wrong type", replace("    replicas: 2", "    replicas: [2]"), 4, 15, "upstreams[0].replicas", "expected a whole number, got a list"},
		{"fraction of a replica", replace("    replicas: 2", "    replicas: 2.7"), 4, 15, "upstreams[0].replicas", "expected a whole number, got 2.7"},
		{"null key drops its mapping", replace("total: 2s}", "total: 2s, ~: oops}"), 10, 66, "gateway.routes[0].timeouts.~", "expected a field name as the key, got null"},
		{"body too large", replace("    latency: 5ms", "    latency: 5ms\n    body_size: 1PiB"), 6, 16, "upstreams[0].body_size", "at most 64 MiB"},
		{"external port out of range", replace("  routes:", "  external: http://127.0.0.1:99999\n  routes:"), 7, 13, "gateway.external", "port 99999 is not a TCP port"},
		{"weight 0 is not off", replace("  - {path: /}", "  - {path: /, weight: 0}"), 16, 25, "load.requests[0].weight", "0 stands for the default here"},
		{"client timeout 0 is not none", replace("client_timeout: 3s", "client_timeout: 0s"), 12, 19, "load.client_timeout", "0 stands for the default here"},
		{"cascade's own mark", replace("  - {path: /}", "  - {path: /, headers: {X-Cascade-Direct: \"1\"}}"), 16, 45, "load.requests[0].headers.X-Cascade-Direct", "cascade's own mark"},
		{"header name not a token", replace("  - {path: /}", "  - {path: /, headers: {\"X B\": \"1\"}}"), 16, 34, "load.requests[0].headers.X B", `header name "X B" is not a token`},
		{"header the client sets", replace("  - {path: /}", "  - {path: /, headers: {Connection: close}}"), 16, 39, "load.requests[0].headers.Connection", "keep_alive: false"},
		{"line break in a header", replace("  - {path: /}", "  - {path: /, headers: {X-A: \"a\\nb\"}}"), 16, 32, "load.requests[0].headers.X-A", "control character"},
		{"bad escape in the path", replace("  - {path: /}", "  - {path: /%zz}"), 16, 14, "load.requests[0].path", `invalid URL escape "%zz"`},
		{"body from a device", replace("  - {path: /}", "  - {path: /, method: POST, body_file: /dev/zero}"), 16, 42, "load.requests[0].body_file", "not a regular file"},
		{"credentials in the external URL", replace("  routes:", "  external: http://u:p@127.0.0.1:8080\n  routes:"), 7, 13, "gateway.external", "credentials in the URL are not sent"},
		{"a zero that would be the default", replace("total: 2s}", "total: 0s}"), 10, 62, "gateway.routes[0].timeouts.total", "0 stands for the default here"},
		// A written 0 on these read as "not given" and quietly became one
		// replica, a whole-run threshold, a 3 s hold, a 100 ms tolerance.
		{"no replicas is not one", replace("    replicas: 2", "    replicas: 0"), 4, 15, "upstreams[0].replicas", "0 stands for the default here"},
		{"a window of 0 is not the whole run", replace("  - p99 < 1s", `  - {objective: "p99 < 1s", every: 0s}`), 20, 36, "slo[0].every", "0 stands for the default here"},
		{"a fault of 0s does not last the whole run", replace("duration: 500ms, params", "duration: 0s, params"), 18, 67, "faults[0].duration", "duration: 0 would read as duration left out (until the load ends; a live fault, until removed): give a value above 0"},
		// A phase of no time said it ended before it started; one past the
		// load with no end said it ended (at the load's end) before it
		// started; end: 0s read as end left out, the whole load.
		{"a phase of no time", replace("slo:\n", "phases: [{name: w, start: 1s, end: 1s}]\nslo:\n"), 19, 36, "phases[0].end", "the phase ends where it starts (1s): it holds no time"},
		{"a phase past the load, no end", replace("slo:\n", "phases: [{name: w, start: 3s}]\nslo:\n"), 19, 27, "phases[0].start", "the phase starts at 3s, after the load ends at 2s"},
		{"a phase at the load's end", replace("slo:\n", "phases: [{name: w, start: 2s}]\nslo:\n"), 19, 27, "phases[0].start", "the phase starts at 2s, when the load ends at 2s"},
		{"a phase ending at 0s is not the whole load", replace("slo:\n", "phases: [{name: w, start: 0s, end: 0s}]\nslo:\n"), 19, 36, "phases[0].end", "end: 0 would read as end left out (the end of the load): give a value above 0"},
		// An example edited so its fault starts at 0s or lasts to the end
		// lost its before or after phase, and the error read as a typo.
		{"no after when the fault lasts to the end", strings.NewReplacer("start: 1s, duration: 500ms, ", "start: 1s, ", "{phase: slow,", "{phase: after,").Replace(good), 21, 13, "slo[1].phase", `unknown phase "after" (phases: run, before, slow); fault slow lasts until the load ends (2s), so no phase comes after it`},
		{"no before when the fault starts at 0s", strings.NewReplacer("start: 1s, duration", "start: 0s, duration", "{phase: slow,", "{phase: before,").Replace(good), 21, 13, "slo[1].phase", `unknown phase "before" (phases: run, slow, after); fault slow starts at 0s, so no phase comes before it`},
		{"no before without a fault", strings.NewReplacer("faults:\n", "", "  - {name: slow, kind: latency, target: api, start: 1s, duration: 500ms, params: {delay: 20ms}}\n", "", "{phase: slow,", "{phase: before,").Replace(good), 19, 13, "slo[1].phase", `unknown phase "before" (phases: run); with no fault there is no before or after phase`},
		{"a hold of 0 is not 3s", replace("  - p99 < 1s", "  - {recovers_within: 1s, after: slow, hold: 0s}"), 20, 46, "slo[0].hold", "0 stands for the default here"},
		{"a tolerance of 0 is not 100ms", replace("  - p99 < 1s", "  - {cascade: innermost, tolerance: 0s}"), 20, 37, "slo[0].tolerance", "0 stands for the default here"},
		{"a safety window of 0 is not 5s", replace("slo:\n", "safety: [{objective: \"error_rate < 20%\", window: 0s}]\nslo:\n"), 19, 50, "safety[0].window", "0 stands for the default here"},
		{"a burst of 0 is not a second's worth", replace("total: 2s}\n", "total: 2s}\n      rate_limit: {rate: 10/s, burst: 0}\n"), 11, 39, "gateway.routes[0].rate_limit.burst", "0 stands for the default here"},
		{"a bulkhead of 0 is not 1024", replace("gateway:\n", "gateway:\n  upstreams: [{name: api, limits: {max_requests: 0}}]\n"), 7, 50, "gateway.upstreams[0].limits.max_requests", "0 stands for the default here"},
		{"a status that is not one", replace("  - {path: /}", "  - {path: /, expect: {status: [200, 700]}}"), 16, 40, "load.requests[0].expect.status[1]", `status "700": expected a code from 100 to 599 or a class such as 2xx`},
		{"a class that is not one", replace("  - {path: /}", "  - {path: /, expect: {status: 2x}}"), 16, 34, "load.requests[0].expect.status", `status "2x"`},
		{"an expect that checks nothing", replace("  - {path: /}", "  - {path: /, expect: {}}"), 16, 25, "load.requests[0].expect", "expect checks nothing"},
		{"an empty body check", replace("  - {path: /}", "  - {path: /, expect: {body_contains: \"\"}}"), 16, 41, "load.requests[0].expect.body_contains", "body_contains is empty"},
		{"one listen address twice", replace("    replicas: 2", "    listen: [127.0.0.1:19001, 127.0.0.1:19001]"), 4, 31, "upstreams[0].listen[1]", "already used by upstreams[0].listen[0]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CompileBytes("bad.yaml", []byte(tc.src), Options{})
			if err == nil {
				t.Fatalf("no error for:\n%s", tc.src)
			}
			e := first(t, err)
			if e.File != "bad.yaml" || e.Line != tc.line || e.Column != tc.col {
				t.Errorf("position = %s:%d:%d, want bad.yaml:%d:%d (%v)", e.File, e.Line, e.Column, tc.line, tc.col, err)
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

func first(t *testing.T, err error) *yamlfile.Error {
	t.Helper()
	var es yamlfile.Errors
	if errors.As(err, &es) {
		return es[0]
	}
	var e *yamlfile.Error
	if errors.As(err, &e) {
		return e
	}
	t.Fatalf("error is not positioned: %T %v", err, err)
	return nil
}

func TestAllErrorsReportedAtOnce(t *testing.T) {
	src := replace("      upstream: api", "      upstream: apx")
	src = strings.Replace(src, "target: api, start", "target: nope, start", 1)
	_, err := CompileBytes("bad.yaml", []byte(src), Options{})
	var es yamlfile.Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("want 2 errors, got %v", err)
	}
}

func TestTimeoutLint(t *testing.T) {
	// Gateway total >= client timeout: the client gives up first.
	src := replace("client_timeout: 3s", "client_timeout: 2s")
	p, err := CompileBytes("lint.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0].Msg, "not shorter than the client timeout") {
		t.Fatalf("warnings = %v", p.Warnings)
	}
	if !strings.HasPrefix(p.Warnings[0].Pos, "lint.yaml:10:62") {
		t.Errorf("warning position = %s", p.Warnings[0].Pos)
	}
	if _, err := CompileBytes("lint.yaml", []byte(src), Options{Strict: true}); err == nil {
		t.Fatal("--strict must turn the warning into an error")
	}
	// Response-header timeout below the upstream's normal p99.
	src = replace("latency: 5ms", "latency: {dist: uniform, min: 500ms, max: 1500ms}")
	p, err = CompileBytes("lint.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0].Msg, "healthy requests will time out") {
		t.Fatalf("warnings = %v", p.Warnings)
	}
}

func TestSeedOverrideAndDefaults(t *testing.T) {
	seed := uint64(99)
	p, err := CompileBytes("s.yaml", []byte(good), Options{Seed: &seed})
	if err != nil {
		t.Fatal(err)
	}
	if p.Seed != 99 || p.Load.Seed != 99 {
		t.Fatalf("seed = %d / %d", p.Seed, p.Load.Seed)
	}
	p, _ = CompileBytes("s.yaml", []byte(good), Options{})
	if p.Seed != DefaultSeed {
		t.Fatalf("default seed = %d", p.Seed)
	}
}

func TestRampStages(t *testing.T) {
	src := replace("    - {duration: 2s, rate: 10/s}", "    - {duration: 2s, ramp_to: 10/s}\n    - {duration: 2s, rate: 10/s}\n    - {duration: 1s, ramp_to: 0/s}")
	src = strings.Replace(src, "start: 1s, duration: 500ms", "start: 1s, duration: 5s", 1)
	p, err := CompileBytes("r.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := p.Load.Stages
	if len(st) != 3 || st[0].From != 0 || st[0].To != 10 || st[1].From != 10 || st[2].To != 0 {
		t.Fatalf("stages = %+v", st)
	}
	if len(p.Warnings) != 1 {
		t.Fatalf("a fault running past the end is cut with a warning: %v", p.Warnings)
	}
	bad := replace("    - {duration: 2s, rate: 10/s}", "    - {duration: 2s, rate: 10/s, ramp_to: 5/s}")
	if _, err := CompileBytes("r.yaml", []byte(bad), Options{}); err == nil || !strings.Contains(err.Error(), "exactly one") {
		t.Fatalf("rate and ramp_to together: %v", err)
	}
}

func TestExternalGatewayNeedsFixedListen(t *testing.T) {
	src := replace("  routes:\n    - path: /\n      upstream: api\n      timeouts: {connect: 100ms, response_header: 1s, total: 2s}\n",
		"  external: http://127.0.0.1:18080\n")
	_, err := CompileBytes("x.yaml", []byte(src), Options{})
	if err == nil || !strings.Contains(err.Error(), "needs fixed listen addresses") {
		t.Fatalf("err = %v", err)
	}
	src = strings.Replace(src, "    replicas: 2\n", "    listen: [127.0.0.1:19001, 127.0.0.1:19002]\n", 1)
	p, err := CompileBytes("x.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.External != "http://127.0.0.1:18080" || p.Gateway != nil || p.Upstreams[0].Replicas != 2 {
		t.Fatalf("external plan: %+v", p)
	}
	bad := strings.Replace(src, "127.0.0.1:19002", "127.0.0.1:40000", 1)
	if _, err := CompileBytes("x.yaml", []byte(bad), Options{}); err == nil || !strings.Contains(err.Error(), "ephemeral range") {
		t.Fatalf("ephemeral listen port: %v", err)
	}
}

func TestCheckTarget(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:8080", "http://localhost:1", "https://127.1.2.3", "http://[::1]:80", "http://127.0.0.1:8080/api/"} {
		if err := CheckTarget(ok, false); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://203.0.113.9", "http://example.com", "ftp://127.0.0.1", "127.0.0.1:80",
		"http://127.0.0.1:99999", "http://127.0.0.1:0", "http://:8080/", "http://u:p@127.0.0.1/",
		// A request's path is appended to the target: not after a query or fragment.
		"http://127.0.0.1:8080/api?k=1", "http://127.0.0.1:8080/api?", "http://127.0.0.1:8080/#x"} {
		if err := CheckTarget(bad, false); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if err := CheckTarget("http://203.0.113.9", true); err != nil {
		t.Errorf("--allow-remote: %v", err)
	}
}

// Every shipped example must compile.
func TestExamplesCompile(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.yaml")
	if len(files) < 3 {
		t.Fatalf("examples missing: %v", files)
	}
	for _, f := range files {
		if _, err := CompileFile(f, Options{}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }

// A postgres DSN is a target like any other: the upstream creates a schema
// and drops tables where it connects, so every host it names, fallbacks and
// the PGHOST a DSN without a host takes, must be on loopback.
func TestDatabaseDSNStaysOnLoopback(t *testing.T) {
	src := func(dsn string) []byte {
		return []byte(`name: dsn
upstreams:
  - name: orders
    kind: database
    database: {driver: postgres, dsn: "` + dsn + `"}
gateway:
  routes: [{path: /, upstream: orders}]
load:
  stages: [{duration: 1s, rate: 5/s}]
  requests: [{path: /orders/history}]
`)
	}
	t.Setenv("PGHOST", "127.0.0.1")
	for _, ok := range []string{"postgres://u@127.0.0.1:5432/db", "postgres://u@localhost/db", "host=/var/run/postgresql dbname=db",
		"postgres://u@[::1]:5432/db", "postgres:///db?user=u"} {
		if _, err := CompileBytes("x.yaml", src(ok), Options{}); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"postgres://u@203.0.113.1:5432/db", "host=127.0.0.1,203.0.113.2 port=1,5432 dbname=db",
		"postgres://u@db.example.test/db"} {
		_, err := CompileBytes("x.yaml", src(bad), Options{})
		if err == nil || !strings.Contains(err.Error(), "x.yaml:5:") || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("%s: err = %v, want a positioned loopback refusal", bad, err)
		}
		if _, err := CompileBytes("x.yaml", src(bad), Options{AllowRemote: true}); err != nil {
			t.Errorf("%s with --allow-remote: %v", bad, err)
		}
	}
	t.Setenv("PGHOST", "203.0.113.3")
	if _, err := CompileBytes("x.yaml", src("postgres:///db?user=u"), Options{}); err == nil {
		t.Error("a DSN without a host, with PGHOST off loopback, accepted")
	}
}

// merges builds an upstream, a route and a fault on another with merge
// keys.
const merges = `name: t
upstreams:
  - &api {name: api, replicas: 2, latency: 5ms}
  - {<<: *api, name: search, replicas: 3}
gateway:
  routes:
    - &route {path: /, upstream: api, timeouts: {connect: 100ms, total: 2s}}
    - {<<: *route, path: /search, upstream: search}
load: {rate: 10/s, duration: 2s, requests: [{path: /}]}
faults:
  - &slow {name: slow, kind: latency, target: api, start: 0s, duration: 500ms, params: {delay: 20ms}}
  - <<: *slow
    name: slow-search
    target: search
    start: 1s
`

// Merge keys share a block and override parts of it: an upstream, a route
// and a fault each built on another (the override was refused as a
// duplicate key). What the merge brings in is judged where it lands.
func TestMergeKeys(t *testing.T) {
	src := merges
	p, err := CompileBytes("m.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range p.Upstreams {
		got = append(got, fmt.Sprintf("%s×%d", u.Name, u.Replicas))
	}
	for _, r := range p.Gateway.Routes {
		got = append(got, r.Path+"→"+r.Upstream+" "+r.Timeouts.Total.String())
	}
	for _, f := range p.Timeline {
		got = append(got, fmt.Sprintf("%s@%s %s %s", f.Upstream, f.Start, f.Name, f.Duration))
	}
	if s := strings.Join(got, ", "); s != "api×2, search×3, /→api 2s, /search→search 2s, api@0s slow 500ms, search@1s slow-search 500ms" {
		t.Fatalf("plan: %s", s)
	}

	// The merged name is the first's: refused at the alias that brought it.
	src = strings.Replace(src, "{<<: *api, name: search, replicas: 3}", "{<<: *api, replicas: 3}", 1)
	_, err = CompileBytes("m.yaml", []byte(src), Options{})
	want := `m.yaml:4:10: upstreams[1].name: upstream "api" is declared twice (via alias *api, defined at line 3 column 17)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error\n got: %v\nwant: %s", err, want)
	}
}

// A container you name on a fixed port has an address your gateway can
// name, 127.0.0.1:port, and listen may not be given with it: such an
// upstream was refused behind any external gateway, both ways.
func TestExternalGatewayTakesAContainerOnAFixedPort(t *testing.T) {
	const src = `name: x
upstreams:
  - name: api
    container: {image: my/api:1, port: 19121}
gateway:
  external: http://127.0.0.1:18080
load: {rate: 10/s, duration: 2s, requests: [{path: /}]}
faults:
  - {name: freeze, kind: pause, target: api, start: 1s, duration: 500ms}
`
	p, err := CompileBytes("x.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c := p.Upstreams[0].Container; c == nil || c.Port != 19121 || p.External == "" {
		t.Fatalf("plan: %+v", p.Upstreams[0])
	}
	// A port per replica, picked by cascade, is not an address to configure.
	perReplica := strings.Replace(src, "port: 19121}", "port_env: PORT}", 1)
	if _, err := CompileBytes("x.yaml", []byte(perReplica), Options{}); err == nil || !strings.Contains(err.Error(), "needs fixed listen addresses") {
		t.Fatalf("port_env behind an external gateway: %v", err)
	}
	// Connection faults need their proxy on the address the gateway dials,
	// which the container holds.
	conn := src + "  - {name: slow, kind: tcp_latency, target: api, start: 1s, duration: 500ms, params: {latency: 50ms}}\n"
	if _, err := CompileBytes("x.yaml", []byte(conn), Options{}); err == nil || !strings.Contains(err.Error(), "the proxy has nowhere to stand") {
		t.Fatalf("connection fault on a container behind an external gateway: %v", err)
	}
}

// A fault that does not compile takes the derived phases with it: before,
// after and after-<fault> exist only around faults that compiled. The
// fault's own error is the one to report; an "unknown phase" beside it for
// an objective on one of those phases was a second mistake that is not in
// the file.
func TestBadFaultReportsNoUnknownDerivedPhase(t *testing.T) {
	src := replace("params: {delay: 20ms}", "params: {dealy: 20ms}")
	src = strings.Replace(src, "slo:\n", `slo:
  - {phase: before, objective: "p99 < 1s"}
  - {phase: after, objective: "p99 < 1s"}
  - {phase: after-slow, objective: "p99 < 1s"}
  - {recovers_within: 1s, after: slow, baseline: before}
`, 1)
	_, err := CompileBytes("bad.yaml", []byte(src), Options{})
	var es yamlfile.Errors
	if !errors.As(err, &es) {
		t.Fatalf("want file errors, got %v", err)
	}
	if len(es) != 1 || !strings.Contains(es[0].Error(), `unknown field "dealy"`) {
		t.Fatalf("want only the fault's own error, got %d:\n%v", len(es), err)
	}
	// With every fault compiled, a misspelt derived phase is still reported.
	src = strings.Replace(good, "{phase: slow,", "{phase: afterr,", 1)
	if _, err := CompileBytes("bad.yaml", []byte(src), Options{}); err == nil || !strings.Contains(err.Error(), `unknown phase "afterr"`) {
		t.Fatalf("misspelt phase: %v", err)
	}
}

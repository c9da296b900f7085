package plan

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/loadgen"
)

const head = `name: t
upstreams:
  - {name: api, latency: 5ms}
gateway:
  routes:
    - {path: /, upstream: api, timeouts: {connect: 100ms, response_header: 1s, total: 2s}}
`

func TestLoadListForm(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "users.csv"), []byte("id,name\n1,ann\n2,bob\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "body.json"), []byte(`{"user": {{users.id}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	src := head + `load:
  - name: bg
    rate: 100/s
    duration: 10s
    arrivals: poisson
    client_timeout: 3s
    max_connections: 20
    data: {users: users.csv}
    requests:
      - {name: get, path: "/u/{{users.id}}"}
      - {name: post, method: post, path: /u, body_file: body.json}
  - name: burst
    start: 4s
    think: 50ms
    keep_alive: false
    stages:
      - {duration: 1s, ramp_to_vus: 20}
      - {duration: 2s, vus: 20}
    requests: [{path: /burst}]
`
	p, err := CompileFile(writeScenario(t, dir, src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := p.Load
	if len(l.Executors) != 2 || p.Duration != 10*time.Second || l.ClientTimeout != DefaultTimeout {
		t.Fatalf("executors %d, duration %s, client timeout %s", len(l.Executors), p.Duration, l.ClientTimeout)
	}
	bg, burst := l.Executors[0], l.Executors[1]
	if bg.Name != "bg" || bg.Kind != loadgen.ArrivalRate || !bg.Poisson || bg.MaxConns != 20 || bg.ClientTimeout != 3*time.Second ||
		len(bg.Stages) != 1 || bg.Stages[0] != (loadgen.Stage{Duration: 10 * time.Second, From: 100, To: 100}) {
		t.Fatalf("bg %+v", bg)
	}
	if len(bg.Data) != 1 || len(bg.Data[0].Rows) != 2 || string(bg.Requests[1].Body) != `{"user": {{users.id}}}` || bg.Requests[1].Method != "POST" {
		t.Fatalf("bg data %v, body %q", bg.Data, bg.Requests[1].Body)
	}
	if burst.Kind != loadgen.VUs || burst.Start != 4*time.Second || burst.KeepAlive || burst.Think.IsZero() ||
		burst.Stages[0] != (loadgen.Stage{Duration: time.Second, From: 0, To: 20}) || burst.Stages[1] != (loadgen.Stage{Duration: 2 * time.Second, From: 20, To: 20}) {
		t.Fatalf("burst %+v", burst)
	}
	if p.ScheduledRequests() != 1000 {
		t.Fatalf("scheduled %f", p.ScheduledRequests())
	}
	// The plan runs: the generator accepts it.
	l.Target = "http://127.0.0.1:1"
	if _, err := loadgen.Executors(l); err != nil {
		t.Fatal(err)
	}
	// Re-judging offline does not read the files.
	if _, err := CompileBytes("/nonexistent/s.yaml", []byte(src), Options{Offline: true}); err != nil {
		t.Fatalf("offline: %v", err)
	}
}

func writeScenario(t *testing.T, dir, src string) string {
	t.Helper()
	f := filepath.Join(dir, "s.yaml")
	if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestLoadSingleFormShorthands(t *testing.T) {
	for _, tc := range []struct {
		load   string
		kind   loadgen.Kind
		stages []loadgen.Stage
	}{
		{"  rate: 50/s\n  duration: 2s\n", loadgen.ArrivalRate, []loadgen.Stage{{Duration: 2 * time.Second, From: 50, To: 50}}},
		{"  vus: 5\n  duration: 2s\n  think: {dist: uniform, min: 10ms, max: 20ms}\n", loadgen.VUs, []loadgen.Stage{{Duration: 2 * time.Second, From: 5, To: 5}}},
		{"  executor: ramping-arrival-rate\n  stages: [{duration: 1s, ramp_to: 10/s}]\n", loadgen.ArrivalRate, []loadgen.Stage{{Duration: time.Second, From: 0, To: 10}}},
		{"  start_rate: 100/s\n  stages: [{duration: 2s, ramp_to: 500/s}, {duration: 1s, ramp_to: 0/s}]\n", loadgen.ArrivalRate,
			[]loadgen.Stage{{Duration: 2 * time.Second, From: 100, To: 500}, {Duration: time.Second, From: 500, To: 0}}},
		{"  start_rate: 100/s\n  stages: [{duration: 2s, rate: 50/s}]\n", loadgen.ArrivalRate, []loadgen.Stage{{Duration: 2 * time.Second, From: 50, To: 50}}},
		{"  start_vus: 5\n  stages: [{duration: 1s, ramp_to_vus: 20}]\n", loadgen.VUs, []loadgen.Stage{{Duration: time.Second, From: 5, To: 20}}},
	} {
		p, err := CompileBytes("s.yaml", []byte(head+"load:\n"+tc.load+"  requests: [{path: /}]\n"), Options{})
		if err != nil {
			t.Fatalf("%s: %v", tc.load, err)
		}
		if p.Load.Kind != tc.kind || len(p.Load.Executors) != 0 || p.Load.Name != "load" || len(p.Load.Stages) != len(tc.stages) || !slices.Equal(p.Load.Stages, tc.stages) {
			t.Fatalf("%s: %+v", tc.load, p.Load)
		}
	}
}

func TestBadLoads(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, load string
		path       string
		contains   string
	}{
		{"unnamed list item", "  - {rate: 1/s, duration: 1s, requests: [{path: /}]}\n", "load[0]", "needs a name"},
		{"duplicate names", "  - {name: a, rate: 1/s, duration: 1s, requests: [{path: /}]}\n  - {name: a, rate: 1/s, duration: 1s, requests: [{path: /}]}\n",
			"load[1].name", "used twice"},
		{"empty list", "  []\n", "", "empty"},
		{"executor mismatch", "  executor: constant-vus\n  rate: 5/s\n  duration: 1s\n  requests: [{path: /}]\n", "load.executor", "does not match"},
		{"unknown executor", "  executor: shared-iterations\n  rate: 5/s\n  duration: 1s\n  requests: [{path: /}]\n", "load.executor", "unknown executor"},
		{"rate and vus", "  rate: 5/s\n  vus: 3\n  duration: 1s\n  requests: [{path: /}]\n", "load", "exclude each other"},
		{"constant without duration", "  rate: 5/s\n  requests: [{path: /}]\n", "load.duration", "needs a duration"},
		{"rate with stages", "  rate: 5/s\n  duration: 1s\n  stages: [{duration: 1s, rate: 1/s}]\n  requests: [{path: /}]\n", "load.stages", "not stages"},
		{"mixed stages", "  stages: [{duration: 1s, rate: 1/s}, {duration: 1s, vus: 2}]\n  requests: [{path: /}]\n", "load.stages", "mix rates and VUs"},
		{"think on open model", "  rate: 5/s\n  duration: 1s\n  think: 1s\n  requests: [{path: /}]\n", "load.think", "applies to VU executors"},
		{"poisson on closed model", "  vus: 2\n  duration: 1s\n  arrivals: poisson\n  requests: [{path: /}]\n", "load.arrivals", "arrival-rate"},
		{"bad arrivals", "  rate: 5/s\n  duration: 1s\n  arrivals: burst\n  requests: [{path: /}]\n", "load.arrivals", "uniform or poisson"},
		{"too many vus", "  vus: 999999\n  duration: 1s\n  requests: [{path: /}]\n", "load.vus", "vus must be"},
		{"h2 to the built-in gateway", "  rate: 5/s\n  duration: 1s\n  protocol: h2\n  requests: [{path: /}]\n", "load.protocol", "https://"},
		{"unknown protocol", "  rate: 5/s\n  duration: 1s\n  protocol: spdy\n  requests: [{path: /}]\n", "load.protocol", "unknown protocol"},
		{"unknown template variable", "  rate: 5/s\n  duration: 1s\n  requests: [{path: \"/u/{{user_id}}\"}]\n", "load.requests[0].path", "unknown variable"},
		{"template in a header", "  rate: 5/s\n  duration: 1s\n  requests: [{path: /, headers: {X-A: \"{{rand_int 3}}\"}}]\n", "load.requests[0].headers.X-A", "takes 2 argument"},
		{"missing data file", "  rate: 5/s\n  duration: 1s\n  data: {users: nope.csv}\n  requests: [{path: /}]\n", "load.data.users", "no such file"},
		{"bad data order", "  rate: 5/s\n  duration: 1s\n  data: {users: {file: u.csv, order: shuffled}}\n  requests: [{path: /}]\n", "load.data.users.order", "sequential or random"},
		{"fragment in a path", "  rate: 5/s\n  duration: 1s\n  requests: [{path: \"/a#b\"}]\n", "load.requests[0].path", "fragment"},
		{"space in a query", "  rate: 5/s\n  duration: 1s\n  requests: [{path: \"/a?q=b c\"}]\n", "load.requests[0].path", "space in the query"},
		{"body and body_file", "  rate: 5/s\n  duration: 1s\n  requests: [{path: /, body: x, body_file: b.json}]\n", "load.requests[0].body_file", "exclude each other"},
		{"unknown field in a list item", "  - {name: a, rate: 1/s, duration: 1s, rpm: 3, requests: [{path: /}]}\n", "", `unknown field "rpm"`},
		{"scalar load", "  fast\n", "", "mapping (one executor) or a list"},
		{"start_rate on a constant rate", "  rate: 5/s\n  duration: 1s\n  start_rate: 1/s\n  requests: [{path: /}]\n", "load.start_rate", "ramping-arrival-rate's first ramp_to"},
		{"start_rate on VUs", "  start_rate: 1/s\n  stages: [{duration: 1s, ramp_to_vus: 2}]\n  requests: [{path: /}]\n", "load.start_rate", "this executor is a ramping-vus"},
		{"start_vus on rates", "  start_vus: 3\n  stages: [{duration: 1s, ramp_to: 2/s}]\n  requests: [{path: /}]\n", "load.start_vus", "first ramp_to_vus"},
		{"max_requests on an arrival rate", "  rate: 5/s\n  duration: 1s\n  max_requests: 3\n  requests: [{path: /}]\n", "load.max_requests", "bounds a VU executor"},
		{"negative max_requests", "  vus: 2\n  duration: 1s\n  max_requests: -3\n  requests: [{path: /}]\n", "load.max_requests", "must be 1.."},
		{"weights whose sum overflows", "  rate: 5/s\n  duration: 1s\n  requests: [{path: /, weight: 9223372036854775807}, {path: /a, weight: 9223372036854775807}]\n",
			"load.requests[0].weight", "must be 1..1000000"},
		// vus: 0 read as "not given": the error was about the duration
		// of a ramping-arrival-rate the user never asked for.
		{"zero vus", "  vus: 0\n  duration: 1s\n  requests: [{path: /}]\n", "load.vus", "vus: 0 runs no VUs"},
		{"zero vus in a list", "  - {name: a, vus: 0, duration: 1s, requests: [{path: /}]}\n", "load[0].vus", "vus: 0 runs no VUs"},
		{"negative start_vus", "  start_vus: -3\n  stages: [{duration: 1s, ramp_to_vus: 2}]\n  requests: [{path: /}]\n", "load.start_vus", "0.."},
		// A request's name heads its row in the report's tables: a line
		// break split the row, and an escape sequence reached the terminal.
		{"line break in a request name", "  rate: 5/s\n  duration: 1s\n  requests: [{name: \"a\\nb\", path: /}]\n", "load.requests[0].name", "control character"},
		{"escape in a request name", "  rate: 5/s\n  duration: 1s\n  requests: [{name: \"x\\e[31mred\", path: /}]\n", "load.requests[0].name", "control character"},
		{"tab in a request name", "  rate: 5/s\n  duration: 1s\n  requests: [{name: \"a\\tb\", path: /}]\n", "load.requests[0].name", "control character"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CompileFile(writeScenario(t, dir, head+"load:\n"+tc.load), Options{})
			if err == nil {
				t.Fatalf("no error for:\n%s", tc.load)
			}
			e := first(t, err)
			if e.Line < 7 {
				t.Errorf("error at line %d, before the load section: %v", e.Line, err)
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

// Several executors: the lint checks the shortest client timeout, which is
// the first to give up.
func TestLintUsesShortestClientTimeout(t *testing.T) {
	src := head + `load:
  - {name: a, rate: 5/s, duration: 1s, client_timeout: 10s, requests: [{path: /}]}
  - {name: b, rate: 5/s, duration: 1s, client_timeout: 1s, requests: [{path: /}]}
`
	p, err := CompileBytes("s.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0].Msg, "client timeout 1s") {
		t.Fatalf("warnings %v", p.Warnings)
	}
}

func TestGameDayNeedsOneOpenLoad(t *testing.T) {
	src := head + `load:
  - {name: a, rate: 5/s, duration: 10s, requests: [{path: /}]}
  - {name: b, vus: 2, duration: 10s, requests: [{path: /}]}
safety:
  - p99 < 1s
`
	_, err := CompileBytes("s.yaml", []byte(src), Options{})
	if err == nil || !strings.Contains(err.Error(), "single open-model load") {
		t.Fatalf("error %v", err)
	}
}

// A route that does not send the header a metric is counted from gets a
// warning at the objective; one that sends it, none.
func TestPropagationLint(t *testing.T) {
	for _, tc := range []struct{ propagate, objective, warn string }{
		{"[none]", "late_attempts == 0", "deadline header, which route / does not send"},
		{"[attempt]", "non_idempotent_retries == 0", ""},
		{"[deadline]", "retries < 10", "attempt header"},
		{"[none]", "p99 < 1s", ""},
	} {
		src := `name: t
upstreams:
  - {name: api, latency: 5ms}
gateway:
  routes:
    - {path: /, upstream: api, propagate: ` + tc.propagate + `}
load: {rate: 5/s, duration: 1s, requests: [{path: /}]}
slo:
  - objective: "` + tc.objective + `"
`
		p, err := CompileBytes("s.yaml", []byte(src), Options{})
		if err != nil {
			t.Fatalf("%s: %v", tc.objective, err)
		}
		var got []string
		for _, w := range p.Warnings {
			got = append(got, w.Msg)
		}
		switch {
		case tc.warn == "" && len(got) > 0:
			t.Errorf("%s with %s: unexpected warnings %v", tc.objective, tc.propagate, got)
		case tc.warn != "" && (len(got) != 1 || !strings.Contains(got[0], tc.warn)):
			t.Errorf("%s with %s: warnings %v, want one with %q", tc.objective, tc.propagate, got, tc.warn)
		}
	}
}

// max_requests is the VU executor's bound; without it the generator's
// safety limit (MaxRequests) still applies.
func TestLoadMaxRequests(t *testing.T) {
	for _, tc := range []struct {
		load string
		want uint64
	}{
		{"  vus: 5\n  duration: 2s\n  max_requests: 1000\n", 1000},
		{"  vus: 5\n  duration: 2s\n", MaxRequests},
	} {
		p, err := CompileBytes("s.yaml", []byte(head+"load:\n"+tc.load+"  requests: [{path: /}]\n"), Options{})
		if err != nil {
			t.Fatalf("%s: %v", tc.load, err)
		}
		if p.Load.MaxRequests != tc.want {
			t.Fatalf("%s: MaxRequests %d, want %d", tc.load, p.Load.MaxRequests, tc.want)
		}
	}
}

// A VU executor runs if some stage has a VU running, however short:
// the check once weighed VU-seconds, so 1 VU for 500ms or 10 VUs for 50ms
// were refused ("the stages run no VUs"), while a lone ramp to 1 VU, which
// runs none (a ramp reaches its count at the end of its stage), passed.
func TestVUStagesThatRunAVU(t *testing.T) {
	for _, tc := range []struct {
		load string
		ok   bool
	}{
		{"  vus: 1\n  duration: 500ms\n", true},
		{"  vus: 10\n  duration: 50ms\n", true},
		{"  stages: [{duration: 200ms, vus: 3}]\n", true},
		{"  stages: [{duration: 100ms, ramp_to_vus: 2}]\n", true},
		{"  start_vus: 1\n  stages: [{duration: 100ms, ramp_to_vus: 0}]\n", true},
		{"  stages: [{duration: 5s, ramp_to_vus: 1}]\n", false},
		{"  stages: [{duration: 5s, ramp_to_vus: 1}, {duration: 5s, ramp_to_vus: 0}]\n", true},
		{"  stages: [{duration: 5s, vus: 0}]\n", false},
	} {
		_, err := CompileBytes("s.yaml", []byte(head+"load:\n"+tc.load+"  requests: [{path: /}]\n"), Options{})
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.load, err)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), "run no VUs")):
			t.Errorf("%s: err %v, want the stages run no VUs", tc.load, err)
		}
	}
}

// A body file is read whole into memory: regular files up to MaxBody only.
func TestReadBodyBounds(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok.json")
	os.WriteFile(ok, []byte(`{"a":1}`), 0o644)
	if b, err := readBody(ok); err != nil || string(b) != `{"a":1}` {
		t.Fatalf("a small file: %q %v", b, err)
	}
	big := filepath.Join(dir, "big.bin")
	f, _ := os.Create(big)
	f.Truncate(MaxBody + 1) // sparse: nothing written
	f.Close()
	if _, err := readBody(big); err == nil || !strings.Contains(err.Error(), "larger than 64 MiB") {
		t.Fatalf("a file past the bound: %v", err)
	}
	if _, err := readBody(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a directory: %v", err)
	}
}

// An alias inside the load (or a fault's params), which decode their own
// nodes, reaches an anchor outside it: `vus: *n` was "could not find
// alias" with the anchor two lines up.
func TestAliasesReachIntoSelfDecodingSections(t *testing.T) {
	src := `name: t
upstreams:
  - {name: api, replicas: &n 2, latency: &d 40ms}
gateway:
  routes:
    - {path: /, upstream: api}
load: {vus: *n, duration: 1s, requests: [{path: /}]}
faults:
  - {kind: latency, target: api, start: 0s, params: {delay: *d}}
`
	p, err := CompileBytes("s.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Load.Stages) != 1 || p.Load.Stages[0].To != 2 {
		t.Fatalf("stages %+v, want 2 VUs", p.Load.Stages)
	}
}

// Params anchored on one fault and aliased on a fault of another kind are
// wrong only at the alias: the error is there, and says where the params
// are written (it pointed at the anchor, whose fault is fine).
func TestAliasedParamsAreJudgedWhereTheAliasIs(t *testing.T) {
	src := `name: t
upstreams:
  - {name: api, latency: 5ms}
gateway:
  routes:
    - {path: /, upstream: api}
load: {rate: 10/s, duration: 2s, requests: [{path: /}]}
faults:
  - {kind: latency, target: api, start: 0s, params: &p {delay: 40ms}}
  - {kind: error, target: api, start: 1s, params: *p}
`
	_, err := CompileBytes("s.yaml", []byte(src), Options{})
	want := `s.yaml:10:51: faults[1].params: unknown field "delay" (via alias *p, defined at line 9 column 57); expected one of: body, match, probability, status`
	if err == nil || err.Error() != want {
		t.Fatalf("error\n got: %v\nwant: %s", err, want)
	}
}

// An error in a body file's template names the file and the line and column
// in it, and does not print the file: a binary or large body used to come
// back as the whole file, quoted, with no file name.
func TestBodyFileTemplateError(t *testing.T) {
	dir := t.TempDir()
	body := strings.Repeat("0123456789abcdef\n", 10000) + "xx {{ not closed\n" + strings.Repeat("z", 100000)
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	src := head + "load:\n  rate: 5/s\n  duration: 1s\n  requests: [{path: /, method: POST, body_file: big.bin}]\n"
	_, err := CompileFile(writeScenario(t, dir, src), Options{})
	if err == nil {
		t.Fatal("no error")
	}
	if e := first(t, err); e.Path != "load.requests[0].body_file" {
		t.Errorf("path %q", e.Path)
	}
	msg := err.Error()
	if !strings.Contains(msg, "big.bin") || !strings.Contains(msg, "line 10001, column 4") || !strings.Contains(msg, "without a closing") {
		t.Errorf("error %.300q does not name big.bin, line 10001, column 4 and the fault", msg)
	}
	if len(msg) > 400 {
		t.Errorf("error is %d bytes: %.300q", len(msg), msg)
	}
}

// A data set that cannot be read is one error, at the data set: the
// templates that use it used to add "unknown data set ... (no data sets
// declared)", which is false and sent the reader to the wrong line.
func TestBadDatasetOneError(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "u.csv"), []byte("id,id\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, data := range []string{"{users: nope.csv}", "{users: u.csv}", "{users: {file: u.csv, order: shuffled}}"} {
		src := head + "load:\n  rate: 5/s\n  duration: 1s\n  data: " + data + "\n  requests: [{path: \"/u/{{users.id}}\"}]\n"
		_, err := CompileFile(writeScenario(t, dir, src), Options{})
		if err == nil {
			t.Fatalf("%s: no error", data)
		}
		if strings.Contains(err.Error(), "unknown data set") || strings.Contains(err.Error(), "no data sets declared") {
			t.Errorf("%s: a second, false error: %v", data, err)
		}
		if e := first(t, err); !strings.HasPrefix(e.Path, "load.data.users") {
			t.Errorf("%s: error at %q: %v", data, e.Path, err)
		}
	}
}

// raw_body: true takes a body file as it is, "{{" and all; set without a
// body to send, it is an error at its field.
func TestRawBody(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "blob.bin"), []byte("\x00{{ not closed \xff"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := head + "load:\n  rate: 5/s\n  duration: 1s\n  requests: [{path: /, method: POST, body_file: blob.bin, raw_body: true}]\n"
	p, err := CompileFile(writeScenario(t, dir, src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Load.Requests[0]; !r.RawBody || string(r.Body) != "\x00{{ not closed \xff" {
		t.Fatalf("request %+v", r)
	}
	src = head + "load:\n  rate: 5/s\n  duration: 1s\n  requests: [{path: /, raw_body: true}]\n"
	_, err = CompileFile(writeScenario(t, dir, src), Options{})
	if err == nil {
		t.Fatal("raw_body without a body: no error")
	}
	if e := first(t, err); e.Path != "load.requests[0].raw_body" || e.Line == 0 {
		t.Errorf("error at %s line %d: %v", e.Path, e.Line, err)
	}
}

// Warnings come in the file's order, not in the order of the checks that
// found them: the timeout lint of both routes ran before the cascade lint
// of both, so route /b's first warning came before route /a's second.
func TestWarningsInFileOrder(t *testing.T) {
	src := `name: w
upstreams:
  - {name: a, latency: 7s}
  - {name: b, latency: 7s}
gateway:
  routes:
    - {path: /a, upstream: a, timeouts: {response_header: 5s, total: 6s}}
    - {path: /b, upstream: b, timeouts: {response_header: 5s, total: 6s}}
load:
  rate: 1/s
  duration: 1s
  client_timeout: 6s
  requests: [{path: /a}]
`
	p, err := CompileBytes("w.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var pos []string
	for _, w := range p.Warnings {
		pos = append(pos, strings.SplitN(w.Pos, ": ", 2)[0])
	}
	if want := "w.yaml:7:59 w.yaml:7:70 w.yaml:8:59 w.yaml:8:70"; strings.Join(pos, " ") != want {
		t.Errorf("warnings at %v, want %s", pos, want)
	}
}

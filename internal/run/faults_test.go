package run

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/pgtest"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// runScenario compiles src and runs it, failing the test on any error.
func runScenario(t *testing.T, src string) *results.Summary {
	t.Helper()
	return runScenarioOut(t, src).Summary
}

// runScenarioOut is runScenario, with the run directory.
func runScenarioOut(t *testing.T, src string) *Outcome {
	t.Helper()
	p, err := plan.CompileBytes(t.Name()+".yaml", []byte(src), plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	o, err := Run(ctx, p, Options{OutDir: t.TempDir() + "/out", Progress: ProgressOff, Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func phase(t *testing.T, s *results.Summary, name string) results.StatsSummary {
	t.Helper()
	for _, p := range s.Phases {
		if p.Name == name {
			return p.Stats
		}
	}
	t.Fatalf("no phase %q", name)
	return results.StatsSummary{}
}

func fault(t *testing.T, s *results.Summary, name string) results.FaultSummary {
	t.Helper()
	for _, f := range s.Faults {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no fault %q", name)
	return results.FaultSummary{}
}

// dbScenario is the slow-db story, shortened: a slow query past the
// statement timeout that drains a pool of 2, then a frozen service.
func dbScenario(database string) string {
	return fmt.Sprintf(`name: db-cascade
seed: 5
upstreams:
  - name: orders
    kind: database
    database: %s
gateway:
  routes:
    - {path: /, upstream: orders, timeouts: {connect: 250ms, response_header: 1500ms, total: 2s}}
load:
  client_timeout: 4s
  stages:
    - {duration: 7s, rate: 20/s}
  requests:
    - {path: /orders/history}
faults:
  - {name: slow, kind: slow_query, target: orders, start: 1s, duration: 3s, params: {latency: {dist: uniform, min: 150ms, max: 600ms}}}
  - {name: freeze, kind: pause, target: orders, start: 4500ms, duration: 2s}
`, database)
}

// checkDBCascade asserts each layer answered with its own timeout.
func checkDBCascade(t *testing.T, s *results.Summary) {
	t.Helper()
	slow := phase(t, s, "slow").Causes
	if slow["db_timeout"] == 0 || slow["upstream_timeout"] == 0 || slow["ok"] == 0 {
		t.Errorf("slow query phase: causes %v, want db_timeout, upstream_timeout and some ok", slow)
	}
	if slow["gateway_timeout"] > 2 {
		t.Errorf("slow query phase: %d gateway timeouts; the upstream's own timeouts should answer first", slow["gateway_timeout"])
	}
	if freeze := phase(t, s, "freeze").Causes; freeze["gateway_timeout"] == 0 {
		t.Errorf("freeze phase: causes %v, want gateway_timeout", freeze)
	}
	if s.Run.Stats.Causes["client_timeout"] != 0 {
		t.Errorf("%d client timeouts: the cascade should hold", s.Run.Stats.Causes["client_timeout"])
	}
	if f := fault(t, s, "slow"); f.Fired == 0 {
		t.Errorf("slow_query never took effect: %+v", f)
	}
}

func TestDatabaseUpstreamCascadeSQLite(t *testing.T) {
	s := runScenario(t, dbScenario("{driver: sqlite, pool_size: 2, statement_timeout: 300ms, upstream_timeout: 1s}"))
	checkDBCascade(t, s)
}

// The access log's cause for each request is the one summary.json counts
// it under: each layer of a database upstream's cascade (db_timeout,
// upstream_timeout, db_error, its own 400 upstream_error), the gateway's
// timeout, and ok, counted cause by cause over the same requests. The
// access log once said upstream_error for every failure the upstream
// answered itself.
func TestAccessLogCausesAreTheSummarys(t *testing.T) {
	o := runScenarioOut(t, `name: access-causes
seed: 5
upstreams:
  - name: orders
    kind: database
    database: {driver: sqlite, pool_size: 2, statement_timeout: 300ms, upstream_timeout: 1s}
gateway:
  routes:
    - {path: /, upstream: orders, timeouts: {connect: 250ms, response_header: 1500ms, total: 2s}}
load:
  client_timeout: 4s
  stages:
    - {duration: 6s, rate: 20/s}
  requests:
    - {path: /orders/history, weight: 9}
    - {path: "/orders/history?customer=0"}
faults:
  - {name: slow, kind: slow_query, target: orders, start: 500ms, duration: 1500ms, params: {latency: {dist: uniform, min: 150ms, max: 600ms}}}
  - {name: refused, kind: connection_refused, target: orders, start: 2200ms, duration: 1s}
  - {name: freeze, kind: pause, target: orders, start: 3500ms, duration: 2s}
`)
	f, err := os.Open(filepath.Join(o.Dir, AccessLogFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	logged := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct{ Cause string }
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: %v", sc.Text(), err)
		}
		logged[l.Cause]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	counted := map[string]int64{}
	for c, n := range o.Summary.Run.Stats.Causes {
		if n > 0 {
			counted[c] = n
		}
	}
	t.Logf("access log %v; summary %v", logged, counted)
	if !maps.Equal(logged, counted) {
		t.Errorf("the access log's causes %v are not the summary's %v", logged, counted)
	}
	for _, c := range []string{"ok", "db_timeout", "upstream_timeout", "db_error", "upstream_error", "gateway_timeout"} {
		if counted[c] == 0 {
			t.Errorf("no request ended in %s: the scenario no longer shows every layer (%v)", c, counted)
		}
	}
}

func TestDatabaseUpstreamCascadePostgresDSN(t *testing.T) {
	pg := pgtest.Start(t)
	s := runScenario(t, dbScenario(fmt.Sprintf("{driver: postgres, dsn: %q, pool_size: 2, statement_timeout: 300ms, upstream_timeout: 1s}", pg.DSN)))
	checkDBCascade(t, s)
}

func TestDatabaseLockContentionPostgres(t *testing.T) {
	pg := pgtest.Start(t)
	s := runScenario(t, fmt.Sprintf(`name: db-locks
upstreams:
  - name: orders
    kind: database
    database: {driver: postgres, dsn: %q, pool_size: 4, statement_timeout: 400ms, lock_timeout: 150ms, upstream_timeout: 1s, customers: 20}
gateway:
  routes:
    - {path: /, upstream: orders, timeouts: {response_header: 2s, total: 3s}}
load:
  client_timeout: 4s
  stages:
    - {duration: 4s, rate: 20/s}
  requests:
    - {path: /orders/history}
faults:
  - {name: locks, kind: lock_contention, target: orders, start: 1s, duration: 2s}
`, pg.DSN))
	locks := phase(t, s, "locks").Causes
	if locks["db_timeout"] < 10 {
		t.Fatalf("lock contention: causes %v, want most requests to end in db_timeout (55P03)", locks)
	}
	if f := fault(t, s, "locks"); f.Fired == 0 {
		t.Fatalf("lock_contention never took effect: %+v", f)
	}
	if after := phase(t, s, "after").Causes; after["db_timeout"] > 2 {
		t.Fatalf("after the locks were released: %v", after)
	}
}

// h6 #12: the lock wait (SQLite's busy_timeout, 1s) outlasts the service's
// own deadline (400ms), which ends every wait with upstream_timeout; the
// lock is still why, so the fault took effect.
func TestDatabaseLockContentionCutByTheUpstreamDeadline(t *testing.T) {
	s := runScenario(t, `name: db-locks-outer
upstreams:
  - name: orders
    kind: database
    database: {driver: sqlite, pool_size: 20, statement_timeout: 100ms, lock_timeout: 1s, upstream_timeout: 400ms}
gateway:
  routes:
    - {path: /, upstream: orders, timeouts: {response_header: 1s, total: 1s}}
load:
  client_timeout: 2s
  stages:
    - {duration: 3s, rate: 20/s}
  requests:
    - {path: /orders/history}
faults:
  - {name: locks, kind: lock_contention, target: orders, start: 1s, duration: 1s}
`)
	if locks := phase(t, s, "locks").Causes; locks["upstream_timeout"] < 10 {
		t.Fatalf("lock contention: causes %v, want most requests to end in upstream_timeout", locks)
	}
	if f := fault(t, s, "locks"); f.Fired < 10 || f.Reason != "" {
		t.Fatalf("lock_contention took effect %d times (%q), want every wait its lock caused: %+v", f.Fired, f.Reason, f)
	}
}

func TestInstanceFaultsThroughARun(t *testing.T) {
	s := runScenario(t, `name: chaos-monkey
seed: 3
upstreams:
  - {name: api, replicas: 3}
gateway:
  routes:
    - {path: /, upstream: api, timeouts: {connect: 200ms, response_header: 500ms, total: 1s}}
load:
  client_timeout: 3s
  stages:
    - {duration: 6s, rate: 60/s}
  requests:
    - {path: /}
faults:
  - {name: kill-one, kind: kill, target: "api[0]", start: 1s, duration: 1s}
  - {name: bounce, kind: restart, target: "api[1]", start: 2500ms, duration: 2s, params: {delay: 1s}}
  - {name: freeze, kind: pause, target: "api[2]", start: 4s, duration: 1500ms}
`)
	kill := phase(t, s, "kill-one").Causes
	if kill["upstream_connect_failure"] == 0 {
		t.Errorf("kill: causes %v, want upstream_connect_failure", kill)
	}
	// api[0] stays down: a third of the requests after the kill still fail.
	if after := phase(t, s, "after").Causes; after["upstream_connect_failure"] == 0 {
		t.Errorf("after: causes %v, a killed replica stays down", after)
	}
	if bounce := phase(t, s, "bounce").Causes; bounce["upstream_connect_failure"] == 0 {
		t.Errorf("restart: causes %v", bounce)
	}
	if freeze := phase(t, s, "freeze").Causes; freeze["gateway_timeout"] == 0 {
		t.Errorf("pause: causes %v, want gateway_timeout", freeze)
	}
}

func TestRampAndRepeatInARun(t *testing.T) {
	s := runScenario(t, `name: ramp-repeat
seed: 9
upstreams:
  - {name: api, replicas: 2}
gateway:
  routes:
    - {path: /, upstream: api}
load:
  client_timeout: 3s
  stages:
    - {duration: 6s, rate: 50/s}
  requests:
    - {path: /}
phases:
  - {name: ramp-early, start: 0s, end: 1s}
  - {name: ramp-late, start: 2s, end: 3s}
faults:
  - {name: errors, kind: error, target: api, start: 0s, duration: 3s, ramp: 3s, params: {status: 500}}
  - {name: flap, kind: error, target: api, start: 3s, duration: 500ms, repeat: {every: 1s, times: 3}, params: {status: 502}}
`)
	early, late := phase(t, s, "ramp-early"), phase(t, s, "ramp-late")
	if early.ErrorRate >= late.ErrorRate || late.ErrorRate < 0.4 || early.ErrorRate > 0.3 {
		t.Errorf("ramp: error rate %.2f in the first second, %.2f in the third; want it to grow from ≈0.17 to ≈0.83", early.ErrorRate, late.ErrorRate)
	}
	if f := fault(t, s, "flap"); f.Occurrences != 3 {
		t.Errorf("flap: %+v, want 3 occurrences", f)
	}
	// Each occurrence fails ≈ half of its second.
	if r := phase(t, s, "flap").ErrorRate; r < 0.3 || r > 0.7 {
		t.Errorf("flap phase error rate %.2f, want ≈ 0.5", r)
	}
}

func TestSummaryExplainsAFaultThatNeverFired(t *testing.T) {
	s := runScenario(t, `name: no-effect
upstreams:
  - {name: api, replicas: 2}
  - {name: spare}
gateway:
  routes:
    - {path: /, upstream: api}
load:
  stages:
    - {duration: 2s, rate: 20/s}
  requests:
    - {path: /items}
faults:
  - {name: idle, kind: error, target: spare, start: 500ms, duration: 1s}
  - {name: posts, kind: error, target: api, start: 500ms, duration: 1s, params: {match: {method: POST}}}
`)
	idle, posts := fault(t, s, "idle"), fault(t, s, "posts")
	if idle.Fired != 0 || !strings.Contains(idle.Reason, "no request reached spare[0]") {
		t.Errorf("idle: %+v", idle)
	}
	if posts.Fired != 0 || !strings.Contains(posts.Reason, "none matched") {
		t.Errorf("posts: %+v", posts)
	}
}

// A data file value the client refuses (a header value with a line break)
// leaves those requests unsent as request_error, and the summary says why,
// once, naming the template and the sequence number.
func TestRequestErrorReasonInSummary(t *testing.T) {
	data := t.TempDir() + "/tokens.csv"
	if err := os.WriteFile(data, []byte("id,tok\n1,abc\n2,\"x\ny\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := runScenario(t, `name: request-error
upstreams:
  - {name: api, latency: 1ms}
gateway:
  routes: [{path: /, upstream: api}]
load:
  data: {d: "`+data+`"}
  stages: [{duration: 1s, rate: 40/s}]
  requests:
    - {name: tok, path: "/x/{{d.id}}", headers: {X-Tok: "{{d.tok}}"}}
`)
	st := s.Run.Stats
	if n := st.Causes["request_error"]; n == 0 || n == st.Sent {
		t.Fatalf("request_error %d of %d sent: want some, not all", n, st.Sent)
	}
	var reason string
	for _, w := range s.Warnings {
		if strings.Contains(w, "request_error") {
			reason = w
		}
	}
	// The first to fail, of the odd sequence numbers (the rows with a
	// newline): with requests in flight together, not always 1.
	if !regexp.MustCompile(`request "tok" \(sequence number \d*[13579]\)`).MatchString(reason) || !strings.Contains(reason, "X-Tok") {
		t.Errorf("warnings %q: want the first refused request's reason", s.Warnings)
	}
}

// The database's end-of-run record agrees with the fault report: a fault
// that runs to the end counts the waits its stop ends, and the record is
// taken after the faults stopped, not before.
func TestDatabaseRecordAfterTheFaultsStop(t *testing.T) {
	src := `name: db-record
seed: 5
upstreams:
  - {name: orders, kind: database, database: {pool_size: 1, upstream_timeout: 5s}}
gateway:
  routes:
    - {path: /, upstream: orders, timeouts: {response_header: 6s, total: 6s}}
load:
  client_timeout: 200ms
  stages:
    - {duration: 1s, rate: 10/s}
  requests:
    - {path: /orders/history}
faults:
  - {name: leak, kind: pool_exhaustion, target: orders, start: 300ms}
`
	p, err := plan.CompileBytes(t.Name()+".yaml", []byte(src), plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir() + "/out"
	o, err := Run(ctx, p, Options{OutDir: dir, Progress: ProgressOff, Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	fired := fault(t, o.Summary, "leak").Fired
	if fired < 5 {
		t.Fatalf("pool_exhaustion took effect %d times, want the ~7 requests it kept waiting", fired)
	}
	evs, _, _, err := results.LoadRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Type != "upstream.database" {
			continue
		}
		got := e.Attrs["fault_effects"].(map[string]any)["pool_exhaustion"]
		if n, _ := got.(float64); int64(n) != fired {
			t.Fatalf("upstream.database counts %v pool_exhaustion effects, the fault report %d", got, fired)
		}
		return
	}
	t.Fatal("no upstream.database event")
}

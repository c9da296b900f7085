package plan

import (
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/faults"
)

const dbScenario = `name: db
upstreams:
  - name: orders
    kind: database
    database: {driver: sqlite, pool_size: 5, statement_timeout: 500ms, upstream_timeout: 2s}
  - name: api
    replicas: 3
gateway:
  routes:
    - {path: /orders, upstream: orders, timeouts: {response_header: 3s, total: 4s}}
    - {path: /, upstream: api, timeouts: {total: 4s}}
load:
  client_timeout: 5s
  stages:
    - {duration: 20s, rate: 10/s}
  requests:
    - {path: /orders/history}
faults:
  - {name: slow, kind: slow_query, target: orders, start: 2s, duration: 5s, params: {latency: 1s}}
  - {name: monkey, kind: kill, target: "api[random]", start: 3s, duration: 1s, repeat: {every: 4s, times: 3}}
  - {name: ramped, kind: latency, target: api, start: 8s, duration: 10s, ramp: 5s, params: {delay: 400ms, match: {method: GET, path: "/items/*"}}}
`

func TestDatabaseScenarioCompiles(t *testing.T) {
	p, err := CompileBytes("db.yaml", []byte(dbScenario), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 0 {
		t.Fatalf("warnings: %v", p.Warnings)
	}
	orders := p.Upstreams[0]
	if orders.Kind != faults.UpstreamDatabase || orders.Database == nil || orders.Database.PoolSize != 5 {
		t.Fatalf("orders: %+v", orders)
	}
	if p.Upstreams[1].Kind != faults.UpstreamHTTP {
		t.Fatalf("api kind %q", p.Upstreams[1].Kind)
	}
	monkey := p.Timeline[1]
	if monkey.Replica != faults.RandomReplica || monkey.Times != 3 || monkey.Every != 4*time.Second || monkey.Duration != time.Second {
		t.Fatalf("monkey: %+v", monkey)
	}
	if monkey.End() != 12*time.Second {
		t.Fatalf("monkey ends at %s, want 12s", monkey.End())
	}
	if p.Timeline[2].Ramp != 5*time.Second {
		t.Fatalf("ramp: %+v", p.Timeline[2])
	}
	for _, ph := range p.Phases {
		if ph.Name == "monkey" && (ph.Start != 3*time.Second || ph.End != 12*time.Second) {
			t.Fatalf("a repeated fault's phase spans its occurrences: %+v", ph)
		}
	}
}

func dbReplace(old, new string) string {
	if !strings.Contains(dbScenario, old) {
		panic("test bug: " + old)
	}
	return strings.Replace(dbScenario, old, new, 1)
}

func TestFaultScenarioErrors(t *testing.T) {
	cases := []struct {
		name, src, path, contains string
	}{
		{"db fault on an http upstream", dbReplace("kind: slow_query, target: orders", "kind: slow_query, target: api"),
			"faults[0].kind", "applies only to upstreams of kind database"},
		{"ramp on a kind that does not ramp", dbReplace("kind: kill, target", "kind: kill, ramp: 1s, target"),
			"faults[1].ramp", "does not ramp"},
		{"repeat without every", dbReplace("repeat: {every: 4s, times: 3}", "repeat: {times: 3}"),
			"faults[1].repeat.every", "every is required"},
		{"repeat occurrence too long", dbReplace("duration: 1s, repeat", "duration: 5s, repeat"),
			"faults[1].duration", "outlast the repeat interval"},
		{"bad random target", dbReplace(`"api[random]"`, `"api[any]"`), "faults[1].target", "api[random]"},
		{"db param error points at the param", dbReplace("params: {latency: 1s}", "params: {}"),
			"faults[0].params.latency", "slow_query needs a latency"},
		{"db config error points at the field", dbReplace("pool_size: 5,", "pool_size: -1,"),
			"upstreams[0].database.pool_size", "outside 1..1000"},
		// PostgreSQL reads statement_timeout = 0 as no timeout; cascade
		// quietly used 500ms (and a pool of 0 became 10).
		{"a statement timeout of 0 is not none", dbReplace("statement_timeout: 500ms,", "statement_timeout: 0s,"),
			"upstreams[0].database.statement_timeout", "0 stands for the default here"},
		{"a pool of 0 is not 10", dbReplace("pool_size: 5,", "pool_size: 0,"),
			"upstreams[0].database.pool_size", "0 stands for the default here"},
		// A pool of 5 cannot lend 6: the fault took 5 and said nothing.
		{"a hold past the pool", dbReplace("kind: slow_query, target: orders, start: 2s, duration: 5s, params: {latency: 1s}",
			"kind: pool_exhaustion, target: orders, start: 2s, duration: 5s, params: {hold: 6}"),
			"faults[0].params.hold", "hold 6 is more than the pool of orders (pool_size 5): take 1..5 connections, or leave hold out for the whole pool"},
		{"a hold past the default pool", strings.Replace(dbReplace("kind: slow_query, target: orders, start: 2s, duration: 5s, params: {latency: 1s}",
			"kind: pool_exhaustion, target: orders, start: 2s, duration: 5s, params: {hold: 11}"), "pool_size: 5, ", "", 1),
			"faults[0].params.hold", "(pool_size 10, the default)"},
		{"a hold of 0 is not the whole pool", dbReplace("kind: slow_query, target: orders, start: 2s, duration: 5s, params: {latency: 1s}",
			"kind: pool_exhaustion, target: orders, start: 2s, duration: 5s, params: {hold: 0}"),
			"faults[0].params.hold", "0 stands for the default here"},
		// lock_contention's 0s and 0% read as "no hold" and "no row", yet
		// meant until the stop and every row.
		{"a lock hold of 0 is not until the stop", dbReplace("kind: slow_query, target: orders, start: 2s, duration: 5s, params: {latency: 1s}",
			"kind: lock_contention, target: orders, start: 2s, duration: 5s, params: {hold: 0s}"),
			"faults[0].params.hold", "0 stands for the default here"},
		{"a lock share of 0 is not every row", dbReplace("kind: slow_query, target: orders, start: 2s, duration: 5s, params: {latency: 1s}",
			"kind: lock_contention, target: orders, start: 2s, duration: 5s, params: {share: 0%}"),
			"faults[0].params.share", "0 stands for the default here"},
		{"unknown upstream kind", dbReplace("kind: database", "kind: redis"), "upstreams[0].kind", `unknown upstream kind "redis"`},
		{"latency on a database upstream", dbReplace("    kind: database\n", "    kind: database\n    latency: 5ms\n"),
			"upstreams[0].latency", "comes from its database"},
		{"bad match glob", dbReplace(`path: "/items/*"`, `path: "/items/[x"`), "faults[2].params", "match.path"},
		{"http fault on a container", dbReplace("    replicas: 3\n", "    replicas: 3\n    container: true\n"),
			"faults[2].kind", "cannot reach a replica in a container"},
		{"container image without port", dbReplace("    replicas: 3\n", "    replicas: 3\n    container: {image: my/api:1}\n"),
			"upstreams[1].container", "needs port"},
		{"container on a database upstream", dbReplace("    kind: database\n", "    kind: database\n    container: true\n"),
			"upstreams[0].container", "PostgreSQL can run in a container"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := CompileBytes("db.yaml", []byte(c.src), Options{})
			if err == nil {
				t.Fatal("compiled")
			}
			msg := err.Error()
			if !strings.Contains(msg, c.path) || !strings.Contains(msg, c.contains) {
				t.Fatalf("error %q\nwant path %q and %q", msg, c.path, c.contains)
			}
			if !strings.Contains(msg, "db.yaml:") {
				t.Fatalf("error %q has no position", msg)
			}
		})
	}
}

// A hold of the whole pool, written or left out, compiles.
func TestPoolExhaustionHoldUpToThePool(t *testing.T) {
	for _, params := range []string{"{hold: 5}", "{hold: 1}", "{}"} {
		src := dbReplace("kind: slow_query, target: orders, start: 2s, duration: 5s, params: {latency: 1s}",
			"kind: pool_exhaustion, target: orders, start: 2s, duration: 5s, params: "+params)
		if _, err := CompileBytes("db.yaml", []byte(src), Options{}); err != nil {
			t.Errorf("params %s: %v", params, err)
		}
	}
}

func TestDatabaseCascadeLint(t *testing.T) {
	src := dbReplace("statement_timeout: 500ms, upstream_timeout: 2s", "statement_timeout: 6s, upstream_timeout: 5s")
	p, err := CompileBytes("db.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var all string
	for _, w := range p.Warnings {
		all += w.String() + "\n"
	}
	for _, want := range []string{"statement_timeout 6s is not shorter than upstream_timeout 5s", "the gateway gives up at 3s, before upstream orders's own upstream_timeout 5s"} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings lack %q:\n%s", want, all)
		}
	}
}

// A wait for a locked row ends at lock_timeout (on postgres, at the
// statement timeout if that is shorter): at or past upstream_timeout, the
// upstream answers first, never the database.
func TestDatabaseLockTimeoutLint(t *testing.T) {
	const old = "{driver: sqlite, pool_size: 5, statement_timeout: 500ms, upstream_timeout: 2s}"
	cases := []struct {
		db, want string // want "" is no warning
	}{
		{"{driver: sqlite, statement_timeout: 100ms, lock_timeout: 1s, upstream_timeout: 400ms}",
			"db.yaml:5:72: upstreams[0].database.lock_timeout: upstream orders: lock_timeout 1s is not shorter than upstream_timeout 400ms"},
		{"{driver: sqlite, statement_timeout: 100ms, lock_timeout: 400ms, upstream_timeout: 400ms}",
			"lock_timeout 400ms is not shorter than upstream_timeout 400ms"},
		{"{driver: sqlite, statement_timeout: 100ms, lock_timeout: 300ms, upstream_timeout: 400ms}", ""},
		{"{driver: sqlite, statement_timeout: 100ms, upstream_timeout: 400ms}", ""}, // the default is half the statement timeout
		// postgres's statement timeout cuts the lock wait first.
		{"{driver: postgres, dsn: \"postgres://u@127.0.0.1:5432/d\", statement_timeout: 100ms, lock_timeout: 1s, upstream_timeout: 400ms}", ""},
		{"{driver: postgres, dsn: \"postgres://u@127.0.0.1:5432/d\", statement_timeout: 1s, lock_timeout: 2s, upstream_timeout: 400ms}",
			"lock_timeout 2s is not shorter than upstream_timeout 400ms"},
	}
	for _, tc := range cases {
		t.Run(tc.db, func(t *testing.T) {
			p, err := CompileBytes("db.yaml", []byte(dbReplace(old, tc.db)), Options{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range p.Warnings {
				if strings.Contains(w.Msg, "lock_timeout") {
					got = append(got, w.String())
				}
			}
			switch {
			case tc.want == "" && len(got) > 0:
				t.Errorf("warned: %v", got)
			case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
				t.Errorf("warnings %v, want one with %q", got, tc.want)
			}
		})
	}
}

func TestContainerUpstreamCompiles(t *testing.T) {
	src := strings.Replace(strings.Replace(dbScenario, "    replicas: 3\n", "    replicas: 2\n    container: {image: my/api:1, port_env: PORT, env: {MODE: slow}}\n", 1),
		"  - {name: ramped", "  # - {name: ramped", 1)
	p, err := CompileBytes("db.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := p.Upstreams[1].Container
	if c == nil || c.Image != "my/api:1" || c.PortEnv != "PORT" || c.Env["MODE"] != "slow" {
		t.Fatalf("container: %+v", c)
	}
	src = strings.Replace(src, "container: {image: my/api:1, port_env: PORT, env: {MODE: slow}}", "container: true", 1)
	if p, err = CompileBytes("db.yaml", []byte(src), Options{}); err != nil || p.Upstreams[1].Container == nil || p.Upstreams[1].Container.Image != "" {
		t.Fatalf("container: true: %v", err)
	}
	src = strings.Replace(src, "container: true", "container: false", 1)
	if p, err = CompileBytes("db.yaml", []byte(src), Options{}); err != nil || p.Upstreams[1].Container != nil {
		t.Fatalf("container: false: %v", err)
	}
}

// An injected answer ends with a final status. A 1xx is none: Go's server
// sends it as an informational response and then a 200, so an error fault
// of 103 "took effect" 20 times on 20 requests that all succeeded.
func TestInjectedStatusIsFinal(t *testing.T) {
	const load = "load: {rate: 10/s, duration: 2s, requests: [{path: /}]}\n"
	for _, tc := range []struct{ src, path string }{
		{head + load + "faults:\n  - {kind: error, target: api, start: 0s, params: {status: 103}}\n", "faults[0].params"},
		{head + load + "faults:\n  - {kind: fail_first, target: api, start: 0s, params: {count: 2, status: 101}}\n", "faults[0].params"},
		{strings.Replace(head, "latency: 5ms", "latency: 5ms, status: 150", 1) + load, "upstreams[0]"},
	} {
		_, err := CompileBytes("s.yaml", []byte(tc.src), Options{})
		if err == nil || !strings.Contains(err.Error(), "is not a final HTTP status (200-599)") || first(t, err).Path != tc.path {
			t.Errorf("%s: %v, want a final status asked for at %s", tc.src, err, tc.path)
		}
	}
	ok := head + load + "faults:\n  - {kind: error, target: api, start: 0s, params: {status: 200}}\n"
	if _, err := CompileBytes("s.yaml", []byte(ok), Options{}); err != nil {
		t.Fatal(err)
	}
}

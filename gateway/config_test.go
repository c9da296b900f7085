package gateway

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/gateway/breaker"
	"github.com/cascadehq/cascade/gateway/fallback"
	"github.com/cascadehq/cascade/gateway/retry"
	"github.com/cascadehq/cascade/internal/units"
)

func TestConfigValidationCases(t *testing.T) {
	ok := "http://127.0.0.1:1"
	cases := []struct {
		name string
		cfg  Config
		reps map[string]int // nil: standalone
		path string         // expected error path ("" = valid)
		msg  string
	}{
		{"valid", one(Route{Retries: &retry.Config{}}, Upstream{Breaker: &breaker.Config{}}, ok), nil, "", ""},
		{"per-try not shorter than total", one(Route{Timeouts: Timeouts{Total: du(time.Second), PerTry: du(time.Second)}}, Upstream{}, ok),
			nil, "routes[0].timeouts.per_try", "Envoy ignores such a per-try timeout silently"},
		{"per-try via retries", one(Route{Timeouts: Timeouts{Total: du(time.Second)}, Retries: &retry.Config{PerTryTimeout: du(2 * time.Second)}}, Upstream{}, ok),
			nil, "routes[0].retries.per_try_timeout", "not shorter than the total"},
		{"per-try twice", one(Route{Timeouts: Timeouts{PerTry: du(time.Second)}, Retries: &retry.Config{PerTryTimeout: du(time.Second)}}, Upstream{}, ok),
			nil, "routes[0].retries.per_try_timeout", "set twice"},
		{"hedge without a per-try timeout", one(Route{Retries: &retry.Config{HedgeOnPerTryTimeout: true}}, Upstream{}, ok),
			nil, "routes[0].retries.hedge_on_per_try_timeout", "needs a per-try timeout"},
		{"hedge with timeouts.per_try", one(Route{Timeouts: Timeouts{PerTry: du(time.Second)}, Retries: &retry.Config{HedgeOnPerTryTimeout: true}},
			Upstream{}, ok), nil, "", ""},
		{"negative idle", one(Route{Timeouts: Timeouts{Idle: du(-time.Second)}}, Upstream{}, ok), nil, "routes[0].timeouts.idle", "negative"},
		{"breaker field", one(Route{}, Upstream{Breaker: &breaker.Config{FailureRateThreshold: 2}}, ok), nil,
			"upstreams[0].breaker.failure_rate_threshold", "0%..100%"},
		{"retry field", one(Route{Retries: &retry.Config{RetryOn: []string{"bogus"}}}, Upstream{}, ok), nil, "routes[0].retries.retry_on[0]", "bogus"},
		{"balance policy", one(Route{}, Upstream{Balance: balanceCfg("fastest")}, ok), nil, "upstreams[0].balance.policy", "round_robin"},
		{"weights", one(Route{}, Upstream{Weights: []int{1, 2}}, ok), nil, "upstreams[0].weights", "2 weights for 1"},
		{"weight zero", one(Route{}, Upstream{Weights: []int{0}}, ok), nil, "upstreams[0].weights[0]", "must be 1..1000000"},
		// Their sum wrapped negative: the random policy panicked mid-run.
		{"weight past the bound", one(Route{}, Upstream{Weights: []int{math.MaxInt64}}, ok), nil, "upstreams[0].weights[0]", "must be 1..1000000"},
		{"empty fallback", one(Route{Fallback: &Fallback{}}, Upstream{}, ok), nil, "routes[0].fallback", "cache, static"},
		{"fallback condition", one(Route{Fallback: &Fallback{Static: &fallback.StaticConfig{}, On: []string{"always"}}}, Upstream{}, ok),
			nil, "routes[0].fallback.on[0]", "breaker_open"},
		{"propagate value", one(Route{Propagate: []string{"attempt", "trace_id"}}, Upstream{}, ok), nil, "routes[0].propagate[1]", "forwarded_for"},
		{"propagate none and more", one(Route{Propagate: []string{"none", "deadline"}}, Upstream{}, ok), nil, "routes[0].propagate[0]", "cannot be combined"},
		{"target path", one(Route{}, Upstream{}, "http://127.0.0.1:1/api"), nil, "upstreams[0].targets[0]", "bare"},
		{"target port out of range", one(Route{}, Upstream{}, "http://127.0.0.1:99999"), nil, "upstreams[0].targets[0]", "port must be 1-65535"},
		{"target port zero", one(Route{}, Upstream{}, "http://127.0.0.1:0"), nil, "upstreams[0].targets[0]", "port must be 1-65535"},
		{"budget disagreement", Config{Upstreams: []Upstream{{Name: "up", Targets: []string{ok}}}, Routes: []Route{
			{Path: "/a", Upstream: "up", Retries: &retry.Config{BudgetPercent: 0.5}},
			{Path: "/b", Upstream: "up", Retries: &retry.Config{BudgetPercent: units.Percent(0.2)}}}}, nil, "routes[1].retries", "share"},
		{"scenario: targets", Config{Upstreams: []Upstream{{Name: "api", Targets: []string{ok}}}, Routes: []Route{{Path: "/", Upstream: "api"}}},
			map[string]int{"api": 2}, "upstreams[0].targets", "replicas"},
		{"scenario: unknown upstream", Config{Upstreams: []Upstream{{Name: "apx"}}, Routes: []Route{{Path: "/", Upstream: "api"}}},
			map[string]int{"api": 2}, "upstreams[0].name", `unknown upstream "apx"`},
		{"scenario: weights per replica", Config{Upstreams: []Upstream{{Name: "api", Weights: []int{1, 2, 3}}}, Routes: []Route{{Path: "/", Upstream: "api"}}},
			map[string]int{"api": 2}, "upstreams[0].weights", "3 weights for 2"},
		{"scenario: valid", Config{Upstreams: []Upstream{{Name: "api", Weights: []int{3, 1}}}, Routes: []Route{{Path: "/", Upstream: "api"}}},
			map[string]int{"api": 2}, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs := tc.cfg.Validate(tc.reps)
			if tc.path == "" {
				if len(errs) > 0 {
					t.Fatalf("unexpected errors %v", errs)
				}
				return
			}
			for _, e := range errs {
				if e.Path == tc.path && strings.Contains(e.Msg, tc.msg) {
					return
				}
			}
			t.Errorf("want an error at %s containing %q, got %v", tc.path, tc.msg, errs)
		})
	}
}

// A standalone config file's errors name file:line:column.
func TestLoadConfigPositions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gw.yaml")
	os.WriteFile(path, []byte(`listen: 127.0.0.1:0
upstreams:
  - name: api
    targets: [http://127.0.0.1:9001]
    breaker: {minimum_calls: -1}
routes:
  - path: /
    upstream: api
    timeouts: {total: 1s, per_try: 1s}
  - path: /h
    upstream: api
    retries: {hedge_on_per_try_timeout: true}
`), 0o644)
	_, err := LoadConfig(path, false)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{path + ":5:30: upstreams[0].breaker.minimum_calls", path + ":9:36: routes[0].timeouts.per_try",
		path + ":12:41: routes[1].retries.hedge_on_per_try_timeout: needs a per-try timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// A standalone gateway sends to loopback targets and listens on loopback,
// unless allowed: the errors name the fields.
func TestLoadConfigLoopbackOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gw.yaml")
	os.WriteFile(path, []byte(`listen: 0.0.0.0:8080
upstreams:
  - name: api
    targets: [http://127.0.0.1:9001, http://203.0.113.9:80]
routes:
  - {path: /, upstream: api}
`), 0o644)
	_, err := LoadConfig(path, false)
	for _, want := range []string{path + ":1:9: listen: \"0.0.0.0:8080\" is not a loopback address",
		path + ":4:38: upstreams[0].targets[1]: http://203.0.113.9:80 is not a loopback address"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if _, err := LoadConfig(path, true); err != nil {
		t.Fatalf("--allow-remote: %v", err)
	}
}

// A malformed listen address is reported with the file's other errors,
// with --allow-remote too: it used to pass validation and fail only at the
// listen, once every other error had been fixed.
func TestLoadConfigListenInOneRound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gw.yaml")
	os.WriteFile(path, []byte(`listen: localhost
upstreams:
  - name: api
    targets: [http://127.0.0.1:9001]
routes:
  - {path: api, upstream: api}
`), 0o644)
	for _, allowRemote := range []bool{false, true} {
		_, err := LoadConfig(path, allowRemote)
		if err == nil {
			t.Fatalf("allowRemote %v: no error", allowRemote)
		}
		for _, want := range []string{path + `:1:9: listen: "localhost": expected host:port`, path + `:6:12: routes[0].path: path "api" must start with /`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("allowRemote %v: missing %q in:\n%v", allowRemote, want, err)
			}
		}
		if strings.Contains(err.Error(), "loopback") {
			t.Errorf("a malformed address is not a remote one:\n%v", err)
		}
	}
}

func TestEnableAndSingle(t *testing.T) {
	cfg := Single("127.0.0.1:0", "http://127.0.0.1:9")
	for _, f := range Features {
		if err := cfg.Enable(f); err != nil {
			t.Fatal(err)
		}
	}
	u, r := cfg.Upstreams[0], cfg.Routes[0]
	if u.Breaker == nil || u.Limits == nil || u.Outlier == nil || u.Balance.Policy != "p2c_ewma" || r.Retries == nil || r.Fallback == nil {
		t.Errorf("features not all on: %+v %+v", u, r)
	}
	if errs := cfg.Validate(nil); len(errs) > 0 {
		t.Errorf("enabled config invalid: %v", errs)
	}
	if err := cfg.Enable("teleport"); err == nil || !strings.Contains(err.Error(), "breaker") {
		t.Errorf("unknown feature: %v", err)
	}
}

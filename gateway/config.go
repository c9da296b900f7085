package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cascadehq/cascade/gateway/balance"
	"github.com/cascadehq/cascade/gateway/breaker"
	"github.com/cascadehq/cascade/gateway/fallback"
	"github.com/cascadehq/cascade/gateway/health"
	"github.com/cascadehq/cascade/gateway/limit"
	"github.com/cascadehq/cascade/gateway/retry"
	"github.com/cascadehq/cascade/internal/regfile"
	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

// Defaults for timeouts left at zero. They follow Envoy (connect 5 s, route
// timeout 15 s); the response-header timeout defaults to the total, like a
// proxy with only a request timeout.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultTotalTimeout   = 15 * time.Second
)

// Config is a gateway: where it listens, its upstreams and its routes. The
// same type is read by `cascade gateway --config FILE` and, from a scenario
// file's gateway section, without upstream targets (those are the
// scenario's fake upstreams).
type Config struct {
	// Listen is host:port (default 127.0.0.1:0, a kernel-chosen port).
	Listen string `yaml:"listen,omitempty" json:"listen,omitempty"`
	// AdminListen serves Prometheus metrics at /metrics. It must be a
	// loopback address: metrics name every upstream and route. Empty: no
	// admin listener.
	AdminListen string `yaml:"admin_listen,omitempty" json:"admin_listen,omitempty"`
	// Upstreams carry what the gateway does per upstream: balancing,
	// breaker, limits, health checks, outlier ejection. Standalone, each
	// also lists its target URLs; in a scenario the targets are the
	// upstream's replicas and an entry is needed only to configure it.
	Upstreams []Upstream `yaml:"upstreams,omitempty" json:"upstreams,omitempty"`
	// Routes are matched by longest path prefix.
	Routes []Route `yaml:"routes" json:"routes"`
}

// UpstreamTargets is the former name of Upstream.
//
// Deprecated: use Upstream.
type UpstreamTargets = Upstream

// Upstream is one upstream as the gateway sees it. Every section left out
// is off: no breaker, no limits, no health checks, no ejection; balancing
// is round robin.
type Upstream struct {
	Name string `yaml:"name" json:"name"`
	// Targets are base URLs such as http://127.0.0.1:9001 (standalone only).
	Targets []string `yaml:"targets,omitempty" json:"targets,omitempty"`
	// Weights of the targets (or replicas), in order, for the weighted
	// policies; missing ones are 1.
	Weights []int `yaml:"weights,omitempty" json:"weights,omitempty"`
	// Balance picks the replica of each attempt.
	Balance balance.Config `yaml:"balance,omitempty" json:"balance,omitempty"`
	// Breaker is a Resilience4j circuit breaker over the whole upstream.
	Breaker *breaker.Config `yaml:"breaker,omitempty" json:"breaker,omitempty"`
	// Limits is the bulkhead: Envoy's circuit-breaker thresholds.
	Limits *Limits `yaml:"limits,omitempty" json:"limits,omitempty"`
	// HealthCheck actively checks every replica; failing ones get no traffic.
	HealthCheck *health.Config `yaml:"health_check,omitempty" json:"health_check,omitempty"`
	// Outlier ejects replicas that fail in a row (passive health).
	Outlier *health.OutlierConfig `yaml:"outlier,omitempty" json:"outlier,omitempty"`
}

// Limits is an upstream's bulkhead: requests in flight and waiting (see
// package limit) and open connections.
type Limits struct {
	limit.Config `yaml:",inline"`
	// MaxConnections caps the connections open to the upstream's replicas
	// together. A request that needs a new connection at the cap is shed
	// at once (503 overflow, reason max_connections), as Envoy counts
	// upstream_cx_overflow. Zero: no cap.
	MaxConnections int `yaml:"max_connections,omitempty" json:"max_connections,omitempty"`
}

// Route sends requests whose path starts with Path to Upstream.
type Route struct {
	Path     string   `yaml:"path" json:"path"`
	Upstream string   `yaml:"upstream" json:"upstream"`
	Timeouts Timeouts `yaml:"timeouts,omitempty" json:"timeouts,omitempty"`
	// Retries retries failed attempts (Envoy's retry policy and budget).
	// Left out: one attempt per request.
	Retries *retry.Config `yaml:"retries,omitempty" json:"retries,omitempty"`
	// RateLimit is a token bucket over the route's requests; beyond it the
	// gateway answers 429 rate_limited.
	RateLimit *limit.RateConfig `yaml:"rate_limit,omitempty" json:"rate_limit,omitempty"`
	// Fallback answers for the upstream when it fails.
	Fallback *Fallback `yaml:"fallback,omitempty" json:"fallback,omitempty"`
	// Propagate lists what the gateway adds to each request it sends
	// upstream: request_id (X-Request-Id, generated when the client sent
	// none), forwarded_for (the client's address appended to
	// X-Forwarded-For), attempt (X-Cascade-Attempt) and deadline
	// (X-Cascade-Deadline-Ms, the attempt's remaining budget). Left out:
	// all four, as Envoy adds its request ID and expected-timeout headers
	// by default; cascade's own upstreams read them to count attempts and
	// to stop work nobody waits for any more. [none] adds nothing, as
	// nginx's plain proxy_pass: a client's own X-Request-Id and
	// X-Forwarded-For then pass unchanged. Each header costs the upstream
	// one more to parse (the four together: ~2.5 µs per request in Go's
	// net/http server, bench/GATEWAY.md).
	Propagate []string `yaml:"propagate,omitempty" json:"propagate,omitempty"`
}

// What a route can add to the requests it sends upstream (Route.Propagate).
const (
	PropagateRequestID    = "request_id"
	PropagateForwardedFor = "forwarded_for"
	PropagateAttempt      = "attempt"
	PropagateDeadline     = "deadline"
	PropagateNone         = "none"
)

var propagations = []string{PropagateRequestID, PropagateForwardedFor, PropagateAttempt, PropagateDeadline}

// Timeouts of a route. Zero values take the defaults above.
type Timeouts struct {
	// Connect bounds establishing a connection to a replica.
	Connect units.Duration `yaml:"connect,omitempty" json:"connect,omitempty" zero:"default"`
	// ResponseHeader bounds the wait for the replica's response headers after
	// the request was sent, per attempt: the "read timeout" that most
	// gateways expose. Default: the total.
	ResponseHeader units.Duration `yaml:"response_header,omitempty" json:"response_header,omitempty" zero:"default"`
	// Idle bounds the wait between two reads of the response body once
	// its headers were forwarded; the client connection is then cut (the
	// status was already sent). Zero: only the total bounds the body.
	Idle units.Duration `yaml:"idle,omitempty" json:"idle,omitempty"`
	// Total bounds the whole exchange, every attempt, backoff and the body
	// included.
	Total units.Duration `yaml:"total,omitempty" json:"total,omitempty" zero:"default"`
	// PerTry bounds each attempt until its response headers. It must be
	// shorter than the total (Envoy silently ignores a per-try timeout
	// that is not; cascade refuses it). Zero: none.
	PerTry units.Duration `yaml:"per_try,omitempty" json:"per_try,omitempty"`
}

// Effective returns the timeouts with defaults filled in.
func (t Timeouts) Effective() Timeouts {
	if t.Connect == 0 {
		t.Connect = units.Duration(DefaultConnectTimeout)
	}
	if t.Total == 0 {
		t.Total = units.Duration(DefaultTotalTimeout)
	}
	if t.ResponseHeader == 0 {
		t.ResponseHeader = t.Total
	}
	return t
}

// Fallback conditions, the values of Fallback.On.
const (
	// OnBreakerOpen: the upstream's breaker refused the request.
	OnBreakerOpen = "breaker_open"
	// OnUnavailable: the bulkhead shed it, or no replica was available.
	OnUnavailable = "unavailable"
	// OnTimeout: a gateway timeout (total, per try, response header).
	OnTimeout = "timeout"
	// OnError: the upstream answered 5xx, or could not be reached, reset
	// the connection or answered garbage.
	OnError = "error"
)

var fallbackConditions = []string{OnBreakerOpen, OnUnavailable, OnTimeout, OnError}

// Fallback answers for a failed upstream: from the cache of its last good
// answers when it has one for the request, otherwise with the static
// answer. Every fallback answer is marked (X-Cascade-Fallback and the
// cause fallback).
type Fallback struct {
	// Cache keeps good answers to GET and HEAD (200s) for TTL and serves
	// them for failures up to stale_if_error after.
	Cache *fallback.CacheConfig `yaml:"cache,omitempty" json:"cache,omitempty"`
	// Static is a fixed answer.
	Static *fallback.StaticConfig `yaml:"static,omitempty" json:"static,omitempty"`
	// On lists when to fall back: breaker_open, unavailable, timeout,
	// error. Default: all four.
	On []string `yaml:"on,omitempty" json:"on,omitempty"`
}

// Validate checks the config; paths in errors are relative to the config.
// replicas maps each scenario upstream to its replica count: routes and
// upstream sections must name one of them, and upstream sections must not
// list targets. With replicas nil the config stands alone: every upstream
// lists its targets.
func (c *Config) Validate(replicas map[string]int) []yamlfile.FieldError {
	var errs []yamlfile.FieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, yamlfile.Fieldf(path, format, args...))
	}
	standalone := replicas == nil
	known := map[string]int{} // upstream → number of targets/replicas
	for n, r := range replicas {
		known[n] = r
	}
	if c.AdminListen != "" {
		if err := CheckLoopback(c.AdminListen); err != nil {
			add("admin_listen", "%v", err)
		}
	}
	if standalone && c.Listen != "" {
		// A scenario's gateway.listen is checked with the scenario's other
		// addresses. Standalone, a malformed one only failed at the listen,
		// after every other error had been fixed.
		if err := checkListen(c.Listen); err != nil {
			add("listen", "%v", err)
		}
	}
	seenUp := map[string]bool{}
	for i, u := range c.Upstreams {
		p := fmt.Sprintf("upstreams[%d]", i)
		switch {
		case u.Name == "":
			add(p+".name", "an upstream needs a name")
		case seenUp[u.Name]:
			add(p+".name", "upstream %q is declared twice", u.Name)
		case !standalone && replicas[u.Name] == 0:
			add(p+".name", "unknown upstream %q (declared: %s)", u.Name, names(replicas))
		}
		seenUp[u.Name] = true
		if standalone {
			if len(u.Targets) == 0 {
				add(p+".targets", "upstream %q needs at least one target URL", u.Name)
			}
			for j, t := range u.Targets {
				if _, err := targetAddr(t); err != nil {
					add(fmt.Sprintf("%s.targets[%d]", p, j), "%v", err)
				}
			}
			known[u.Name] = len(u.Targets)
		} else if len(u.Targets) > 0 {
			add(p+".targets", "in a scenario the targets of %q are its replicas: remove targets", u.Name)
		}
		if n := known[u.Name]; len(u.Weights) > n && n > 0 {
			add(p+".weights", "%d weights for %d replicas/targets", len(u.Weights), n)
		}
		for j, w := range u.Weights {
			if w < 1 || w > balance.MaxWeight {
				add(fmt.Sprintf("%s.weights[%d]", p, j), "a weight must be 1..%d (a relative share), got %d", balance.MaxWeight, w)
			}
		}
		errs = append(errs, sub(p+".balance", u.Balance.Validate())...)
		if u.Breaker != nil {
			errs = append(errs, sub(p+".breaker", u.Breaker.Validate())...)
		}
		if u.Limits != nil {
			errs = append(errs, sub(p+".limits", u.Limits.Config.Validate())...)
			if u.Limits.MaxConnections < 0 {
				add(p+".limits.max_connections", "must not be negative, got %d", u.Limits.MaxConnections)
			}
		}
		if u.HealthCheck != nil {
			errs = append(errs, sub(p+".health_check", u.HealthCheck.Validate())...)
		}
		if u.Outlier != nil {
			errs = append(errs, sub(p+".outlier", u.Outlier.Validate())...)
		}
	}
	if len(c.Routes) == 0 {
		add("routes", "at least one route is needed")
	}
	seen := map[string]bool{}
	budgets := map[string]int{} // upstream → index of the first route with retries
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		if !strings.HasPrefix(r.Path, "/") {
			add(p+".path", "path %q must start with /", r.Path)
		}
		if seen[r.Path] {
			add(p+".path", "path %q has two routes", r.Path)
		}
		seen[r.Path] = true
		if _, ok := known[r.Upstream]; !ok {
			add(p+".upstream", "unknown upstream %q (declared: %s)", r.Upstream, names(known))
		}
		errs = append(errs, r.validateTimeouts(p)...)
		if r.Retries != nil {
			errs = append(errs, sub(p+".retries", r.Retries.Validate())...)
			if j, ok := budgets[r.Upstream]; ok {
				o := c.Routes[j].Retries
				if o.BudgetPercent != r.Retries.BudgetPercent || o.MinRetryConcurrency != r.Retries.MinRetryConcurrency {
					add(p+".retries", "routes %s and %s send to upstream %q, whose retry budget they share (as Envoy keeps it per cluster): give both the same budget_percent and min_retry_concurrency",
						c.Routes[j].Path, r.Path, r.Upstream)
				}
			} else {
				budgets[r.Upstream] = i
			}
		}
		if r.RateLimit != nil {
			errs = append(errs, sub(p+".rate_limit", r.RateLimit.Validate())...)
		}
		for j, v := range r.Propagate {
			switch {
			case v == PropagateNone && len(r.Propagate) > 1:
				add(fmt.Sprintf("%s.propagate[%d]", p, j), "%q cannot be combined with other values", v)
			case v != PropagateNone && !contains(propagations, v):
				add(fmt.Sprintf("%s.propagate[%d]", p, j), "unknown value %q: expected none or any of %s", v, strings.Join(propagations, ", "))
			}
		}
		if f := r.Fallback; f != nil {
			if f.Cache == nil && f.Static == nil {
				add(p+".fallback", "a fallback needs cache, static or both")
			}
			if f.Cache != nil {
				errs = append(errs, sub(p+".fallback.cache", f.Cache.Validate())...)
			}
			if f.Static != nil {
				errs = append(errs, sub(p+".fallback.static", f.Static.Validate())...)
			}
			for j, on := range f.On {
				if !contains(fallbackConditions, on) {
					add(fmt.Sprintf("%s.fallback.on[%d]", p, j), "unknown condition %q: expected one of %s", on, strings.Join(fallbackConditions, ", "))
				}
			}
		}
	}
	return errs
}

func (r *Route) validateTimeouts(p string) []yamlfile.FieldError {
	var errs []yamlfile.FieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, yamlfile.Fieldf(path, format, args...))
	}
	for _, d := range []struct {
		name string
		v    units.Duration
	}{{"connect", r.Timeouts.Connect}, {"response_header", r.Timeouts.ResponseHeader}, {"idle", r.Timeouts.Idle},
		{"total", r.Timeouts.Total}, {"per_try", r.Timeouts.PerTry}} {
		if d.v < 0 {
			add(p+".timeouts."+d.name, "must not be negative, got %v", d.v)
		}
	}
	t := r.Timeouts.Effective()
	if t.ResponseHeader > t.Total {
		add(p+".timeouts.response_header", "response_header %s is longer than total %s: it can never fire", t.ResponseHeader, t.Total)
	}
	if r.Timeouts.Connect != 0 && t.Connect > t.Total { // the default (5s) gives way to a shorter total
		add(p+".timeouts.connect", "connect %s is longer than total %s: it can never fire", t.Connect, t.Total)
	}
	if r.Retries != nil && r.Retries.PerTryTimeout != 0 {
		if r.Timeouts.PerTry != 0 {
			add(p+".retries.per_try_timeout", "the per-try timeout is set twice: keep timeouts.per_try")
		}
	}
	if r.Retries != nil && r.Retries.HedgeOnPerTryTimeout && r.perTry() == 0 {
		add(p+".retries.hedge_on_per_try_timeout", "needs a per-try timeout (timeouts.per_try): a hedge starts when it fires, and without one nothing does")
	}
	if pt := r.perTry(); pt != 0 && pt >= t.Total {
		path := p + ".timeouts.per_try"
		if r.Timeouts.PerTry == 0 {
			path = p + ".retries.per_try_timeout"
		}
		add(path, "per-try timeout %s is not shorter than the total %s: a first attempt that times out would leave no time to retry (Envoy ignores such a per-try timeout silently; cascade refuses it)",
			pt, t.Total)
	}
	return errs
}

// perTry is the route's per-try timeout, from timeouts.per_try or its alias
// retries.per_try_timeout.
func (r *Route) perTry() units.Duration {
	if r.Timeouts.PerTry != 0 {
		return r.Timeouts.PerTry
	}
	if r.Retries != nil {
		return r.Retries.PerTryTimeout
	}
	return 0
}

// sub turns a component's validation error (yamlfile.Errors with paths
// relative to the component) into field errors under prefix.
func sub(prefix string, err error) []yamlfile.FieldError {
	if err == nil {
		return nil
	}
	var es yamlfile.Errors
	if errors.As(err, &es) {
		out := make([]yamlfile.FieldError, 0, len(es))
		for _, e := range es {
			p := prefix
			if e.Path != "" {
				p += "." + e.Path
			}
			out = append(out, yamlfile.FieldError{Path: p, Msg: e.Msg})
		}
		return out
	}
	return []yamlfile.FieldError{{Path: prefix, Msg: err.Error()}}
}

// targetAddr checks a target URL and returns its host:port.
func targetAddr(t string) (string, error) {
	u, err := url.Parse(t)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return "", fmt.Errorf("target %q must be an http:// URL with a host", t)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return "", fmt.Errorf("target %q must be a bare http://host:port: the gateway forwards the request's own path", t)
	}
	host := u.Host
	if port := u.Port(); port == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		// url.Parse takes any digits: 99999 or 0 only failed at the
		// first request, every request a 502 upstream_reset.
		return "", fmt.Errorf("target %q: port must be 1-65535", t)
	}
	return host, nil
}

// checkListen checks the syntax of a listen address (whether it is on
// loopback is CheckLocal's).
func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: expected host:port such as 127.0.0.1:8080", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port must be 0-65535", addr)
	}
	return nil
}

// CheckLoopback accepts only host:port on a loopback address: the admin
// listener serves metrics that name every upstream and route.
func CheckLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: expected host:port such as 127.0.0.1:9901", addr)
	}
	if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" {
		return fmt.Errorf("%q: the admin listener binds to loopback only (127.0.0.0/8, ::1)", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port must be 0-65535", addr)
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

func names[V any](m map[string]V) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	if len(out) == 0 {
		return "none"
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// LoadConfig reads a standalone gateway config file; errors name
// file:line:column.
func LoadConfig(path string, allowRemote bool) (Config, error) {
	c, doc, err := ReadConfig(path)
	if err != nil {
		return Config{}, err
	}
	errs := c.Validate(nil)
	if !allowRemote {
		errs = append(errs, c.CheckLocal()...)
	}
	if errs := doc.Position("$", errs); len(errs) > 0 {
		return Config{}, errs
	}
	return c, nil
}

// ReadConfig decodes a standalone gateway config file without validating
// it, for a caller that changes it (command-line flags) before validating
// the whole once; doc locates the errors of what came from the file.
func ReadConfig(path string) (Config, *yamlfile.Doc, error) {
	data, err := regfile.Read(path, regfile.MaxConfig)
	if err != nil {
		return Config{}, nil, err
	}
	var c Config
	doc, err := yamlfile.Decode(path, data, &c)
	if err != nil {
		return Config{}, doc, err
	}
	return c, doc, nil
}

// CheckLocal reports every target and the listen address that is not on
// loopback. cascade sends traffic to loopback only unless its user says
// otherwise (--allow-remote): a standalone gateway's targets are where it
// sends, and its listener is where others could reach it from.
func (c *Config) CheckLocal() []yamlfile.FieldError {
	var errs []yamlfile.FieldError
	if c.Listen != "" && checkListen(c.Listen) == nil && !loopbackHost(c.Listen) { // a malformed one is Validate's
		msg := fmt.Sprintf("%q is not a loopback address: cascade listens on 127.0.0.0/8 or ::1 unless you pass --allow-remote", c.Listen)
		if port, ok := strings.CutPrefix(c.Listen, ":"); ok {
			// Go's ":8080" is every interface, the shape people type
			// from habit: say so, and what to write for loopback.
			msg += fmt.Sprintf(" (%q listens on every interface; write 127.0.0.1:%s)", c.Listen, port)
		}
		errs = append(errs, yamlfile.Fieldf("listen", "%s", msg))
	}
	for i, u := range c.Upstreams {
		for j, t := range u.Targets {
			if a, err := targetAddr(t); err == nil && !loopbackHost(a) {
				errs = append(errs, yamlfile.Fieldf(fmt.Sprintf("upstreams[%d].targets[%d]", i, j),
					"%s is not a loopback address: cascade sends traffic only to 127.0.0.0/8 or ::1 unless you pass --allow-remote", t))
			}
		}
	}
	return errs
}

// loopbackHost reports whether host:port names a loopback host.
func loopbackHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// Single is a config with one route "/" to one upstream over targets: the
// shorthand of `cascade gateway --upstream URL [--upstream URL...]`.
func Single(listen string, targets ...string) Config {
	return Config{
		Listen:    listen,
		Upstreams: []Upstream{{Name: "upstream", Targets: targets}},
		Routes:    []Route{{Path: "/", Upstream: "upstream"}},
	}
}

// Features that Enable switches on with their defaults, for measuring what
// each costs (`cascade gateway --enable`).
var Features = []string{"breaker", "retries", "limits", "outlier", "cache", "p2c"}

// Enable switches a feature on, with its defaults, on every upstream and
// route of c that does not configure it already.
func (c *Config) Enable(feature string) error {
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		switch feature {
		case "breaker":
			if u.Breaker == nil {
				u.Breaker = &breaker.Config{}
			}
		case "limits":
			if u.Limits == nil {
				u.Limits = &Limits{}
			}
		case "outlier":
			if u.Outlier == nil {
				u.Outlier = &health.OutlierConfig{}
			}
		case "p2c":
			u.Balance.Policy = "p2c_ewma"
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		switch feature {
		case "retries":
			if r.Retries == nil {
				r.Retries = &retry.Config{}
			}
		case "cache":
			if r.Fallback == nil {
				r.Fallback = &Fallback{Cache: &fallback.CacheConfig{}}
			}
		}
	}
	if !contains(Features, feature) {
		return fmt.Errorf("unknown feature %q: expected one of %s", feature, strings.Join(Features, ", "))
	}
	return nil
}

// Package health decides which endpoints of an upstream receive traffic, in
// two ways Envoy has taught its users:
//
//   - active checks: every interval, GET path on each endpoint; after
//     unhealthy_threshold failures in a row it is marked unhealthy
//     (health.down), after healthy_threshold successes healthy again
//     (health.up). A new endpoint added unhealthy needs one success only,
//     as in Envoy, so a scaled-out replica joins as soon as it answers.
//     Each check carries X-Cascade-Health-Check, so cascade's fake
//     upstreams count it apart from the traffic.
//   - passive outlier detection: the proxy reports every response; after
//     consecutive_5xx (or consecutive_gateway_failure) in a row an endpoint
//     is ejected for base_ejection_time × the number of times it has been
//     ejected (outlier.eject), then returns by itself (outlier.uneject).
//     At most max_ejection_percent of the endpoints are out at once.
//
// Both only mark balance.Endpoint values; the balancer's policies skip what
// is marked.
package health

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cascadehq/cascade/gateway/balance"
	"github.com/cascadehq/cascade/gateway/internal/emit"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/upstreamheader"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

// Config is an upstream's active health check as a scenario writes it.
type Config struct {
	// Interval between two checks of an endpoint. Default 5s.
	Interval units.Duration `yaml:"interval" zero:"default"`
	// Timeout of one check. Default 1s; at most the interval.
	Timeout units.Duration `yaml:"timeout" zero:"default"`
	// Path requested with GET. Default "/": every server answers it. A
	// status in 200..299 passes (Envoy accepts 200 only; a health endpoint
	// answering 204 is common enough that refusing it would surprise).
	Path string `yaml:"path"`
	// HealthyThreshold is the number of passing checks in a row that marks
	// an unhealthy endpoint healthy. Default 2.
	HealthyThreshold int `yaml:"healthy_threshold" zero:"default"`
	// UnhealthyThreshold is the number of failing checks in a row that marks
	// a healthy endpoint unhealthy. Default 3.
	UnhealthyThreshold int `yaml:"unhealthy_threshold" zero:"default"`
}

// Defaults.
const (
	DefaultInterval           = 5 * time.Second
	DefaultTimeout            = time.Second
	DefaultPath               = "/"
	DefaultHealthyThreshold   = 2
	DefaultUnhealthyThreshold = 3
)

func (c Config) withDefaults() Config {
	if c.Interval == 0 {
		c.Interval = units.Duration(DefaultInterval)
	}
	if c.Timeout == 0 {
		c.Timeout = units.Duration(min(DefaultTimeout, c.Interval.D()))
	}
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if c.HealthyThreshold == 0 {
		c.HealthyThreshold = DefaultHealthyThreshold
	}
	if c.UnhealthyThreshold == 0 {
		c.UnhealthyThreshold = DefaultUnhealthyThreshold
	}
	return c
}

// Validate reports every problem at once, each naming its field.
func (c Config) Validate() error {
	var errs yamlfile.Errors
	bad := func(field, format string, args ...any) {
		errs = append(errs, &yamlfile.Error{Path: field, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Interval < 0 {
		bad("interval", "must not be negative, got %v", c.Interval)
	}
	if c.Timeout < 0 {
		bad("timeout", "must not be negative, got %v", c.Timeout)
	}
	if d := c.withDefaults(); c.Timeout > 0 && d.Timeout > d.Interval {
		bad("timeout", "(%v) must not exceed interval (%v): checks would pile up", d.Timeout, d.Interval)
	}
	if c.Path != "" && !strings.HasPrefix(c.Path, "/") {
		bad("path", "must start with /, got %q", c.Path)
	}
	if c.HealthyThreshold < 0 {
		bad("healthy_threshold", "must be at least 1, got %d", c.HealthyThreshold)
	}
	if c.UnhealthyThreshold < 0 {
		bad("unhealthy_threshold", "must be at least 1, got %d", c.UnhealthyThreshold)
	}
	return errs.Err()
}

// Checker runs active health checks against every endpoint of a balancer,
// including endpoints added while it runs.
type Checker struct {
	cfg    Config
	set    *balance.Balancer
	client *http.Client
	em     emit.Emitter

	mu    sync.Mutex
	state map[*balance.Endpoint]*checkState
}

type checkState struct {
	seen      bool // checked at least once
	successes int  // in a row
	failures  int  // in a row
}

type options struct {
	sink   event.Sink
	clock  *event.Clock
	target string
	client *http.Client
}

// Option configures a Checker or Detector beyond its Config.
type Option func(*options)

// WithEvents sends health and outlier events to sink, stamped on clock.
func WithEvents(sink event.Sink, clock *event.Clock) Option {
	return func(o *options) { o.sink, o.clock = sink, clock }
}

// WithTarget names the upstream; events target "upstream[addr]".
func WithTarget(name string) Option { return func(o *options) { o.target = name } }

// WithClient sets the HTTP client for checks (its Timeout is not used: each
// check has its own deadline). Default: a client of its own, keeping
// connections alive between checks as Envoy does.
func WithClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// NewChecker returns a checker for the endpoints of set.
func NewChecker(cfg Config, set *balance.Balancer, opts ...Option) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil // a check goes to its endpoint, never through $HTTP_PROXY
		o.client = &http.Client{Transport: tr}
	}
	// A check asks the endpoint itself: a redirect is its answer (a 3xx,
	// which fails the check, as in Envoy), never a new destination, which
	// could be off loopback.
	cl := *o.client
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	o.client = &cl
	return &Checker{cfg: cfg.withDefaults(), set: set, client: o.client,
		em: emit.New(o.sink, o.clock, o.target), state: map[*balance.Endpoint]*checkState{}}, nil
}

// Run checks every endpoint at once and then every interval until ctx ends;
// it returns ctx's error. Call CheckAll first when traffic must wait for the
// first verdict.
func (c *Checker) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Interval.D())
	defer t.Stop()
	for {
		c.CheckAll(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// CheckAll checks every endpoint once, concurrently, and returns when all
// checks are done (within the timeout).
func (c *Checker) CheckAll(ctx context.Context) {
	eps := c.set.Endpoints()
	c.prune(eps)
	var wg sync.WaitGroup
	for _, ep := range eps {
		wg.Go(func() { c.check(ctx, ep) })
	}
	wg.Wait()
}

// prune forgets endpoints that left the set.
func (c *Checker) prune(eps []*balance.Endpoint) {
	live := make(map[*balance.Endpoint]bool, len(eps))
	for _, e := range eps {
		live[e] = true
	}
	c.mu.Lock()
	for e := range c.state {
		if !live[e] {
			delete(c.state, e)
		}
	}
	c.mu.Unlock()
}

func (c *Checker) check(ctx context.Context, ep *balance.Endpoint) {
	reason := c.probe(ctx, ep)
	if ctx.Err() != nil {
		return // the run is ending: no verdict
	}
	ok := reason == ""

	c.mu.Lock()
	st := c.state[ep]
	if st == nil {
		st = &checkState{}
		c.state[ep] = st
	}
	first := !st.seen
	st.seen = true
	var ev event.Event
	var send bool
	if ok {
		st.successes++
		st.failures = 0
		// A new endpoint that starts unhealthy needs one success (Envoy).
		if !ep.Healthy() && (st.successes >= c.cfg.HealthyThreshold || first) {
			ep.SetHealthy(true)
			ev = c.em.EventFor(c.name(ep), "health.up", map[string]any{"addr": ep.Addr(), "successes": st.successes})
			send = true
		}
	} else {
		st.failures++
		st.successes = 0
		if ep.Healthy() && st.failures >= c.cfg.UnhealthyThreshold {
			ep.SetHealthy(false)
			ev = c.em.EventFor(c.name(ep), "health.down", map[string]any{"addr": ep.Addr(), "failures": st.failures, "reason": reason})
			send = true
		} else if !ep.Healthy() && first {
			// A new endpoint that fails its first check stays out; say so,
			// or a replica that never came up leaves no trace.
			ev = c.em.EventFor(c.name(ep), "health.down", map[string]any{"addr": ep.Addr(), "failures": st.failures, "reason": reason})
			send = true
		}
	}
	c.mu.Unlock()
	if send {
		c.em.Send(ev)
	}
}

func (c *Checker) name(ep *balance.Endpoint) string {
	if t := c.em.Target(); t != "" {
		return t + "[" + ep.Addr() + "]"
	}
	return ep.Addr()
}

// probe makes one check and returns why it failed, or "".
func (c *Checker) probe(ctx context.Context, ep *balance.Endpoint) string {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout.D())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ep.Addr()+c.cfg.Path, nil)
	if err != nil {
		return "bad request: " + err.Error()
	}
	req.Header.Set("User-Agent", "cascade-health-check")
	// The mark a fake upstream reads to keep the probe out of its traffic
	// counts; the user agent is for people reading an upstream's logs.
	req.Header.Set(upstreamheader.HealthCheck, "1")
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "timeout"
		}
		return "error: " + err.Error()
	}
	// Drain a little so the connection can be reused, then drop the rest.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Sprintf("status %d", resp.StatusCode)
	}
	return ""
}

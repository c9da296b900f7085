package plan

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/results/verdict"
)

// layerTimeout is one declared timeout with where it was declared.
type layerTimeout struct {
	layer string
	what  string // "client_timeout", "route / total", "route / per_try_timeout × 3 + backoff"
	d     time.Duration
	path  string // YAML path, for positioned warnings
	// rung marks the timeout a slow answer hits first at its layer (what
	// the latency ladder tests).
	rung  bool
	route string // the route (gateway layers)
	// upstream is the upstream the timeout belongs to (upstream and db
	// layers), "" when it applies to all.
	upstream string
}

// layers collects the declared timeout cascade, outermost first: the
// client's timeout, the gateway's per route (response_header and total; a
// per-try timeout once routes have retries), and whatever the upstreams
// declare of their own (their timeout, their database's). The dynamic
// cascade objective and the latency ladder read it.
func (c *compiler) layers() {
	add := func(name string, causes []cause.Cause, rung bool, ds ...time.Duration) {
		var l *verdict.Layer
		for i := range c.p.Layers {
			if c.p.Layers[i].Name == name {
				l = &c.p.Layers[i]
			}
		}
		if l == nil {
			c.p.Layers = append(c.p.Layers, verdict.Layer{Name: name, Causes: causes})
			l = &c.p.Layers[len(c.p.Layers)-1]
		}
		for _, d := range ds {
			if d <= 0 {
				continue
			}
			if rung && (l.Rung == 0 || d < l.Rung) {
				l.Rung = d
			}
			dup := false
			for _, have := range l.Timeouts {
				dup = dup || have == d
			}
			if !dup {
				l.Timeouts = append(l.Timeouts, d)
			}
		}
		sort.Slice(l.Timeouts, func(i, j int) bool { return l.Timeouts[i] < l.Timeouts[j] })
	}
	add("client", verdict.TimeoutCauses["client"], true, c.clientTimeout())
	for _, lt := range c.declaredTimeouts() {
		if lt.layer != "" { // the retry budget is a sum, not a layer
			add(lt.layer, verdict.TimeoutCauses[lt.layer], lt.rung, lt.d)
		}
	}
	// A route that retries shows the client an upstream's or database's
	// timeout after k attempts that each hit it: k × the timeout (plus the
	// backoffs, within the tolerance).
	if n := c.maxAttempts(); n > 1 {
		for _, lt := range c.upstreamTimeouts() {
			for k := 2; k <= n; k++ {
				add(lt.layer, verdict.TimeoutCauses[lt.layer], false, time.Duration(k)*lt.d)
			}
		}
	}
	// Keep the cascade's order, outermost first, dropping empty layers.
	var out []verdict.Layer
	for _, name := range verdict.LayerOrder {
		for _, l := range c.p.Layers {
			if l.Name == name && len(l.Timeouts) > 0 {
				out = append(out, l)
			}
		}
	}
	c.p.Layers = out
}

// Layers is the timeout cascade q's configuration declares as it stands.
// The latency ladder changes a rung's plan (it lifts the layers inside the
// one tested), and that changes the cascade: without its per-try timeout,
// a route's response_header timeout bounds each attempt, and the client
// sees it after k retried attempts.
func Layers(q *Plan) []verdict.Layer {
	cp := *q
	cp.Layers = nil
	c := &compiler{p: &cp}
	c.layers()
	return cp.Layers
}

// declaredTimeouts lists the timeouts below the client, per route.
// Per-try timeouts and upstream/database timeouts are read by
// routeTimeouts and upstreamTimeouts (timeouts_ext.go), which follow what
// the gateway and upstream configs declare.
func (c *compiler) declaredTimeouts() []layerTimeout {
	var out []layerTimeout
	if c.p.GatewayContainer != nil {
		// A proxy in a container answers at the timeout the scenario
		// gave it; the upstreams' own timeouts are beneath it as beneath
		// cascade's gateway.
		return append(c.containerTimeouts(), c.upstreamTimeouts()...)
	}
	if c.p.Gateway == nil {
		return out
	}
	for i, r := range c.p.Gateway.Routes {
		t := r.Timeouts.Effective()
		p := fmt.Sprintf("$.gateway.routes[%d].timeouts", i)
		out = append(out,
			layerTimeout{layer: "gateway", what: "response_header", d: t.ResponseHeader.D(), path: p + ".response_header", route: r.Path, rung: true},
			layerTimeout{layer: "gateway", what: "total", d: t.Total.D(), path: p + ".total", route: r.Path})
		out = append(out, c.routeTimeouts(i)...)
	}
	out = append(out, c.upstreamTimeouts()...)
	return out
}

// cascadeLint is the static half of the timeout cascade: it proves the
// ordering client > gateway (total ≥ per try × attempts + backoff) >
// upstream > database along every route, and reports each violation at the
// inner timeout's position with both values and what will happen.
func (c *compiler) cascadeLint() {
	client := c.clientTimeout()
	ups := c.upstreamTimeouts()
	if c.p.Gateway == nil {
		return
	}
	for i, r := range c.p.Gateway.Routes {
		t := r.Timeouts.Effective()
		p := fmt.Sprintf("$.gateway.routes[%d].timeouts", i)
		if t.Total.D() >= client {
			c.warnf(p+".total", "route %s: gateway total timeout %s is not shorter than the client timeout %s: the client gives up first and never sees the gateway's 504",
				r.Path, t.Total, client)
		}
		// What one attempt may wait for: the per-try timeout if any, else
		// the response-header timeout.
		attempt, attemptWhat := t.ResponseHeader.D(), "response_header timeout"
		for _, lt := range c.routeTimeouts(i) {
			switch lt.what {
			case "per_try_timeout":
				attempt, attemptWhat = lt.d, "per-try timeout"
			case "retry budget":
				if attemptWhat != "per-try timeout" {
					break // without a per-try timeout an attempt may take the whole total by design
				}
				// per_try × attempts + backoff must fit in the total, or the
				// last attempts are cut by the total deadline.
				if lt.d > t.Total.D() {
					c.warnf(lt.path, "route %s: %s = %s exceeds the gateway total timeout %s: the later attempts are cut short by the total deadline",
						r.Path, lt.route, lt.d, t.Total)
				}
			}
		}
		if attemptWhat != "per-try timeout" {
			continue // the upstream's and database's order against the response_header timeout is databaseLint's
		}
		for _, u := range ups {
			if u.upstream != r.Upstream || u.layer != "upstream" {
				continue
			}
			if u.d >= attempt {
				c.warnf(u.path, "upstream %s: its own timeout %s is not shorter than the per-try timeout %s of route %s: every attempt is cut by the gateway first, so the upstream's answer (upstream_timeout) never reaches the client and the gateway retries work that is still running",
					u.upstream, u.d, attempt, r.Path)
			}
		}
	}
}

// Chain describes the declared cascade, outermost first, for people:
// "client 3s > gateway 500ms/1s > upstream 400ms > db 200ms".
func Chain(p *Plan) string {
	parts := make([]string, 0, len(p.Layers))
	for _, l := range p.Layers {
		ds := make([]string, len(l.Timeouts))
		for i, d := range l.Timeouts {
			ds[i] = verdict.FormatDuration(d)
		}
		parts = append(parts, l.Name+" "+strings.Join(ds, "/"))
	}
	return strings.Join(parts, " > ")
}

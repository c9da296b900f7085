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
	add := func(name string, causes []cause.Cause, ds ...time.Duration) {
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
	add("client", verdict.TimeoutCauses["client"], c.p.Load.ClientTimeout)
	for _, lt := range c.declaredTimeouts() {
		add(lt.layer, verdict.TimeoutCauses[lt.layer], lt.d)
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

// declaredTimeouts lists the timeouts below the client, per route.
// Per-try timeouts and upstream/database timeouts are read by
// routeTimeouts and upstreamTimeouts (timeouts_ext.go), which follow what
// the gateway and upstream configs declare.
func (c *compiler) declaredTimeouts() []layerTimeout {
	var out []layerTimeout
	if c.p.Gateway == nil {
		return out
	}
	for i, r := range c.p.Gateway.Routes {
		t := r.Timeouts.Effective()
		p := fmt.Sprintf("$.gateway.routes[%d].timeouts", i)
		out = append(out,
			layerTimeout{layer: "gateway", what: "response_header", d: t.ResponseHeader.D(), path: p + ".response_header", route: r.Path},
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
	client := c.p.Load.ClientTimeout
	ups := c.upstreamTimeouts()
	if c.p.Gateway == nil {
		c.lintInner(ups)
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
				// per_try × attempts + backoff must fit in the total, or the
				// last attempts are cut by the total deadline.
				if lt.d > t.Total.D() {
					c.warnf(lt.path, "route %s: %s = %s exceeds the gateway total timeout %s: the later attempts are cut short by the total deadline",
						r.Path, lt.route, lt.d, t.Total)
				}
			}
		}
		for _, u := range ups {
			if u.upstream != "" && u.upstream != r.Upstream {
				continue
			}
			if u.layer == "upstream" && u.d >= attempt {
				c.warnf(u.path, "upstream %s: its own timeout %s is not shorter than the gateway's %s %s on route %s: the gateway gives up first, so the upstream's answer (and its cause) never reaches the client",
					u.upstream, u.d, attemptWhat, attempt, r.Path)
			}
			if u.layer == "db" && u.d >= attempt {
				c.warnf(u.path, "upstream %s: database %s %s is not shorter than the gateway's %s %s on route %s: the gateway gives up before the database does",
					u.upstream, u.what, u.d, attemptWhat, attempt, r.Path)
			}
		}
	}
	c.lintInner(ups)
}

// lintInner checks upstream > database for each upstream.
func (c *compiler) lintInner(ups []layerTimeout) {
	byUp := map[string][]layerTimeout{}
	for _, u := range ups {
		byUp[u.upstream] = append(byUp[u.upstream], u)
	}
	for name, ts := range byUp {
		var own *layerTimeout
		for i := range ts {
			if ts[i].layer == "upstream" {
				own = &ts[i]
			}
		}
		if own == nil {
			continue
		}
		for _, t := range ts {
			if t.layer == "db" && t.d >= own.d {
				c.warnf(t.path, "upstream %s: database %s %s is not shorter than the upstream's own timeout %s: the upstream gives up first and answers upstream_timeout instead of db_timeout",
					name, t.what, t.d, own.d)
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

package plan

import (
	"fmt"
	"time"

	"github.com/cascadehq/cascade/gateway/retry"
)

// routeTimeouts lists route i's retry timeouts: its per-try timeout (layer
// per_try, from timeouts.per_try or retries.per_try_timeout), the multiples
// of a per-attempt timeout the client may see after retries and, when it
// retries, the whole retry budget (per try × max_attempts + the largest
// backoffs, "retry budget") that cascadeLint checks against the total.
func (c *compiler) routeTimeouts(i int) []layerTimeout {
	r := c.p.Gateway.Routes[i]
	p := fmt.Sprintf("$.gateway.routes[%d]", i)
	pt, ptPath := r.Timeouts.PerTry.D(), p+".timeouts.per_try"
	if pt == 0 && r.Retries != nil {
		pt, ptPath = r.Retries.PerTryTimeout.D(), p+".retries.per_try_timeout"
	}
	var out []layerTimeout
	if pt > 0 {
		out = append(out, layerTimeout{layer: "per_try", what: "per_try_timeout", d: pt, path: ptPath, route: r.Path, rung: true})
	}
	if r.Retries == nil {
		return out
	}
	attempts := r.Retries.MaxAttempts
	if attempts == 0 {
		attempts = retry.DefaultMaxAttempts
	}
	if attempts < 2 {
		return out
	}
	// The client sees a per-try timeout after the last attempt: k attempts
	// that each timed out (plus the backoffs, within the tolerance), for
	// every k the budget and the deadline may have allowed.
	total := r.Timeouts.Effective().Total.D()
	for k := 2; k <= attempts && pt > 0 && time.Duration(k)*pt < total; k++ {
		out = append(out, layerTimeout{layer: "per_try", what: fmt.Sprintf("%d × per_try_timeout", k), d: time.Duration(k) * pt, path: ptPath, route: r.Path})
	}
	// Without a per-try timeout shorter than it, the response-header
	// timeout bounds each attempt: a route that retries timeouts shows the
	// client the gateway's 504 after k attempts that each hit it.
	if rh := r.Timeouts.Effective().ResponseHeader.D(); rh > 0 && (pt == 0 || rh < pt) && r.Retries.RetriesTimeouts() {
		for k := 2; k <= attempts && time.Duration(k)*rh < total; k++ {
			out = append(out, layerTimeout{layer: "gateway", what: fmt.Sprintf("%d × response_header", k), d: time.Duration(k) * rh,
				path: p + ".timeouts.response_header", route: r.Path})
		}
	}
	per, perWhat := pt, "per try"
	if per == 0 {
		per, perWhat = r.Timeouts.Effective().ResponseHeader.D(), "response_header"
	}
	base := r.Retries.BackoffBase.D()
	if base == 0 {
		base = retry.DefaultBackoffBase
	}
	ceil := r.Retries.BackoffMax.D()
	if ceil == 0 {
		ceil = 10 * base
	}
	var backoff time.Duration
	for n := 1; n < attempts; n++ {
		b := ceil
		if n-1 < 62 {
			if x := base << (n - 1); x > 0 && x < ceil {
				b = x
			}
		}
		backoff += b
	}
	out = append(out, layerTimeout{layer: "", what: "retry budget", d: time.Duration(attempts)*per + backoff,
		path: p + ".retries.max_attempts", route: fmt.Sprintf("%s %s × %d attempts + up to %s of backoff", perWhat, per, attempts, backoff)})
	return out
}

// upstreamTimeouts lists the timeouts the upstreams declare themselves: a
// database upstream's own deadline (layer upstream) and its database's
// statement and lock timeouts (layer db). Plain fake upstreams declare
// none. Their mutual order is databaseLint's; cascadeLint adds the per-try
// timeout, which databaseLint does not know.
func (c *compiler) upstreamTimeouts() []layerTimeout {
	var out []layerTimeout
	for _, u := range c.p.Upstreams {
		if u.Database == nil {
			continue
		}
		p := upstreamPath(c.f, u.Name) + ".database"
		db := u.Database.Config.WithDefaults()
		out = append(out,
			layerTimeout{layer: "upstream", what: "upstream_timeout", d: db.UpstreamTimeout.D(), path: p + ".upstream_timeout", upstream: u.Name, rung: true},
			layerTimeout{layer: "db", what: "statement_timeout", d: db.StatementTimeout.D(), path: p + ".statement_timeout", upstream: u.Name, rung: true},
			layerTimeout{layer: "db", what: "lock_timeout", d: db.LockTimeout.D(), path: p + ".lock_timeout", upstream: u.Name})
	}
	return out
}

// maxAttempts is the most attempts any route makes (1 without retries).
func (c *compiler) maxAttempts() int {
	n := 1
	if c.p.Gateway == nil {
		return n
	}
	for _, r := range c.p.Gateway.Routes {
		if r.Retries == nil {
			continue
		}
		a := r.Retries.MaxAttempts
		if a == 0 {
			a = retry.DefaultMaxAttempts
		}
		n = max(n, a)
	}
	return n
}

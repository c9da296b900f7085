package plan

// routeTimeouts lists route i's retry timeouts: its per-try timeout (layer
// per_try) and, when it retries, the whole retry budget. Routes carry no
// retry policy yet (the gateway's retries land with its wiring).
func (c *compiler) routeTimeouts(i int) []layerTimeout {
	_ = i
	return nil
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
func (c *compiler) maxAttempts() int { return 1 }

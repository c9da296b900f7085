package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/evloop"
)

// TestOnLoops runs the gateway's behaviour tests again with the fast path
// on an event loop (Options.Loops): the loop must not change what any
// request, timeout, retry, breaker, limit, fallback or shutdown does.
//
// One loop: the loop keeps a P while it waits, and these tests run their
// upstreams and clients in the same process (GOMAXPROCS is 2 in CI). With
// one loop, BulkheadOverflow's "queue wait long enough" also shows that a
// request waiting in the pending queue does not stall the loop: the
// request holding the slot is a task of the same loop.
func TestOnLoops(t *testing.T) {
	if _, err := evloop.New(); err != nil {
		t.Skip(err)
	}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"ErrorMap", TestErrorMap},
		{"ConnectTimeout", TestConnectTimeout},
		{"ClientGoneIs499Event", TestClientGoneIs499Event},
		{"NoReplicasAndNoRoute", TestNoReplicasAndNoRoute},
		{"RoutingDeadlineAndRoundRobin", TestRoutingDeadlineAndRoundRobin},
		{"AccessLogAndRequestID", TestAccessLogAndRequestID},
		{"ClientGoneAccessLog", TestClientGoneAccessLog},
		{"IdleTimeoutBetweenBodyReads", TestIdleTimeoutBetweenBodyReads},
		{"Metrics", TestMetrics},
		{"TerminationEventsThinned", TestTerminationEventsThinned},
		{"Propagate", TestPropagate},
		{"BreakerOpensServesFallbackAndCloses", TestBreakerOpensServesFallbackAndCloses},
		{"BreakerProbeAbandonedByItsClient", TestBreakerProbeAbandonedByItsClient},
		{"StaticFallbackConditions", TestStaticFallbackConditions},
		{"BulkheadOverflow", TestBulkheadOverflow},
		{"RateLimit", TestRateLimit},
		{"OutlierEjection", TestOutlierEjection},
		{"HealthChecksAndSetTargets", TestHealthChecksAndSetTargets},
		{"PanicThresholdSpreadsOverFailingChecks", TestPanicThresholdSpreadsOverFailingChecks},
		{"SetTargetsUnderLoad", TestSetTargetsUnderLoad},
		{"RetryAttemptHeaderAndAmplification", TestRetryAttemptHeaderAndAmplification},
		{"RetryBudgetLimitsAmplification", TestRetryBudgetLimitsAmplification},
		{"RetryBudgetCountsARequestOnce", TestRetryBudgetCountsARequestOnce},
		{"RetryIdempotency", TestRetryIdempotency},
		{"RetryBodyBound", TestRetryBodyBound},
		{"NoAttemptAfterTotalDeadline", TestNoAttemptAfterTotalDeadline},
		{"PerTryTimeoutCause", TestPerTryTimeoutCause},
		{"RetryPrefersAnotherReplica", TestRetryPrefersAnotherReplica},
		{"RetryDoesNotWaitForADiscardedBody", TestRetryDoesNotWaitForADiscardedBody},
		{"HedgeOnPerTryTimeout", TestHedgeOnPerTryTimeout},
		{"HedgeBothSlow", TestHedgeBothSlow},
		{"HedgeBudget", TestHedgeBudget},
		{"HedgeNonIdempotent", TestHedgeNonIdempotent},
		{"HedgeDropsARetriableAnswer", TestHedgeDropsARetriableAnswer},
		{"HedgeTotalTimeout", TestHedgeTotalTimeout},
		{"HedgeBulkheadFull", TestHedgeBulkheadFull},
		{"HedgeClientGone", TestHedgeClientGone},
		{"HedgeCancelledWhileDialing", TestHedgeCancelledWhileDialing},
		{"HedgeLosersCancelledBeforeTheBody", TestHedgeLosersCancelledBeforeTheBody},
		{"HedgeGroupsReusedUnderLateLosers", TestHedgeGroupsReusedUnderLateLosers},
		{"RetryAfterWaitEndsWhenTheClientLeaves", TestRetryAfterWaitEndsWhenTheClientLeaves},
		{"RetryAfter", TestRetryAfter},
		{"ResponseFraming", TestResponseFraming},
		{"Pipelining", TestPipelining},
		{"Handoff", TestHandoff},
		{"StalePooledConnection", TestStalePooledConnection},
		{"NoHiddenResend", TestNoHiddenResend},
		{"SlowClientsCut", TestSlowClientsCut},
		{"CloseIsPrompt", TestCloseIsPrompt},
		{"IdleConnectionClosedWith408", TestIdleConnectionClosedWith408},
		{"ShutdownDrains", TestShutdownDrains},
		{"ShutdownTimeoutCuts", TestShutdownTimeoutCuts},
	} {
		t.Run(tc.name, tc.fn)
	}
}

// loopsFor is the number of event loops a test's gateway runs on.
func loopsFor(t testing.TB) int {
	if strings.HasPrefix(t.Name(), "TestOnLoops/") {
		return 1
	}
	return 0
}

// TestBackoffOnALoop: a retry backoff on a loop waits its time, in the
// loop (other tasks go on meanwhile), and ends at shutdown.
func TestBackoffOnALoop(t *testing.T) {
	l, err := evloop.New()
	if err != nil {
		t.Skip(err)
	}
	g := &Gateway{}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	defer g.cancel()
	type result struct {
		took time.Duration
		err  error
	}
	res := make(chan result, 2)
	ticks := make(chan int, 1)
	l.Go(func(task *evloop.Task) {
		ex := &exchange{g: g, task: task, resp: noClient{}} // a client that stays
		start := time.Now()
		err := ex.sleep(80 * time.Millisecond)
		res <- result{time.Since(start), err}
		start = time.Now()
		err = ex.sleep(time.Hour) // until the gateway closes
		res <- result{time.Since(start), err}
	})
	l.Go(func(task *evloop.Task) {
		n := 0
		for range 5 {
			task.Sleep(context.Background(), 10*time.Millisecond)
			n++
		}
		ticks <- n
	})
	l.Close()
	done := make(chan struct{})
	go func() { l.Run(g.ctx); close(done) }()
	r := <-res
	if r.err != nil || r.took < 80*time.Millisecond || r.took > time.Second {
		t.Fatalf("an 80 ms backoff took %v (%v)", r.took, r.err)
	}
	if n := <-ticks; n != 5 {
		t.Fatalf("the other task ticked %d times during the backoff, want 5", n)
	}
	time.Sleep(20 * time.Millisecond)
	g.cancel()
	r = <-res
	if r.err != errShutdown || r.took > time.Second {
		t.Fatalf("a backoff at shutdown: %v after %v, want errShutdown at once", r.err, r.took)
	}
	<-done
}

// TestLoopsResolveNames: a loop dials and listens on numeric addresses
// only (it must not wait on a resolver); names in the config are resolved
// before, once.
func TestLoopsResolveNames(t *testing.T) {
	if _, err := evloop.New(); err != nil {
		t.Skip(err)
	}
	up := serve(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "named") })
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(up, "http://"))
	cfg := one(Route{}, Upstream{}, "http://localhost:"+port)
	cfg.Listen = "localhost:0"
	g := gw(t, cfg, nil, func(o *Options) { o.Loops = 2 })
	if !strings.HasPrefix(g.Addr(), "127.0.0.1:") {
		t.Fatalf("listening on %s, want localhost resolved to 127.0.0.1", g.Addr())
	}
	c := client(5 * time.Second)
	for i := range 10 { // new connections: both loops' listeners and pools
		c.CloseIdleConnections()
		if a := call(t, c, "GET", g.URL()+"/", ""); a.status != 200 || a.body != "named" {
			t.Fatalf("request %d: %+v", i, a)
		}
	}
}

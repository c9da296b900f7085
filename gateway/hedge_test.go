package gateway

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/gateway/limit"
	"github.com/cascadehq/cascade/gateway/retry"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
)

// slowReplica is an upstream that answers after d, and notes when a
// request's context ended first (the gateway cancelled the attempt).
type slowReplica struct {
	url       string
	rec       *recorder
	mu        sync.Mutex
	cancelled []time.Time
}

func newSlowReplica(t *testing.T, d time.Duration, body string) *slowReplica {
	s := &slowReplica{}
	s.url, s.rec = recording(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				s.mu.Lock()
				s.cancelled = append(s.cancelled, time.Now())
				s.mu.Unlock()
				return
			}
		}
		w.Write([]byte(body))
	})
	return s
}

func (s *slowReplica) cancels() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.cancelled...)
}

// hedgeRoute: per-try 50 ms in a total of 2 s, two attempts, retried on
// timeouts (reset), hedged when hedge is set.
func hedgeRoute(hedge bool) Route {
	return Route{Timeouts: Timeouts{Total: du(2 * time.Second), PerTry: du(50 * time.Millisecond)},
		Retries: &retry.Config{RetryOn: []string{retry.OnReset}, MaxAttempts: 2, BackoffBase: du(time.Millisecond),
			HedgeOnPerTryTimeout: hedge}}
}

// One replica slow (300 ms), one fast. Hedged: the first attempt goes to
// the slow one, its per-try timeout starts the hedge on the fast one, the
// client gets the fast answer at about the per-try timeout, and the slow
// attempt is cancelled only then (it was not at its per-try timeout). Not
// hedged: the per-try timeout cancels the slow attempt and the retry
// answers, counted as a retry.
func TestHedgeOnPerTryTimeout(t *testing.T) {
	for _, hedge := range []bool{true, false} {
		name := map[bool]string{true: "hedged", false: "retried"}[hedge]
		t.Run(name, func(t *testing.T) {
			slow := newSlowReplica(t, 300*time.Millisecond, "slow")
			fast := newSlowReplica(t, 0, "fast")
			var log syncBuffer
			var mem event.Memory
			g := gw(t, one(hedgeRoute(hedge), Upstream{Balance: balanceCfg("round_robin")}, slow.url, fast.url), &mem,
				func(o *Options) { o.AccessLog = &log })
			c := client(5 * time.Second)
			// Round robin sends the first request to the slow replica.
			start := time.Now()
			a := call(t, c, "GET", g.URL()+"/x", "")
			if a.status != 200 || a.body != "fast" {
				t.Fatalf("got %+v, want the fast replica's answer", a)
			}
			t.Logf("answered in %v", a.elapsed)
			within(t, "request", a.elapsed, ms(45), ms(250))
			if slow.rec.count() != 1 || fast.rec.count() != 1 {
				t.Fatalf("slow replica saw %d, fast %d; want 1 each", slow.rec.count(), fast.rec.count())
			}
			if at := fast.rec.all()[0]; at.attempt != "2" || at.at.Sub(start) < ms(45) {
				t.Errorf("fast replica got attempt %q %v after the request, want attempt 2 after the per-try timeout",
					at.attempt, at.at.Sub(start))
			}
			eventually(t, "the slow attempt to be cancelled", func() bool { return len(slow.cancels()) == 1 })
			// Cancelled when the fast answer came (hedged) or at the per-try
			// timeout (retried): both near 50 ms, never at 300 ms.
			if d := slow.cancels()[0].Sub(start); d > ms(250) {
				t.Errorf("slow attempt cancelled %v after the request", d)
			}
			st := g.Stats()
			r, u := st.Routes[0], st.Upstreams[0]
			if u.Attempts != 2 || u.Requests != 1 {
				t.Errorf("upstream stats %+v: want 1 request, 2 attempts", u)
			}
			g.Close()
			l := log.lines(t)[0]
			if hedge {
				if r.Hedges != 1 || r.Retries != 0 {
					t.Errorf("route stats %+v: want 1 hedge, no retry", r)
				}
				if n := len(eventsOf(&mem, "retry.hedge")); n != 1 {
					t.Errorf("%d retry.hedge events, want 1", n)
				}
				if l["hedges"] != 1.0 || l["answered"] != 2.0 || l["attempts"] != 2.0 ||
					l["replica"] != strings.TrimPrefix(fast.url, "http://") {
					t.Errorf("access log %v: want attempts 2, hedges 1, answered 2 by the fast replica", l)
				}
				// The slow replica is not charged: its attempt was cancelled.
				for _, rs := range u.Replicas {
					if rs.Failures != 0 {
						t.Errorf("replica %s has %d failures, want none", rs.Addr, rs.Failures)
					}
				}
			} else {
				if r.Hedges != 0 || r.Retries != 1 {
					t.Errorf("route stats %+v: want 1 retry, no hedge", r)
				}
				if _, ok := l["hedges"]; ok {
					t.Errorf("access log %v has hedges", l)
				}
			}
		})
	}
}

// Both replicas slow: the first answer wins, at about the slow latency,
// not the per-try timeout plus the slow latency, and the other attempt is
// cancelled. Without hedging both attempts time out: 504 per_try_timeout.
func TestHedgeBothSlow(t *testing.T) {
	a1 := newSlowReplica(t, 300*time.Millisecond, "a")
	a2 := newSlowReplica(t, 300*time.Millisecond, "b")
	g := gw(t, one(hedgeRoute(true), Upstream{Balance: balanceCfg("round_robin")}, a1.url, a2.url), nil)
	a := call(t, client(5*time.Second), "GET", g.URL()+"/", "")
	if a.status != 200 || a.body != "a" {
		t.Fatalf("got %+v, want the first attempt's answer", a)
	}
	t.Logf("hedged: answered in %v", a.elapsed)
	within(t, "hedged request", a.elapsed, ms(290), ms(340)+ms(200))
	eventually(t, "the second attempt to be cancelled", func() bool { return len(a2.cancels()) == 1 })
	if r := g.Stats().Routes[0]; r.Hedges != 1 {
		t.Errorf("route stats %+v: want 1 hedge", r)
	}

	g2 := gw(t, one(hedgeRoute(false), Upstream{Balance: balanceCfg("round_robin")}, a1.url, a2.url), nil)
	b := call(t, client(5*time.Second), "GET", g2.URL()+"/", "")
	if b.status != 504 || b.cause != cause.PerTryTimeout.String() {
		t.Fatalf("without hedging got %+v, want 504 per_try_timeout", b)
	}
	within(t, "retried request", b.elapsed, ms(95), ms(280))
}

// A hedge takes a slot of the retry budget: with one slot (1%, floored at
// min_retry_concurrency 1), a second request whose per-try timeout fires
// while the first one's hedge is in flight is not hedged, and waits for
// its only attempt.
func TestHedgeBudget(t *testing.T) {
	s := newSlowReplica(t, 250*time.Millisecond, "ok")
	rt := hedgeRoute(true)
	rt.Retries.BudgetPercent, rt.Retries.MinRetryConcurrency = 0.01, 1
	var mem event.Memory
	g := gw(t, one(rt, Upstream{}, s.url), &mem)
	c := client(5 * time.Second)
	var wg sync.WaitGroup
	res := make([]answer, 2)
	for i := range 2 {
		wg.Go(func() { res[i] = call(t, c, "GET", g.URL()+"/", "") })
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	for i, a := range res {
		if a.status != 200 {
			t.Errorf("request %d: %+v", i, a)
		}
	}
	r := g.Stats().Routes[0]
	if r.Hedges != 1 || r.BudgetExhausted != 1 {
		t.Errorf("route stats %+v: want 1 hedge, 1 refused by the budget", r)
	}
	if n := s.rec.count(); n != 3 {
		t.Errorf("upstream saw %d attempts, want 3", n)
	}
	ev := eventsOf(&mem, "retry.budget_exhausted")
	if len(ev) != 1 || ev[0].Attrs["hedge"] != true {
		t.Errorf("budget events %v", ev)
	}
}

// A POST is not hedged (nor retried once sent): its per-try timeout ends
// it. With retry_non_idempotent it is hedged.
func TestHedgeNonIdempotent(t *testing.T) {
	slow := newSlowReplica(t, 300*time.Millisecond, "slow")
	fast := newSlowReplica(t, 0, "fast")
	g := gw(t, one(hedgeRoute(true), Upstream{Balance: balanceCfg("round_robin")}, slow.url, fast.url), nil)
	a := call(t, client(5*time.Second), "POST", g.URL()+"/", "order=1")
	if a.status != 504 || a.cause != cause.PerTryTimeout.String() {
		t.Fatalf("POST got %+v, want 504 per_try_timeout", a)
	}
	if r := g.Stats().Routes[0]; r.Hedges != 0 || slow.rec.count()+fast.rec.count() != 1 {
		t.Errorf("route stats %+v, %d attempts: want no hedge, 1 attempt", r, slow.rec.count()+fast.rec.count())
	}

	rt := hedgeRoute(true)
	rt.Retries.RetryNonIdempotent = true
	g2 := gw(t, one(rt, Upstream{Balance: balanceCfg("round_robin")}, slow.url, fast.url), nil)
	b := call(t, client(5*time.Second), "POST", g2.URL()+"/", "order=2")
	if b.status != 200 || b.body != "fast" {
		t.Fatalf("POST with retry_non_idempotent got %+v, want the fast answer", b)
	}
	if all := fast.rec.all(); len(all) != 1 || all[0].body != "order=2" {
		t.Errorf("hedged POST reached the fast replica as %+v, want its body", all)
	}
	if r := g2.Stats().Routes[0]; r.Hedges != 1 {
		t.Errorf("route stats %+v: want 1 hedge", r)
	}
}

// A retriable answer while another attempt is in flight is dropped, and
// the other one waited for (Envoy's rule): the first attempt's late 503
// does not reach the client, the hedge's 200 does. The 503 is its
// replica's failure; the hedge is no retry.
func TestHedgeDropsARetriableAnswer(t *testing.T) {
	failing, _ := recording(t, func(w http.ResponseWriter, r *http.Request, n int) {
		time.Sleep(100 * time.Millisecond)
		w.WriteHeader(503)
	})
	slowOK := newSlowReplica(t, 200*time.Millisecond, "ok")
	rt := hedgeRoute(true)
	rt.Retries.RetryOn = []string{retry.OnReset, "503"}
	var mem event.Memory
	g := gw(t, one(rt, Upstream{Balance: balanceCfg("round_robin")}, failing, slowOK.url), &mem)
	a := call(t, client(5*time.Second), "GET", g.URL()+"/", "")
	if a.status != 200 || a.body != "ok" {
		t.Fatalf("got %+v, want the hedge's answer", a)
	}
	// The failure event names the attempt that failed and its replica,
	// not the hedge started after it on the other replica.
	if ev := eventsOf(&mem, "attempt.fail"); len(ev) != 1 || ev[0].Attrs["attempt"] != 1 || ev[0].Attrs["replica"] != g.Stats().Upstreams[0].Replicas[0].Addr {
		t.Errorf("attempt.fail events %v, want attempt 1 on %s", ev, g.Stats().Upstreams[0].Replicas[0].Addr)
	}
	within(t, "request", a.elapsed, ms(240), ms(600))
	st := g.Stats()
	if r := st.Routes[0]; r.Hedges != 1 || r.Retries != 0 {
		t.Errorf("route stats %+v: want 1 hedge, no retry", r)
	}
	if f := st.Upstreams[0].Replicas[0].Failures; f != 1 {
		t.Errorf("the 503's replica has %d failures, want 1", f)
	}
}

// Hedged attempts are not ended by their per-try timeout but by the
// total one: two hanging replicas answer 504 gateway_timeout at the
// total, after max_attempts attempts, both cancelled.
func TestHedgeTotalTimeout(t *testing.T) {
	a1 := newSlowReplica(t, time.Hour, "")
	a2 := newSlowReplica(t, time.Hour, "")
	rt := hedgeRoute(true)
	rt.Timeouts.Total = du(300 * time.Millisecond)
	g := gw(t, one(rt, Upstream{Balance: balanceCfg("round_robin")}, a1.url, a2.url), nil)
	a := call(t, client(5*time.Second), "GET", g.URL()+"/", "")
	if a.status != 504 || a.cause != cause.GatewayTimeout.String() {
		t.Fatalf("got %+v, want 504 gateway_timeout", a)
	}
	within(t, "request", a.elapsed, ms(290), ms(700))
	eventually(t, "both attempts to be cancelled", func() bool { return len(a1.cancels()) == 1 && len(a2.cancels()) == 1 })
	// Refused: the second attempt's hedge (max_attempts), and, when an
	// attempt's own deadline is seen before the exchange's, its retry
	// (deadline), as without hedging.
	if r := g.Stats().Routes[0]; r.Hedges != 1 || r.RetriesDenied < 1 || r.RetriesDenied > 2 {
		t.Errorf("route stats %+v: want 1 hedge, 1 or 2 refusals", r)
	}
}

// A hedge does not wait in the bulkhead: with the only slot held by the
// first attempt, there is no hedge (and none counted), and the request
// waits for its one attempt.
func TestHedgeBulkheadFull(t *testing.T) {
	s := newSlowReplica(t, 200*time.Millisecond, "ok")
	g := gw(t, one(hedgeRoute(true), Upstream{Limits: &Limits{Config: limit.Config{MaxRequests: 1}}}, s.url), nil)
	a := call(t, client(5*time.Second), "GET", g.URL()+"/", "")
	if a.status != 200 {
		t.Fatalf("got %+v", a)
	}
	within(t, "request", a.elapsed, ms(190), ms(600))
	if r := g.Stats().Routes[0]; r.Hedges != 0 || s.rec.count() != 1 {
		t.Errorf("route stats %+v, %d attempts: want no hedge, 1 attempt", r, s.rec.count())
	}
	if b := g.routes[0].policy.Budget(); b.RetriesInFlight() != 0 {
		t.Errorf("%d retries in flight after the request", b.RetriesInFlight())
	}
}

// A client that leaves ends the hedged attempts too: both are cancelled,
// not left running to the total timeout.
func TestHedgeClientGone(t *testing.T) {
	a1 := newSlowReplica(t, time.Hour, "")
	a2 := newSlowReplica(t, time.Hour, "")
	rt := hedgeRoute(true)
	rt.Timeouts.Total = du(10 * time.Second)
	g := gw(t, one(rt, Upstream{Balance: balanceCfg("round_robin")}, a1.url, a2.url), nil)
	start := time.Now()
	if a := call(t, client(150*time.Millisecond), "GET", g.URL()+"/", ""); a.err == nil {
		t.Fatalf("got %+v, want the client's timeout", a)
	}
	eventually(t, "both attempts to be cancelled", func() bool { return len(a1.cancels()) == 1 && len(a2.cancels()) == 1 })
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("attempts cancelled after %v, want soon after the client left", d)
	}
}

// A hedge cancelled while it still dials lets go at once. Its dial to a
// replica that never answers the SYN waited for the connect timeout after
// the exchange had ended, holding its bulkhead slot, its breaker ticket and
// its replica's in-flight count: under a SYN blackhole, enough of them fill
// the bulkhead.
func TestHedgeCancelledWhileDialing(t *testing.T) {
	slow := newSlowReplica(t, 300*time.Millisecond, "ok")
	rt := hedgeRoute(true)
	rt.Timeouts.Connect = du(1500 * time.Millisecond)
	g := gw(t, one(rt, Upstream{Balance: balanceCfg("round_robin"), Limits: &Limits{Config: limit.Config{MaxRequests: 10}}},
		slow.url, "http://"+unanswered(t)), nil)
	a := call(t, client(5*time.Second), "GET", g.URL()+"/", "")
	if a.status != 200 || a.body != "ok" {
		t.Fatalf("got %+v, want the slow replica's answer", a)
	}
	if r := g.Stats().Routes[0]; r.Hedges != 1 {
		t.Fatalf("route stats %+v: want the hedge sent", r)
	}
	u := g.upList[0]
	deadline := time.Now().Add(500 * time.Millisecond)
	for {
		var inflight int64
		for _, e := range u.bal.Endpoints() {
			inflight += e.InFlight()
		}
		held := u.lim.InFlight()
		if inflight == 0 && held == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("500 ms after the answer the cancelled hedge still holds %d in flight and %d bulkhead slots: its dial was not cut", inflight, held)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The losers are cancelled when the winner's answer is chosen, not once its
// body has been forwarded: the first attempt answers after the hedge has
// gone out, then streams its body for 500 ms; the hedge's replica sees its
// request cancelled at the head, while the body is still coming.
func TestHedgeLosersCancelledBeforeTheBody(t *testing.T) {
	streamer := serve(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond)
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("head "))
		w.(http.Flusher).Flush()
		time.Sleep(500 * time.Millisecond)
		w.Write([]byte("tail"))
	})
	hang := newSlowReplica(t, time.Hour, "")
	g := gw(t, one(hedgeRoute(true), Upstream{Balance: balanceCfg("round_robin")}, streamer, hang.url), nil)
	start := time.Now()
	a := call(t, client(5*time.Second), "GET", g.URL()+"/", "")
	if a.status != 200 || a.body != "head tail" {
		t.Fatalf("got %+v, want the streamed answer", a)
	}
	within(t, "request", a.elapsed, ms(580), ms(1500))
	if r := g.Stats().Routes[0]; r.Hedges != 1 {
		t.Fatalf("route stats %+v: want the hedge sent", r)
	}
	c := hang.cancels()
	if len(c) != 1 {
		t.Fatalf("the hedge's replica saw %d cancellations", len(c))
	}
	if at := c[0].Sub(start); at > 450*time.Millisecond {
		t.Errorf("the losing hedge was cancelled %v in, after the winner's body (its head came at ~100 ms)", at)
	}
}

// Hedged exchanges reuse their group, attempts and request copy
// (hedgeGroups) while losers may still run: many clients at once, hedges
// sent, and losers of both kinds cancelled while they wait (the first
// attempt when its hedge answers, the hedge when the first attempt does).
// Every request must reach the upstream whole and as its own (a group
// reused under a loser would send another request's bytes, or race), and
// every answer must be its request's; the losers settle, handing back
// their budget slots.
func TestHedgeGroupsReusedUnderLateLosers(t *testing.T) {
	var mixed atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Check") != r.URL.Path || string(b) != r.URL.Path {
			mixed.Add(1)
			t.Errorf("upstream got %s with X-Check %q and body %q", r.URL.Path, r.Header.Get("X-Check"), b)
		}
		i, _ := strconv.Atoi(r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:])
		var d time.Duration
		switch first := r.Header.Get(HeaderAttempt) == "1"; {
		case i%3 == 0 && first: // the hedge answers, the first attempt loses
			d = 30 * time.Millisecond
		case i%3 == 1 && first: // the first attempt answers, its hedge loses
			d = 14 * time.Millisecond
		case i%3 == 1:
			d = 30 * time.Millisecond
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		w.Write([]byte("ok " + r.URL.Path))
	}
	rt := hedgeRoute(true)
	rt.Timeouts.PerTry = du(10 * time.Millisecond)
	rt.Retries.BudgetPercent, rt.Retries.MinRetryConcurrency = 1, 100
	rt.Retries.RetryNonIdempotent = true // a POST: its body is pooled too
	g := gw(t, one(rt, Upstream{}, serve(t, h), serve(t, h)), nil)
	c := client(5 * time.Second)
	var wg sync.WaitGroup
	for k := range 8 {
		wg.Go(func() {
			for i := range 30 {
				path := "/r/" + strconv.Itoa(k) + "/" + strconv.Itoa(i)
				a := call(t, c, "POST", g.URL()+path, path, "X-Check", path, "X-Pad", strings.Repeat("p", (k*30+i)%7*100))
				if a.status != 200 || a.body != "ok "+path {
					t.Errorf("%s: got %+v", path, a)
				}
			}
		})
	}
	wg.Wait()
	if n := mixed.Load(); n > 0 {
		t.Errorf("%d requests reached the upstream mixed with another's", n)
	}
	if r := g.Stats().Routes[0]; r.Hedges == 0 {
		t.Errorf("route stats %+v: want hedges sent", r)
	}
	b := g.routes[0].policy.Budget()
	eventually(t, "the losers to hand back their budget slots", func() bool { return b.RetriesInFlight() == 0 })
}

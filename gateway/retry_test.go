package gateway

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascadehq/cascade/gateway/retry"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
)

// Two 503s, then an answer: the client sees the answer; the upstream saw
// three attempts numbered 1, 2, 3, each with the budget left.
func TestRetryAttemptHeaderAndAmplification(t *testing.T) {
	url, rec := recording(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n <= 2 {
			w.WriteHeader(503)
			return
		}
		w.Write([]byte("third time"))
	})
	var mem event.Memory
	g := gw(t, one(Route{Timeouts: Timeouts{Total: du(2 * time.Second)},
		Retries: &retry.Config{RetryOn: []string{"503"}, MaxAttempts: 3, BackoffBase: du(time.Millisecond)}}, Upstream{}, url), &mem)
	a := call(t, client(5*time.Second), "GET", g.URL()+"/x", "")
	if a.status != 200 || a.body != "third time" || a.cause != "" {
		t.Fatalf("got %+v", a)
	}
	got := rec.all()
	if len(got) != 3 {
		t.Fatalf("upstream saw %d attempts, want 3", len(got))
	}
	prev := 2001
	for i, s := range got {
		if s.attempt != strconv.Itoa(i+1) {
			t.Errorf("attempt %d carried %s: %q", i+1, HeaderAttempt, s.attempt)
		}
		dl, err := strconv.Atoi(s.deadline)
		if err != nil || dl > prev || dl < 1500 {
			t.Errorf("attempt %d deadline %q after %d: want decreasing, just under 2000", i+1, s.deadline, prev)
		}
		prev = dl
		if s.reqID == "" || s.reqID != got[0].reqID {
			t.Errorf("attempt %d request id %q, first %q", i+1, s.reqID, got[0].reqID)
		}
	}
	st := g.Stats()
	if u := st.Upstreams[0]; u.Requests != 1 || u.Attempts != 3 {
		t.Errorf("stats %+v: want 1 request, 3 attempts", u)
	}
	if r := st.Routes[0]; r.Retries != 2 {
		t.Errorf("route stats %+v", r)
	}
	if n := len(eventsOf(&mem, "retry.attempt")); n != 2 {
		t.Errorf("%d retry.attempt events, want 2", n)
	}
	if fails := eventsOf(&mem, "attempt.fail"); len(fails) == 0 || fails[0].Attr("cause") != "upstream_error" {
		t.Errorf("attempt.fail events: %v", fails)
	}
}

// A retry budget caps the retries in flight at a share of the active
// requests: a struggling upstream sees its load doubled without one and
// barely more than the original load with one.
func TestRetryBudgetLimitsAmplification(t *testing.T) {
	run := func(budget units.Percent) (received int, exhausted uint64) {
		url, rec := recording(t, func(w http.ResponseWriter, r *http.Request, n int) {
			time.Sleep(150 * time.Millisecond)
			w.WriteHeader(503)
		})
		g := gw(t, one(Route{Timeouts: Timeouts{Total: du(3 * time.Second)}, Retries: &retry.Config{RetryOn: []string{"503"},
			MaxAttempts: 2, BackoffBase: du(time.Millisecond), BudgetPercent: budget, MinRetryConcurrency: 1}}, Upstream{}, url), nil)
		c := client(5 * time.Second)
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() { call(t, c, "GET", g.URL()+"/", "") })
		}
		wg.Wait()
		return rec.count(), g.Stats().Routes[0].BudgetExhausted
	}
	unbounded, _ := run(1) // 100%: as many retries in flight as requests
	if unbounded != 40 {
		t.Errorf("without a budget the upstream saw %d attempts, want 40 (20 requests × 2)", unbounded)
	}
	bounded, exhausted := run(0.01) // 1% of 20 active, floored at 1 retry in flight
	if bounded < 21 || bounded > 24 || exhausted < 16 {
		t.Errorf("with a budget the upstream saw %d attempts (%d retries refused), want 21..24", bounded, exhausted)
	}
}

// At budget_percent 100% ("turns the budget off") a lone request makes
// every attempt it is allowed. Each retry holds one budget slot while it
// is in flight and hands it back before the next retry is decided, so a
// request never counts against itself: with min_retry_concurrency 1 it
// did, and its second retry was refused.
func TestRetryBudgetCountsARequestOnce(t *testing.T) {
	url, rec := recording(t, func(w http.ResponseWriter, r *http.Request, n int) { w.WriteHeader(503) })
	var mem event.Memory
	g := gw(t, one(Route{Timeouts: Timeouts{Total: du(3 * time.Second)}, Retries: &retry.Config{RetryOn: []string{"503"},
		MaxAttempts: 5, BackoffBase: du(time.Millisecond), BudgetPercent: 1, MinRetryConcurrency: 1}}, Upstream{}, url), &mem)
	if a := call(t, client(5*time.Second), "GET", g.URL()+"/", ""); a.status != 503 || a.cause != "upstream_error" {
		t.Fatalf("got %+v, want the upstream's 503 after the last attempt", a)
	}
	if n := rec.count(); n != 5 {
		t.Errorf("upstream saw %d attempts, want 5 (max_attempts)", n)
	}
	if r := g.Stats().Routes[0]; r.Retries != 4 || r.BudgetExhausted != 0 {
		t.Errorf("route stats %+v: want 4 retries, none refused by the budget", r)
	}
	if ev := eventsOf(&mem, "retry.budget_exhausted"); len(ev) != 0 {
		t.Errorf("budget refusals: %v", ev)
	}
	// The last answer is forwarded before the exchange ends: wait for it.
	b := g.routes[0].policy.Budget()
	eventually(t, "the budget to be empty after the request", func() bool {
		return b.RetriesInFlight() == 0 && b.Active() == 0
	})
}

// POST is not retried after it reached the upstream; PUT is, with its body
// sent again; a connect failure is retried even for POST (nothing was
// sent); retry_non_idempotent allows POST.
func TestRetryIdempotency(t *testing.T) {
	url, rec := recording(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.Header.Get(HeaderAttempt) == "1" {
			w.WriteHeader(503)
			return
		}
		w.Write([]byte("ok"))
	})
	cfg := one(Route{Retries: &retry.Config{RetryOn: []string{"503", retry.OnConnectFailure}, MaxAttempts: 2,
		BackoffBase: du(time.Millisecond)}}, Upstream{}, url)
	g := gw(t, cfg, nil)
	c := client(5 * time.Second)
	if a := call(t, c, "POST", g.URL()+"/p", "order=1"); a.status != 503 || a.cause != "upstream_error" {
		t.Errorf("POST: %+v, want the upstream's 503", a)
	}
	if n := rec.count(); n != 1 {
		t.Errorf("POST reached the upstream %d times, want 1", n)
	}
	if a := call(t, c, "PUT", g.URL()+"/p", "v=2"); a.status != 200 {
		t.Errorf("PUT: %+v", a)
	}
	all := rec.all()
	if len(all) != 3 || all[1].body != "v=2" || all[2].body != "v=2" || all[2].method != "PUT" {
		t.Errorf("PUT attempts: %+v", all[1:])
	}

	// Connect failure first (the refused target is picked first by round
	// robin for one of two requests): retried on the other replica.
	okURL, okRec := recording(t, func(w http.ResponseWriter, r *http.Request, n int) { w.Write([]byte("ok")) })
	g2 := gw(t, one(Route{Retries: &retry.Config{MaxAttempts: 2, BackoffBase: du(time.Millisecond)}}, Upstream{}, refused(t), okURL), nil)
	for i := range 4 {
		if a := call(t, c, "POST", g2.URL()+"/p", "x"); a.status != 200 {
			t.Errorf("POST %d after a connect failure: %+v", i, a)
		}
	}
	if okRec.count() != 4 {
		t.Errorf("healthy replica saw %d POSTs, want 4", okRec.count())
	}

	url3, rec3 := recording(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			w.WriteHeader(503)
			return
		}
		w.Write([]byte("ok"))
	})
	g3 := gw(t, one(Route{Retries: &retry.Config{RetryOn: []string{"503"}, MaxAttempts: 2, RetryNonIdempotent: true,
		BackoffBase: du(time.Millisecond)}}, Upstream{}, url3), nil)
	if a := call(t, c, "POST", g3.URL()+"/p", "x"); a.status != 200 || rec3.count() != 2 {
		t.Errorf("POST with retry_non_idempotent: %+v after %d attempts", a, rec3.count())
	}
}

// A body larger than max_replay_body is streamed once and never retried.
func TestRetryBodyBound(t *testing.T) {
	url, rec := recording(t, func(w http.ResponseWriter, r *http.Request, n int) { w.WriteHeader(503) })
	g := gw(t, one(Route{Retries: &retry.Config{RetryOn: []string{"503"}, MaxAttempts: 3, BackoffBase: du(time.Millisecond),
		MaxReplayBody: 16}}, Upstream{}, url), nil)
	c := client(5 * time.Second)
	big := strings.Repeat("b", 100)
	if a := call(t, c, "PUT", g.URL()+"/big", big); a.status != 503 {
		t.Fatalf("got %+v", a)
	}
	if all := rec.all(); len(all) != 1 || all[0].body != big {
		t.Errorf("large PUT: %d attempts, body %d bytes; want 1 attempt with the whole body", len(all), len(all[0].body))
	}
	if a := call(t, c, "PUT", g.URL()+"/small", "tiny"); a.status != 503 {
		t.Fatalf("got %+v", a)
	}
	if all := rec.all(); len(all) != 4 || all[3].body != "tiny" {
		t.Errorf("small PUT: %d attempts in all, want 1 + 3", len(all))
	}
}

// No attempt starts after the total deadline: per-try timeouts of 120 ms
// in a total of 300 ms leave room for three attempts at most.
func TestNoAttemptAfterTotalDeadline(t *testing.T) {
	url, rec := recording(t, hang)
	var mem event.Memory
	g := gw(t, one(Route{Timeouts: Timeouts{Total: du(300 * time.Millisecond), PerTry: du(120 * time.Millisecond)},
		Retries: &retry.Config{MaxAttempts: 10, BackoffBase: du(time.Millisecond)}}, Upstream{}, url), &mem)
	start := time.Now()
	a := call(t, client(5*time.Second), "GET", g.URL()+"/", "")
	if a.status != 504 || a.cause != cause.GatewayTimeout.String() {
		t.Fatalf("got %+v, want 504 gateway_timeout", a)
	}
	within(t, "request", a.elapsed, ms(280), ms(900))
	all := rec.all()
	if len(all) < 2 || len(all) > 3 {
		t.Errorf("%d attempts, want 2 or 3", len(all))
	}
	for i, s := range all {
		if s.at.Sub(start) > 300*time.Millisecond {
			t.Errorf("attempt %d started %v after the request, past the 300ms total", i+1, s.at.Sub(start))
		}
		if dl, _ := strconv.Atoi(s.deadline); dl > 120 || dl <= 0 {
			t.Errorf("attempt %d deadline header %q, want its per-try budget (≤120)", i+1, s.deadline)
		}
	}
	if ev := eventsOf(&mem, "gateway.gateway_timeout"); len(ev) != 1 || ev[0].Attrs["detail"] != "total timeout" {
		t.Errorf("termination events: %v", ev)
	}
}

// A per-try timeout on the last attempt is its own cause.
func TestPerTryTimeoutCause(t *testing.T) {
	url, rec := recording(t, hang)
	for _, tc := range []struct {
		name     string
		retries  *retry.Config
		attempts int
	}{
		{"without retries", nil, 1},
		{"after two attempts", &retry.Config{MaxAttempts: 2, BackoffBase: du(time.Millisecond)}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := rec.count()
			g := gw(t, one(Route{Timeouts: Timeouts{Total: du(3 * time.Second), PerTry: du(150 * time.Millisecond)},
				Retries: tc.retries}, Upstream{}, url), nil)
			a := call(t, client(5*time.Second), "GET", g.URL()+"/", "")
			if a.status != 504 || a.cause != cause.PerTryTimeout.String() {
				t.Fatalf("got %+v, want 504 per_try_timeout", a)
			}
			within(t, "request", a.elapsed, time.Duration(tc.attempts)*ms(140), time.Duration(tc.attempts)*ms(150)+ms(700))
			if n := rec.count() - before; n != tc.attempts {
				t.Errorf("%d attempts, want %d", n, tc.attempts)
			}
		})
	}
}

// A retry goes to another replica when there is one.
func TestRetryPrefersAnotherReplica(t *testing.T) {
	badURL, bad := recording(t, func(w http.ResponseWriter, r *http.Request, n int) { w.WriteHeader(502) })
	goodURL, good := recording(t, func(w http.ResponseWriter, r *http.Request, n int) { w.Write([]byte("ok")) })
	g := gw(t, one(Route{Retries: &retry.Config{RetryOn: []string{retry.OnGatewayError}, MaxAttempts: 2,
		BackoffBase: du(time.Millisecond)}}, Upstream{Balance: balanceCfg("round_robin")}, badURL, goodURL), nil)
	c := client(5 * time.Second)
	for i := range 6 {
		if a := call(t, c, "GET", g.URL()+"/", ""); a.status != 200 {
			t.Fatalf("request %d: %+v", i, a)
		}
	}
	// With two attempts, a retry sent back to the bad replica would have
	// failed the request: every request reached the good one.
	if good.count() != 6 || bad.count() == 0 {
		t.Errorf("bad replica saw %d, good %d; want 6 at the good one", bad.count(), good.count())
	}
}

// A retried 503 or 429 with Retry-After waits what it asks instead of the
// backoff; when that wait would outlast the total timeout the answer is
// forwarded at once; a Retry-After beyond retry_after_max is ignored.
func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     int
		retryAfter func() string
		total      time.Duration
		max        time.Duration
		want       int
		lo, hi     time.Duration
		attempts   int
	}{
		{"seconds", 503, func() string { return "1" }, 3 * time.Second, 0, 200, ms(950), ms(1800), 2},
		{"429", 429, func() string { return "1" }, 3 * time.Second, 0, 200, ms(950), ms(1800), 2},
		{"http date", 503, func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) },
			5 * time.Second, 0, 200, ms(950), ms(2800), 2},
		{"past the total timeout", 503, func() string { return "1" }, 500 * time.Millisecond, 0, 503, 0, ms(300), 1},
		{"beyond retry_after_max", 503, func() string { return "30" }, 3 * time.Second, time.Second, 200, 0, ms(300), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, rec := recording(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					w.Header().Set("Retry-After", tc.retryAfter())
					w.WriteHeader(tc.status)
					return
				}
				w.Write([]byte("ok"))
			})
			var mem event.Memory
			g := gw(t, one(Route{Timeouts: Timeouts{Total: du(tc.total)}, Retries: &retry.Config{RetryOn: []string{"503", "429"},
				MaxAttempts: 2, BackoffBase: du(time.Millisecond), RetryAfterMax: du(tc.max)}}, Upstream{}, url), &mem)
			a := call(t, client(10*time.Second), "GET", g.URL()+"/", "")
			if a.status != tc.want {
				t.Fatalf("got %+v, want %d", a, tc.want)
			}
			t.Logf("answered %d in %v", a.status, a.elapsed)
			within(t, "request", a.elapsed, tc.lo, tc.hi)
			if n := rec.count(); n != tc.attempts {
				t.Errorf("upstream saw %d attempts, want %d", n, tc.attempts)
			}
			if tc.want == 200 && tc.max == 0 {
				if ev := eventsOf(&mem, "retry.attempt"); len(ev) != 1 || ev[0].Attrs["retry_after"] != true {
					t.Errorf("retry.attempt events %v: want one marked retry_after", ev)
				}
			}
		})
	}
}

// A client that leaves while the gateway waits out a Retry-After ends the
// wait: the second attempt is never sent, and the exchange is client_gone
// at once, not when the 3 s wait would have ended.
func TestRetryAfterWaitEndsWhenTheClientLeaves(t *testing.T) {
	url, rec := recording(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(503)
	})
	var mem event.Memory
	g := gw(t, one(Route{Timeouts: Timeouts{Total: du(10 * time.Second)}, Retries: &retry.Config{RetryOn: []string{"503"},
		MaxAttempts: 2, BackoffBase: du(time.Millisecond)}}, Upstream{}, url), &mem)
	start := time.Now()
	if _, err := client(200 * time.Millisecond).Get(g.URL() + "/"); err == nil {
		t.Fatal("the client should have given up during the wait")
	}
	eventually(t, "the exchange to end as client_gone", func() bool { return len(eventsOf(&mem, "gateway.client_gone")) == 1 })
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the exchange ended %v after the request: the 3 s Retry-After was waited out", took)
	}
	time.Sleep(100 * time.Millisecond)
	if n := rec.count(); n != 1 {
		t.Errorf("upstream saw %d attempts, want 1: the retry went out after the client had left", n)
	}
}

// A retried answer whose body is slow is not waited for: the retry goes
// out at once and the connection is closed, as Envoy resets a retried
// stream. Waiting for the body (up to a second, to keep the connection)
// delayed the retry, and with hedging the answer of the hedge beside it.
// A whole small body is still drained and its connection kept.
func TestRetryDoesNotWaitForADiscardedBody(t *testing.T) {
	url, rec := recording(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			w.Header().Set("Content-Length", "10")
			w.WriteHeader(503)
			w.Write([]byte("slow "))
			w.(http.Flusher).Flush()
			select {
			case <-time.After(800 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
			w.Write([]byte("body!"))
			return
		}
		w.Write([]byte("ok"))
	})
	g := gw(t, one(Route{Timeouts: Timeouts{Total: du(3 * time.Second)}, Retries: &retry.Config{RetryOn: []string{"503"},
		MaxAttempts: 2, BackoffBase: du(time.Millisecond)}}, Upstream{}, url), nil)
	a := call(t, client(5*time.Second), "GET", g.URL()+"/", "")
	if a.status != 200 || a.body != "ok" {
		t.Fatalf("got %+v, want the retry's answer", a)
	}
	t.Logf("answered in %v", a.elapsed)
	within(t, "request", a.elapsed, 0, ms(150))
	if n := rec.count(); n != 2 {
		t.Errorf("upstream saw %d attempts, want 2", n)
	}
	// A 503 whose small body came with its head: the retry reuses its
	// connection.
	var mu sync.Mutex
	var peers []string
	n := 0
	url2 := serve(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		k := n
		peers = append(peers, r.RemoteAddr)
		mu.Unlock()
		if k == 1 {
			w.WriteHeader(503)
			w.Write([]byte("busy"))
			return
		}
		w.Write([]byte("ok"))
	})
	g2 := gw(t, one(Route{Timeouts: Timeouts{Total: du(3 * time.Second)}, Retries: &retry.Config{RetryOn: []string{"503"},
		MaxAttempts: 2, BackoffBase: du(time.Millisecond)}}, Upstream{}, url2), nil)
	if a := call(t, client(5*time.Second), "GET", g2.URL()+"/", ""); a.status != 200 {
		t.Fatalf("got %+v, want the retry's answer", a)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(peers) != 2 || peers[0] != peers[1] {
		t.Errorf("the attempts came from %v: want one connection, kept after the whole 503", peers)
	}
}

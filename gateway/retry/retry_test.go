package retry

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
)

func newPolicy(t testing.TB, cfg Config, opts ...Option) (*Policy, *event.Memory) {
	t.Helper()
	var mem event.Memory
	p, err := New(cfg, rand.New(rand.NewPCG(7, 7)), append([]Option{WithEvents(&mem, nil), WithTarget("api")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p, &mem
}

var get = Request{Method: http.MethodGet, Replayable: true}

func TestConditions(t *testing.T) {
	tests := []struct {
		on   []string
		o    Outcome
		want string // matching condition, "" for none
	}{
		{nil, Outcome{Kind: ConnectFailure}, OnConnectFailure},
		{nil, Outcome{Kind: Reset}, OnReset},
		{nil, Outcome{Kind: Timeout}, OnReset},
		{nil, Status(503), ""},
		{[]string{OnConnectFailure}, Outcome{Kind: Reset}, ""},
		{[]string{OnConnectFailure}, Outcome{Kind: Timeout}, ""},
		{[]string{OnReset}, Outcome{Kind: ConnectFailure}, OnReset},
		{[]string{On5xx}, Status(500), On5xx},
		{[]string{On5xx}, Status(599), On5xx},
		{[]string{On5xx}, Status(404), ""},
		{[]string{On5xx}, Outcome{Kind: Timeout}, On5xx},
		{[]string{On5xx}, Outcome{Kind: ConnectFailure}, On5xx},
		{[]string{OnGatewayError}, Status(500), ""},
		{[]string{OnGatewayError}, Status(502), OnGatewayError},
		{[]string{OnGatewayError}, Status(503), OnGatewayError},
		{[]string{OnGatewayError}, Status(504), OnGatewayError},
		{[]string{OnGatewayError}, Outcome{Kind: Reset}, OnGatewayError},
		{[]string{"503"}, Status(503), "503"},
		{[]string{"503"}, Status(502), ""},
		{[]string{"429", On5xx}, Status(429), "429"},
		{[]string{"503", OnGatewayError}, Status(503), "503"}, // the specific status wins
		{[]string{On5xx}, Outcome{Kind: Local, Status: 503}, ""},
		{[]string{On5xx}, Status(200), ""},
	}
	for _, tt := range tests {
		p, _ := newPolicy(t, Config{RetryOn: tt.on})
		if got := p.set.match(tt.o); got != tt.want {
			t.Errorf("retry_on %v, outcome %+v: matched %q, want %q", tt.on, tt.o, got, tt.want)
		}
	}
}

func TestRetriesTimeouts(t *testing.T) {
	for _, tt := range []struct {
		on   []string
		want bool
	}{
		{nil, true}, // DefaultRetryOn has reset
		{[]string{OnReset}, true},
		{[]string{On5xx}, true},
		{[]string{OnGatewayError}, true},
		{[]string{OnConnectFailure}, false},
		{[]string{"503", "504"}, false}, // a status the upstream sent, not the gateway's own timeout
	} {
		if got := (Config{RetryOn: tt.on}).RetriesTimeouts(); got != tt.want {
			t.Errorf("retry_on %v: RetriesTimeouts() = %v, want %v", tt.on, got, tt.want)
		}
	}
}

func TestDecide(t *testing.T) {
	post := Request{Method: http.MethodPost, Replayable: true}
	tests := []struct {
		name    string
		cfg     Config
		attempt int
		req     Request
		o       Outcome
		remain  time.Duration
		want    string // the Decision's Reason
		retry   bool
		event   string
	}{
		{"retriable failure", Config{RetryOn: []string{On5xx}}, 1, get, Status(500), time.Second, On5xx, true, "retry.attempt"},
		{"success", Config{RetryOn: []string{On5xx}}, 1, get, Status(200), time.Second, ReasonNotRetriable, false, ""},
		{"last attempt", Config{RetryOn: []string{On5xx}, MaxAttempts: 3}, 3, get, Status(500), time.Second, ReasonMaxAttempts, false, "retry.denied"},
		{"before last attempt", Config{RetryOn: []string{On5xx}, MaxAttempts: 3}, 2, get, Status(500), time.Second, On5xx, true, "retry.attempt"},
		{"max_attempts 1 never retries", Config{MaxAttempts: 1}, 1, get, Outcome{Kind: Reset}, time.Second, ReasonMaxAttempts, false, "retry.denied"},
		{"POST after a 503", Config{RetryOn: []string{"503"}}, 1, post, Status(503), time.Second, ReasonNotIdempotent, false, "retry.denied"},
		{"POST after a reset", Config{}, 1, post, Outcome{Kind: Reset}, time.Second, ReasonNotIdempotent, false, "retry.denied"},
		{"POST after a connect failure", Config{}, 1, post, Outcome{Kind: ConnectFailure}, time.Second, OnConnectFailure, true, "retry.attempt"},
		{"POST allowed", Config{RetryOn: []string{"503"}, RetryNonIdempotent: true}, 1, post, Status(503), time.Second, "503", true, "retry.attempt"},
		{"PATCH", Config{}, 1, Request{Method: http.MethodPatch, Replayable: true}, Outcome{Kind: Timeout}, time.Second, ReasonNotIdempotent, false, "retry.denied"},
		{"PUT is idempotent", Config{}, 1, Request{Method: http.MethodPut, Replayable: true}, Outcome{Kind: Timeout}, time.Second, OnReset, true, "retry.attempt"},
		{"body not replayable", Config{}, 1, Request{Method: http.MethodPut}, Outcome{Kind: Reset}, time.Second, ReasonBodyNotReplayable, false, "retry.denied"},
		// backoff_max 10ms: any draw is < 10ms, so 10ms left is never enough.
		{"backoff always fits", Config{BackoffBase: units.Duration(10 * time.Millisecond), BackoffMax: units.Duration(10 * time.Millisecond)}, 1, get, Outcome{Kind: Reset}, 10 * time.Millisecond, OnReset, true, "retry.attempt"},
		{"deadline passed", Config{}, 1, get, Outcome{Kind: Reset}, 0, ReasonDeadline, false, "retry.denied"},
		{"deadline negative", Config{}, 1, get, Outcome{Kind: Reset}, -time.Second, ReasonDeadline, false, "retry.denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, mem := newPolicy(t, tt.cfg)
			d := p.Decide(tt.attempt, tt.req, tt.o, tt.remain)
			if d.Reason != tt.want || d.Retry != tt.retry {
				t.Fatalf("decision = %+v, want retry=%v reason=%q", d, tt.retry, tt.want)
			}
			evs := mem.Events()
			if tt.event == "" {
				if len(evs) != 0 {
					t.Fatalf("events = %v, want none", evs)
				}
				return
			}
			if len(evs) != 1 || evs[0].Type != tt.event || evs[0].Target != "api" {
				t.Fatalf("events = %v, want one %s", evs, tt.event)
			}
			if evs[0].Attr("reason") != tt.want {
				t.Errorf("event reason = %q, want %q", evs[0].Attr("reason"), tt.want)
			}
		})
	}
}

// TestDeadlineWithJitter: with 15ms left and backoffs drawn in [0, 20ms),
// about a quarter of draws land past the deadline; every decision must be
// consistent with its backoff.
func TestDeadlineWithJitter(t *testing.T) {
	p, _ := newPolicy(t, Config{BackoffBase: units.Duration(20 * time.Millisecond), MinRetryConcurrency: 1000})
	remaining := 15 * time.Millisecond
	var yes, no int
	for range 2000 {
		d := p.Decide(1, get, Outcome{Kind: Reset}, remaining)
		switch {
		case d.Retry && d.Backoff < remaining:
			yes++
			p.RetryDone()
		case !d.Retry && d.Reason == ReasonDeadline:
			no++
		default:
			t.Fatalf("inconsistent decision %+v with %v left", d, remaining)
		}
	}
	if no < 300 || no > 700 { // expect 500
		t.Errorf("denied for the deadline %d/2000 times, want about 500", no)
	}
}

func TestBackoffBounds(t *testing.T) {
	base, maxB := 25*time.Millisecond, 250*time.Millisecond
	p, _ := newPolicy(t, Config{BackoffBase: units.Duration(base), BackoffMax: units.Duration(maxB)})
	const draws = 4000
	for n := 1; n <= 8; n++ {
		ceil := min(maxB, base<<(n-1))
		var sum time.Duration
		lo, hi := ceil, time.Duration(0)
		for range draws {
			d := p.Backoff(n)
			if d < 0 || d >= ceil {
				t.Fatalf("retry %d: backoff %v outside [0, %v)", n, d, ceil)
			}
			sum += d
			lo, hi = min(lo, d), max(hi, d)
		}
		// Full jitter: uniform over [0, ceil): mean ceil/2, and the draws
		// reach close to both ends.
		mean := sum / draws
		if mean < ceil*45/100 || mean > ceil*55/100 {
			t.Errorf("retry %d: mean backoff %v, want about %v", n, mean, ceil/2)
		}
		if lo > ceil/50 || hi < ceil*49/50 {
			t.Errorf("retry %d: draws span [%v, %v] of [0, %v): not full jitter", n, lo, hi, ceil)
		}
	}
	if d := p.Backoff(1000); d >= maxB {
		t.Errorf("huge retry number: %v", d)
	}
}

func TestBackoffRepeatable(t *testing.T) {
	a, _ := newPolicy(t, Config{})
	b, _ := newPolicy(t, Config{})
	for n := 1; n < 50; n++ {
		if x, y := a.Backoff(n%5+1), b.Backoff(n%5+1); x != y {
			t.Fatalf("same seed, draw %d: %v vs %v", n, x, y)
		}
	}
}

func TestBudget(t *testing.T) {
	b, err := NewBudget(Config{BudgetPercent: 0.2, MinRetryConcurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	p, mem := newPolicy(t, Config{MaxAttempts: 5}, WithBudget(b))
	retry := func() Decision { return p.Decide(1, get, Outcome{Kind: Reset}, time.Hour) }

	// Few active requests: the floor of 3 applies.
	for range 5 {
		p.Begin()
	}
	for i := range 3 {
		if d := retry(); !d.Retry {
			t.Fatalf("retry %d within the floor refused: %+v", i, d)
		}
	}
	if d := retry(); d.Retry || d.Reason != ReasonBudgetExhausted {
		t.Fatalf("4th retry with 5 active: %+v", d)
	}
	// 40 active: 20% is 8 retries in flight.
	for range 35 {
		p.Begin()
	}
	if b.Limit() != 8 {
		t.Fatalf("limit = %d, want 8", b.Limit())
	}
	for i := 3; i < 8; i++ {
		if d := retry(); !d.Retry {
			t.Fatalf("retry %d of 8 refused", i)
		}
	}
	if d := retry(); d.Retry {
		t.Fatal("9th retry with 40 active allowed")
	}
	// A finished retry frees its slot.
	p.RetryDone()
	if d := retry(); !d.Retry {
		t.Fatal("slot freed by RetryDone not reusable")
	}
	if b.RetriesInFlight() != 8 {
		t.Errorf("in flight = %d", b.RetriesInFlight())
	}
	c := p.Counters()
	if c.Retries != 9 || c.BudgetExhausted != 2 {
		t.Errorf("counters = %+v", c)
	}
	var ex event.Event
	for _, e := range mem.Events() {
		if e.Type == "retry.budget_exhausted" {
			ex = e
		}
	}
	if ex.Attrs["limit"] != int64(8) || ex.Attrs["retries_in_flight"] != int64(8) || ex.Attrs["active"] != int64(40) {
		t.Errorf("budget_exhausted attrs = %v", ex.Attrs)
	}
}

func TestBudgetConcurrent(t *testing.T) {
	p, _ := newPolicy(t, Config{MaxAttempts: 3, MinRetryConcurrency: 4})
	for range 10 {
		p.Begin()
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak := int64(0)
	for range 8 {
		wg.Go(func() {
			for range 500 {
				d := p.Decide(1, get, Outcome{Kind: Reset}, time.Hour)
				if d.Retry {
					mu.Lock()
					peak = max(peak, p.Budget().RetriesInFlight())
					mu.Unlock()
					p.RetryDone()
				}
			}
		})
	}
	wg.Wait()
	if peak > 4 || p.Budget().RetriesInFlight() != 0 {
		t.Errorf("peak retries in flight %d (limit 4), left %d", peak, p.Budget().RetriesInFlight())
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		cfg   Config
		field string
	}{
		{Config{RetryOn: []string{"5xx", "retriable-4xx"}}, "retry_on[1]"},
		{Config{RetryOn: []string{"700"}}, "retry_on[0]"},
		{Config{RetryOn: []string{"503", "200"}}, "retry_on[1]"},
		{Config{RetryOn: []string{"302"}}, "retry_on[0]"},
		{Config{MaxAttempts: -1}, "max_attempts"},
		{Config{MaxAttempts: 1000}, "max_attempts"},
		{Config{MinRetryConcurrency: -1}, "min_retry_concurrency"},
		{Config{BudgetPercent: 2}, "budget_percent"},
		{Config{MaxReplayBody: -1}, "max_replay_body"},
		{Config{BackoffBase: units.Duration(time.Second), BackoffMax: units.Duration(time.Millisecond)}, "backoff_max"},
		{Config{PerTryTimeout: units.Duration(-1)}, "per_try_timeout"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tt.field+": ") {
			t.Errorf("%+v: err = %v, want one naming %s", tt.cfg, err, tt.field)
		}
	}
	if err := (Config{RetryOn: []string{"5xx", "gateway_error", "reset", "connect_failure", "503", "429", "400"}}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	err := Config{RetryOn: []string{"bogus"}}.Validate()
	if err == nil || !strings.Contains(err.Error(), "connect_failure, reset, 5xx, gateway_error") {
		t.Errorf("unknown condition error does not list the valid ones: %v", err)
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("New without a rand accepted")
	}
}

func TestValidateTotal(t *testing.T) {
	cfg := Config{PerTryTimeout: units.Duration(2 * time.Second)}
	if err := cfg.ValidateTotal(3 * time.Second); err != nil {
		t.Errorf("per-try 2s under total 3s: %v", err)
	}
	for _, total := range []time.Duration{2 * time.Second, time.Second} {
		err := cfg.ValidateTotal(total)
		if err == nil || !strings.HasPrefix(err.Error(), "per_try_timeout: ") || !strings.Contains(err.Error(), "Envoy") {
			t.Errorf("per-try 2s, total %v: err = %v", total, err)
		}
	}
	if err := (Config{}).ValidateTotal(time.Second); err != nil {
		t.Errorf("no per-try timeout: %v", err)
	}
}

func TestPrepareBody(t *testing.T) {
	p, _ := newPolicy(t, Config{MaxReplayBody: 8})
	body := func(r *http.Request) string {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	r := httptest.NewRequest(http.MethodPost, "/", nil)
	if req, _ := p.PrepareBody(r); !req.Replayable || req.Method != http.MethodPost {
		t.Errorf("no body: %+v", req)
	}

	r = httptest.NewRequest(http.MethodPut, "/", io.NopCloser(strings.NewReader("12345678")))
	r.ContentLength = -1
	req, err := p.PrepareBody(r)
	if err != nil || !req.Replayable {
		t.Fatalf("8-byte body of unknown length: %+v %v", req, err)
	}
	if got := body(r); got != "12345678" {
		t.Errorf("first read: %q", got)
	}
	again, _ := r.GetBody()
	if b, _ := io.ReadAll(again); string(b) != "12345678" || r.ContentLength != 8 {
		t.Errorf("replay: %q, length %d", b, r.ContentLength)
	}

	// Unknown length, too large: not replayable, and the single attempt
	// still sends every byte.
	r = httptest.NewRequest(http.MethodPut, "/", io.NopCloser(strings.NewReader("0123456789abc")))
	r.ContentLength = -1
	if req, _ := p.PrepareBody(r); req.Replayable {
		t.Error("13-byte body replayable with an 8-byte bound")
	}
	if got := body(r); got != "0123456789abc" {
		t.Errorf("oversized body lost bytes: %q", got)
	}

	// Known length, too large: not read at all.
	r = httptest.NewRequest(http.MethodPut, "/", bytes.NewReader(make([]byte, 100)))
	r.GetBody = nil
	if req, _ := p.PrepareBody(r); req.Replayable || r.ContentLength != 100 {
		t.Errorf("100-byte body: %+v", req)
	}
	if got := body(r); len(got) != 100 {
		t.Errorf("read %d bytes", len(got))
	}
}

func BenchmarkDecide(b *testing.B) {
	p, _ := newPolicy(b, Config{RetryOn: []string{On5xx}})
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Decide(1, get, Status(200), time.Second); d.Retry {
			b.Fatal("retried a 200")
		}
	}
}

// A hedge needs no retry_on condition (nothing failed) and no backoff,
// counts against max_attempts and the budget like a retry, and is counted
// apart from retries.
func TestDecideHedge(t *testing.T) {
	p, mem := newPolicy(t, Config{RetryOn: []string{"503"}, MaxAttempts: 3, MinRetryConcurrency: 1, BudgetPercent: 0.01,
		HedgeOnPerTryTimeout: true})
	if !p.Hedges() {
		t.Fatal("Hedges() false")
	}
	p.Begin()
	d := p.DecideHedge(1, get, time.Second)
	if !d.Retry || d.Backoff != 0 {
		t.Fatalf("first hedge: %+v, want granted without backoff", d)
	}
	if d := p.DecideHedge(2, get, time.Second); d.Retry || d.Reason != ReasonBudgetExhausted {
		t.Errorf("second hedge with the only slot held: %+v", d)
	}
	p.RetryDone()
	if d := p.DecideHedge(3, get, time.Second); d.Retry || d.Reason != ReasonMaxAttempts {
		t.Errorf("hedge past max_attempts: %+v", d)
	}
	if d := p.DecideHedge(1, Request{Method: http.MethodPost, Replayable: true}, time.Second); d.Retry || d.Reason != ReasonNotIdempotent {
		t.Errorf("POST hedge: %+v", d)
	}
	if d := p.DecideHedge(1, get, 0); d.Retry || d.Reason != ReasonDeadline {
		t.Errorf("hedge at the deadline: %+v", d)
	}
	p.End()
	if c := p.Counters(); c.Hedges != 1 || c.Retries != 0 || c.BudgetExhausted != 1 || c.Denied != 3 {
		t.Errorf("counters %+v", c)
	}
	if n := len(mem.Events()); n != 5 {
		t.Errorf("%d events, want 5 (1 hedge, 4 refusals)", n)
	}
	if p.MayResend(Request{Method: http.MethodPost, Replayable: true}) || !p.MayResend(get) ||
		p.MayResend(Request{Method: http.MethodGet}) {
		t.Error("MayResend")
	}
}

// Retry-After replaces the backoff for a 503 or a 429, within
// retry_after_max; past the time left, there is no retry.
func TestDecideRetryAfter(t *testing.T) {
	p, _ := newPolicy(t, Config{RetryOn: []string{"503", "429", "500"}, MaxAttempts: 5, RetryAfterMax: units.Duration(10 * time.Second)})
	ra := func(status int, d time.Duration) Outcome {
		o := Status(status)
		o.RetryAfter, o.HasRetryAfter = d, true
		return o
	}
	for _, tc := range []struct {
		name      string
		o         Outcome
		remaining time.Duration
		retry     bool
		backoff   time.Duration // -1: the exponential one (below 250ms)
	}{
		{"503", ra(503, 2*time.Second), time.Minute, true, 2 * time.Second},
		{"429", ra(429, time.Second), time.Minute, true, time.Second},
		{"zero", ra(503, 0), time.Minute, true, 0},
		{"500 ignores it", ra(500, 2*time.Second), time.Minute, true, -1},
		{"beyond the cap", ra(503, time.Minute), 2 * time.Minute, true, -1},
		{"past the deadline", ra(503, 2*time.Second), time.Second, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.Begin()
			defer p.End()
			d := p.Decide(1, get, tc.o, tc.remaining)
			if d.Retry {
				defer p.RetryDone()
			}
			switch {
			case d.Retry != tc.retry:
				t.Errorf("decision %+v, want retry %v", d, tc.retry)
			case !d.Retry && d.Reason != ReasonDeadline:
				t.Errorf("refused for %q, want %q", d.Reason, ReasonDeadline)
			case tc.retry && tc.backoff >= 0 && d.Backoff != tc.backoff:
				t.Errorf("backoff %v, want %v", d.Backoff, tc.backoff)
			case tc.retry && tc.backoff < 0 && d.Backoff >= 250*time.Millisecond:
				t.Errorf("backoff %v, want the exponential one", d.Backoff)
			}
		})
	}
	if err := (Config{RetryAfterMax: units.Duration(-time.Second)}).Validate(); err == nil || !strings.Contains(err.Error(), "retry_after_max") {
		t.Errorf("negative retry_after_max: %v", err)
	}
}

// A granted hedge the gateway could not send (breaker open, bulkhead full)
// gives back its slot and is not counted.
func TestHedgeNotSent(t *testing.T) {
	p, _ := newPolicy(t, Config{MaxAttempts: 3, MinRetryConcurrency: 1, BudgetPercent: 0.01, HedgeOnPerTryTimeout: true})
	p.Begin()
	defer p.End()
	if d := p.DecideHedge(1, get, time.Second); !d.Retry {
		t.Fatalf("hedge refused: %+v", d)
	}
	p.HedgeNotSent()
	if c := p.Counters(); c.Hedges != 0 || p.Budget().RetriesInFlight() != 0 {
		t.Errorf("counters %+v, %d retries in flight: want none", c, p.Budget().RetriesInFlight())
	}
}

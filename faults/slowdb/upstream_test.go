package slowdb

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/units"
)

func codes(driver string) (lock, stmt string) {
	if driver == SQLite {
		return "SQLITE_BUSY", "SQLITE_INTERRUPT"
	}
	return "55P03", "57014"
}

func inject(t *testing.T, u *Upstream, f Fault) *Injection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inj, err := u.Inject(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inj.Stop)
	return inj
}

func TestBaseline(t *testing.T) {
	eachDriver(t, Config{}, func(t *testing.T, cfg Config) {
		f := start(t, cfg)
		for c := int64(1); c <= 5; c++ {
			f.get(t, "?customer="+strconv.FormatInt(c, 10), nil, 0).ok(t, c, DefaultOrdersPerCustomer)
		}
		// Concurrent requests beyond the pool size queue and all succeed.
		var wg sync.WaitGroup
		answers := make([]answer, 3*DefaultPoolSize)
		for i := range answers {
			wg.Go(func() { answers[i] = f.get(t, "", nil, 0) })
		}
		wg.Wait()
		for _, a := range answers {
			a.ok(t, 0, DefaultOrdersPerCustomer)
		}
		s := f.u.Stats()
		if s.OK != 5+uint64(len(answers)) || s.DBErrors+s.DBTimeouts+s.UpstreamTimeouts != 0 {
			t.Fatalf("stats %+v", s)
		}
		// Bad input is a clear 400, not a guess.
		for _, q := range []string{"?customer=0", "?customer=abc", "?customer=100000"} {
			if a := f.get(t, q, nil, 0); a.status != http.StatusBadRequest || a.cause != "upstream_error" {
				t.Fatalf("%s: %v", q, a)
			}
		}
		if a := f.get(t, "", map[string]string{DeadlineHeader: "-5"}, 0); a.status != http.StatusBadRequest {
			t.Fatalf("negative deadline: %v", a)
		}
	})
}

func TestSlowQuery(t *testing.T) {
	const slow = 300 * time.Millisecond
	eachDriver(t, Config{}, func(t *testing.T, cfg Config) {
		f := start(t, cfg)
		base := f.get(t, "?customer=1", nil, 0)
		base.ok(t, 1, DefaultOrdersPerCustomer)

		inj := inject(t, f.u, &SlowQuery{Latency: dist.FixedLatency(slow)})
		for range 3 {
			a := f.get(t, "?customer=2", nil, 0)
			a.ok(t, 2, DefaultOrdersPerCustomer)
			within(t, "slowed request", a.elapsed, slow, slow+400*time.Millisecond)
		}
		if n := inj.Effects(); n != 3 {
			t.Fatalf("slow_query took effect %d times, want 3", n)
		}
		inj.Stop()
		a := f.get(t, "?customer=3", nil, 0)
		a.ok(t, 3, DefaultOrdersPerCustomer)
		within(t, "request after the fault", a.elapsed, 0, slow/2)
	})
}

func TestLockContention(t *testing.T) {
	const lockTimeout = 200 * time.Millisecond
	cfg := Config{LockTimeout: units.Duration(lockTimeout), StatementTimeout: units.Duration(time.Second),
		UpstreamTimeout: units.Duration(3 * time.Second)}
	eachDriver(t, cfg, func(t *testing.T, cfg Config) {
		wantCode, _ := codes(cfg.Driver)
		f := start(t, cfg)
		f.get(t, "?customer=1", nil, 0).ok(t, 1, DefaultOrdersPerCustomer)

		inj := inject(t, f.u, &LockContention{})
		for range 2 {
			a := f.get(t, "?customer=1", nil, 0)
			if a.status != http.StatusServiceUnavailable || a.cause != "db_timeout" || a.code != wantCode {
				t.Fatalf("want 503 db_timeout %s, got %v", wantCode, a)
			}
			within(t, "lock wait", a.elapsed, lockTimeout-20*time.Millisecond, lockTimeout+600*time.Millisecond)
		}
		if n := inj.Effects(); n != 2 {
			t.Fatalf("lock_contention took effect %d times, want 2", n)
		}
		inj.Stop()
		f.get(t, "?customer=1", nil, 0).ok(t, 1, DefaultOrdersPerCustomer)
	})
}

// A wait on the fault's lock that an outer timeout ends first is still the
// fault's effect: the lock is why the request timed out.
func TestLockContentionCutByAnOuterTimeout(t *testing.T) {
	const stmtTimeout, upTimeout = 150 * time.Millisecond, 400 * time.Millisecond
	cfg := Config{LockTimeout: units.Duration(5 * time.Second), StatementTimeout: units.Duration(stmtTimeout),
		UpstreamTimeout: units.Duration(upTimeout)}
	eachDriver(t, cfg, func(t *testing.T, cfg Config) {
		f := start(t, cfg)
		f.get(t, "?customer=1", nil, 0).ok(t, 1, DefaultOrdersPerCustomer)
		// sqlite waits for its write lock at BEGIN, before the statement
		// deadline starts: the service's deadline ends the wait. On
		// postgres the statement timeout covers the row lock wait.
		wantStatus, wantCause, wantCode, cut := http.StatusGatewayTimeout, "upstream_timeout", "", upTimeout
		if cfg.Driver == Postgres {
			_, stmt := codes(cfg.Driver)
			wantStatus, wantCause, wantCode, cut = http.StatusServiceUnavailable, "db_timeout", stmt, stmtTimeout
		}
		inj := inject(t, f.u, &LockContention{})
		for range 2 {
			a := f.get(t, "?customer=1", nil, 0)
			if a.status != wantStatus || a.cause != wantCause || a.stage != "lock" || (wantCode != "" && a.code != wantCode) {
				t.Fatalf("want %d %s %s in the lock stage, got %v", wantStatus, wantCause, wantCode, a)
			}
			within(t, "lock wait", a.elapsed, cut-20*time.Millisecond, cut+600*time.Millisecond)
		}
		// The caller's own deadline, shorter still, ends the wait too.
		if a := f.get(t, "?customer=1", map[string]string{DeadlineHeader: "100"}, 0); a.cause != "upstream_timeout" || a.stage != "lock" {
			t.Fatalf("want upstream_timeout in the lock stage at the caller's deadline, got %v", a)
		}
		if n := inj.Effects(); n != 3 {
			t.Fatalf("lock_contention took effect %d times, want 3 (every wait on its lock ended in a timeout)", n)
		}
		inj.Stop()
		f.get(t, "?customer=1", nil, 0).ok(t, 1, DefaultOrdersPerCustomer)
	})
}

func TestLockContentionShareAndHold(t *testing.T) {
	cfg := Config{Driver: Postgres, DSN: pgDSN(t), LockTimeout: units.Duration(150 * time.Millisecond)}
	f := start(t, cfg)
	// Half the customers are locked: row locks, so the other half is served.
	inj := inject(t, f.u, &LockContention{Share: 0.5, Hold: units.Duration(time.Second)})
	if a := f.get(t, "?customer=10", nil, 0); a.code != "55P03" {
		t.Fatalf("locked customer: %v", a)
	}
	f.get(t, "?customer=400", nil, 0).ok(t, 400, DefaultOrdersPerCustomer)
	// The hold runs out by itself and the fault stops.
	select {
	case <-inj.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("lock_contention did not end after its hold")
	}
	f.get(t, "?customer=10", nil, 0).ok(t, 10, DefaultOrdersPerCustomer)
	if got := f.u.Active(); len(got) != 0 {
		t.Fatalf("active after hold: %v", got)
	}
}

func TestStatementTimeout(t *testing.T) {
	const slow, short = 400 * time.Millisecond, 150 * time.Millisecond
	cfg := Config{StatementTimeout: units.Duration(time.Second), UpstreamTimeout: units.Duration(3 * time.Second)}
	eachDriver(t, cfg, func(t *testing.T, cfg Config) {
		_, wantCode := codes(cfg.Driver)
		f := start(t, cfg)
		inject(t, f.u, &SlowQuery{Latency: dist.FixedLatency(slow)})
		f.get(t, "?customer=1", nil, 0).ok(t, 1, DefaultOrdersPerCustomer) // 400ms < 1s

		inj := inject(t, f.u, &StatementTimeout{Timeout: units.Duration(short)})
		a := f.get(t, "?customer=1", nil, 0)
		if a.status != http.StatusServiceUnavailable || a.cause != "db_timeout" || a.code != wantCode {
			t.Fatalf("want 503 db_timeout %s, got %v", wantCode, a)
		}
		within(t, "statement timeout", a.elapsed, short-20*time.Millisecond, short+400*time.Millisecond)
		if n := inj.Effects(); n != 1 {
			t.Fatalf("statement_timeout took effect %d times, want 1", n)
		}
		inj.Stop()
		a = f.get(t, "?customer=1", nil, 0)
		a.ok(t, 1, DefaultOrdersPerCustomer)
		within(t, "slow request after the fault", a.elapsed, slow, slow+500*time.Millisecond)
	})
}

func TestPoolExhaustion(t *testing.T) {
	const upstreamTimeout = 600 * time.Millisecond
	cfg := Config{PoolSize: 3, UpstreamTimeout: units.Duration(upstreamTimeout)}
	eachDriver(t, cfg, func(t *testing.T, cfg Config) {
		f := start(t, cfg)
		f.get(t, "?customer=1", nil, 0).ok(t, 1, DefaultOrdersPerCustomer)

		inj := inject(t, f.u, &PoolExhaustion{})
		eventually(t, 5*time.Second, "the fault to hold the pool", func() bool { return f.u.Stats().Pool.Held == 3 })
		a := f.get(t, "?customer=1", nil, 0)
		if a.status != http.StatusGatewayTimeout || a.cause != "upstream_timeout" || a.stage != "pool" {
			t.Fatalf("want 504 upstream_timeout in the pool, got %v", a)
		}
		within(t, "pool wait", a.elapsed, upstreamTimeout-20*time.Millisecond, upstreamTimeout+600*time.Millisecond)
		if s := f.u.Stats(); s.PoolTimeouts != 1 || s.Pool.InUse != 3 {
			t.Fatalf("stats %+v", s)
		}
		if inj.Effects() != 1 {
			t.Fatalf("pool_exhaustion took effect %d times, want 1", inj.Effects())
		}
		// A request waiting when the fault ends gets the released
		// connection: it waited on the fault too.
		waiter := make(chan answer, 1)
		go func() { waiter <- f.get(t, "?customer=2", nil, 0) }()
		eventually(t, 5*time.Second, "a request to wait in the pool", func() bool { return f.u.Stats().Pool.Waiting == 1 })
		inj.Stop()
		(<-waiter).ok(t, 2, DefaultOrdersPerCustomer)
		if inj.Effects() != 2 {
			t.Fatalf("pool_exhaustion took effect %d times, want 2: the wait the fault's end released counts", inj.Effects())
		}
		// Whenever that wait's end is reported, before or after the fault
		// is marked off: it began while the fault held the pool.
		f.u.poolWaited(time.Now().Add(-time.Second))
		f.u.poolWaited(time.Now()) // began after the fault: not its effect
		if inj.Effects() != 3 {
			t.Fatalf("pool_exhaustion took effect %d times, want 3", inj.Effects())
		}
		if h := f.u.Stats().Pool.Held; h != 0 {
			t.Fatalf("%d connections still held after Stop", h)
		}
		f.get(t, "?customer=1", nil, 0).ok(t, 1, DefaultOrdersPerCustomer)
	})
}

// TestSeedCase is the order-history incident: a slow query holds the last
// free connection; the next caller waits in the pool and gets 504 at its
// deadline, while the slow work runs on after its own caller gave up and
// finishes for nobody (orphaned). A caller that sends its deadline gets its
// work cut at that deadline instead: no orphan.
func TestSeedCase(t *testing.T) {
	const slow = time.Second
	cfg := Config{PoolSize: 2, StatementTimeout: units.Duration(3 * time.Second), UpstreamTimeout: units.Duration(2 * time.Second)}
	eachDriver(t, cfg, func(t *testing.T, cfg Config) {
		f := start(t, cfg)
		inject(t, f.u, &PoolExhaustion{Hold: 1})
		eventually(t, 5*time.Second, "one leaked connection", func() bool { return f.u.Stats().Pool.Held == 1 })
		slowInj := inject(t, f.u, &SlowQuery{Latency: dist.FixedLatency(slow)})

		// A: its client gives up after 200ms; the work goes on.
		aDone := make(chan answer, 1)
		go func() { aDone <- f.get(t, "?customer=5", nil, 200*time.Millisecond) }()
		eventually(t, 5*time.Second, "A to hold the last connection", func() bool { return f.u.Stats().Pool.InUse == 2 })

		// B: says it will wait 400ms; finds no connection.
		b := f.get(t, "?customer=6", map[string]string{DeadlineHeader: "400"}, 0)
		if b.status != http.StatusGatewayTimeout || b.cause != "upstream_timeout" || b.stage != "pool" {
			t.Fatalf("B: want 504 upstream_timeout in the pool, got %v", b)
		}
		within(t, "B", b.elapsed, 380*time.Millisecond, time.Second)
		if a := <-aDone; a.err == nil {
			t.Fatalf("A's client should have timed out, got %v", a)
		}
		// A's work completes after A left: orphaned.
		eventually(t, 5*time.Second, "A's work to be counted orphaned", func() bool { return f.u.Stats().Orphaned == 1 })

		// C: the same slow query with a 300ms budget is cut at 300ms.
		c := f.get(t, "?customer=7", map[string]string{DeadlineHeader: "300"}, 0)
		if c.status != http.StatusGatewayTimeout || c.cause != "upstream_timeout" || c.stage != "query" {
			t.Fatalf("C: want 504 upstream_timeout in the query, got %v", c)
		}
		within(t, "C", c.elapsed, 280*time.Millisecond, 900*time.Millisecond)
		slowInj.Stop()
		time.Sleep(1200 * time.Millisecond) // more than the slow query: an orphan would show now
		if s := f.u.Stats(); s.Orphaned != 1 {
			t.Fatalf("orphaned %d, want 1 (C's work must have been cut): %+v", s.Orphaned, s)
		}
		f.get(t, "?customer=8", nil, 0).ok(t, 8, DefaultOrdersPerCustomer)

		if err := f.u.Close(); err != nil {
			t.Fatal(err)
		}
		evs := f.events.Events()
		if n := len(ofType(evs, "work.orphaned")); n != 1 {
			t.Fatalf("%d work.orphaned events, want 1: %v", n, evs)
		}
		if len(ofType(evs, "db.pool_exhausted")) == 0 {
			t.Fatalf("no db.pool_exhausted event: %v", evs)
		}
	})
}

func TestConnectionRefused(t *testing.T) {
	eachDriver(t, Config{}, func(t *testing.T, cfg Config) {
		f := start(t, cfg)
		f.get(t, "?customer=1", nil, 0).ok(t, 1, DefaultOrdersPerCustomer)
		inj := inject(t, f.u, &ConnectionRefused{})
		for range 3 {
			a := f.get(t, "?customer=1", nil, 0)
			if a.status != http.StatusServiceUnavailable || a.cause != "db_error" || a.code != "ECONNREFUSED" {
				t.Fatalf("want 503 db_error ECONNREFUSED, got %v", a)
			}
			within(t, "refusal", a.elapsed, 0, 500*time.Millisecond)
		}
		if n := inj.Effects(); n != 3 {
			t.Fatalf("connection_refused took effect %d times, want 3", n)
		}
		inj.Stop()
		f.get(t, "?customer=1", nil, 0).ok(t, 1, DefaultOrdersPerCustomer)
	})
}

func TestEventsAggregated(t *testing.T) {
	cfg := Config{LockTimeout: units.Duration(50 * time.Millisecond)}
	eachDriver(t, cfg, func(t *testing.T, cfg Config) {
		f := start(t, cfg)
		inj := inject(t, f.u, &LockContention{})
		var wg sync.WaitGroup
		for range 12 {
			wg.Go(func() { f.get(t, "", nil, 0) })
		}
		wg.Wait()
		inj.Stop()
		if err := f.u.Close(); err != nil {
			t.Fatal(err)
		}
		evs := f.events.Events()
		starts, stops := ofType(evs, "db.fault.start"), ofType(evs, "db.fault.stop")
		if len(starts) != 1 || len(stops) != 1 || starts[0].Attr("kind") != KindLockContention || starts[0].Target != "orders" {
			t.Fatalf("fault events: %v", evs)
		}
		if stops[0].Attrs["effects"] != uint64(12) {
			t.Fatalf("db.fault.stop effects %v, want 12", stops[0].Attrs["effects"])
		}
		timeouts := ofType(evs, "db.timeout")
		var n uint64
		for _, e := range timeouts {
			n += e.Attrs["count"].(uint64)
		}
		if n != 12 || len(timeouts) > 3 {
			t.Fatalf("db.timeout: %d events counting %d, want at most 3 counting 12", len(timeouts), n)
		}
		if starts[0].T > stops[0].T || timeouts[0].T < starts[0].T {
			t.Fatalf("events out of order: %v", evs)
		}
		if len(f.u.Samples()) < 2 {
			t.Fatalf("pool not sampled: %v", f.u.Samples())
		}
	})
}

// A request that waited for the pool times out at its statement timeout
// counted from when it got its connection, not from its arrival: on a
// one-connection pool, three slow requests time out at about 150, 300 and
// 450 ms against a 150 ms statement_timeout. The db.timeout events say
// how long the timed-out requests waited (max_wait_ms), which the timeout
// cascade's band allows for (verdict.Cascade).
func TestDBTimeoutReportsThePoolWait(t *testing.T) {
	const stmt = 150 * time.Millisecond
	cfg := Config{PoolSize: 1, StatementTimeout: units.Duration(stmt), UpstreamTimeout: units.Duration(3 * time.Second)}
	eachDriver(t, cfg, func(t *testing.T, cfg Config) {
		f := start(t, cfg)
		inject(t, f.u, &SlowQuery{Latency: dist.FixedLatency(400 * time.Millisecond)})
		var wg sync.WaitGroup
		answers := make([]answer, 3)
		for i := range answers {
			wg.Go(func() { answers[i] = f.get(t, "", nil, 0) })
		}
		wg.Wait()
		var longest time.Duration
		for _, a := range answers {
			if a.cause != "db_timeout" {
				t.Fatalf("want db_timeout, got %v", a)
			}
			longest = max(longest, a.elapsed)
		}
		within(t, "the last timeout", longest, 3*stmt-20*time.Millisecond, 3*stmt+400*time.Millisecond)
		if err := f.u.Close(); err != nil {
			t.Fatal(err)
		}
		var n uint64
		var wait float64
		for _, e := range ofType(f.events.Events(), "db.timeout") {
			n += e.Attrs["count"].(uint64)
			wait = max(wait, e.Attrs["max_wait_ms"].(float64))
		}
		// The last request waited for both others' statements.
		if n != 3 || wait < float64(2*stmt/time.Millisecond)-20 || wait > float64(longest/time.Millisecond) {
			t.Fatalf("db.timeout events count %d, max_wait_ms %.1f; want 3 and about %v (the last one's %v less its own statement)", n, wait, 2*stmt, longest)
		}
	})
}

func TestInjectErrors(t *testing.T) {
	f := start(t, Config{})
	ctx := context.Background()
	inject(t, f.u, &StatementTimeout{Timeout: units.Duration(time.Second)})
	if _, err := f.u.Inject(ctx, &StatementTimeout{Timeout: units.Duration(time.Second)}); err == nil {
		t.Fatal("a second statement_timeout was accepted")
	}
	if _, err := f.u.Inject(ctx, &SlowQuery{}); err == nil {
		t.Fatal("slow_query without latency was accepted")
	}
	// A pool of 10 cannot lend 11: refused, not quietly cut to 10.
	var fe *FieldError
	if _, err := f.u.Inject(ctx, &PoolExhaustion{Hold: DefaultPoolSize + 1}); !errors.As(err, &fe) || fe.Field != "hold" {
		t.Fatalf("pool_exhaustion with a hold past the pool: %v", err)
	}
	if a := f.u.Active(); len(a) != 1 {
		t.Fatalf("active after the refusals: %v", a)
	}
	if err := f.u.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.u.Inject(ctx, &ConnectionRefused{}); err == nil {
		t.Fatal("inject after Close was accepted")
	}
}

// With propagate_cancel the work stops when the client leaves: no orphan,
// and the connection is back in the pool long before the slow query would
// have ended.
func TestPropagateCancel(t *testing.T) {
	const slow = 1500 * time.Millisecond
	cfg := Config{PropagateCancel: true, StatementTimeout: units.Duration(3 * time.Second), UpstreamTimeout: units.Duration(3 * time.Second)}
	eachDriver(t, cfg, func(t *testing.T, cfg Config) {
		f := start(t, cfg)
		inject(t, f.u, &SlowQuery{Latency: dist.FixedLatency(slow)})
		begin := time.Now()
		if a := f.get(t, "?customer=3", nil, 200*time.Millisecond); a.err == nil {
			t.Fatalf("client should have timed out: %v", a)
		}
		eventually(t, 5*time.Second, "the request to end", func() bool {
			s := f.u.Stats()
			return s.ClientGone+s.UpstreamTimeouts+s.DBErrors+s.OK == 1 && s.Pool.InUse == 0
		})
		within(t, "cancelled work", time.Since(begin), 150*time.Millisecond, slow-300*time.Millisecond)
		if s := f.u.Stats(); s.Orphaned != 0 || s.OK != 0 || s.ClientGone != 1 {
			t.Fatalf("want the work cancelled as client_gone: %+v", s)
		}
	})
}

// A wait that began on the fault's lock and that a timeout ends just after
// the fault stops is still the fault's effect, and is in the count the fault
// reports as it stops. SQLite polls a busy lock (from 228ms on, every
// 100ms), so a waiter does not see the release until its next poll; a
// deadline that falls before that poll ends the wait after the fault stopped.
func TestLockWaitEndingAfterTheStop(t *testing.T) {
	// Polls at ~928ms and ~1028ms after the wait begins; the caller's
	// deadline at 1020ms falls between them, and the fault stops at 975ms.
	const deadline, stopAt = 1020 * time.Millisecond, 975 * time.Millisecond
	cfg := Config{Driver: SQLite, LockTimeout: units.Duration(10 * time.Second),
		StatementTimeout: units.Duration(20 * time.Second), UpstreamTimeout: units.Duration(20 * time.Second)}
	f := start(t, cfg)
	f.get(t, "?customer=1", nil, 0).ok(t, 1, DefaultOrdersPerCustomer)
	hdr := map[string]string{DeadlineHeader: strconv.FormatInt(deadline.Milliseconds(), 10)}
	for attempt := 1; ; attempt++ {
		inj := inject(t, f.u, &LockContention{})
		waiter := make(chan answer, 1)
		begin := time.Now()
		go func() { waiter <- f.get(t, "?customer=1", hdr, 0) }()
		time.Sleep(time.Until(begin.Add(stopAt)))
		stopped := time.Now()
		inj.Stop() // what the run's timeline reads right after
		effects, took := inj.Effects(), time.Since(stopped)
		a := <-waiter
		t.Logf("attempt %d: fault stopped at %v (Stop took %v), answer %v, effects %d", attempt,
			stopped.Sub(begin).Round(time.Millisecond), took.Round(time.Millisecond), a, effects)
		if a.status == http.StatusOK {
			// The machine was slow and the poll saw the release first:
			// the wait ended well, no timeout to count. Try again.
			if attempt == 5 {
				t.Fatal("the wait never outlasted the fault in 5 attempts")
			}
			continue
		}
		if a.cause != "upstream_timeout" || a.stage != "lock" {
			t.Fatalf("want upstream_timeout in the lock stage, got %v", a)
		}
		if a.elapsed < stopAt {
			t.Fatalf("the wait ended at %v, before the fault stopped", a.elapsed)
		}
		if effects != 1 {
			t.Fatalf("lock_contention reported %d effects as it stopped, want 1: the wait began on its lock", effects)
		}
		if n := f.u.Stats().FaultEffects[KindLockContention]; n != 1 {
			t.Fatalf("upstream counts %d lock_contention effects, want 1", n)
		}
		return
	}
}

// The upstream drops the schema it created on the user's server when it
// closes: a run leaves nothing behind. A schema that was there before (made
// for a user without CREATE on the database, say) stays, emptied of the
// tables the upstream made.
func TestPostgresSchemaRemovedOnClose(t *testing.T) {
	dsn := pgDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	exists := func(q string) bool {
		t.Helper()
		var ok bool
		if err := conn.QueryRow(ctx, q).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	const schemaQ = `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'cascade_orders')`
	const tablesQ = `SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'cascade_orders')`

	u, err := New(ctx, "orders", Config{Driver: Postgres, DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	if !exists(schemaQ) {
		t.Fatal("no schema cascade_orders while the upstream is open")
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if exists(schemaQ) {
		t.Fatal("schema cascade_orders is left on the server after Close")
	}

	if _, err := conn.Exec(ctx, `CREATE SCHEMA cascade_orders`); err != nil {
		t.Fatal(err)
	}
	if u, err = New(ctx, "orders", Config{Driver: Postgres, DSN: dsn}); err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if !exists(schemaQ) || exists(tablesQ) {
		t.Fatalf("a schema that was there before: want it kept and emptied; exists %v, tables %v", exists(schemaQ), exists(tablesQ))
	}
}

// A schema that a killed run left carries cascade's mark: the next run
// drops it at its end, while a user's own schema stays.
func TestPostgresSchemaLeftByAKilledRunIsDropped(t *testing.T) {
	dsn := pgDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	killed, err := New(ctx, "orders", Config{Driver: Postgres, DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	killed.b.(*pgBackend).pgpool.Close() // as if the process died: no Close
	killed.stopSampler()
	_ = killed.b.(*pgBackend).closed.close()
	u, err := New(ctx, "orders", Config{Driver: Postgres, DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'cascade_orders'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("schema left by a killed run still there after the next run: %d, %v", n, err)
	}
}

// A request that arrives after pool_exhaustion released its connections
// and waits only behind the requests the fault had queued did not wait on
// the fault: it is not counted, even while the fault's stop is still
// letting that queue drain.
func TestPoolWaitAfterTheReleaseIsNotTheFaults(t *testing.T) {
	const slow = 80 * time.Millisecond
	cfg := Config{Driver: SQLite, PoolSize: 1, UpstreamTimeout: units.Duration(5 * time.Second)}
	f := start(t, cfg)
	inject(t, f.u, &SlowQuery{Latency: dist.FixedLatency(slow)})
	inj := inject(t, f.u, &PoolExhaustion{})
	eventually(t, 5*time.Second, "the fault to hold the pool", func() bool { return f.u.Stats().Pool.Held == 1 })
	answers := make(chan answer, 3)
	for range 2 {
		go func() { answers <- f.get(t, "", nil, 0) }()
	}
	eventually(t, 5*time.Second, "two requests to wait in the pool", func() bool { return f.u.Stats().Pool.Waiting == 2 })
	time.Sleep(20 * time.Millisecond) // well past the 2ms that makes a wait
	// The released connection serves the two, one after the other, 80ms
	// each; the third comes 20ms after the release and queues behind them.
	go func() {
		time.Sleep(20 * time.Millisecond)
		answers <- f.get(t, "", nil, 0)
	}()
	inj.Stop()
	for range 3 {
		(<-answers).ok(t, 0, DefaultOrdersPerCustomer)
	}
	if s := f.u.Stats(); s.PoolWaits != 3 {
		t.Fatalf("%d pool waits, want 3: %+v", s.PoolWaits, s)
	}
	if n := inj.Effects(); n != 2 {
		t.Fatalf("pool_exhaustion took effect %d times, want 2: the third request arrived after the release", n)
	}
}

// On PostgreSQL a deadline that fires while the fault's transaction is
// rolling back ends a wait on the fault's lock: the row is still locked.
// The stage is the lock, and the wait is the fault's effect.
func TestPostgresLockWaitCutWhileTheFaultReleases(t *testing.T) {
	cfg := Config{Driver: Postgres, DSN: pgDSN(t), LockTimeout: units.Duration(5 * time.Second),
		StatementTimeout: units.Duration(6 * time.Second), UpstreamTimeout: units.Duration(8 * time.Second)}
	f := start(t, cfg)
	f.get(t, "?customer=1", nil, 0).ok(t, 1, DefaultOrdersPerCustomer)
	// The rollback is held up past the request's deadline.
	f.u.b.(*pgBackend).beforeRollback = func() { time.Sleep(250 * time.Millisecond) }
	inj := inject(t, f.u, &LockContention{})
	waiter := make(chan answer, 1)
	go func() { waiter <- f.get(t, "?customer=1", map[string]string{DeadlineHeader: "300"}, 0) }()
	time.Sleep(150 * time.Millisecond)
	inj.Stop() // rows marked free at 150ms, rolled back at 400ms
	a := <-waiter
	if a.cause != "upstream_timeout" || a.stage != "lock" {
		t.Fatalf("want upstream_timeout in the lock stage (the row was locked until 400ms, the deadline was 300ms), got %v", a)
	}
	if n := inj.Effects(); n != 1 {
		t.Fatalf("lock_contention took effect %d times, want 1", n)
	}
}

// A wait that began on the fault's lock and ends in a timeout long after
// the fault stopped (another transaction took the row first) is the
// fault's effect, counted in its own tally after Stop returned.
func TestLockWaitEndingLongAfterTheStop(t *testing.T) {
	const lockTimeout = 700 * time.Millisecond
	dsn := pgDSN(t)
	cfg := Config{Driver: Postgres, DSN: dsn, LockTimeout: units.Duration(lockTimeout),
		StatementTimeout: units.Duration(5 * time.Second), UpstreamTimeout: units.Duration(5 * time.Second)}
	f := start(t, cfg)
	f.get(t, "?customer=1", nil, 0).ok(t, 1, DefaultOrdersPerCustomer)
	inj := inject(t, f.u, &LockContention{})

	// Another client queues for row 1 first; it gets the row at the
	// release and keeps it past the request's lock timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	locked := make(chan error, 1)
	go func() {
		_, err := tx.Exec(ctx, `SELECT id FROM cascade_orders.customers WHERE id = 1 FOR UPDATE`)
		locked <- err
	}()
	time.Sleep(100 * time.Millisecond)

	waiter := make(chan answer, 1)
	begin := time.Now()
	go func() { waiter <- f.get(t, "?customer=1", nil, 0) }()
	time.Sleep(200 * time.Millisecond)
	inj.Stop()
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	atStop := inj.Effects()
	a := <-waiter
	t.Logf("stopped at %v, the wait ended at %v: %v", time.Duration(200*time.Millisecond), time.Since(begin).Round(time.Millisecond), a)
	if a.code != "55P03" {
		t.Fatalf("want the request's lock timeout, 55P03, got %v", a)
	}
	if atStop != 0 || inj.Effects() != 1 {
		t.Fatalf("effects %d at the stop and %d after the wait ended, want 0 then 1", atStop, inj.Effects())
	}
}

// Each injection keeps its own tally: a wait that began under the first
// pool_exhaustion and is reported while a second one holds the pool is the
// first one's, and the second's count starts at zero.
func TestEffectsBelongToTheirInjection(t *testing.T) {
	f := start(t, Config{Driver: SQLite, PoolSize: 2})
	first := inject(t, f.u, &PoolExhaustion{})
	eventually(t, 5*time.Second, "the first fault to hold the pool", func() bool { return f.u.Stats().Pool.Held == 2 })
	began := time.Now()
	time.Sleep(5 * time.Millisecond)
	first.Stop()
	second := inject(t, f.u, &PoolExhaustion{Hold: 1})
	f.u.poolWaited(began) // the wait began under the first
	if first.Effects() != 1 || second.Effects() != 0 {
		t.Fatalf("effects: first %d, second %d; want 1 and 0", first.Effects(), second.Effects())
	}
	f.u.poolWaited(time.Now()) // began under the second
	if first.Effects() != 1 || second.Effects() != 1 {
		t.Fatalf("effects: first %d, second %d; want 1 and 1", first.Effects(), second.Effects())
	}
	if n := f.u.Stats().FaultEffects[KindPoolExhaustion]; n != 2 {
		t.Fatalf("upstream counts %d pool_exhaustion effects, want 2", n)
	}
}

// slowConnect puts a loopback proxy in front of the PostgreSQL server in
// dsn that waits setup before it dials the server for each new connection,
// as a server a network hop away (or one busy forking backends) would:
// connection setup then takes at least setup. It returns the proxy's DSN.
func slowConnect(t *testing.T, dsn string, setup time.Duration) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				time.Sleep(setup)
				s, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				mu.Lock()
				open = append(open, c, s)
				mu.Unlock()
				var pipes sync.WaitGroup
				pipes.Go(func() { io.Copy(s, c); s.(*net.TCPConn).CloseWrite() })
				pipes.Go(func() { io.Copy(c, s); c.(*net.TCPConn).CloseWrite() })
				pipes.Wait()
				c.Close()
				s.Close()
			})
		}
	})
	u.Host = ln.Addr().String()
	return u.String()
}

// A pool wait is time spent waiting for a connection another request
// holds, not the time to open a new one. With connection setup at 40 ms
// (20 times the 2 ms that makes a wait), three requests at once on a
// pool of 3 open the connections they need and wait for none; every one
// counted as a pool wait. A request that waits for a connection the
// pool_exhaustion fault holds still counts, once.
func TestConnectionSetupIsNotAPoolWait(t *testing.T) {
	const setup = 40 * time.Millisecond
	cfg := Config{Driver: Postgres, DSN: slowConnect(t, pgDSN(t), setup), PoolSize: 3, UpstreamTimeout: units.Duration(5 * time.Second)}
	f := start(t, cfg)
	// Each request keeps its connection for slow, so that the three
	// overlap on a loaded machine too: the first takes the connection that
	// seeded the schema, the other two must open one each. (Without it a
	// request started late took the first's connection, back after 4ms.)
	const slow = 150 * time.Millisecond
	sq := inject(t, f.u, &SlowQuery{Latency: dist.FixedLatency(slow)})
	var wg sync.WaitGroup
	answers := make([]answer, 3)
	for i := range answers {
		wg.Go(func() { answers[i] = f.get(t, "", nil, 0) })
	}
	// Nor is a request opening a connection waiting for one in the pool's
	// samples (db.pool_exhausted said max_waiting 2). Sampled well inside
	// the connects: a request is on the gauge for the microseconds before
	// its connect begins and after it ends.
	launched := time.Now()
	maxWaiting := 0
	time.Sleep(setup / 4)
	for time.Since(launched) < setup*3/4 {
		maxWaiting = max(maxWaiting, f.u.Stats().Pool.Waiting)
		time.Sleep(500 * time.Microsecond)
	}
	wg.Wait()
	if maxWaiting != 0 {
		t.Errorf("%d requests waiting at once while they opened connections, want 0", maxWaiting)
	}
	opened := 0
	for _, a := range answers {
		a.ok(t, 0, DefaultOrdersPerCustomer)
		if a.elapsed >= slow+setup {
			opened++
		}
		t.Logf("request: %v", a.elapsed.Round(100*time.Microsecond))
	}
	if opened < 2 {
		t.Fatalf("%d requests took the connection setup's %v: the proxy did not slow it", opened, setup)
	}
	s := f.u.Stats()
	if s.PoolWaits != 0 || s.Pool.Open != 3 {
		t.Fatalf("%d pool waits with %d connections open, want 0 with 3: opening a connection is not waiting for one", s.PoolWaits, s.Pool.Open)
	}
	sq.Stop()

	inj := inject(t, f.u, &PoolExhaustion{})
	eventually(t, 5*time.Second, "the fault to hold the pool", func() bool { return f.u.Stats().Pool.Held == 3 })
	waiter := make(chan answer, 1)
	go func() { waiter <- f.get(t, "", nil, 0) }()
	eventually(t, 5*time.Second, "a request to wait in the pool", func() bool { return f.u.Stats().Pool.Waiting == 1 })
	time.Sleep(50 * time.Millisecond)
	inj.Stop()
	(<-waiter).ok(t, 0, DefaultOrdersPerCustomer)
	if s := f.u.Stats(); s.PoolWaits != 1 || inj.Effects() != 1 {
		t.Fatalf("%d pool waits, the fault's effects %d; want 1 and 1: the request waited for a held connection", s.PoolWaits, inj.Effects())
	}
}

// A deadline that fires while the pool opens a connection for the request
// ends a connect, not a wait for a connection another request holds: the
// answer says stage "connect" and no pool timeout is counted (the summary
// would otherwise blame pool exhaustion on a slow connection setup).
func TestDeadlineDuringConnectIsNotAPoolTimeout(t *testing.T) {
	const setup = 400 * time.Millisecond
	cfg := Config{Driver: Postgres, DSN: slowConnect(t, pgDSN(t), setup), PoolSize: 2,
		UpstreamTimeout: units.Duration(100 * time.Millisecond)}
	f := start(t, cfg)
	// The pool keeps the connection that seeded the schema: a hold of one
	// takes it (or opens one), so the request has to open the other.
	inject(t, f.u, &PoolExhaustion{Hold: 1})
	eventually(t, 5*time.Second, "the fault to hold a connection", func() bool { return f.u.Stats().Pool.Held == 1 })
	a := f.get(t, "", nil, 0)
	if a.cause != cause.UpstreamTimeout.String() || a.stage != string(stageConnect) {
		t.Fatalf("got %v, want cause %s at stage %q", a, cause.UpstreamTimeout, stageConnect)
	}
	if a.elapsed >= setup {
		t.Fatalf("answered after %v, want at the 100ms deadline, before the %v connect ended", a.elapsed, setup)
	}
	if s := f.u.Stats(); s.PoolTimeouts != 0 || s.UpstreamTimeouts != 1 {
		t.Fatalf("%d pool timeouts, %d upstream timeouts; want 0 and 1", s.PoolTimeouts, s.UpstreamTimeouts)
	}
}

package slowdb

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

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

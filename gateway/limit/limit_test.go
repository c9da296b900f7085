package limit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
)

func newLimiter(t testing.TB, cfg Config) (*Limiter, *event.Memory) {
	t.Helper()
	var mem event.Memory
	l, err := New(cfg, WithEvents(&mem, nil), WithTarget("api"))
	if err != nil {
		t.Fatal(err)
	}
	return l, &mem
}

func TestOverflowWithoutQueue(t *testing.T) {
	l, mem := newLimiter(t, Config{MaxRequests: 2})
	ctx := context.Background()
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if !l.TryAcquire() {
		t.Fatal("second slot refused")
	}
	if l.TryAcquire() {
		t.Fatal("third slot granted with max_requests 2")
	}
	err := l.Acquire(ctx)
	if !errors.Is(err, ErrOverflow) || !errors.Is(err, ErrMaxRequests) {
		t.Fatalf("err = %v", err)
	}
	l.Release()
	if err := l.Acquire(ctx); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	c := l.Counters()
	if c.Admitted != 3 || c.Overflows != 1 || c.MaxRequests != 1 || l.InFlight() != 2 {
		t.Errorf("counters = %+v, in flight %d", c, l.InFlight())
	}
	evs := mem.Events()
	if len(evs) != 1 || evs[0].Type != "limit.overflow" || evs[0].Attr("reason") != "max_requests" ||
		evs[0].Attrs["in_flight"] != int64(2) || evs[0].Target != "api" {
		t.Errorf("events = %+v", evs)
	}
}

func TestPendingWait(t *testing.T) {
	tests := []struct {
		name      string
		releaseAt time.Duration // 0: never
		want      error
		waited    time.Duration
	}{
		{"slot freed within the wait", 300 * time.Millisecond, nil, 300 * time.Millisecond},
		{"wait runs out", 0, ErrPendingTimeout, time.Second},
		{"slot freed just too late", 1500 * time.Millisecond, ErrPendingTimeout, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l, _ := newLimiter(t, Config{MaxRequests: 1, MaxPending: 1, MaxPendingWait: units.Duration(time.Second)})
				if !l.TryAcquire() {
					t.Fatal("first slot")
				}
				if tt.releaseAt > 0 {
					time.AfterFunc(tt.releaseAt, l.Release)
				}
				var err error
				var took time.Duration
				done := make(chan struct{})
				go func() {
					defer close(done)
					start := time.Now()
					err = l.Acquire(context.Background())
					took = time.Since(start)
				}()
				synctest.Wait()
				if l.Pending() != 1 {
					t.Fatalf("pending = %d", l.Pending())
				}
				// The queue holds one: the next request overflows at once.
				if err := l.Acquire(context.Background()); !errors.Is(err, ErrPendingFull) {
					t.Fatalf("second waiter: %v", err)
				}
				<-done
				if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
					t.Fatalf("Acquire = %v, want %v", err, tt.want)
				}
				if took != tt.waited {
					t.Errorf("waited %v, want %v", took, tt.waited)
				}
				if l.Pending() != 0 {
					t.Errorf("pending left: %d", l.Pending())
				}
				time.Sleep(time.Second) // let a late release run
				c := l.Counters()
				if tt.want == nil && (c.Waited != 1 || l.InFlight() != 1) {
					t.Errorf("counters = %+v, in flight %d", c, l.InFlight())
				}
				if tt.want != nil && (c.PendingTimeout != 1 || c.PendingFull != 1 || c.Overflows != 2) {
					t.Errorf("counters = %+v", c)
				}
			})
		})
	}
}

func TestPendingWaitsForContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _ := newLimiter(t, Config{MaxRequests: 1, MaxPending: 5})
		l.TryAcquire()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		err := l.Acquire(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrOverflow) {
			t.Fatalf("err = %v: the route's deadline is not an overflow", err)
		}
		if time.Since(start) != 10*time.Second {
			t.Errorf("waited %v", time.Since(start))
		}
		if c := l.Counters(); c.Canceled != 1 || c.Overflows != 0 {
			t.Errorf("counters = %+v", c)
		}
	})
}

func TestFIFOHandOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _ := newLimiter(t, Config{MaxRequests: 1, MaxPending: 3})
		l.TryAcquire()
		var order []int
		var mu sync.Mutex
		for i := range 3 {
			go func() {
				if err := l.Acquire(context.Background()); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
			}()
			synctest.Wait() // queue them in order
		}
		for range 3 {
			l.Release()
			synctest.Wait()
			// A newcomer may not jump the queue.
			if l.TryAcquire() {
				t.Fatal("TryAcquire took a slot while requests were waiting or the slot was handed over")
			}
		}
		if len(order) != 3 || order[0] != 0 || order[1] != 1 || order[2] != 2 {
			t.Errorf("order = %v, want FIFO", order)
		}
	})
}

func TestOverflowEventsThrottled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, mem := newLimiter(t, Config{MaxRequests: 1})
		l.TryAcquire()
		for range 5 {
			l.Acquire(context.Background())
		}
		time.Sleep(time.Second)
		l.Acquire(context.Background())
		evs := mem.Events()
		if len(evs) != 2 || evs[0].Attrs["count"] != int64(1) || evs[1].Attrs["count"] != int64(5) {
			t.Errorf("events = %v", evs)
		}
		if evs[1].T-evs[0].T != time.Second {
			t.Errorf("event times %v, %v", evs[0].T, evs[1].T)
		}
	})
}

func TestConcurrentNeverExceeds(t *testing.T) {
	l, _ := newLimiter(t, Config{MaxRequests: 3, MaxPending: 4, MaxPendingWait: units.Duration(50 * time.Millisecond)})
	var cur, peak atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 200 {
				if err := l.Acquire(context.Background()); err != nil {
					if !errors.Is(err, ErrOverflow) {
						t.Error(err)
					}
					continue
				}
				n := cur.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				cur.Add(-1)
				l.Release()
			}
		})
	}
	wg.Wait()
	c := l.Counters()
	if peak.Load() > 3 || l.InFlight() != 0 || l.Pending() != 0 || c.Admitted+c.Overflows != 16*200 {
		t.Errorf("peak %d, in flight %d, pending %d, counters %+v", peak.Load(), l.InFlight(), l.Pending(), c)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		cfg   Config
		field string
	}{
		{Config{MaxRequests: -1}, "max_requests"},
		{Config{MaxPending: -1}, "max_pending"},
		{Config{MaxPending: 1, MaxPendingWait: units.Duration(-1)}, "max_pending_wait"},
		{Config{MaxPendingWait: units.Duration(time.Second)}, "max_pending_wait"},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), tt.field+": ") {
			t.Errorf("%+v: %v", tt.cfg, err)
		}
	}
	l, _ := newLimiter(t, Config{})
	if l.max != DefaultMaxRequests {
		t.Errorf("default max = %d", l.max)
	}
}

func TestRateLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mem event.Memory
		r, err := NewRate(RateConfig{Rate: 10, Burst: 2}, WithEvents(&mem, nil), WithTarget("/api"))
		if err != nil {
			t.Fatal(err)
		}
		allowed := func(n int) (ok int) {
			for range n {
				if err := r.Allow(); err == nil {
					ok++
				} else if !errors.Is(err, ErrRateLimited) {
					t.Fatal(err)
				}
			}
			return ok
		}
		if got := allowed(5); got != 2 {
			t.Fatalf("burst: %d of 5 allowed, want 2", got)
		}
		time.Sleep(100 * time.Millisecond)
		if got := allowed(5); got != 1 {
			t.Fatalf("after one token's time: %d allowed", got)
		}
		// A steady 20/s for 10s against 10/s: about half pass.
		ok := 0
		for range 200 {
			time.Sleep(50 * time.Millisecond)
			ok += allowed(1)
		}
		if ok < 99 || ok > 102 {
			t.Errorf("%d of 200 at twice the rate passed, want 100", ok)
		}
		if c := r.Counters(); c.Allowed != uint64(3+ok) || c.Limited != uint64(7+200-ok) {
			t.Errorf("counters = %+v", c)
		}
		if evs := mem.Events(); len(evs) < 2 || evs[0].Type != "limit.rate_limited" || evs[0].Target != "/api" {
			t.Errorf("events = %v", evs)
		}
	})
	r, err := NewRate(RateConfig{Rate: 250})
	if err != nil || r.Burst() != 250 {
		t.Errorf("default burst = %d, %v", r.Burst(), err)
	}
	r, _ = NewRate(RateConfig{Rate: 0.5})
	if r.Burst() != 1 {
		t.Errorf("default burst under 1/s = %d", r.Burst())
	}
	for _, bad := range []RateConfig{{}, {Rate: -1}, {Rate: 1, Burst: -1}} {
		if _, err := NewRate(bad); err == nil {
			t.Errorf("NewRate(%+v) accepted", bad)
		}
	}
}

func BenchmarkTryAcquireRelease(b *testing.B) {
	l, _ := newLimiter(b, Config{MaxRequests: 1 << 20})
	b.ReportAllocs()
	for b.Loop() {
		if !l.TryAcquire() {
			b.Fatal("refused")
		}
		l.Release()
	}
}

func BenchmarkTryAcquireReleaseParallel(b *testing.B) {
	l, _ := newLimiter(b, Config{MaxRequests: 1 << 20})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if l.TryAcquire() {
				l.Release()
			}
		}
	})
}

func BenchmarkAcquireRelease(b *testing.B) {
	l, _ := newLimiter(b, Config{MaxRequests: 1 << 20})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Acquire(ctx); err != nil {
			b.Fatal(err)
		}
		l.Release()
	}
}

func BenchmarkRateAllow(b *testing.B) {
	r, _ := NewRate(RateConfig{Rate: 1e12, Burst: 1 << 30})
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Allow()
	}
}

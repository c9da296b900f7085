package health

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cascadehq/cascade/gateway/balance"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
)

func newSet(t *testing.T, n int) (*balance.Balancer, []*balance.Endpoint) {
	t.Helper()
	b, err := balance.New(balance.Config{}, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	eps := make([]*balance.Endpoint, n)
	for i := range eps {
		eps[i] = balance.NewEndpoint(fmt.Sprintf("127.0.0.1:%d", 20000+i), 1)
	}
	if err := b.Add(eps...); err != nil {
		t.Fatal(err)
	}
	return b, eps
}

func newDetector(t *testing.T, cfg OutlierConfig, n int) (*Detector, *balance.Balancer, []*balance.Endpoint, *event.Memory) {
	t.Helper()
	set, eps := newSet(t, n)
	var mem event.Memory
	d, err := NewDetector(cfg, set, WithEvents(&mem, event.NewClock()), WithTarget("api"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d, set, eps, &mem
}

func evTypes(mem *event.Memory) string {
	var s []string
	for _, e := range mem.Events() {
		s = append(s, e.Type)
	}
	return strings.Join(s, " ")
}

func TestConsecutive5xxEjection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, set, eps, mem := newDetector(t, OutlierConfig{MaxEjectionPercent: 1}, 2)
		bad := eps[0]
		for range 4 {
			d.ObserveStatus(bad, 500)
		}
		d.ObserveStatus(bad, 404) // any non-5xx breaks the run
		for range 4 {
			d.ObserveStatus(bad, 503)
		}
		if bad.Ejected(time.Now()) {
			t.Fatal("ejected after 4 in a row")
		}
		d.ObserveFailure(bad) // a reset is the 5th
		if !bad.Ejected(time.Now()) {
			t.Fatal("not ejected after 5 in a row")
		}
		for range 10 {
			if set.Pick(nil) == bad {
				t.Fatal("picked an ejected endpoint")
			}
		}
		// Results still in flight when it was ejected are ignored.
		for range 10 {
			d.ObserveStatus(bad, 500)
		}
		start := time.Now()
		time.Sleep(30*time.Second - time.Millisecond)
		if !bad.Ejected(time.Now()) {
			t.Fatal("returned early")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if bad.Ejected(time.Now()) {
			t.Fatal("still ejected after base_ejection_time")
		}
		evs := mem.Events()
		if evTypes(mem) != "outlier.eject outlier.uneject" {
			t.Fatalf("events: %s", evTypes(mem))
		}
		if evs[1].T-evs[0].T != 30*time.Second || evs[0].Target != "api[127.0.0.1:20000]" ||
			evs[0].Attr("reason") != "consecutive_5xx" || evs[0].Attrs["ejection_ms"] != int64(30000) {
			t.Errorf("events = %+v (ejected at %v)", evs, start)
		}
	})
}

func TestEjectionTimeGrowsAndDecays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, _, eps, mem := newDetector(t, OutlierConfig{Consecutive5xx: 1, BaseEjectionTime: units.Duration(10 * time.Second),
			MaxEjectionTime: units.Duration(25 * time.Second), Interval: units.Duration(time.Minute), MaxEjectionPercent: 1}, 1)
		ep := eps[0]
		// Ejected 1×, 2×, then 3× capped at 25s.
		for _, want := range []time.Duration{10 * time.Second, 20 * time.Second, 25 * time.Second} {
			d.ObserveStatus(ep, 502)
			if got := time.Until(ep.EjectedUntil()); got != want {
				t.Fatalf("ejection %v, want %v", got, want)
			}
			time.Sleep(want)
			synctest.Wait()
		}
		// Two intervals in rotation take the multiplier from 3 down to 1, so
		// the next ejection is 2× base.
		time.Sleep(2 * time.Minute)
		d.ObserveStatus(ep, 500)
		if got := time.Until(ep.EjectedUntil()); got != 20*time.Second {
			t.Errorf("after two quiet intervals: ejected for %v, want 20s", got)
		}
		if d.Counters().Ejections != 4 {
			t.Errorf("counters = %+v", d.Counters())
		}
		_ = mem
	})
}

func TestMaxEjectionPercent(t *testing.T) {
	tests := []struct {
		percent   units.Percent
		endpoints int
		ejectable int
	}{
		{0, 4, 1}, // default 10%: still one, as Envoy guarantees
		{0.1, 20, 2},
		{0.5, 4, 2},
		{0.5, 5, 2},
		{1, 3, 3},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v of %d", tt.percent, tt.endpoints), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d, set, eps, mem := newDetector(t, OutlierConfig{Consecutive5xx: 2, MaxEjectionPercent: tt.percent}, tt.endpoints)
				for _, ep := range eps {
					d.ObserveStatus(ep, 500)
					d.ObserveStatus(ep, 500)
				}
				ejected := 0
				for _, ep := range set.Endpoints() {
					if ep.Ejected(time.Now()) {
						ejected++
					}
				}
				if ejected != tt.ejectable {
					t.Errorf("ejected %d of %d, want %d", ejected, tt.endpoints, tt.ejectable)
				}
				c := d.Counters()
				if int(c.Overflows) != tt.endpoints-tt.ejectable {
					t.Errorf("overflows = %d", c.Overflows)
				}
				if n := strings.Count(evTypes(mem), "outlier.eject_overflow"); n != tt.endpoints-tt.ejectable {
					t.Errorf("%d overflow events: %s", n, evTypes(mem))
				}
			})
		})
	}
}

func TestConsecutiveGatewayFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, _, eps, mem := newDetector(t, OutlierConfig{Consecutive5xx: 100, ConsecutiveGatewayFailure: 3, MaxEjectionPercent: 1}, 1)
		ep := eps[0]
		d.ObserveStatus(ep, 502)
		d.ObserveStatus(ep, 504)
		d.ObserveStatus(ep, 500) // a 5xx but not a gateway failure: breaks the run
		d.ObserveStatus(ep, 503)
		d.ObserveFailure(ep)
		if ep.Ejected(time.Now()) {
			t.Fatal("ejected after 2 gateway failures in a row")
		}
		d.ObserveStatus(ep, 502)
		if !ep.Ejected(time.Now()) {
			t.Fatal("not ejected after 3")
		}
		if e := mem.Events()[0]; e.Attr("reason") != "consecutive_gateway_failure" || e.Attrs["consecutive"] != 3 {
			t.Errorf("event = %+v", e)
		}
	})
}

func TestGatewayFailureOffByDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, _, eps, _ := newDetector(t, OutlierConfig{Consecutive5xx: 1000}, 1)
		for range 100 {
			d.ObserveStatus(eps[0], 503)
		}
		if eps[0].Ejected(time.Now()) {
			t.Error("consecutive_gateway_failure ejected with its default (off)")
		}
	})
}

func TestOutlierValidate(t *testing.T) {
	tests := []struct {
		cfg   OutlierConfig
		field string
	}{
		{OutlierConfig{Consecutive5xx: -1}, "consecutive_5xx"},
		{OutlierConfig{ConsecutiveGatewayFailure: -1}, "consecutive_gateway_failure"},
		{OutlierConfig{BaseEjectionTime: units.Duration(-1)}, "base_ejection_time"},
		{OutlierConfig{BaseEjectionTime: units.Duration(time.Minute), MaxEjectionTime: units.Duration(time.Second)}, "max_ejection_time"},
		{OutlierConfig{MaxEjectionPercent: 2}, "max_ejection_percent"},
		{OutlierConfig{Interval: units.Duration(-1)}, "interval"},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), tt.field+": ") {
			t.Errorf("%+v: %v", tt.cfg, err)
		}
	}
	// A base above the default max raises the max with it.
	if err := (OutlierConfig{BaseEjectionTime: units.Duration(10 * time.Minute)}).Validate(); err != nil {
		t.Error(err)
	}
}

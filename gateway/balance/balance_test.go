package balance

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cascadehq/cascade/internal/event"
)

func newBalancer(t testing.TB, policy string, weights ...int) (*Balancer, []*Endpoint) {
	t.Helper()
	b, err := New(Config{Policy: policy}, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	eps := make([]*Endpoint, len(weights))
	for i, w := range weights {
		eps[i] = NewEndpoint(fmt.Sprintf("127.0.0.1:%d", 9000+i), w)
	}
	if err := b.Add(eps...); err != nil {
		t.Fatal(err)
	}
	return b, eps
}

func count(b *Balancer, n int, avoid *Endpoint) map[*Endpoint]int {
	got := map[*Endpoint]int{}
	for range n {
		got[b.Pick(avoid)]++
	}
	return got
}

func TestRoundRobin(t *testing.T) {
	b, eps := newBalancer(t, "round_robin", 1, 5, 1)
	got := count(b, 300, nil)
	for _, e := range eps {
		if got[e] != 100 {
			t.Errorf("%s picked %d/300 times, want 100 (weights ignored)", e, got[e])
		}
	}
	eps[1].SetHealthy(false)
	got = count(b, 300, nil)
	if got[eps[1]] != 0 || got[eps[0]]+got[eps[2]] != 300 || got[eps[0]] < 100 {
		t.Errorf("with %s unhealthy: %v", eps[1], got)
	}
}

func TestWeightedRoundRobinExactCycle(t *testing.T) {
	b, eps := newBalancer(t, "weighted_round_robin", 5, 1)
	var seq strings.Builder
	for range 6 {
		seq.WriteString(map[*Endpoint]string{eps[0]: "a", eps[1]: "b"}[b.Pick(nil)])
	}
	// Smooth: the light endpoint lands inside the cycle, not at its end.
	if seq.String() != "aaabaa" {
		t.Errorf("cycle = %q, want aaabaa (nginx's order)", seq.String())
	}
	for cycle := range 50 {
		got := count(b, 6, nil)
		if got[eps[0]] != 5 || got[eps[1]] != 1 {
			t.Fatalf("cycle %d: %d:%d, want 5:1", cycle, got[eps[0]], got[eps[1]])
		}
	}
}

func TestWeightedRoundRobinSetChanges(t *testing.T) {
	b, eps := newBalancer(t, "weighted_round_robin", 1, 1)
	count(b, 3, nil) // leave some credit behind
	c := NewEndpoint("127.0.0.1:9100", 2)
	if err := b.Add(c); err != nil {
		t.Fatal(err)
	}
	// Weights 1:1:2 settle into cycles of 4 within one cycle of the change.
	count(b, 4, nil)
	for range 10 {
		got := count(b, 4, nil)
		if got[eps[0]] != 1 || got[eps[1]] != 1 || got[c] != 2 {
			t.Fatalf("after add: %v", got)
		}
	}
	b.Remove(eps[0].Addr())
	count(b, 3, nil)
	for range 10 {
		got := count(b, 3, nil)
		if got[eps[1]] != 1 || got[c] != 2 {
			t.Fatalf("after remove: %v", got)
		}
	}
}

func TestLeastRequest(t *testing.T) {
	b, eps := newBalancer(t, "least_request", 1, 1, 1)
	for range 3 {
		eps[0].Start()
	}
	eps[1].Start()
	// eps[2] has none in flight: it wins every time.
	if got := count(b, 10, nil); got[eps[2]] != 10 {
		t.Fatalf("picks = %v, want all on the idle endpoint", got)
	}
	eps[2].Start()
	// eps[1] and eps[2] tie at one: they share evenly.
	if got := count(b, 1000, nil); got[eps[0]] != 0 || got[eps[1]] < 400 || got[eps[1]] > 600 {
		t.Fatalf("tie: %v", got)
	}
	// Filling up as a proxy would: each pick starts a request.
	b2, eps2 := newBalancer(t, "least_request", 1, 1, 2)
	for range 40 {
		b2.Pick(nil).Start()
	}
	// Weight 2 carries twice the load: 10, 10, 20.
	if eps2[0].InFlight() != 10 || eps2[1].InFlight() != 10 || eps2[2].InFlight() != 20 {
		t.Errorf("in flight %d %d %d, want 10 10 20", eps2[0].InFlight(), eps2[1].InFlight(), eps2[2].InFlight())
	}
	eps2[2].Done(time.Millisecond)
	if eps2[2].InFlight() != 19 {
		t.Errorf("Done did not decrement: %d", eps2[2].InFlight())
	}
}

func TestP2CPrefersFast(t *testing.T) {
	b, eps := newBalancer(t, "p2c_ewma", 1, 1, 1)
	for i, d := range []time.Duration{10, 20, 100} {
		eps[i].Observe(d * time.Millisecond)
	}
	got := count(b, 3000, nil)
	// The slowest loses every comparison; the fastest wins each one it is in
	// (two pairs of three: 2/3 of picks).
	if got[eps[2]] != 0 {
		t.Errorf("slowest picked %d times", got[eps[2]])
	}
	if got[eps[0]] < 1800 || got[eps[0]] > 2200 {
		t.Errorf("fastest picked %d/3000, want about 2000", got[eps[0]])
	}
	// Load counts too: the fast endpoint with 10 in flight costs 110ms-units,
	// more than the 20ms one idle.
	for range 10 {
		eps[0].Start()
	}
	got = count(b, 3000, nil)
	if got[eps[1]] < 1800 || got[eps[0]] > 1200 {
		t.Errorf("with the fast endpoint loaded: %v", got)
	}
}

func TestPeakEWMA(t *testing.T) {
	e := NewEndpoint("x", 1)
	e.Observe(10 * time.Millisecond)
	e.Observe(100 * time.Millisecond)
	if e.EWMA() != 100*time.Millisecond {
		t.Errorf("a slower sample must replace the average: %v", e.EWMA())
	}
	e.Observe(0)
	if want := 70 * time.Millisecond; e.EWMA() != want {
		t.Errorf("decay: %v, want %v", e.EWMA(), want)
	}
}

func TestRandomWeighted(t *testing.T) {
	b, eps := newBalancer(t, "random", 3, 1)
	got := count(b, 8000, nil)
	if got[eps[0]] < 5700 || got[eps[0]] > 6300 {
		t.Errorf("weight 3 of 4 picked %d/8000 times, want about 6000", got[eps[0]])
	}
	// Same seed, same sequence.
	b1, e1 := newBalancer(t, "random", 1, 1, 1)
	b2, e2 := newBalancer(t, "random", 1, 1, 1)
	for i := range 100 {
		x, y := b1.Pick(nil), b2.Pick(nil)
		if x.Addr() != y.Addr() {
			t.Fatalf("pick %d differs with the same seed: %s vs %s", i, x, y)
		}
	}
	_, _ = e1, e2
}

func TestAvoidAndAvailability(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b, eps := newBalancer(t, name, 1, 1)
				a, c := eps[0], eps[1]
				if got := count(b, 20, a); got[c] != 20 {
					t.Errorf("avoiding a: %v", got)
				}
				c.SetHealthy(false)
				if got := b.Pick(a); got != a {
					t.Errorf("the avoided endpoint is the only one left: got %v", got)
				}
				a.Eject(time.Now().Add(30 * time.Second))
				if got := b.Pick(nil); got != nil {
					t.Errorf("all unavailable: got %v", got)
				}
				if got := b.Pick(a); got != nil {
					t.Errorf("avoid is ejected: got %v", got)
				}
				time.Sleep(30 * time.Second)
				if got := b.Pick(nil); got != a {
					t.Errorf("ejection over: got %v", got)
				}
				c.SetHealthy(true)
				a.Eject(time.Now().Add(time.Second))
				if got := count(b, 10, nil); got[c] != 10 {
					t.Errorf("a ejected: %v", got)
				}
				a.Uneject()
				if got := count(b, 10, c); got[a] != 10 {
					t.Errorf("after uneject, avoiding c: %v", got)
				}
				other := NewEndpoint("127.0.0.1:1", 1)
				c.SetHealthy(false)
				a.SetHealthy(false)
				if got := b.Pick(other); got != nil {
					t.Errorf("avoid not in the set must not be returned: %v", got)
				}
			})
		})
	}
}

func TestEmpty(t *testing.T) {
	for _, name := range Names() {
		b, _ := newBalancer(t, name)
		if got := b.Pick(nil); got != nil {
			t.Errorf("%s on an empty set: %v", name, got)
		}
	}
}

func TestUnknownPolicy(t *testing.T) {
	_, err := New(Config{Policy: "maglev"}, rand.New(rand.NewPCG(1, 1)))
	if err == nil || !errors.Is(err, ErrUnknownPolicy) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"policy: ", "least_request, p2c_ewma, random, round_robin, weighted_round_robin"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if err := (Config{Policy: "maglev"}).Validate(); err == nil {
		t.Error("Validate accepted an unknown policy")
	}
	if err := (Config{}).Validate(); err != nil {
		t.Error(err)
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("New without a rand accepted")
	}
}

func TestAddRemove(t *testing.T) {
	var mem event.Memory
	b, err := New(Config{}, rand.New(rand.NewPCG(1, 1)), WithEvents(&mem, nil), WithTarget("api"))
	if err != nil {
		t.Fatal(err)
	}
	x := NewEndpoint("127.0.0.1:1", 1)
	if err := b.Add(x); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]*Endpoint{
		{NewEndpoint("127.0.0.1:1", 1)},
		{NewEndpoint("127.0.0.1:2", 1), NewEndpoint("127.0.0.1:2", 1)},
		{NewEndpoint("", 1)},
		{NewEndpoint("127.0.0.1:3", 0)},
		{NewEndpoint("127.0.0.1:3", MaxWeight+1)}, // sums of weights wrapped: the random policy panicked
		{nil},
	} {
		if err := b.Add(bad...); err == nil {
			t.Errorf("Add(%v) accepted", bad)
		}
	}
	if n := len(b.Endpoints()); n != 1 {
		t.Fatalf("a refused Add changed the set: %d endpoints", n)
	}
	if b.Get("127.0.0.1:1") != x || b.Remove("127.0.0.1:1") != x || b.Remove("127.0.0.1:1") != nil {
		t.Error("Get/Remove")
	}
	var got []string
	for _, e := range mem.Events() {
		got = append(got, e.Type+" "+e.Attr("addr"))
	}
	if strings.Join(got, ",") != "endpoint.add 127.0.0.1:1,endpoint.remove 127.0.0.1:1" {
		t.Errorf("events: %v", got)
	}
}

// TestConcurrentChurn picks from many goroutines while endpoints come and
// go, as under autoscaling; run with -race. Every pick must be an endpoint
// that was in the set and available.
func TestConcurrentChurn(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			b, eps := newBalancer(t, name, 1, 2, 3)
			eps[1].SetHealthy(false)
			var wg sync.WaitGroup
			stop := make(chan struct{})
			wg.Go(func() {
				defer close(stop)
				for i := range 300 {
					addr := fmt.Sprintf("127.0.0.1:%d", 10000+i%7)
					if b.Remove(addr) == nil {
						_ = b.Add(NewEndpoint(addr, 1+i%3))
					}
				}
			})
			var bad sync.Map
			for range 4 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						e := b.Pick(eps[0])
						if e == nil || e == eps[1] {
							bad.Store(fmt.Sprint(e), true)
							continue
						}
						e.Start()
						e.Done(time.Microsecond)
					}
				})
			}
			wg.Wait()
			bad.Range(func(k, _ any) bool { t.Errorf("picked %v", k); return true })
		})
	}
}

func BenchmarkPick(b *testing.B) {
	for _, name := range Names() {
		b.Run(name, func(b *testing.B) {
			bal, eps := newBalancer(b, name, 1, 2, 3, 1, 1, 2, 1, 1)
			for i, e := range eps {
				e.Observe(time.Duration(i+1) * time.Millisecond)
			}
			b.ReportAllocs()
			for b.Loop() {
				if bal.Pick(eps[0]) == nil {
					b.Fatal("nil")
				}
			}
		})
	}
	b.Run("round_robin/with_ejected", func(b *testing.B) {
		bal, eps := newBalancer(b, "round_robin", 1, 1, 1, 1)
		eps[1].Eject(time.Now().Add(time.Hour))
		b.ReportAllocs()
		for b.Loop() {
			bal.Pick(nil)
		}
	})
}

// Below the panic threshold the balancer spreads requests over every
// endpoint, as Envoy does below healthy_panic_threshold: the one replica
// left healthy out of four would otherwise take the whole load.
func TestPanicThreshold(t *testing.T) {
	var mem event.Memory
	b, err := New(Config{PanicThreshold: 0.5}, rand.New(rand.NewPCG(1, 1)), WithEvents(&mem, nil), WithTarget("api"))
	if err != nil {
		t.Fatal(err)
	}
	eps := make([]*Endpoint, 4)
	for i := range eps {
		eps[i] = NewEndpoint(fmt.Sprintf("127.0.0.1:%d", 9000+i), 1)
	}
	if err := b.Add(eps...); err != nil {
		t.Fatal(err)
	}

	// Two of four available is 50 %, not below it: health is trusted.
	eps[0].SetHealthy(false)
	eps[1].Eject(time.Now().Add(time.Hour))
	got := count(b, 400, nil)
	if got[eps[0]] != 0 || got[eps[1]] != 0 || got[eps[2]]+got[eps[3]] != 400 || b.Panicking() {
		t.Fatalf("2 of 4 available: %v, panicking %v", got, b.Panicking())
	}

	// One of four (an ejection counts as unavailable, as in Envoy): panic,
	// every endpoint takes its share, and a retry still avoids its last.
	eps[2].SetHealthy(false)
	got = count(b, 400, nil)
	for _, e := range eps {
		if got[e] != 100 {
			t.Fatalf("in panic: %v, want 100 each", got)
		}
	}
	if got := count(b, 300, eps[3]); got[eps[3]] != 0 {
		t.Fatalf("in panic the endpoint to avoid was picked: %v", got)
	}

	// None available: still every endpoint, not nil (no_healthy_upstream).
	eps[3].SetHealthy(false)
	if b.Pick(nil) == nil {
		t.Fatal("in panic with none available, Pick returned nil")
	}

	// Back above the threshold: health is trusted again.
	for _, e := range eps {
		e.SetHealthy(true)
	}
	eps[1].Uneject()
	eps[0].SetHealthy(false)
	if got := count(b, 300, nil); got[eps[0]] != 0 || b.Panicking() {
		t.Fatalf("after recovery: %v, panicking %v", got, b.Panicking())
	}

	var evs []string
	for _, e := range mem.Events() {
		if e.Type == EvPanic {
			evs = append(evs, fmt.Sprintf("%v/%v/%v", e.Attrs["panic"], e.Attrs["available"], e.Attrs["endpoints"]))
		}
	}
	if strings.Join(evs, ",") != "true/1/4,false/3/4" || b.Panics() != 1 {
		t.Fatalf("panic events %v, panics %d; want true/1/4,false/3/4 and 1", evs, b.Panics())
	}

	// Off (the default): with none available, none is picked.
	off, offEps := newBalancer(t, "round_robin", 1, 1)
	for _, e := range offEps {
		e.SetHealthy(false)
	}
	if off.Pick(nil) != nil || off.Panicking() {
		t.Fatal("without a threshold, an unhealthy endpoint was picked")
	}
}

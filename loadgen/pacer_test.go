package loadgen

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// Due is the open model's contract as a table: elapsed → requests an
// on-time sender has sent.
func TestPacerDue(t *testing.T) {
	s, ms := time.Second, time.Millisecond
	cases := []struct {
		name    string
		stages  []Stage
		elapsed time.Duration
		due     int64
	}{
		{"before start", []Stage{{10 * s, 100, 100}}, -ms, 0},
		{"first at zero", []Stage{{10 * s, 100, 100}}, 0, 1},
		{"just before second", []Stage{{10 * s, 100, 100}}, 9 * ms, 1},
		{"second", []Stage{{10 * s, 100, 100}}, 10 * ms, 2},
		{"one second", []Stage{{10 * s, 100, 100}}, s, 101},
		{"at end", []Stage{{10 * s, 100, 100}}, 10 * s, 1000},
		{"past end", []Stage{{10 * s, 100, 100}}, time.Hour, 1000},
		// Ramp 0→100/s over 10 s: N(t) = 5t², request n due at sqrt(n/5).
		{"ramp 2s", []Stage{{10 * s, 0, 100}}, 2 * s, 21},
		{"ramp 5s", []Stage{{10 * s, 0, 100}}, 5 * s, 126},
		{"ramp end", []Stage{{10 * s, 0, 100}}, 10 * s, 500},
		{"two stages", []Stage{{s, 10, 10}, {s, 100, 100}}, 1500 * ms, 61},
		{"pause stage", []Stage{{s, 10, 10}, {s, 0, 0}, {s, 10, 10}}, 1999 * ms, 10},
		{"after pause", []Stage{{s, 10, 10}, {s, 0, 0}, {s, 10, 10}}, 2 * s, 11},
		{"5000/s 20s", []Stage{{20 * s, 5000, 5000}}, 20 * s, 100000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := NewPacer(tc.stages).Due(tc.elapsed); got != tc.due {
				t.Fatalf("Due(%s) = %d, want %d", tc.elapsed, got, tc.due)
			}
		})
	}
}

func TestPacerTimeOfInvertsExpected(t *testing.T) {
	p := NewPacer([]Stage{{2 * time.Second, 0, 300}, {3 * time.Second, 300, 300}, {time.Second, 300, 50}})
	for _, x := range []float64{0.5, 17.25, 299.9, 300, 650.5, 1200, 1374.9} {
		at, ok := p.TimeOf(x)
		if !ok {
			t.Fatalf("TimeOf(%g) beyond the profile", x)
		}
		if got := p.Expected(0, at); math.Abs(got-x) > 1e-3 {
			t.Fatalf("Expected(0, TimeOf(%g)) = %g", x, got)
		}
	}
	if _, ok := p.TimeOf(1375); ok {
		t.Fatal("TimeOf(total) should be past the end")
	}
	if _, ok := p.TimeOf(-1); ok {
		t.Fatal("TimeOf(-1) should fail")
	}
}

func TestVUsAt(t *testing.T) {
	s := time.Second
	p := NewPacer([]Stage{{10 * s, 0, 10}, {5 * s, 10, 10}, {5 * s, 10, 0}})
	for _, tc := range []struct {
		at  time.Duration
		vus int
	}{
		{-s, 0}, {0, 0}, {999 * time.Millisecond, 0}, {s, 1}, {5500 * time.Millisecond, 5}, {10 * s, 10},
		{12 * s, 10}, {15 * s, 10}, {17500 * time.Millisecond, 5}, {20 * s, 0}, {time.Hour, 0},
		// A ramp down is a ramp up in a mirror: it holds the count it
		// starts from until a VU's share of the stage has passed, and
		// reaches its target at the stage's end (rounded down, 10 VUs
		// became 9 at once, and 0 a second early).
		{15100 * time.Millisecond, 10}, {15499 * time.Millisecond, 10}, {15500 * time.Millisecond, 9}, {19900 * time.Millisecond, 1},
	} {
		if got := p.VUsAt(tc.at); got != tc.vus {
			t.Errorf("VUsAt(%s) = %d, want %d", tc.at, got, tc.vus)
		}
	}
}

func TestArrivalsEven(t *testing.T) {
	p := NewPacer([]Stage{{time.Second, 4, 4}})
	a := NewArrivals(p, nil)
	var got []time.Duration
	for {
		at, ok := a.Next()
		if !ok {
			break
		}
		got = append(got, at)
	}
	want := []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, 750 * time.Millisecond}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if (got[i] - want[i]).Abs() > time.Microsecond {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

// Poisson arrivals: seeded (same seed, same times), the right count, and
// Poisson statistics: exponential gaps (coefficient of variation ≈ 1) and
// counts per window whose variance equals their mean.
func TestArrivalsPoisson(t *testing.T) {
	cases := []struct {
		name   string
		stages []Stage
	}{
		{"constant 1000/s", []Stage{{60 * time.Second, 1000, 1000}}},
		{"ramp 0→2000/s", []Stage{{60 * time.Second, 0, 2000}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPacer(tc.stages)
			times := func(seed uint64) []time.Duration {
				a := NewArrivals(p, rand.New(rand.NewPCG(seed, 1)))
				var out []time.Duration
				for {
					at, ok := a.Next()
					if !ok {
						return out
					}
					out = append(out, at)
				}
			}
			x, y, z := times(7), times(7), times(8)
			if len(x) != len(y) || x[100] != y[100] || x[len(x)-1] != y[len(y)-1] {
				t.Fatal("same seed, different arrivals")
			}
			if x[100] == z[100] {
				t.Fatal("different seeds, same arrivals")
			}
			// The count is Poisson with mean Total: within 4 standard deviations.
			if n, want := float64(len(x)), p.Total(); math.Abs(n-want) > 4*math.Sqrt(want) {
				t.Fatalf("%d arrivals, want %.0f ± %.0f", len(x), want, 4*math.Sqrt(want))
			}
			for i := 1; i < len(x); i++ {
				if x[i] < x[i-1] {
					t.Fatalf("arrivals out of order at %d", i)
				}
			}
			// Counts in 100 ms windows, compared with the profile's expectation:
			// the standardized residuals have mean ≈ 0 and variance ≈ 1.
			w := 100 * time.Millisecond
			counts := make([]float64, p.Duration()/w)
			for _, at := range x {
				if i := int(at / w); i < len(counts) {
					counts[i]++
				}
			}
			var sum, sq float64
			k := 0
			for i, c := range counts {
				e := p.Expected(time.Duration(i)*w, time.Duration(i+1)*w)
				if e < 20 {
					continue
				}
				r := (c - e) / math.Sqrt(e)
				sum += r
				sq += r * r
				k++
			}
			mean, variance := sum/float64(k), sq/float64(k)-(sum/float64(k))*(sum/float64(k))
			if math.Abs(mean) > 0.2 || variance < 0.75 || variance > 1.3 {
				t.Fatalf("standardized window counts: mean %.3f, variance %.3f; want ≈0 and ≈1 (Poisson)", mean, variance)
			}
		})
	}
}

func BenchmarkPacerAt(b *testing.B) {
	p := NewPacer([]Stage{{10 * time.Second, 0, 5000}, {time.Hour, 5000, 5000}})
	b.ReportAllocs()
	for i := range b.N {
		p.At(int64(i % 10_000_000))
	}
}

func BenchmarkArrivalsPoisson(b *testing.B) {
	p := NewPacer([]Stage{{1000 * time.Hour, 5000, 5000}})
	a := NewArrivals(p, rand.New(rand.NewPCG(1, 2)))
	b.ReportAllocs()
	for range b.N {
		a.Next()
	}
}

// The summed target of several executors is one profile with the same
// arrivals in every window.
func TestTargetProfile(t *testing.T) {
	s := time.Second
	cfg := Config{Executors: []Config{
		{Stages: []Stage{{10 * s, 100, 100}}},
		{Start: 2 * s, Stages: []Stage{{2 * s, 0, 400}, {2 * s, 400, 400}}},
		{Kind: VUs, Stages: []Stage{{10 * s, 50, 50}}}, // closed: no target
	}}
	prof := TargetProfile(cfg)
	p := NewPacer(prof)
	if p.Duration() != 10*s {
		t.Fatalf("profile %v lasts %s", prof, p.Duration())
	}
	for _, w := range [][2]time.Duration{{0, 2 * s}, {2 * s, 3 * s}, {3 * s, 5 * s}, {5 * s, 7 * s}, {0, 10 * s}} {
		want := NewPacer(cfg.Executors[0].Stages).Expected(w[0], w[1]) + NewPacer(cfg.Executors[1].Stages).Expected(w[0]-2*s, w[1]-2*s)
		if got := p.Expected(w[0], w[1]); math.Abs(got-want) > 1e-6 {
			t.Errorf("window %v: %f, want %f", w, got, want)
		}
	}
	if r := p.RateAt(3 * s); r != 300 {
		t.Errorf("rate at 3s = %f, want 300", r)
	}
	if TargetProfile(Config{Kind: VUs, Stages: []Stage{{s, 5, 5}}}) != nil {
		t.Error("a closed model has a target profile")
	}
	single := []Stage{{s, 10, 20}}
	if got := TargetProfile(Config{Stages: single}); len(got) != 1 || got[0] != single[0] {
		t.Errorf("single form: %v", got)
	}
}

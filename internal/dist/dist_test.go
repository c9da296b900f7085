package dist

import (
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

func ms(n float64) units.Duration { return units.Duration(n * float64(time.Millisecond)) }

// quantiles draws n samples and returns the requested quantiles.
func quantiles(l Latency, n int, qs ...float64) []time.Duration {
	s := NewSampler(l, rand.New(rand.NewPCG(1, 2)))
	xs := make([]time.Duration, n)
	for i := range xs {
		xs[i] = s.Sample()
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i] < xs[j] })
	out := make([]time.Duration, len(qs))
	for i, q := range qs {
		out[i] = xs[int(q*float64(n-1))]
	}
	return out
}

func near(t *testing.T, what string, got time.Duration, want units.Duration, tol float64) {
	t.Helper()
	w := want.D()
	if d := float64(got - w); d > tol*float64(w) || d < -tol*float64(w) {
		t.Errorf("%s = %s, want %s ±%.0f%%", what, got, w, tol*100)
	}
}

func TestDistributionsHitTheirQuantiles(t *testing.T) {
	ln := quantiles(Latency{Dist: LogNormal, P50: ms(20), P99: ms(200)}, 200000, 0.5, 0.99)
	near(t, "lognormal p50", ln[0], ms(20), 0.03)
	near(t, "lognormal p99", ln[1], ms(200), 0.05)

	u := quantiles(Latency{Dist: Uniform, Min: ms(10), Max: ms(50)}, 100000, 0, 0.5, 1)
	near(t, "uniform min", u[0], ms(10), 0.01)
	near(t, "uniform p50", u[1], ms(30), 0.02)
	near(t, "uniform max", u[2], ms(50), 0.01)

	n := quantiles(Latency{Dist: Normal, Mean: ms(50), Stddev: ms(10)}, 100000, 0.5, 0.8413)
	near(t, "normal mean", n[0], ms(50), 0.02)
	near(t, "normal +1σ", n[1], ms(60), 0.03)

	p := quantiles(Latency{Dist: Percentiles, P50: ms(20), P90: ms(60), P99: ms(200), Max: ms(400)}, 200000, 0.5, 0.9, 0.99)
	near(t, "percentiles p50", p[0], ms(20), 0.02)
	near(t, "percentiles p90", p[1], ms(60), 0.02)
	near(t, "percentiles p99", p[2], ms(200), 0.03)

	if got := quantiles(FixedLatency(7*time.Millisecond), 10, 0, 1); got[0] != 7*time.Millisecond || got[1] != 7*time.Millisecond {
		t.Errorf("fixed: %v", got)
	}
}

func TestSamplesRepeatWithTheSeed(t *testing.T) {
	l := Latency{Dist: LogNormal, P50: ms(5), P99: ms(50)}
	a, b := NewSampler(l, rand.New(rand.NewPCG(9, 9))), NewSampler(l, rand.New(rand.NewPCG(9, 9)))
	for i := 0; i < 100; i++ {
		if a.Sample() != b.Sample() {
			t.Fatal("same seed, different samples")
		}
	}
}

func TestNormalNeverNegative(t *testing.T) {
	s := NewSampler(Latency{Dist: Normal, Mean: ms(1), Stddev: ms(10)}, rand.New(rand.NewPCG(1, 1)))
	for i := 0; i < 10000; i++ {
		if s.Sample() < 0 {
			t.Fatal("negative delay")
		}
	}
}

type holder struct {
	L Latency `yaml:"l"`
}

func TestDecode(t *testing.T) {
	ok := map[string]Latency{
		"l: 20ms\n": FixedLatency(20 * time.Millisecond),
		"l: {dist: uniform, min: 1ms, max: 2ms}\n":   {Dist: Uniform, Min: ms(1), Max: ms(2)},
		"l: {dist: lognormal, p50: 1ms, p99: 9ms}\n": {Dist: LogNormal, P50: ms(1), P99: ms(9)},
	}
	for src, want := range ok {
		var h holder
		if _, err := yamlfile.Decode("l.yaml", []byte(src), &h); err != nil || h.L != want {
			t.Errorf("%q: %+v, %v", src, h.L, err)
		}
	}
	bad := map[string]string{
		"l: {dist: lognormal, p50: 9ms, p99: 1ms}\n":   "p50 <= p99",
		"l: {dist: uniform, min: 1ms}\n":               "min <= max",
		"l: {dist: normal, p50: 1ms}\n":                `does not take "p50"`,
		"l: {dist: weibull}\n":                         `unknown dist "weibull"`,
		"l: {dist: fixed, vlaue: 1ms}\n":               `unknown field "vlaue"`,
		"l: {dist: percentiles, p50: 5ms, p90: 1ms}\n": "must not decrease",
		"l: 5\n": "expected a duration",
	}
	for src, want := range bad {
		var h holder
		_, err := yamlfile.Decode("l.yaml", []byte(src), &h)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "l.yaml:1:") {
			t.Errorf("%q: err = %v, want a positioned error mentioning %q", src, err, want)
		}
	}
}

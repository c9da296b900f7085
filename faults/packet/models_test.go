package packet

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/units"
)

func TestGilbertElliottMatchesItsStationaryLoss(t *testing.T) {
	cases := []struct {
		name string
		g    GilbertElliott
	}{
		{"simple gilbert", GilbertElliott{P: 0.01, R: 0.25}},                                // bursts of ~4
		{"gilbert-elliott", GilbertElliott{P: 0.02, R: 0.1, BadLoss: 0.6, GoodLoss: 0.005}}, // lossy bad state, some good-state loss
		{"netem defaults", GilbertElliott{P: 0.05}},                                         // r = 1-p: Bernoulli 5%
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			g := newGEState(tc.g)
			const n = 400_000
			lostN, bursts, run := 0, 0, 0
			var runs []int
			for range n {
				if g.lose(rng) {
					lostN++
					run++
				} else if run > 0 {
					runs = append(runs, run)
					bursts++
					run = 0
				}
			}
			got, want := float64(lostN)/n, tc.g.MeanLoss()
			if math.Abs(got-want) > 0.1*want {
				t.Errorf("loss %.4f, want %.4f ±10%%", got, want)
			}
			t.Logf("loss %.4f (model %.4f), %d bursts", got, want, bursts)
		})
	}
}

func TestGilbertBurstLength(t *testing.T) {
	// With bad_loss 100% and good_loss 0, every packet in the bad state is
	// lost, and the state lasts 1/r packets on average.
	g := newGEState(GilbertElliott{P: 0.01, R: 0.2})
	rng := rand.New(rand.NewPCG(7, 7))
	var sum, count, run int
	for range 500_000 {
		if g.lose(rng) {
			run++
		} else if run > 0 {
			sum += run
			count++
			run = 0
		}
	}
	mean := float64(sum) / float64(count)
	if math.Abs(mean-5) > 0.5 {
		t.Fatalf("mean burst %.2f packets, want 1/r = 5 ±0.5", mean)
	}
}

func TestGilbertElliottIsDeterministic(t *testing.T) {
	run := func() []bool {
		g := newGEState(GilbertElliott{P: 0.1, R: 0.3})
		rng := rand.New(rand.NewPCG(42, 1))
		out := make([]bool, 1000)
		for i := range out {
			out[i] = g.lose(rng)
		}
		return out
	}
	a, b := run(), run()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("packet %d: same seed, different decision", i)
		}
	}
}

func TestTokenBucket(t *testing.T) {
	ms := int64(time.Millisecond)
	// 1 MB/s = 1000 bytes per ms; burst 1500, queue 3000.
	b := newTokenBucket(1e6, 1500, 3000, 0)
	if at, ok := b.reserve(0, 1500); !ok || at != 0 {
		t.Fatalf("first packet fits the burst: got %d %v", at, ok)
	}
	at, ok := b.reserve(0, 1000)
	if !ok || at != 1*ms {
		t.Fatalf("second packet waits 1ms for 1000 bytes of tokens: got %v %v", time.Duration(at), ok)
	}
	at, ok = b.reserve(0, 1000)
	if !ok || at != 2*ms {
		t.Fatalf("third packet waits behind the second: got %v %v", time.Duration(at), ok)
	}
	if _, ok := b.reserve(0, 1500); ok {
		t.Fatalf("2000 bytes already wait; 1500 more exceed the 3000-byte queue and must be dropped")
	}
	// A dropped packet takes no tokens: the 2000-byte debt is paid at 2ms,
	// and by 3ms 1000 bytes of tokens are back.
	if at, ok := b.reserve(3*ms, 500); !ok || at != 3*ms {
		t.Fatalf("after the queue drained, a small packet fits the refilled tokens: got %v %v", time.Duration(at), ok)
	}
	// Idle time refills only up to the burst.
	at, ok = b.reserve(100*ms, 3000)
	if !ok || at != 100*ms+1500*ms/1000 {
		t.Fatalf("after idling, tokens cap at the 1500-byte burst: got %v %v", time.Duration(at), ok)
	}
}

func TestTokenBucketRate(t *testing.T) {
	// Offered twice the rate for a simulated second, the bucket passes the
	// rate (plus the burst) and drops the rest once the queue is full.
	const rate = 125_000.0 // 1 Mbit/s
	b := newTokenBucket(rate, 1500, 15_000, 0)
	var last int64
	sent, dropped := 0, 0
	for i := range 2 * 1000 * 125_000 / 1500 / 1000 { // 2× rate for 1s in 1500-byte packets
		now := int64(i) * int64(time.Second) * 1500 / (2 * rate)
		at, ok := b.reserve(now, 1500)
		if !ok {
			dropped++
			continue
		}
		sent++
		last = at
	}
	got := float64(sent*1500) / (float64(last) / 1e9)
	if math.Abs(got-rate)/rate > 0.05 || dropped == 0 {
		t.Fatalf("shaped to %.0f B/s with %d drops, want %.0f ±5%% and drops", got, dropped, rate)
	}
}

func TestJitterSpreadAndCorrelation(t *testing.T) {
	for _, tc := range []struct {
		normal bool
		rho    float64
	}{{false, 0}, {false, 0.75}, {true, 0}, {true, 0.75}} {
		j := jitterSource{jitter: 1000, normal: tc.normal, rho: tc.rho}
		rng := rand.New(rand.NewPCG(3, 4))
		const n = 200_000
		var sum, sq, lag float64
		prev := 0.0
		lo, hi := math.Inf(1), math.Inf(-1)
		for range n {
			v := j.sample(rng)
			sum += v
			sq += v * v
			lag += v * prev
			prev = v
			lo, hi = min(lo, v), max(hi, v)
		}
		mean, variance := sum/n, sq/n
		corr := lag / n / variance
		wantVar := 1000.0 * 1000 / 3 // uniform on [-1000, 1000]
		if tc.normal {
			wantVar = 1000 * 1000
		}
		if math.Abs(mean) > 20 || math.Abs(variance-wantVar)/wantVar > 0.05 {
			t.Errorf("normal=%v rho=%v: mean %.1f variance %.0f, want 0 and %.0f: correlation must not shrink the spread", tc.normal, tc.rho, mean, variance, wantVar)
		}
		if !tc.normal && (lo < -1000 || hi > 1000) {
			t.Errorf("uniform jitter left [-1000, 1000]: %v..%v", lo, hi)
		}
		if tc.rho == 0 && math.Abs(corr) > 0.02 || tc.rho > 0 && corr < 0.6 {
			t.Errorf("normal=%v rho=%v: lag-1 correlation %.3f", tc.normal, tc.rho, corr)
		}
	}
}

func TestDecideIsSeededAndOrdered(t *testing.T) {
	imp := Impairment{Loss: Loss{Percent: 0.1}, Duplicate: 0.05, Corrupt: 0.05,
		Delay: units.Duration(time.Millisecond), Jitter: units.Duration(100 * time.Microsecond)}
	run := func(seed uint64) []verdict {
		var m impairer
		m.reset(compile(imp, 1, 1500), seed, ToUpstream, 0)
		info := pktInfo{proto: 6}
		out := make([]verdict, 2000)
		for i := range out {
			out[i] = m.decide(int64(i)*1000, &info, 1500)
		}
		return out
	}
	a, b, c := run(1), run(1), run(2)
	same := true
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("packet %d: same seed, different verdict", i)
		}
		same = same && a[i] == c[i]
	}
	if same {
		t.Fatalf("different seeds gave identical verdicts")
	}
	var drops, dups, corrupt int
	for _, v := range a {
		switch {
		case v.drop == lost:
			drops++
		default:
			if v.copies == 2 {
				dups++
			}
			if v.corrupt {
				corrupt++
			}
			if v.due[0] < 0 {
				t.Fatalf("due before arrival")
			}
		}
	}
	if drops < 150 || drops > 250 || dups < 60 || dups > 130 || corrupt < 60 || corrupt > 130 {
		t.Fatalf("drops %d dups %d corrupt %d of 2000 with 10%%/5%%/5%%", drops, dups, corrupt)
	}
}

func TestDecideSYNBlackholeAndFilter(t *testing.T) {
	var m impairer
	m.reset(compile(Impairment{SYNBlackhole: true, Filter: Filter{Port: 80}}, 1, 1500), 1, ToUpstream, 0)
	syn := pktInfo{proto: 6, syn: true, dport: 80}
	if !m.pol.applies(&syn) || m.decide(0, &syn, 60).drop != blackholed {
		t.Fatalf("a SYN to port 80 must be dropped")
	}
	synack := pktInfo{proto: 6, syn: true, ack: true, sport: 80}
	if m.decide(0, &synack, 60).drop != keep {
		t.Fatalf("a SYN-ACK is not a connect attempt")
	}
	other := pktInfo{proto: 6, syn: true, dport: 81}
	if m.pol.applies(&other) {
		t.Fatalf("the filter must leave port 81 alone")
	}
}

// TestWakerPrecision compares the engine's timer (timerfd, learnt lead, spin)
// with a plain Go timer in the same run, and checks that it never fires
// before its instant.
func TestWakerPrecision(t *testing.T) {
	clk := newMonoClock()
	w, err := newWaker(clk.now)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	const n, d = 60, 2 * time.Millisecond
	var ours, goTimer []time.Duration
	for range n {
		due := clk.now() + int64(d)
		w.arm(due)
		if err := w.wait(); err != nil {
			t.Fatal(err)
		}
		w.woke(clk.now())
		spinUntil(clk.now, due)
		late := clk.now() - due
		if late < 0 {
			t.Fatalf("woke %v early", time.Duration(-late))
		}
		ours = append(ours, time.Duration(late))

		start := time.Now()
		tm := time.NewTimer(d)
		<-tm.C
		goTimer = append(goTimer, time.Since(start)-d)
	}
	slices.Sort(ours)
	slices.Sort(goTimer)
	t.Logf("lateness over %d waits of %v: timerfd+lead+spin p50 %v p90 %v; Go timer p50 %v p90 %v (learnt lead %v)",
		n, d, ours[n/2], ours[n*9/10], goTimer[n/2], goTimer[n*9/10], time.Duration(w.lead.Load()))
}

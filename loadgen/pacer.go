package loadgen

import (
	"math"
	"math/rand/v2"
	"sort"
	"time"
)

// Stage is one step of an open-model arrival profile: the arrival rate moves
// linearly from From to To (requests per second) over Duration. From == To is
// a constant rate.
type Stage struct {
	Duration time.Duration
	From, To float64
}

// Pacer turns an arrival profile into intended send times. It is a pure
// function of the request's sequence number, so it is table-tested without a
// clock and the schedule never drifts with how late the sender runs: a late
// sender sends the backlog at once and the lateness is measured, not hidden.
//
// Request n (0-based) is due at the instant t where the expected number of
// arrivals since the start, N(t) = ∫ rate, first reaches n.
type Pacer struct {
	stages []Stage
	starts []time.Duration // start offset of each stage
	counts []float64       // expected arrivals before each stage
	total  float64
	end    time.Duration
}

// NewPacer prepares a pacer for the stages, in order.
func NewPacer(stages []Stage) *Pacer {
	p := &Pacer{stages: stages}
	var t time.Duration
	var n float64
	for _, s := range stages {
		p.starts = append(p.starts, t)
		p.counts = append(p.counts, n)
		n += (s.From + s.To) / 2 * s.Duration.Seconds()
		t += s.Duration
	}
	p.total, p.end = n, t
	return p
}

// Duration is the length of the whole profile.
func (p *Pacer) Duration() time.Duration { return p.end }

// Total is the expected number of requests in the whole profile.
func (p *Pacer) Total() float64 { return p.total }

// At returns when request n is due, and false when the profile ends first.
func (p *Pacer) At(n int64) (time.Duration, bool) { return p.TimeOf(float64(n)) }

// TimeOf inverts the cumulative arrival count: it returns the instant t at
// which N(t) = ∫ rate first reaches x, and false when the profile holds fewer
// than x arrivals (x counts from 0: the first arrival is x = 0). Evenly spaced
// arrivals are TimeOf(n); Poisson arrivals are TimeOf of a sum of
// exponential variates (see Arrivals).
func (p *Pacer) TimeOf(x float64) (time.Duration, bool) {
	if x < 0 || x >= p.total-1e-9 {
		return 0, false
	}
	// Find the stage in which the x-th arrival falls (stages are few).
	k := len(p.stages) - 1
	for i := 1; i < len(p.stages); i++ {
		if p.counts[i] > x {
			k = i - 1
			break
		}
	}
	s := p.stages[k]
	m := x - p.counts[k] // arrivals into this stage
	d := s.Duration.Seconds()
	var t float64
	if s.From == s.To {
		if s.From == 0 {
			return 0, false // unreachable: a zero-rate stage holds no arrivals
		}
		t = m / s.From
	} else {
		// N(t) = From·t + a·t²/2 with a = (To-From)/d; solve N(t) = m.
		a := (s.To - s.From) / d
		disc := s.From*s.From + 2*a*m
		if disc < 0 {
			disc = 0
		}
		t = (math.Sqrt(disc) - s.From) / a
	}
	if t > d {
		t = d
	}
	return p.starts[k] + time.Duration(t*float64(time.Second)), true
}

// Due is the number of evenly spaced arrivals due by elapsed (those with
// At(n) <= elapsed): how many requests a sender that is on time has sent.
func (p *Pacer) Due(elapsed time.Duration) int64 {
	if elapsed < 0 {
		return 0
	}
	// At(n) <= elapsed ⇔ n <= N(elapsed) (N is increasing), up to rounding
	// of the inverse; nudge by the one request that rounding can move.
	n := int64(math.Floor(p.cum(elapsed)+1e-9)) + 1
	for n > 0 {
		if at, ok := p.At(n - 1); ok && at <= elapsed {
			break
		}
		n--
	}
	for {
		at, ok := p.At(n)
		if !ok || at > elapsed {
			return n
		}
		n++
	}
}

// RateAt is the target arrival rate at offset t (requests per second).
func (p *Pacer) RateAt(t time.Duration) float64 {
	for i, s := range p.stages {
		if t < p.starts[i]+s.Duration {
			f := float64(t-p.starts[i]) / float64(s.Duration)
			return s.From + (s.To-s.From)*f
		}
	}
	return 0
}

// Expected is the number of arrivals the profile schedules in [a, b).
func (p *Pacer) Expected(a, b time.Duration) float64 { return p.cum(b) - p.cum(a) }

func (p *Pacer) cum(t time.Duration) float64 {
	if t <= 0 {
		return 0
	}
	if t >= p.end {
		return p.total
	}
	for i, s := range p.stages {
		if t < p.starts[i]+s.Duration {
			x := (t - p.starts[i]).Seconds()
			a := (s.To - s.From) / s.Duration.Seconds()
			return p.counts[i] + s.From*x + a*x*x/2
		}
	}
	return p.total
}

// VUsAt reads the profile as a number of virtual users (closed model: the
// stages hold or ramp VU counts instead of rates). A ramp moves one VU at a
// time and reaches its target at the end of its stage, down as up (as k6's
// ramping-vus): rounded down, a ramp from 4 to 0 ran 3 VUs from its first
// instant, never the 4 it starts from, and none for its last quarter.
func (p *Pacer) VUsAt(t time.Duration) int {
	if t < 0 {
		return 0
	}
	for i, s := range p.stages {
		if t < p.starts[i]+s.Duration {
			if s.To < s.From {
				return int(math.Ceil(p.RateAt(t) - 1e-9))
			}
			break
		}
	}
	return int(math.Floor(p.RateAt(t) + 1e-9))
}

// Arrivals yields an open-model executor's intended send times, in order.
// Evenly spaced arrivals are Pacer.At(0), At(1), ...; Poisson arrivals
// (exponential gaps, seeded) come from the time-change theorem: if S_n is a
// sum of n+1 unit-mean exponential variates, TimeOf(S_n) are the arrivals of
// a Poisson process whose rate follows the profile, ramps included. Both are
// a pure function of the profile and the seed.
type Arrivals struct {
	p   *Pacer
	rng *rand.Rand // nil: evenly spaced
	n   int64
	x   float64 // Poisson: the cumulative count of the next arrival
}

// NewArrivals starts the schedule of p; rng, when not nil, makes the
// arrivals Poisson.
func NewArrivals(p *Pacer, rng *rand.Rand) *Arrivals {
	a := &Arrivals{p: p, rng: rng}
	if rng != nil {
		a.x = rng.ExpFloat64()
	}
	return a
}

// Next returns the next arrival's intended time, and false when the
// profile has ended.
func (a *Arrivals) Next() (time.Duration, bool) {
	var at time.Duration
	var ok bool
	if a.rng == nil {
		at, ok = a.p.At(a.n)
	} else {
		at, ok = a.p.TimeOf(a.x)
		a.x += a.rng.ExpFloat64()
	}
	if ok {
		a.n++
	}
	return at, ok
}

// Count is the number of arrivals returned so far.
func (a *Arrivals) Count() int64 { return a.n }

// peak is the profile's highest rate (or VU count).
func (p *Pacer) peak() float64 {
	var m float64
	for _, s := range p.stages {
		m = max(m, s.From, s.To)
	}
	return m
}

// TargetProfile is the load's total target arrival rate over the run's
// clock, as one profile: the arrival-rate executors' stages, shifted by
// their starts and summed (closed-model executors have no target rate).
// Nil when no executor has a target.
func TargetProfile(cfg Config) []Stage {
	execs := cfg.Executors
	if len(execs) == 0 {
		execs = []Config{cfg}
	}
	var open []*Pacer
	var starts []time.Duration
	cuts := map[time.Duration]bool{0: true}
	for _, e := range execs {
		if e.Kind == VUs || len(e.Stages) == 0 {
			continue
		}
		p := NewPacer(e.Stages)
		open, starts = append(open, p), append(starts, e.Start)
		for i, s := range p.stages {
			cuts[e.Start+p.starts[i]] = true
			cuts[e.Start+p.starts[i]+s.Duration] = true
		}
	}
	if len(open) == 0 {
		return nil
	}
	ts := make([]time.Duration, 0, len(cuts))
	for t := range cuts {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	// Between two cuts every executor's rate is linear: sum the rates just
	// after the start and just before the end of each piece.
	rate := func(t time.Duration, after bool) float64 {
		var r float64
		for i, p := range open {
			x := t - starts[i]
			if after {
				if x >= 0 && x < p.end {
					r += p.RateAt(x)
				}
			} else if x > 0 && x <= p.end {
				r += p.rateBefore(x)
			}
		}
		return r
	}
	var out []Stage
	for i := 0; i+1 < len(ts); i++ {
		out = append(out, Stage{Duration: ts[i+1] - ts[i], From: rate(ts[i], true), To: rate(ts[i+1], false)})
	}
	return out
}

// rateBefore is the rate just before t (the left limit at a stage's end).
func (p *Pacer) rateBefore(t time.Duration) float64 {
	for i, s := range p.stages {
		if t > p.starts[i] && t <= p.starts[i]+s.Duration {
			f := float64(t-p.starts[i]) / float64(s.Duration)
			return s.From + (s.To-s.From)*f
		}
	}
	return 0
}

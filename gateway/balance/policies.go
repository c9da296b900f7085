package balance

import (
	"sync"
	"sync/atomic"
)

func init() {
	Register("round_robin", func(*LockedRand) Policy { return &RoundRobin{} })
	Register("weighted_round_robin", func(*LockedRand) Policy { return &WeightedRoundRobin{} })
	Register("least_request", func(r *LockedRand) Policy { return &LeastRequest{rng: r} })
	Register("p2c_ewma", func(r *LockedRand) Policy { return &P2CEWMA{rng: r} })
	Register("random", func(r *LockedRand) Policy { return &Random{rng: r} })
}

var (
	_ Policy = (*RoundRobin)(nil)
	_ Policy = (*WeightedRoundRobin)(nil)
	_ Policy = (*LeastRequest)(nil)
	_ Policy = (*P2CEWMA)(nil)
	_ Policy = (*Random)(nil)
)

// RoundRobin takes each available endpoint in turn, ignoring weights.
type RoundRobin struct{ next atomic.Uint64 }

// Pick implements Policy.
func (p *RoundRobin) Pick(eps []*Endpoint, f Filter) *Endpoint {
	n := uint64(len(eps))
	if n == 0 {
		return nil
	}
	start := p.next.Add(1) - 1
	for k := range n {
		if e := eps[(start+k)%n]; f.OK(e) {
			return e
		}
	}
	return nil
}

// WeightedRoundRobin is nginx's smooth weighted round robin: over one cycle
// of total weight W each endpoint is picked exactly weight times, and picks
// of a heavy endpoint are spread out (5:1 gives a a b a a a, not a a a a a b).
// Unavailable endpoints sit out without gaining credit, as in nginx.
type WeightedRoundRobin struct {
	mu   sync.Mutex
	snap []*Endpoint // the snapshot cur is aligned with
	cur  []int64
}

// Pick implements Policy.
func (p *WeightedRoundRobin) Pick(eps []*Endpoint, f Filter) *Endpoint {
	if len(eps) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.snap) != len(eps) || &p.snap[0] != &eps[0] {
		p.realign(eps)
	}
	best, total := -1, int64(0)
	for i, e := range eps {
		if !f.OK(e) {
			continue
		}
		p.cur[i] += e.weight
		total += e.weight
		if best < 0 || p.cur[i] > p.cur[best] {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	p.cur[best] -= total
	return eps[best]
}

// realign carries each remaining endpoint's credit over to a new snapshot;
// it allocates, but only when the set changed.
func (p *WeightedRoundRobin) realign(eps []*Endpoint) {
	old := make(map[*Endpoint]int64, len(p.snap))
	for i, e := range p.snap {
		old[e] = p.cur[i]
	}
	p.cur = make([]int64, len(eps))
	for i, e := range eps {
		p.cur[i] = old[e]
	}
	p.snap = eps
}

// LeastRequest picks the endpoint with the fewest requests in flight per unit
// of weight; ties are broken at random (Caddy's least_conn does the same), so
// equal endpoints share evenly. Envoy samples two endpoints (choice_count)
// to stay O(1) on clusters of thousands; an upstream in a scenario has a
// handful of replicas, and the exact minimum is what a user reading "least
// request" expects.
type LeastRequest struct{ rng *LockedRand }

// Pick implements Policy.
func (p *LeastRequest) Pick(eps []*Endpoint, f Filter) *Endpoint {
	var best *Endpoint
	var bestLoad int64
	ties := 0
	for _, e := range eps {
		if !f.OK(e) {
			continue
		}
		load := e.inflight.Load() + 1
		// Compare load/weight without division.
		switch l, r := load*best.weightOr1(), bestLoad*e.weight; {
		case best == nil || l < r:
			best, bestLoad, ties = e, load, 1
		case l == r:
			// Reservoir sampling over the tied endpoints.
			ties++
			if p.rng.IntN(ties) == 0 {
				best, bestLoad = e, load
			}
		}
	}
	return best
}

func (e *Endpoint) weightOr1() int64 {
	if e == nil {
		return 1
	}
	return e.weight
}

// P2CEWMA draws two distinct available endpoints and keeps the cheaper,
// where cost is peak-EWMA latency × (requests in flight + 1), as Linkerd and
// Finagle do: latency alone would send a burst to the replica that was fast
// a moment ago. An endpoint with no sample yet costs nothing, so a new
// replica is tried at once. Weights are ignored.
type P2CEWMA struct{ rng *LockedRand }

// Pick implements Policy.
func (p *P2CEWMA) Pick(eps []*Endpoint, f Filter) *Endpoint {
	m := 0
	var only *Endpoint
	for _, e := range eps {
		if f.OK(e) {
			m++
			only = e
		}
	}
	if m <= 1 {
		return only
	}
	i, j := p.rng.distinct2(m)
	var a, b *Endpoint
	k := 0
	for _, e := range eps {
		if !f.OK(e) {
			continue
		}
		if k == i {
			a = e
		}
		if k == j {
			b = e
		}
		k++
	}
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	if cost(b) < cost(a) {
		return b
	}
	return a
}

func cost(e *Endpoint) float64 {
	return float64(e.EWMA()) * float64(e.inflight.Load()+1)
}

// Random picks an available endpoint with probability proportional to its
// weight.
type Random struct{ rng *LockedRand }

// Pick implements Policy.
func (p *Random) Pick(eps []*Endpoint, f Filter) *Endpoint {
	var total int64
	for _, e := range eps {
		if f.OK(e) {
			total += e.weight
		}
	}
	if total == 0 {
		return nil
	}
	r := p.rng.Int64N(total)
	var last *Endpoint
	for _, e := range eps {
		if !f.OK(e) {
			continue
		}
		last = e
		if r < e.weight {
			return e
		}
		r -= e.weight
	}
	return last // health changed between the passes
}

package packet

import (
	"math"
	"math/rand/v2"
)

// geState is the Gilbert–Elliott loss model's state machine, in netem's
// order: each packet first decides whether the state changes, then whether it
// is lost with the loss probability of the state it arrived in.
type geState struct {
	p, r, badLoss, goodLoss float64
	bad                     bool
}

func newGEState(g GilbertElliott) geState {
	g = g.withDefaults()
	return geState{p: g.P.F(), r: g.R.F(), badLoss: g.BadLoss.F(), goodLoss: g.GoodLoss.F()}
}

// lose advances the model by one packet.
func (g *geState) lose(rng *rand.Rand) bool {
	if g.bad {
		if rng.Float64() < g.r {
			g.bad = false
		}
		return rng.Float64() < g.badLoss
	}
	if rng.Float64() < g.p {
		g.bad = true
	}
	return g.goodLoss > 0 && rng.Float64() < g.goodLoss
}

// tokenBucket shapes bytes like tbf: tokens fill at rate up to burst; a packet
// that finds too few tokens waits for them, behind those already waiting, and
// a packet that would make the wait hold more than queue bytes is dropped.
//
// Hand-written rather than golang.org/x/time/rate because that limiter
// allocates a Reservation per call and this runs once per packet.
type tokenBucket struct {
	rate   float64 // bytes per nanosecond
	burst  float64 // bytes
	queue  float64 // bytes allowed to wait
	tokens float64 // may go negative: that is the bytes waiting
	last   int64   // time of the last update, ns
}

func newTokenBucket(bytesPerSec, burst, queue float64, now int64) tokenBucket {
	return tokenBucket{rate: bytesPerSec / 1e9, burst: burst, queue: queue, tokens: burst, last: now}
}

// reserve returns when a packet of n bytes arriving at now may leave, or
// false when the queue is full.
func (b *tokenBucket) reserve(now int64, n int) (int64, bool) {
	if now > b.last {
		b.tokens = math.Min(b.burst, b.tokens+float64(now-b.last)*b.rate)
		b.last = now
	}
	left := b.tokens - float64(n)
	if left >= 0 {
		b.tokens = left
		return now, true
	}
	if -left > b.queue {
		return 0, false
	}
	b.tokens = left
	return now + int64(math.Ceil(-left/b.rate)), true
}

// jitterSource draws correlated jitter. Correlation is an AR(1) process on a
// standard normal variate, z' = ρz + √(1-ρ²)ε, which keeps z standard normal
// whatever ρ is; a uniform jitter maps z through the normal CDF. (netem mixes
// uniform numbers linearly instead, which narrows the spread as ρ grows.)
type jitterSource struct {
	jitter float64 // ns
	normal bool
	rho    float64
	z      float64
}

func (j *jitterSource) sample(rng *rand.Rand) float64 {
	if j.rho == 0 {
		if j.normal {
			return rng.NormFloat64() * j.jitter
		}
		return (2*rng.Float64() - 1) * j.jitter
	}
	j.z = j.rho*j.z + math.Sqrt(1-j.rho*j.rho)*rng.NormFloat64()
	if j.normal {
		return j.z * j.jitter
	}
	u := 0.5 * math.Erfc(-j.z/math.Sqrt2)
	return (2*u - 1) * j.jitter
}

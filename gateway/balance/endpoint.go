package balance

import (
	"math"
	"sync/atomic"
	"time"
)

// Endpoint is one replica of an upstream. Its live state sits in atomics:
// the proxy, the health checker and the outlier detector all write it from
// their own goroutines, and Pick reads it without a lock (Caddy keeps its
// per-host state the same way).
type Endpoint struct {
	addr   string
	weight int64
	born   time.Time // monotonic base for ejectedUntil

	inflight     atomic.Int64
	ewma         atomic.Uint64 // float64 bits, nanoseconds
	unhealthy    atomic.Bool   // zero value: healthy
	ejectedUntil atomic.Int64  // nanoseconds after born; 0: not ejected
}

// EWMADecay is the weight of the newest sample when latency improves. A
// slower sample replaces the average at once ("peak EWMA", as in Finagle and
// Linkerd), so P2C steers away from a replica the moment it slows down and
// returns to it gradually.
const EWMADecay = 0.3

// NewEndpoint returns a healthy endpoint at addr ("127.0.0.1:8081") with a
// weight for weighted policies. Balancer.Add refuses a weight below 1.
func NewEndpoint(addr string, weight int) *Endpoint {
	return &Endpoint{addr: addr, weight: int64(weight), born: time.Now()}
}

// Addr is the endpoint's host:port.
func (e *Endpoint) Addr() string { return e.addr }

// Weight is the endpoint's weight.
func (e *Endpoint) Weight() int { return int(e.weight) }

func (e *Endpoint) String() string { return e.addr }

// Start counts a request as in flight to this endpoint.
func (e *Endpoint) Start() { e.inflight.Add(1) }

// Done ends what Start began and feeds the latency average.
func (e *Endpoint) Done(elapsed time.Duration) {
	e.inflight.Add(-1)
	e.Observe(elapsed)
}

// InFlight is the number of requests in flight.
func (e *Endpoint) InFlight() int64 { return e.inflight.Load() }

// Observe feeds one latency sample into the peak EWMA.
func (e *Endpoint) Observe(d time.Duration) {
	x := float64(d)
	for {
		old := e.ewma.Load()
		o := math.Float64frombits(old)
		n := x
		if old != 0 && x < o {
			n = o + EWMADecay*(x-o)
		}
		if e.ewma.CompareAndSwap(old, math.Float64bits(n)) {
			return
		}
	}
}

// EWMA is the latency average; zero before the first sample.
func (e *Endpoint) EWMA() time.Duration { return time.Duration(math.Float64frombits(e.ewma.Load())) }

// SetHealthy marks the endpoint as passing or failing its health checks.
func (e *Endpoint) SetHealthy(ok bool) { e.unhealthy.Store(!ok) }

// Healthy reports the health-check verdict.
func (e *Endpoint) Healthy() bool { return !e.unhealthy.Load() }

// Eject takes the endpoint out of rotation until the given instant.
func (e *Endpoint) Eject(until time.Time) {
	off := until.Sub(e.born)
	if off <= 0 {
		off = 1 // an instant at or before birth still means "ejected now"
	}
	e.ejectedUntil.Store(int64(off))
}

// Uneject returns the endpoint to rotation now.
func (e *Endpoint) Uneject() { e.ejectedUntil.Store(0) }

// EjectedUntil is the end of the current ejection, or the zero time.
func (e *Endpoint) EjectedUntil() time.Time {
	off := e.ejectedUntil.Load()
	if off == 0 {
		return time.Time{}
	}
	return e.born.Add(time.Duration(off))
}

// Ejected reports whether the endpoint is ejected at now.
func (e *Endpoint) Ejected(now time.Time) bool {
	off := e.ejectedUntil.Load()
	return off != 0 && now.Sub(e.born) < time.Duration(off)
}

// Available reports whether a policy may pick the endpoint at now.
func (e *Endpoint) Available(now time.Time) bool { return e.Healthy() && !e.Ejected(now) }

// clock reads time.Now at most once per Pick, and only when an endpoint is
// ejected: most picks then never read the clock at all.
type clock struct {
	now time.Time
	set bool
}

func (c *clock) get() time.Time {
	if !c.set {
		c.now, c.set = time.Now(), true
	}
	return c.now
}

// eligible is Available with a lazy clock, minus avoid.
func (e *Endpoint) eligible(c *clock, avoid *Endpoint) bool {
	if e == avoid || e.unhealthy.Load() {
		return false
	}
	off := e.ejectedUntil.Load()
	return off == 0 || c.get().Sub(e.born) >= time.Duration(off)
}

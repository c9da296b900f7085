package slowdb

import (
	"context"
	"sync"
	"time"
)

// PoolSample is the pool at one instant of the run.
type PoolSample struct {
	T time.Duration // offset on the run's clock
	PoolStats
}

// maxSamples bounds the memory the sampler can take (~20 MB): 5.5 hours at
// the default interval. Later samples are dropped and counted.
const maxSamples = 200_000

// eventWindow is how often aggregated events go out at most: events are
// meant for a timeline a person reads, not a per-request log.
const eventWindow = time.Second

// recorder samples the pool and aggregates request outcomes into events.
type recorder struct {
	u *Upstream

	mu      sync.Mutex
	samples []PoolSample
	dropped int
	codes   map[string]uint64 // db timeouts by code in the current window
	// before is the longest a db timeout of the window waited for its
	// connection (from arrival): the database's timer started after it.
	before   time.Duration
	maxWait  int // most requests waiting at a sample in the window
	lastPool struct{ timeouts, waits, orphaned uint64 }
}

func newRecorder(u *Upstream) *recorder {
	return &recorder{u: u, codes: map[string]uint64{}}
}

// dbTimeout counts one database timeout for the current window; before is
// how long the request waited for its connection.
func (r *recorder) dbTimeout(code string, before time.Duration) {
	if code == "" {
		code = "unknown"
	}
	r.mu.Lock()
	r.codes[code]++
	r.before = max(r.before, before)
	r.mu.Unlock()
}

// Samples returns the pool samples taken so far.
func (u *Upstream) Samples() []PoolSample {
	u.rec.mu.Lock()
	defer u.rec.mu.Unlock()
	return append([]PoolSample(nil), u.rec.samples...)
}

func (r *recorder) run(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	interval := r.u.cfg.SampleInterval.D()
	window := max(eventWindow, interval)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	lastFlush := time.Now()
	r.sample()
	for {
		select {
		case <-ctx.Done():
			r.sample()
			r.flush()
			return
		case now := <-tick.C:
			r.sample()
			if now.Sub(lastFlush) >= window {
				r.flush()
				lastFlush = now
			}
		}
	}
}

func (r *recorder) sample() {
	p := r.u.b.pool()
	s := PoolSample{T: r.u.clock.Now(), PoolStats: p}
	r.mu.Lock()
	if len(r.samples) < maxSamples {
		r.samples = append(r.samples, s)
	} else {
		r.dropped++
	}
	r.maxWait = max(r.maxWait, p.Waiting)
	r.mu.Unlock()
}

// flush emits the window's aggregated events, each only when something
// happened.
func (r *recorder) flush() {
	c := &r.u.c
	timeouts, waits, orphaned := c.poolTimeouts.Load(), c.poolWaits.Load(), c.orphaned.Load()
	r.mu.Lock()
	codes, before := r.codes, r.before
	r.codes, r.before = map[string]uint64{}, 0
	maxWait := r.maxWait
	r.maxWait = 0
	last := r.lastPool
	r.lastPool.timeouts, r.lastPool.waits, r.lastPool.orphaned = timeouts, waits, orphaned
	r.mu.Unlock()

	// Emit outside the lock: a sink may be slow, and the request path
	// takes r.mu.
	if len(codes) > 0 {
		var n uint64
		byCode := make(map[string]any, len(codes))
		for k, v := range codes {
			n += v
			byCode[k] = v
		}
		// max_wait_ms: the timeouts' callers saw them up to that much
		// after the database's own timer would say (verdict.Cascade).
		r.u.emit("db.timeout", map[string]any{"count": n, "codes": byCode, "max_wait_ms": ms(before)})
	}
	if timeouts > last.timeouts || waits > last.waits || maxWait > 0 {
		r.u.emit("db.pool_exhausted", map[string]any{
			"acquire_timeouts": timeouts - last.timeouts,
			"waits":            waits - last.waits,
			"max_waiting":      maxWait,
			"pool_size":        r.u.cfg.PoolSize,
		})
	}
	if orphaned > last.orphaned {
		r.u.emit("work.orphaned", map[string]any{"count": orphaned - last.orphaned})
	}
}

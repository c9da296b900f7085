// Package loadgen drives traffic at a target and measures it honestly.
//
// The model is open: requests are due at times fixed by the arrival profile
// (Pacer), whatever the target does. Each request's latency is counted from
// its intended send time, so a target that stalls is charged for the whole
// stall by every request scheduled during it (no coordinated omission), and
// the scheduling lag itself is recorded. Requests that cannot start because
// the in-flight cap is reached are counted as dropped, never skipped.
//
//	pacer ─intended t─▶ scheduler ─job─▶ idle worker (or a new one, up to the cap; else dropped)
//	                                          │ Transport.RoundTrip
//	                                          ▼
//	                                    Recorder.Record(worker, sample)
//
// The package knows nothing of phases, files or verdicts: it hands every
// sample to a Recorder that the run provides.
package loadgen

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
)

// Request is one template of the request mix.
type Request struct {
	Name   string
	Method string
	Path   string // path and query, appended to the target
	Header http.Header
	Body   []byte
	Weight int // relative share; 0 counts as 1
}

// Config describes one open-model load.
type Config struct {
	Target        string // base URL, e.g. http://127.0.0.1:8080
	Requests      []Request
	Stages        []Stage
	ClientTimeout time.Duration // per request; the top of the timeout cascade
	MaxInFlight   int           // cap on concurrent requests (default 10000)
	KeepAlive     bool          // reuse connections (the zero value closes them: set it)
	Seed          uint64
}

// Sample is one request's outcome.
type Sample struct {
	Request  int           // index into Config.Requests
	Intended time.Duration // intended send time, on the run's clock
	Lag      time.Duration // actual send − intended send
	Latency  time.Duration // end − intended send (what a user waited)
	Service  time.Duration // end − actual send (what a closed loop would report)
	Status   int
	Cause    cause.Cause
}

// Recorder receives samples from many workers at once. worker is a small
// stable integer per worker, so an implementation can shard by it and keep
// a shared lock off the hot path.
type Recorder interface {
	Record(worker int, s *Sample)
}

// Transport sends one request and classifies its outcome.
type Transport interface {
	RoundTrip(ctx context.Context, req int, s *Sample)
}

// Progress is a snapshot for live displays.
type Progress struct {
	Elapsed    time.Duration
	Total      time.Duration
	TargetRate float64
	Scheduled  int64
	Completed  int64
	Errors     int64
	Dropped    int64
	InFlight   int64
}

// Generator runs one load.
type Generator struct {
	cfg   Config
	pacer *Pacer
	rec   Recorder
	tr    Transport
	clock *event.Clock

	scheduled, completed, errs, dropped, inFlight atomic.Int64
	started                                       atomic.Bool
}

// New prepares a generator; clock is the run's clock (its zero is when the
// profile starts). A nil transport uses net/http.
func New(cfg Config, rec Recorder, clock *event.Clock, tr Transport) (*Generator, error) {
	if len(cfg.Requests) == 0 {
		return nil, errors.New("loadgen: no requests")
	}
	if len(cfg.Stages) == 0 {
		return nil, errors.New("loadgen: no stages")
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 10000
	}
	if cfg.ClientTimeout <= 0 {
		cfg.ClientTimeout = 30 * time.Second
	}
	if tr == nil {
		var err error
		if tr, err = NewHTTPTransport(cfg); err != nil {
			return nil, err
		}
	}
	return &Generator{cfg: cfg, pacer: NewPacer(cfg.Stages), rec: rec, tr: tr, clock: clock}, nil
}

// Pacer exposes the schedule (for target rates per phase).
func (g *Generator) Pacer() *Pacer { return g.pacer }

// Progress returns live counters.
func (g *Generator) Progress() Progress {
	el := time.Duration(0)
	if g.started.Load() {
		el = min(g.clock.Now(), g.pacer.Duration())
	}
	return Progress{
		Elapsed: el, Total: g.pacer.Duration(), TargetRate: g.pacer.RateAt(el),
		Scheduled: g.scheduled.Load(), Completed: g.completed.Load(), Errors: g.errs.Load(),
		Dropped: g.dropped.Load(), InFlight: g.inFlight.Load(),
	}
}

type job struct {
	req      int
	intended time.Duration
}

// Run sends the profile and returns when every sent request has finished.
// Cancelling ctx stops scheduling and cuts in-flight requests short (they are
// recorded as client timeouts or transport errors, never lost).
func (g *Generator) Run(ctx context.Context) error {
	g.started.Store(true)
	pick := g.picker()
	jobs := make(chan job)
	var wg sync.WaitGroup
	workers := 0

	worker := func(id int, first job) {
		defer wg.Done()
		var s Sample
		g.do(ctx, id, first, &s)
		for j := range jobs {
			g.do(ctx, id, j, &s)
		}
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
loop:
	for n := int64(0); ; n++ {
		at, ok := g.pacer.At(n)
		if !ok {
			break
		}
		if wait := at - g.clock.Now(); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				break loop
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			break
		}
		j := job{req: pick(), intended: at}
		g.scheduled.Add(1)
		select {
		case jobs <- j: // an idle worker took it
		default:
			if workers < g.cfg.MaxInFlight {
				workers++
				wg.Add(1)
				go worker(workers-1, j)
				continue
			}
			// Every worker is busy and the cap is reached: this request
			// cannot start on time, so it is dropped and counted (k6's
			// dropped_iterations), never queued to start late unseen.
			g.dropped.Add(1)
			s := Sample{Request: j.req, Intended: at, Cause: cause.Dropped}
			g.rec.Record(0, &s)
		}
	}
	close(jobs)
	wg.Wait()
	return ctx.Err()
}

func (g *Generator) do(ctx context.Context, worker int, j job, s *Sample) {
	*s = Sample{Request: j.req, Intended: j.intended}
	g.inFlight.Add(1)
	sent := g.clock.Now()
	s.Lag = sent - j.intended
	g.tr.RoundTrip(ctx, j.req, s)
	end := g.clock.Now()
	g.inFlight.Add(-1)
	s.Latency = end - j.intended
	s.Service = end - sent
	g.completed.Add(1)
	if s.Cause.IsError() {
		g.errs.Add(1)
	}
	g.rec.Record(worker, s)
}

// picker returns a weighted random choice of request template, seeded. Only
// the scheduler goroutine calls it.
func (g *Generator) picker() func() int {
	if len(g.cfg.Requests) == 1 {
		return func() int { return 0 }
	}
	rng := rand.New(rand.NewPCG(g.cfg.Seed, 0x6c6f6164))
	cum := make([]int, len(g.cfg.Requests))
	total := 0
	for i, r := range g.cfg.Requests {
		total += max(r.Weight, 1)
		cum[i] = total
	}
	return func() int {
		x := rng.IntN(total)
		for i, c := range cum {
			if x < c {
				return i
			}
		}
		return len(cum) - 1
	}
}

// Package loadgen drives traffic at a target and measures it honestly.
//
// A load is one or more executors running side by side (a background load
// plus a burst, say), each with its own profile, request mix and transport:
//
//   - arrival-rate executors are open-model: requests are due at times fixed
//     by the arrival profile (Pacer, evenly spaced or Poisson), whatever the
//     target does. Each request's latency is counted from its intended send
//     time, so a target that stalls is charged for the whole stall by every
//     request scheduled during it (no coordinated omission), and the
//     scheduling lag itself is recorded. Requests that cannot start because
//     the in-flight cap is reached are counted as dropped, never skipped.
//
//   - vus executors are closed-model: a number of virtual users (constant or
//     ramping) each send a request, wait for the answer, think, and repeat.
//     That is what many real clients do; its latencies are from the actual
//     send, which is exactly what hides a stall (see the Service histogram).
//
// The two kinds share the transport and the recorder:
//
//	arrival-rate:  pacer ─intended t─▶ scheduler ─job─▶ idle worker (or a new one, up to the cap; else dropped)
//	vus:           controller ─starts/stops─▶ VU loop: send, wait, think
//	                                              │ Transport.RoundTrip
//	                                              ▼
//	                                        Recorder.Record(worker, sample)
//
// The package knows nothing of phases, files or verdicts: it hands every
// sample to a Recorder that the run provides.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/evloop"
)

// Kind is an executor's load model.
type Kind string

// Executor kinds.
const (
	// ArrivalRate is the open model: Stages hold or ramp arrival rates
	// (requests per second). Constant and ramping arrival rate are both this.
	ArrivalRate Kind = "arrival-rate"
	// VUs is the closed model: Stages hold or ramp numbers of virtual users,
	// each sending one request at a time with Think between them.
	VUs Kind = "vus"
)

// Protocol selects the HTTP version.
type Protocol string

// Protocols.
const (
	ProtoAuto  Protocol = ""      // http:// → HTTP/1.1; https:// → HTTP/2 if the server offers it (ALPN), else 1.1
	ProtoHTTP1 Protocol = "http1" // HTTP/1.1 only, also over TLS
	ProtoH2    Protocol = "h2"    // HTTP/2 over TLS only (https://)
	ProtoH2C   Protocol = "h2c"   // HTTP/2 over cleartext with prior knowledge (http://)
)

// Config describes a load: one executor (the fields below), or several side
// by side (Executors, each a Config of its own).
type Config struct {
	// Name labels the executor in stats and the live view (default "load",
	// or "exec-N" among several).
	Name string
	// Kind is the load model (default ArrivalRate).
	Kind     Kind
	Target   string // base URL, e.g. http://127.0.0.1:8080
	Requests []Request
	// Data are the data sets the request templates read.
	Data []*Dataset
	// Stages in order: arrival rates in requests/s, or VU counts.
	Stages []Stage
	// Start delays the executor from the run's zero.
	Start time.Duration
	// Poisson makes arrivals a seeded Poisson process (exponential gaps)
	// whose rate follows the stages, instead of evenly spaced.
	Poisson bool
	// Think is a VU's pause after each answer (zero: none).
	Think dist.Latency

	ClientTimeout time.Duration // per request; the top of the timeout cascade (default 30s)
	MaxInFlight   int           // cap on concurrent requests of an arrival-rate executor (default 10000)
	KeepAlive     bool          // reuse connections (the zero value closes them: set it)
	// MaxConns caps the open connections (0: no cap beyond MaxInFlight or
	// the VU count). A request that finds every connection busy waits for
	// one, and the wait is part of its latency.
	MaxConns           int
	Protocol           Protocol
	InsecureSkipVerify bool // accept any TLS certificate (self-signed test servers)
	Seed               uint64
	// NetHTTP sends HTTP/1.1 over http:// with net/http instead of
	// loadgen/h1 (for comparison; net/http costs several times the CPU).
	NetHTTP bool
	// workerIdle overrides how long an idle open-model worker lives (tests).
	workerIdle time.Duration
	// MaxRequests bounds a VU executor's requests (0: only its duration
	// does); an arrival-rate executor is bounded by its profile.
	MaxRequests uint64

	// Loops > 0 runs VU executors that send HTTP/1.1 to an http:// target
	// (loadgen/h1, without a connection cap) on that many event loops
	// (evloop.Loop) instead of a goroutine per VU: less CPU per request at full
	// speed, no scheduler trip per response (bench/LOADGEN.md). A loop keeps its OS thread's P while it waits,
	// so only a process that does little else should use it, with
	// GOMAXPROCS above Loops (at most GOMAXPROCS-1 loops run; with one P,
	// none): cascade load, not a run that hosts a gateway or upstreams
	// beside the load. Only the top-level value counts; off Linux it is
	// ignored.
	Loops int

	// Executors run side by side; each inherits Target and (mixed with its
	// index) Seed when it has none. When set, the other fields above are
	// not used.
	Executors []Config
}

// Sample is one request's outcome.
type Sample struct {
	Executor int           // index of the executor
	Request  int           // index into the executor's Requests
	Seq      uint64        // sequence number in the executor (template {{seq}})
	Intended time.Duration // intended send time, on the run's clock
	Lag      time.Duration // actual send − intended send
	Latency  time.Duration // end − intended send (what a user waited)
	Service  time.Duration // end − the request going out on a connection (what a closed loop would report)
	// ConnWait is the time between the send and the request going out on a
	// connection: waiting for one under a connection cap, dialing. It is
	// part of Latency but not of Service, as in a closed loop (wrk2 -U),
	// which measures from the write on a connection it already holds.
	ConnWait time.Duration
	Status   int
	Cause    cause.Cause

	// sent is the actual send time, on the run's clock, for the transport;
	// a worker that keeps time on the run's clock sets end (see
	// H1Transport.worker), else the generator reads the clock after
	// RoundTrip.
	sent, end time.Duration
	// fdLimit: the request failed because the generator had no file
	// descriptor left for its socket (see FDLimitError).
	fdLimit bool
}

// Recorder receives samples from many workers at once. worker is a small
// stable integer per worker, so an implementation can shard by it and keep
// a shared lock off the hot path.
type Recorder interface {
	Record(worker int, s *Sample)
}

// Transport sends one request and classifies its outcome: it reads
// s.Request and s.Seq (to render templates) and fills s.Status and s.Cause.
type Transport interface {
	RoundTrip(ctx context.Context, req int, s *Sample)
}

// WorkerTransport is a Transport that keeps state per sending goroutine (a
// connection, buffers), found by type assertion: the generator asks for one
// per worker or VU and closes it (if it is an io.Closer) when the goroutine
// ends. A worker's transport is used by one goroutine at a time.
type WorkerTransport interface {
	Transport
	Worker() Transport
}

// Progress is a snapshot for live displays.
type Progress struct {
	Name       string
	Kind       Kind
	Elapsed    time.Duration // since the executor started, up to Total
	Total      time.Duration
	TargetRate float64 // arrival-rate: the profile's rate now (requests/s)
	VUs        int64   // vus: running virtual users
	TargetVUs  int     // vus: the profile's VU count now
	Scheduled  int64   // requests due (arrival-rate) or started (vus)
	Completed  int64
	Errors     int64
	Dropped    int64
	InFlight   int64
	Workers    int // goroutines sending (open model) or VUs, each with its connection
}

// Generator runs one load.
type Generator struct {
	loops   int // Config.Loops
	execs   []*executor
	rec     Recorder
	clock   *event.Clock
	ids     atomic.Int64 // worker ids, unique across executors
	started atomic.Bool

	counted struct { // ArrivalsBefore's walk of the schedules
		sync.Mutex
		cursors []*arrivalCursor // the arrival-rate executors'
		started bool             // cursors are set
	}
}

// arrivalCursor walks one executor's schedule forward, as its scheduler does.
type arrivalCursor struct {
	arr   *Arrivals
	start time.Duration // the executor's start on the run's clock
	next  time.Duration // the arrival read ahead (when ahead)
	ahead bool
	done  bool
	n     int64 // arrivals before the last bound asked
}

type executor struct {
	g     *Generator
	idx   int
	cfg   Config
	pacer *Pacer
	tr    Transport
	owned bool // tr was made here and is closed after the run

	scheduled, dropped atomic.Int64
	// frontier is the intended time (ns) before which every request of this
	// executor has been handed to a worker or dropped. Closed-model VUs send
	// when they intend to, so they never hold it back (MaxInt64).
	frontier  atomic.Int64
	vus       atomic.Int64 // running VUs
	limit     atomic.Int64 // VUs with an index below it may run
	seq       atomic.Uint64
	exhausted atomic.Bool // vus: MaxRequests reached
	// exhaustedCh is closed when exhausted is set: the controller stops
	// at once, not at its next tick, which made a short --requests run
	// up to 10 ms longer than it was (100 requests in 11 ms, not 3).
	exhaustedCh   chan struct{}
	exhaustedOnce sync.Once
	// countedOut is when a VU executor's last VU stopped after MaxRequests
	// (the run's clock, ns; 0 while it runs or when time ended it).
	countedOut atomic.Int64
	spare      [][2]uint64 // runs of sequence numbers stopped VUs left unused (under mu)

	mu      sync.Mutex
	workers []*workerStats // live workers
	retired struct{ started, completed, errors int64 }
	running []bool // vus: which VU indexes have a goroutine
	loops   []*evloop.Loop
}

// workerStats are one worker's counters: written by that worker only and
// summed by Progress, so the hot path shares no cache line.
type workerStats struct {
	started, completed, errors atomic.Int64
	// since is a time at or before the intended send of a closed-model
	// worker's latest request (idleSince before its first), stored before
	// the clock is read for the send (see OldestInFlight). It is not
	// cleared once the answer is recorded: one store a request, not two,
	// on the hot path; a VU thinking between requests holds the run's
	// interval writes back by its think time at most.
	since atomic.Int64
	_     [32]byte
}

// sendAt is the clock for a closed-model send, read after since says
// the send is at or after bound (see OldestInFlight). (One call where the
// clock was read, not a line more in vuRun: the PGO profile places its
// hot call sites by their line in the function. With the store on a line
// of its own, paired A/B rounds against the previous binary read 0.95x
// the rate at 1.05x the CPU, with a profile regenerated too; built
// without PGO, or as here, no difference.)
func (ws *workerStats) sendAt(bound time.Duration, clock *event.Clock) time.Duration {
	ws.since.Store(int64(bound))
	return clock.Now()
}

// idleSince marks a worker with no request in flight.
const idleSince = math.MaxInt64

// Defaults.
const (
	DefaultMaxInFlight   = 10000
	DefaultClientTimeout = 30 * time.Second
)

// New prepares a generator; clock is the run's clock (its zero is when the
// profile starts). A nil transport makes one per executor from its config
// (NewTransport); a non-nil one is shared by every executor.
func New(cfg Config, rec Recorder, clock *event.Clock, tr Transport) (*Generator, error) {
	execs, err := Executors(cfg)
	if err != nil {
		return nil, err
	}
	g := &Generator{rec: rec, clock: clock, loops: cfg.Loops}
	for i, ec := range execs {
		e := &executor{g: g, idx: i, cfg: ec, pacer: NewPacer(ec.Stages), tr: tr, exhaustedCh: make(chan struct{})}
		e.frontier.Store(math.MaxInt64)
		if ec.Kind == ArrivalRate {
			e.frontier.Store(int64(ec.Start))
		}
		if e.tr == nil {
			t, err := NewTransport(ec)
			if err != nil {
				g.closeTransports()
				return nil, err
			}
			e.tr, e.owned = t, true
		} else if _, err := compileRequests(ec.Requests, ec.Data, ec.Seed); err != nil {
			return nil, err
		}
		g.execs = append(g.execs, e)
	}
	return g, nil
}

// FirstRequestError is the first request any executor could not build (see
// RequestError), or nil.
func (g *Generator) FirstRequestError() *RequestError {
	for _, e := range g.execs {
		if re := FirstRequestError(e.tr); re != nil {
			return re
		}
	}
	return nil
}

// FirstClientErrors is the first error of each client-side cause over
// every executor (see ClientErrorSource).
func (g *Generator) FirstClientErrors() []*ClientError {
	var lists [][]*ClientError
	for _, e := range g.execs {
		lists = append(lists, FirstClientErrors(e.tr))
	}
	return MergeClientErrors(lists...)
}

// endOf is when s's request ended: the transport's stamp, or now.
func (g *Generator) endOf(s *Sample) time.Duration {
	if s.end > 0 {
		return s.end
	}
	return g.clock.Now()
}

// Executors returns cfg's executors as the generator runs them: the single
// form as one, names, kinds, seeds and defaults filled in, checked.
func Executors(cfg Config) ([]Config, error) {
	execs := cfg.Executors
	if len(execs) == 0 {
		one := cfg
		one.Executors = nil
		if one.Name == "" {
			one.Name = "load"
		}
		execs = []Config{one}
	}
	out := make([]Config, 0, len(execs))
	names := map[string]bool{}
	for i, ec := range execs {
		if len(ec.Executors) > 0 {
			return nil, errors.New("loadgen: executors cannot nest")
		}
		if ec.Target == "" {
			ec.Target = cfg.Target
		}
		if ec.Seed == 0 {
			ec.Seed = cfg.Seed
			if i > 0 {
				ec.Seed = mix64(cfg.Seed + uint64(i))
			}
		}
		if ec.Name == "" {
			ec.Name = fmt.Sprintf("exec-%d", i)
		}
		if names[ec.Name] {
			return nil, fmt.Errorf("loadgen: executor name %q is used twice", ec.Name)
		}
		names[ec.Name] = true
		if ec.Kind == "" {
			ec.Kind = ArrivalRate
		}
		if ec.Kind != ArrivalRate && ec.Kind != VUs {
			return nil, fmt.Errorf("loadgen: executor %q: unknown kind %q", ec.Name, ec.Kind)
		}
		if len(ec.Requests) == 0 {
			return nil, fmt.Errorf("loadgen: executor %q: no requests", ec.Name)
		}
		if len(ec.Stages) == 0 {
			return nil, fmt.Errorf("loadgen: executor %q: no stages", ec.Name)
		}
		if ec.Start < 0 {
			return nil, fmt.Errorf("loadgen: executor %q: negative start", ec.Name)
		}
		if ec.MaxInFlight <= 0 {
			ec.MaxInFlight = DefaultMaxInFlight
		}
		if ec.ClientTimeout <= 0 {
			ec.ClientTimeout = DefaultClientTimeout
		}
		out = append(out, ec)
	}
	return out, nil
}

// Pacer is the first executor's schedule. Use Expected and Duration for
// the whole load.
func (g *Generator) Pacer() *Pacer { return g.execs[0].pacer }

// Names lists the executors, in order.
func (g *Generator) Names() []string {
	out := make([]string, len(g.execs))
	for i, e := range g.execs {
		out[i] = e.cfg.Name
	}
	return out
}

// Duration is when the last executor's profile ends, from the run's zero.
func (g *Generator) Duration() time.Duration {
	var d time.Duration
	for _, e := range g.execs {
		d = max(d, e.cfg.Start+e.pacer.Duration())
	}
	return d
}

// Expected is the number of requests the arrival-rate executors schedule
// in [a, b) of the run's clock (closed-model executors have no target).
func (g *Generator) Expected(a, b time.Duration) float64 { return g.sum(g.ExpectedOf, a, b) }

// sum adds of(i, a, b) over the executors.
func (g *Generator) sum(of func(i int, a, b time.Duration) float64, a, b time.Duration) float64 {
	var n float64
	for i := range g.execs {
		n += of(i, a, b)
	}
	return n
}

// ExpectedOf is Expected for executor i alone.
func (g *Generator) ExpectedOf(i int, a, b time.Duration) float64 {
	e := g.execs[i]
	if e.cfg.Kind != ArrivalRate {
		return 0
	}
	return e.pacer.Expected(a-e.cfg.Start, b-e.cfg.Start)
}

// Scheduled is the number of requests the arrival-rate executors' schedules
// hold in [a, b) of the run's clock: Expected, but whole, the arrivals
// counted (for a Poisson executor, its seeded ones; see ScheduledOf).
func (g *Generator) Scheduled(a, b time.Duration) float64 { return g.sum(g.ScheduledOf, a, b) }

// ScheduledOf is Scheduled for executor i alone: the arrivals its schedule
// holds in the window, counted, evenly spaced or Poisson. A Poisson schedule's count
// differs from its mean by sampling noise: 1,000 expected arrivals are
// 1,000 ± 32. Judged against the mean, "achieved_rate >= 99%" would fail
// one run in three with nothing wrong, so the schedule, which is seeded, is
// replayed and its arrivals in the window counted. That walks the schedule
// up to b once (about 10 ns an arrival); summaries call it once per phase
// and executor, not per interval.
func (g *Generator) ScheduledOf(i int, a, b time.Duration) float64 {
	e := g.execs[i]
	if e.cfg.Kind != ArrivalRate {
		return 0
	}
	if !e.cfg.Poisson {
		// Evenly spaced arrivals are whole too: 10/s over [250ms, 500ms)
		// is 2.5 on average but 2 arrivals, and judged against the mean a
		// window that sent all of them on time read 80% of its target.
		// Due counts those at or before a time, so before b is Due(b-1ns).
		before := func(t time.Duration) int64 { return e.pacer.Due(t - e.cfg.Start - 1) }
		return float64(before(b) - before(a))
	}
	arr := e.arrivals()
	var n int64
	for {
		at, ok := arr.Next()
		if !ok || at+e.cfg.Start >= b {
			break
		}
		if at+e.cfg.Start >= a {
			n++
		}
	}
	return float64(n)
}

// Window is executor i's time on the run's clock: [start, end). The end is
// its profile's, or when it sent its MaxRequests if that came first.
func (g *Generator) Window(i int) (start, end time.Duration) {
	e := g.execs[i]
	end = e.cfg.Start + e.pacer.Duration()
	if x := e.countedOut.Load(); x > 0 {
		end = min(end, time.Duration(x))
	}
	return e.cfg.Start, end
}

// End is when the load ended, on the run's clock: the last executor's
// Window end.
func (g *Generator) End() time.Duration {
	var d time.Duration
	for i := range g.execs {
		_, end := g.Window(i)
		d = max(d, end)
	}
	return d
}

// OldestInFlight is, for the load's closed-model (VU) executors, a time
// at or before the intended send of every request of theirs not yet
// recorded, sent or still to come: the send of each live VU's latest
// request (recorded or not), else the clock. ok is false when the load has
// no VU executor. Open-model executors are left out: ArrivalsBefore counts
// those, so a load that mixes both models answers both, each for its own
// executors, and an interval is whole only when both say so.
// The run writes an interval once it ends by then (and, in a mixed load,
// holds its open-model executors' arrivals): no request can still land in
// it.
//
// Why it holds: the clock is read first; a worker stores a bound on its
// send before reading the clock for it, and marks itself idle only once
// its sample is recorded. A store this scan misses came after it, so that
// send reads a clock past the one read here (atomics are sequentially
// consistent); a worker started after the scan likewise.
func (g *Generator) OldestInFlight() (t time.Duration, ok bool) {
	t = g.clock.Now()
	for _, e := range g.execs {
		if e.cfg.Kind != VUs {
			continue
		}
		ok = true
		e.mu.Lock()
		for _, w := range e.workers {
			t = min(t, time.Duration(w.since.Load()))
		}
		e.mu.Unlock()
	}
	if !ok {
		return 0, false
	}
	return t, true
}

// DispatchedThrough is the intended time before which every request of
// every executor has been handed to a worker (or dropped). A request handed
// over at wall time w ends by w plus the client timeout, so the run knows
// when an interval can no longer receive samples even when the scheduler
// runs late: a clock-only rule would flush too early under overload and see
// the interval's stragglers arrive after it was written.
func (g *Generator) DispatchedThrough() time.Duration {
	f := int64(math.MaxInt64)
	for _, e := range g.execs {
		f = min(f, e.frontier.Load())
	}
	return time.Duration(f)
}

// ArrivalsBefore counts the requests the open-model (arrival-rate)
// executors' schedules intend before t, on the run's clock. Such an
// executor records each of them exactly once (sent, dropped, or cut short
// by a stop), so an interval whose recorded samples of those executors
// number their arrivals can receive no more of theirs: the run writes it
// then, rather than one client timeout later (30 s by default, all of
// which a killed run lost). ok is false when the load has no arrival-rate
// executor. Closed-model (VU) executors, whose requests are not scheduled
// ahead, are left out: OldestInFlight bounds those, so a load that mixes
// both models answers both, each for its own executors. The schedules are
// walked forward once, with each executor's own seed (a Poisson draw
// included), so calls must come with t non-decreasing; each costs the
// arrivals it passes, about 10 ns each.
func (g *Generator) ArrivalsBefore(t time.Duration) (n int64, ok bool) {
	c := &g.counted
	c.Lock()
	defer c.Unlock()
	if !c.started {
		c.started = true
		for _, e := range g.execs {
			if e.cfg.Kind == ArrivalRate {
				c.cursors = append(c.cursors, &arrivalCursor{arr: e.arrivals(), start: e.cfg.Start})
			}
		}
	}
	if len(c.cursors) == 0 {
		return 0, false
	}
	for _, cur := range c.cursors {
		for !cur.done {
			if !cur.ahead {
				at, more := cur.arr.Next()
				if !more {
					cur.done = true
					break
				}
				cur.next, cur.ahead = at+cur.start, true
			}
			if cur.next >= t {
				break
			}
			cur.n++
			cur.ahead = false
		}
		n += cur.n
	}
	return n, true
}

// Progress returns live counters summed over the executors.
func (g *Generator) Progress() Progress {
	el := time.Duration(0)
	if g.started.Load() {
		el = min(g.clock.Now(), g.Duration())
	}
	p := Progress{Name: "all", Elapsed: el, Total: g.Duration()}
	for _, e := range g.execs {
		x := e.progress()
		p.TargetRate += x.TargetRate
		p.VUs += x.VUs
		p.TargetVUs += x.TargetVUs
		p.Scheduled += x.Scheduled
		p.Completed += x.Completed
		p.Errors += x.Errors
		p.Dropped += x.Dropped
		p.InFlight += x.InFlight
	}
	if len(g.execs) == 1 {
		p.Name, p.Kind = g.execs[0].cfg.Name, g.execs[0].cfg.Kind
	}
	return p
}

// Executors returns live counters per executor, in order.
func (g *Generator) Executors() []Progress {
	out := make([]Progress, len(g.execs))
	for i, e := range g.execs {
		out[i] = e.progress()
	}
	return out
}

func (e *executor) progress() Progress {
	p := Progress{Name: e.cfg.Name, Kind: e.cfg.Kind, Total: e.pacer.Duration()}
	if e.g.started.Load() {
		p.Elapsed = min(max(e.g.clock.Now()-e.cfg.Start, 0), p.Total)
	}
	running := e.g.started.Load() && e.g.clock.Now() >= e.cfg.Start && p.Elapsed < p.Total
	e.mu.Lock()
	p.Workers = len(e.workers)
	if e.cfg.Kind == ArrivalRate && p.Workers > 0 {
		p.Workers-- // the scheduler's own entry (it records the dropped)
	}
	started := e.retired.started
	p.Completed, p.Errors = e.retired.completed, e.retired.errors
	for _, w := range e.workers {
		started += w.started.Load()
		p.Completed += w.completed.Load()
		p.Errors += w.errors.Load()
	}
	e.mu.Unlock()
	p.InFlight = started - p.Completed
	switch e.cfg.Kind {
	case ArrivalRate:
		p.Scheduled, p.Dropped = e.scheduled.Load(), e.dropped.Load()
		if running {
			p.TargetRate = e.pacer.RateAt(p.Elapsed)
		}
	case VUs:
		p.Scheduled = started
		p.VUs = e.vus.Load()
		if running {
			p.TargetVUs = e.pacer.VUsAt(p.Elapsed)
		}
	}
	return p
}

func (e *executor) newWorker() (int, *workerStats) {
	ws := &workerStats{}
	ws.since.Store(idleSince)
	e.mu.Lock()
	e.workers = append(e.workers, ws)
	e.mu.Unlock()
	return int(e.g.ids.Add(1) - 1), ws
}

// retire folds an ended worker's counters into the executor's, so the list
// Progress walks holds only live workers.
func (e *executor) retire(ws *workerStats) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.retired.started += ws.started.Load()
	e.retired.completed += ws.completed.Load()
	e.retired.errors += ws.errors.Load()
	for i, w := range e.workers {
		if w == ws {
			last := len(e.workers) - 1
			e.workers[i], e.workers[last] = e.workers[last], nil
			e.workers = e.workers[:last]
			break
		}
	}
}

// Run sends the load and returns when every sent request has finished.
// Cancelling ctx stops scheduling and cuts in-flight requests short (they are
// recorded as aborted, never lost).
func (g *Generator) Run(ctx context.Context) error {
	g.started.Store(true)
	loops, loopsDone := g.startLoops(ctx)
	var wg sync.WaitGroup
	for _, e := range g.execs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !sleepUntil(ctx, g.clock, e.cfg.Start) {
				return
			}
			if e.cfg.Kind == VUs {
				e.runVUs(ctx)
			} else {
				e.runArrivals(ctx)
			}
		}()
	}
	wg.Wait()
	for _, l := range loops {
		l.Close()
	}
	loopsDone.Wait()
	g.closeTransports()
	return ctx.Err()
}

// startLoops starts Config.Loops event loops when an executor can use
// them, and hands them to those executors.
func (g *Generator) startLoops(ctx context.Context) ([]*evloop.Loop, *sync.WaitGroup) {
	var done sync.WaitGroup
	if g.loops <= 0 {
		return nil, &done
	}
	var users []*executor
	for _, e := range g.execs {
		if t, ok := e.tr.(*H1Transport); ok && e.cfg.Kind == VUs && !t.capped {
			users = append(users, e)
		}
	}
	if len(users) == 0 {
		return nil, &done
	}
	// Never every P: a loop keeps its P while it waits, and the rest of
	// the process (the controller, the progress display, a server in the
	// same process) needs one.
	n := min(g.loops, runtime.GOMAXPROCS(0)-1)
	var loops []*evloop.Loop
	for range n {
		l, err := evloop.New()
		if err != nil {
			break // off Linux: goroutines
		}
		loops = append(loops, l)
		done.Add(1)
		go func() { defer done.Done(); l.Run(ctx) }()
	}
	if len(loops) > 0 {
		for _, e := range users {
			e.loops = loops
		}
	}
	return loops, &done
}

func (g *Generator) closeTransports() {
	for _, e := range g.execs {
		if c, ok := e.tr.(interface{ CloseIdle() }); ok && e.owned {
			c.CloseIdle()
		}
	}
}

// sleepUntil waits for the run clock to reach t; false if ctx ended first.
func sleepUntil(ctx context.Context, clock *event.Clock, t time.Duration) bool {
	d := t - clock.Now()
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// arrivals is the executor's schedule from its start: the same sequence
// every time, since a Poisson one is seeded.
func (e *executor) arrivals() *Arrivals {
	var rng *rand.Rand
	if e.cfg.Poisson {
		rng = rand.New(rand.NewPCG(e.cfg.Seed, 0x706f6973))
	}
	return NewArrivals(e.pacer, rng)
}

type job struct {
	req      int
	seq      uint64
	intended time.Duration
}

// runArrivals is the open model: one scheduler hands each due request to an
// idle worker, starts a worker when none is idle (up to the cap) or counts
// the request as dropped.
func (e *executor) runArrivals(ctx context.Context) {
	arr := e.arrivals()
	pick := newPicker(e.cfg.Requests, e.cfg.Seed)
	idle := &idleStack{}
	var wg sync.WaitGroup
	workers := 0
	schedID, _ := e.newWorker() // the scheduler records the dropped requests
	w := newWaiter()
	defer w.close()
	maxIdle := workerIdle
	if e.cfg.workerIdle > 0 {
		maxIdle = e.cfg.workerIdle
	}
	nextReap := e.g.clock.Now() + maxIdle
	for {
		at, ok := arr.Next()
		if !ok {
			break
		}
		at += e.cfg.Start
		e.frontier.Store(int64(at))
		if !w.until(ctx, e.g.clock, at) {
			break
		}
		if at >= nextReap {
			workers -= idle.reap(at - maxIdle)
			nextReap = at + min(time.Second, maxIdle/4)
		}
		j := job{req: pick.pick(), seq: uint64(arr.Count() - 1), intended: at}
		e.scheduled.Add(1)
		if iw := idle.pop(); iw != nil {
			iw.jobs <- j // never blocks: the buffer is empty while it is idle
			continue
		}
		if workers < e.cfg.MaxInFlight {
			workers++
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.worker(ctx, idle, j)
			}()
			continue
		}
		// Every worker is busy and the cap is reached: this request
		// cannot start on time, so it is dropped and counted (k6's
		// dropped_iterations), never queued to start late unseen.
		e.dropped.Add(1)
		s := Sample{Executor: e.idx, Request: j.req, Seq: j.seq, Intended: at, Cause: cause.Dropped}
		e.g.rec.Record(schedID, &s)
	}
	e.frontier.Store(math.MaxInt64)
	// A schedule's last arrival can come well before its end: 0.5/s for
	// 3 s arrives at 0 and 2 s. The executor still runs its whole
	// duration, as k6's arrival-rate executors do, so that "--duration 3s"
	// takes 3 s, the run's last interval is there, and a fault timed near
	// the end still meets the load. A stopped run (ctx) does not wait.
	// The workers go first: no job comes after the last arrival, and idle
	// ones kept their connections open through a quiet tail, where a
	// scenario watches its target recover (139 after a ramp to 0/s).
	idle.close()
	w.until(ctx, e.g.clock, e.cfg.Start+e.pacer.Duration())
	wg.Wait()
}

// workerIdle is how long an open-model worker may wait for a job before it
// ends and closes its connection: a stall that needed a thousand workers
// does not leave a thousand goroutines and connections for the rest of
// the run, so memory does not grow with run length.
const workerIdle = 10 * time.Second

// worker sends jobs until it has been idle for workerIdle or the run ends.
func (e *executor) worker(ctx context.Context, idle *idleStack, first job) {
	id, ws := e.newWorker()
	defer e.retire(ws)
	tr := e.workerTransport()
	defer closeTransport(tr)
	me := &idleWorker{jobs: make(chan job, 1)}
	var s Sample
	j := first
	for {
		e.do(ctx, tr, id, ws, j, &s)
		if !idle.push(me, e.g.clock.Now()) {
			return
		}
		var ok bool
		if j, ok = <-me.jobs; !ok {
			return
		}
	}
}

// idleStack holds the idle workers, the most recently idle on top: the
// scheduler hands each job to the top one (its connection is the warmest),
// so surplus workers stay at the bottom, idle, and are reaped.
type idleStack struct {
	mu     sync.Mutex
	s      []*idleWorker // bottom first
	closed bool
}

type idleWorker struct {
	jobs  chan job // capacity 1; closed to end the worker
	since time.Duration
}

func (st *idleStack) push(w *idleWorker, now time.Duration) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return false
	}
	w.since = now
	st.s = append(st.s, w)
	return true
}

func (st *idleStack) pop() *idleWorker {
	st.mu.Lock()
	defer st.mu.Unlock()
	n := len(st.s)
	if n == 0 {
		return nil
	}
	w := st.s[n-1]
	st.s[n-1] = nil
	st.s = st.s[:n-1]
	return w
}

// reap ends the workers idle since before cutoff and returns how many.
func (st *idleStack) reap(cutoff time.Duration) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	n := 0
	for n < len(st.s) && st.s[n].since < cutoff {
		close(st.s[n].jobs)
		n++
	}
	if n > 0 {
		k := copy(st.s, st.s[n:])
		clear(st.s[k:])
		st.s = st.s[:k]
	}
	return n
}

// close ends the idle workers now and the busy ones when they finish.
func (st *idleStack) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	for _, w := range st.s {
		close(w.jobs)
	}
	st.s = nil
}

// workerTransport is the transport one worker goroutine sends with.
func (e *executor) workerTransport() Transport {
	if h, ok := e.tr.(*H1Transport); ok {
		return h.worker(e.g.clock)
	}
	if wt, ok := e.tr.(WorkerTransport); ok {
		return wt.Worker()
	}
	return e.tr
}

func closeTransport(tr Transport) {
	if c, ok := tr.(io.Closer); ok {
		_ = c.Close()
	}
}

func (e *executor) do(ctx context.Context, tr Transport, worker int, ws *workerStats, j job, s *Sample) {
	*s = Sample{Executor: e.idx, Request: j.req, Seq: j.seq, Intended: j.intended}
	ws.started.Add(1)
	sent := e.g.clock.Now()
	s.Lag, s.sent = sent-j.intended, sent
	tr.RoundTrip(ctx, j.req, s)
	end := e.g.endOf(s)
	s.Latency = end - j.intended
	s.Service = end - sent - s.ConnWait
	if s.Cause.IsError() {
		ws.errors.Add(1)
	}
	ws.completed.Add(1)
	e.g.rec.Record(worker, s)
}

// vuTick is how often a ramping-VU controller adjusts the number of VUs.
const vuTick = 10 * time.Millisecond

// exhaust marks the executor's MaxRequests reached and wakes its VU
// controller, which then starts no more VUs. One call in vuRun, a line of
// its own: a PGO profile matches vuRun's call sites by line.
func (e *executor) exhaust() {
	e.exhausted.Store(true)
	e.exhaustedOnce.Do(func() { close(e.exhaustedCh) })
}

// runVUs is the closed model: a controller keeps the profile's number of VU
// goroutines running; a VU above the current count stops after its request.
func (e *executor) runVUs(ctx context.Context) {
	var wg sync.WaitGroup
	end := e.cfg.Start + e.pacer.Duration()
	t := time.NewTicker(vuTick)
	defer t.Stop()
	for {
		now := e.g.clock.Now()
		if now >= end || ctx.Err() != nil || e.exhausted.Load() {
			break
		}
		n := e.pacer.VUsAt(now - e.cfg.Start)
		e.mu.Lock()
		e.limit.Store(int64(n))
		for len(e.running) < n {
			e.running = append(e.running, false)
		}
		for i := 0; i < n; i++ {
			if !e.running[i] {
				e.running[i] = true
				wg.Add(1)
				if len(e.loops) > 0 {
					e.loops[i%len(e.loops)].Go(func(t *evloop.Task) { defer wg.Done(); e.vuOnLoop(ctx, i, end, t) })
				} else {
					go func() { defer wg.Done(); e.vu(ctx, i, end) }()
				}
			}
		}
		e.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-e.exhaustedCh:
		}
	}
	// Reaching MaxRequests ends the executor without cutting VUs short:
	// each sends what is left of its block of sequence numbers below the
	// bound and stops on its own, so exactly MaxRequests are sent (unless
	// the duration ends first).
	if !e.exhausted.Load() {
		e.limit.Store(0)
	}
	wg.Wait()
	if e.exhausted.Load() {
		e.countedOut.Store(int64(max(e.g.clock.Now(), 1)))
	}
}

// vuStop reports whether VU i must stop, and if so marks it stopped, under
// the lock the controller starts VUs with: a VU never stops just after the
// controller counted on it.
func (e *executor) vuStop(ctx context.Context, i int, end, now time.Duration) bool {
	if int64(i) < e.limit.Load() && now < end && ctx.Err() == nil {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if int64(i) < e.limit.Load() && e.g.clock.Now() < end && ctx.Err() == nil {
		return false
	}
	e.running[i] = false
	return true
}

// seqBlock is how many sequence numbers a VU takes at once: VUs do not
// contend on one counter per request.
const seqBlock = 64

// nextBlock is a VU's next run of sequence numbers: one a stopped VU left
// unused, else a new one.
// The lock is taken once per block, not per request.
func (e *executor) nextBlock() (seq, end uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if n := len(e.spare); n > 0 {
		b := e.spare[n-1]
		e.spare = e.spare[:n-1]
		return b[0], b[1]
	}
	n := blockSize(e.cfg.MaxRequests, e.seq.Load(), e.limit.Load())
	end = e.seq.Add(n)
	return end - n, end
}

// blockSize is how many sequence numbers a VU takes next, when next is the
// first not yet handed out and vus VUs share the rest. Under MaxRequests a
// whole block per VU would leave VUs with nothing to send: 100 VUs and 100
// requests would be two VUs with 64 and 36, one request after the other,
// not hey -n 100 -c 100. So each takes its share of what remains (down to
// one number at a time at the end, as guided self-scheduling does): every VU
// sends while requests remain, and the lock is still taken once per block
// for all but the last few requests of each VU.
func blockSize(maxRequests, next uint64, vus int64) uint64 {
	if maxRequests == 0 || next >= maxRequests {
		return seqBlock
	}
	return min(seqBlock, max(1, (maxRequests-next)/uint64(max(vus, 1))))
}

// giveBack keeps the unused rest of a stopping VU's block for the others:
// a VU that a ramp takes away must not leave holes below MaxRequests, or
// fewer than MaxRequests would be sent.
func (e *executor) giveBack(seq, end uint64) {
	if seq >= end || (e.cfg.MaxRequests > 0 && seq >= e.cfg.MaxRequests) {
		return
	}
	e.mu.Lock()
	e.spare = append(e.spare, [2]uint64{seq, end})
	e.mu.Unlock()
}

// vu is VU i on a goroutine of its own.
func (e *executor) vu(ctx context.Context, i int, end time.Duration) {
	tr := e.workerTransport()
	defer closeTransport(tr)
	var timer *time.Timer
	e.vuRun(ctx, i, end, tr, func(d time.Duration) {
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			timer.Stop()
		case <-timer.C:
		}
	})
}

// vuOnLoop is VU i as a task of an event loop: its connection and its
// think time wait in the loop.
func (e *executor) vuOnLoop(ctx context.Context, i int, end time.Duration, t *evloop.Task) {
	tr := e.tr.(*H1Transport).LoopWorker(t, e.g.clock)
	defer closeTransport(tr)
	e.vuRun(ctx, i, end, tr, func(d time.Duration) { t.Sleep(ctx, d) })
}

// vuRun is VU i's loop: send, wait, think (with sleep), until the VU must
// stop.
func (e *executor) vuRun(ctx context.Context, i int, end time.Duration, tr Transport, sleep func(time.Duration)) {
	e.vus.Add(1)
	defer e.vus.Add(-1)
	id, ws := e.newWorker()
	defer e.retire(ws)
	vseed := mix64(e.cfg.Seed ^ uint64(i+1)<<32)
	pick := newPicker(e.cfg.Requests, vseed)
	var think *dist.Sampler
	if !e.cfg.Think.IsZero() {
		think = dist.NewSampler(e.cfg.Think, rand.New(rand.NewPCG(vseed, 0x7468696e)))
	}
	var s Sample
	var seq, seqEnd uint64
	defer func() { e.giveBack(seq, seqEnd) }()
	var fdWait time.Duration
	// now is the clock reading after the last request (and think time):
	// stopping a VU a few hundred nanoseconds late is fine, a clock
	// reading per request is not free.
	for now := e.g.clock.Now(); !e.vuStop(ctx, i, end, now); {
		if seq == seqEnd {
			seq, seqEnd = e.nextBlock()
		}
		if e.cfg.MaxRequests > 0 && seq >= e.cfg.MaxRequests {
			e.exhaust()              // the controller starts no more VUs
			e.vuStop(ctx, i, 0, now) // mark stopped; end 0 is in the past
			return
		}
		req := pick.pick()
		start := ws.sendAt(now, e.g.clock)
		s = Sample{Executor: e.idx, Request: req, Seq: seq, Intended: start, sent: start}
		seq++
		ws.started.Add(1)
		tr.RoundTrip(ctx, req, &s)
		done := e.g.endOf(&s)
		s.Latency = done - start
		s.Service = s.Latency - s.ConnWait
		if s.Cause.IsError() {
			ws.errors.Add(1)
		}
		ws.completed.Add(1)
		e.g.rec.Record(id, &s)
		now = done
		if s.fdLimit {
			// The generator's own file-descriptor limit, not the target's
			// answer: sending again at once would only count the same
			// failure a few hundred thousand times a second and burn the
			// CPU the target needs. No descriptor frees up until another
			// VU's connection closes, so wait, doubling from 1 ms to 1 s,
			// as the open model's schedule bounds its own failures.
			fdWait = min(max(2*fdWait, time.Millisecond), time.Second)
			if d := min(fdWait, end-done); d > 0 {
				sleep(d)
				now = e.g.clock.Now()
			}
			continue
		}
		fdWait = 0
		if think != nil {
			if d := min(think.Sample(), end-done); d > 0 {
				sleep(d)
				now = e.g.clock.Now()
			}
		}
	}
}

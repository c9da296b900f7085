package run

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/internal/atomicfile"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/verdict"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// SampleInterval is how often the run samples every replica's in-flight
// count (for upstreams.jsonl and the autoscalers' in_flight metric).
const SampleInterval = 100 * time.Millisecond

// recording is what the run records beyond the collector, so every
// objective can be judged live exactly as `cascade report` judges it
// offline: the events, the interval records and what the upstreams saw
// (upstreams.jsonl), plus the early-abort monitor. Only a plan with abort
// objectives keeps them in memory during the run; the final verdict reads
// them back from the run directory, so memory does not grow with run length.
//
//	replicas ─Arrive/Finish─▶ ledger ─each second─▶ upstreams.jsonl + memory ─┐
//	sink ─▶ events.jsonl + memory ─────────────────────────────────────────────┼─▶ verdict.Input
//	flusher ─▶ intervals.jsonl + memory ───────────────────────────────────────┘
//	                       abort monitor (objectives marked abort) ─▶ stops the load
type recording struct {
	p      *plan.Plan
	dir    string
	keep   bool // abort objectives judge during the run: keep records in memory
	clock  *event.Clock
	mem    *event.Memory
	out    event.Sink // the run's sink (events.jsonl and mem)
	ledger *results.Ledger
	upw    *results.JSONLWriter
	fail   *failure // a write of upstreams.jsonl that fails is the run's failure

	mu        sync.Mutex
	intervals []results.IntervalRecord
	upstreams []results.UpstreamRecord
	aborted   string

	metrics map[string]*upstreamMetrics // autoscaler metric windows, by upstream
}

func newRecording(p *plan.Plan, dir string, clock *event.Clock, fail *failure) (*recording, error) {
	upw, err := results.CreateJSONL(dir, results.UpstreamsFile)
	if err != nil {
		return nil, err
	}
	r := &recording{p: p, dir: dir, keep: len(p.Aborts) > 0, clock: clock, mem: &event.Memory{},
		ledger: results.NewLedger(IntervalWidth), upw: upw, fail: fail, metrics: map[string]*upstreamMetrics{}}
	for _, a := range p.Autoscale {
		r.metrics[a.Upstream] = &upstreamMetrics{keep: 2*a.SyncPeriod + time.Second}
	}
	return r, nil
}

// sink sends events to the run directory and keeps them for the verdict.
func (r *recording) sink(w event.Sink) event.Sink {
	r.out = w
	if r.keep {
		r.out = event.Tee(w, r.mem)
	}
	return r.out
}

// Arrive implements faults.Observer.
func (r *recording) Arrive(a *faults.Arrival) {
	r.ledger.Arrive(results.Arrival(*a))
	if m := r.metrics[a.Upstream]; m != nil {
		m.arrive(a.At)
	}
}

// Finish implements faults.Observer.
func (r *recording) Finish(a *faults.Arrival) {
	r.ledger.Finish(results.Arrival(*a))
	if m := r.metrics[a.Upstream]; m != nil {
		m.finish(a.Finished, a.Finished-a.At)
	}
}

// HealthCheck implements faults.HealthCheckObserver: the gateway's probes
// are recorded apart, and are no request rate an autoscaler follows.
func (r *recording) HealthCheck(a *faults.Arrival) {
	r.ledger.HealthCheck(results.Arrival(*a))
}

var (
	_ faults.Observer            = (*recording)(nil)
	_ faults.HealthCheckObserver = (*recording)(nil)
)

// keepIntervals is handed every interval record the flusher writes.
func (r *recording) keepIntervals(recs []results.IntervalRecord) {
	if !r.keep {
		return
	}
	r.mu.Lock()
	r.intervals = append(r.intervals, recs...)
	r.mu.Unlock()
}

// flushLedger writes the upstream records of every interval that ended by
// before.
func (r *recording) flushLedger(before time.Duration) {
	recs := r.ledger.Take(before)
	for _, rec := range recs {
		r.upw.Write(rec)
	}
	if err := r.upw.Flush(); err != nil {
		r.fail.set(fmt.Errorf("write results: %w", err))
	}
	if !r.keep {
		return
	}
	r.mu.Lock()
	r.upstreams = append(r.upstreams, recs...)
	r.mu.Unlock()
}

// background samples replicas, flushes the ledger every interval and, when
// the plan has abort objectives, stops the load (stop) as soon as one can
// no longer pass, judging the intervals written so far and those still
// open (open: the ones peek returns). It returns when ctx ends.
func (r *recording) background(ctx context.Context, ups func() []*faults.Upstream, planned float64,
	peek func() []results.IntervalRecord, stop func()) {
	sample := time.NewTicker(SampleInterval)
	defer sample.Stop()
	flush := time.NewTicker(IntervalWidth)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sample.C:
			now := r.clock.Now()
			for _, u := range ups() {
				var total int64
				reps := u.Replicas()
				for _, rep := range reps {
					n := rep.InFlight.Load()
					total += n
					r.ledger.Sample(now, u.Name(), rep.Name(), rep.Addr(), n)
				}
				if m := r.metrics[u.Name()]; m != nil {
					m.sample(now, total, len(reps))
				}
			}
		case <-flush.C:
			r.flushLedger(r.clock.Now().Truncate(IntervalWidth))
			if len(r.p.Aborts) > 0 && r.abortDue(planned, peek()) {
				stop()
			}
		}
	}
}

// stillOpen drops from open (peeked at before) the intervals written
// since: the flusher may take and keep one between the peek and the copy
// of the written ones, and counted in both its failures counted twice
// (an abort on error_rate < 5% at 4% could fire). Intervals are written
// in order, so an open one is new only past the last written.
func stillOpen(open, written []results.IntervalRecord) []results.IntervalRecord {
	if len(written) == 0 {
		return open
	}
	last := written[len(written)-1].Start
	out := open[:0:0]
	for _, o := range open {
		if o.Start > last {
			out = append(out, o)
		}
	}
	return out
}

// abortDue asks each abort objective whether it can still pass, from the
// intervals written and open ones (their counts so far).
func (r *recording) abortDue(planned float64, open []results.IntervalRecord) bool {
	r.mu.Lock()
	if r.aborted != "" {
		r.mu.Unlock()
		return true
	}
	in := &verdict.Input{Phases: map[string]*verdict.Phase{}, Events: r.mem.Events(), Now: r.clock.Now(), Planned: planned,
		Intervals: append([]results.IntervalRecord(nil), r.intervals...), Upstreams: append([]results.UpstreamRecord(nil), r.upstreams...)}
	r.mu.Unlock()
	in.Open = stillOpen(open, in.Intervals)
	for _, ph := range r.p.Phases {
		in.Phases[ph.Name] = &verdict.Phase{Summary: results.PhaseSummary{Name: ph.Name, Start: results.Sec(ph.Start), End: results.Sec(ph.End)},
			Stats: results.NewStats()}
	}
	for _, a := range r.p.Aborts {
		if doomed, why := a.Doomed(in); doomed {
			r.mu.Lock()
			r.aborted = why
			r.mu.Unlock()
			r.out.Emit(event.Event{T: in.Now, Source: "run", Type: "run.abort", Attrs: map[string]any{"reason": why}})
			return true
		}
	}
	return false
}

// abortReason is why the run stopped early, or "".
func (r *recording) abortReason() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.aborted
}

// settle waits for the work still running when the load ended, as long as
// it may, and writes the last upstream records (upstreams.jsonl).
func (r *recording) settle(sum *results.Summary) {
	// Work still running now outlived every caller: the load is over. A
	// request whose caller gave up just before the end gets the slack a
	// well-behaved upstream has to stop, or it would be judged on less.
	loadEnd := sum.Elapsed.D()
	if wait := loadEnd + results.OrphanSlack + time.Millisecond - r.clock.Now(); wait > 0 && r.ledger.Running() {
		time.Sleep(wait)
	}
	r.ledger.Settle(r.clock.Now(), loadEnd)
	r.flushLedger(1 << 62)
}

// input is the verdict's input once the run is over (settled), read back
// from the run directory (the caller flushes it first): the very data
// `cascade report` reads later, and nothing held in memory for the length
// of the run. For a run that failed (lenient), the records are read as
// report reads them then: up to a line cut short, which partial names.
func (r *recording) input(sum *results.Summary, lenient bool) (in *verdict.Input, partial string, err error) {
	var events []event.Event
	var intervals []results.IntervalRecord
	var upstreams []results.UpstreamRecord
	if lenient {
		events, intervals, upstreams, partial, err = results.LoadPartialRecords(r.dir)
	} else {
		events, intervals, upstreams, err = results.LoadRecords(r.dir)
	}
	if err != nil {
		return nil, "", err
	}
	in, err = verdict.NewInput(sum, events, intervals)
	if err != nil {
		return nil, partial, err
	}
	in.Upstreams = upstreams
	return in, partial, nil
}

func (r *recording) close() error { return r.upw.Close() }

// writeJUnit writes junit.xml beside summary.json, whole or not at all.
func writeJUnit(dir string, sum *results.Summary) error {
	err := atomicfile.Write(filepath.Join(dir, verdict.JUnitFile), 0o644, func(w io.Writer) error { return verdict.WriteJUnit(w, sum) })
	if err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	return nil
}

package gameday

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// never is a phase boundary not known yet: it lies after a gate that has
// not opened.
const never = time.Duration(math.MaxInt64)

// Gone is the window of a phase the plan derived from its faults that the
// faults as they ran no longer make (a gap renamed when a fault was cut
// short): no sample falls in it and the summary leaves it out.
const Gone = time.Duration(-1)

// Errors of the live controls.
var (
	ErrNoGate   = errors.New("no gate is waiting")
	ErrStopped  = errors.New("the run is stopping")
	ErrFinished = errors.New("the load has ended")
)

// PhaseSetter moves phase windows while samples are recorded
// (*results.Collector).
type PhaseSetter interface {
	SetPhases([]results.Phase) error
}

// Hold is one manual gate as it happened, on the run's clock.
type Hold struct {
	Gate   plan.Gate
	Closed time.Duration // when the script reached the gate
	Opened time.Duration // when it opened; 0 while closed
	By     string        // who opened it; "max_hold" when it timed out, "stop" or "interrupted"
}

// Held is how long the gate was closed.
func (h Hold) Held() time.Duration { return max(h.Opened-h.Closed, 0) }

// Script drives a plan's load, and when the plan has manual gates its
// fault timeline too, on the scenario's own clock: script time, which
// stands still while a gate is closed.
//
//	script  0 ──── segment 0 ──── g1 ·········· g1 ──── segment 1 ──── end
//	run     0 ──────────────────── C1 ── hold ── R1 ──────────────────── end + (R1−C1)
//	                               (a generator holds the rate before g1)
//
// Each segment of the profile between gates, and each hold, is its own
// open-model generator placed on the run's clock (its samples shifted onto
// it); they share one transport whose requests are bound to the run, not to
// the generator, so stopping a generator's schedule (a gate opening, a
// graceful stop) lets its requests in flight finish. Everything scripted
// after a gate (stages, fault onsets and ends, phase boundaries) happens as
// much later as the gate was held. Without gates the script is one
// generator, as in a plain run, plus the ability to stop gracefully.
type Script struct {
	p      *plan.Plan
	clock  *event.Clock
	sink   event.Sink
	rec    loadgen.Recorder
	phases PhaseSetter
	tl     *faults.Timeline
	tr     loadgen.Transport
	cfg    loadgen.Config
	steps  []step

	openCh chan openReq
	stopCh chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	started  bool
	gens     []*loadgen.Generator
	cancels  map[*loadgen.Generator]context.CancelFunc
	holds    []Hold
	closed   *Hold
	shift    time.Duration // run time − script time, after the gates passed
	stopped  string        // who stopped the run; "" while it runs
	stopAt   time.Duration // when, on the run's clock
	halted   bool          // scripted faults were halted: skip the rest
	finished bool
	next     int             // steps[:next] have run
	removed  map[string]bool // scripted faults removed by hand: their occurrences to come are skipped
	runCtx   context.Context

	// The faults as they ran, for the phases they derive (see asRan).
	derived map[string]bool          // names of the phases derived from faults
	extra   []string                 // derived phases the plan did not have, after its own
	cut     map[string]time.Duration // scripted faults ended early: when (script time)
	manual  []faults.Entry           // faults added by hand, on script time

	counter *loadgen.Generator // ArrivalsBefore's copy of segment 0 (no gates); never run
}

type stepKind int

// At one script instant: faults ending there end before the gate (so a
// phase ending at a gate ends when it closes), faults and segments
// starting there start after it.
const (
	stepFaultStop stepKind = iota
	stepGate
	stepSegment
	stepFaultStart
)

type step struct {
	at    time.Duration // script time
	kind  stepKind
	index int          // gate or segment number
	entry faults.Entry // for fault steps
}

// ScriptConfig is what a Script drives.
type ScriptConfig struct {
	Plan     *plan.Plan
	Target   string // filled into the load config
	Clock    *event.Clock
	Sink     event.Sink
	Recorder loadgen.Recorder // every sample, on the run's clock
	Phases   PhaseSetter
	Timeline *faults.Timeline
	// Transport sends the requests (default: net/http from the load
	// config); it must be safe for concurrent use.
	Transport loadgen.Transport
}

// NewScript prepares the script. With gates, the plan's fault timeline is
// the script's to run: give it a Timeline built without entries.
func NewScript(c ScriptConfig) (*Script, error) {
	p := c.Plan
	cfg := p.Load
	cfg.Target = c.Target
	tr := c.Transport
	if tr == nil {
		h, err := loadgen.NewHTTPTransport(cfg)
		if err != nil {
			return nil, err
		}
		tr = h
	}
	s := &Script{p: p, clock: c.Clock, sink: c.Sink, rec: c.Recorder, phases: c.Phases, tl: c.Timeline, tr: tr, cfg: cfg,
		openCh: make(chan openReq, 1), stopCh: make(chan struct{}), cancels: map[*loadgen.Generator]context.CancelFunc{}}
	s.derived = map[string]bool{}
	for _, ph := range plan.DerivePhases(p.Timeline, p.Duration) {
		s.derived[ph.Name] = true
	}
	if s.sink == nil {
		s.sink = event.Discard
	}
	bounds := []time.Duration{0}
	for k, g := range p.Gates {
		bounds = append(bounds, g.At)
		s.steps = append(s.steps, step{at: g.At, kind: stepGate, index: k})
	}
	bounds = append(bounds, p.Duration)
	for k := 0; k+1 < len(bounds); k++ {
		if bounds[k] < bounds[k+1] {
			s.steps = append(s.steps, step{at: bounds[k], kind: stepSegment, index: k})
		}
	}
	if len(p.Gates) > 0 {
		for _, e := range p.Timeline {
			for i := 0; i < e.Occurrences(); i++ {
				on := e.Start + time.Duration(i)*e.Every
				one := e
				one.Start, one.Every, one.Times, one.Duration = 0, 0, 0, 0
				s.steps = append(s.steps, step{at: on, kind: stepFaultStart, entry: one})
				if e.Duration > 0 {
					s.steps = append(s.steps, step{at: on + e.Duration, kind: stepFaultStop, entry: one})
				}
			}
		}
	}
	sort.SliceStable(s.steps, func(i, j int) bool {
		a, b := s.steps[i], s.steps[j]
		if a.at != b.at {
			return a.at < b.at
		}
		return a.kind < b.kind
	})
	return s, nil
}

// Phases are the plan's phases on the run's clock as far as they are known
// now: a boundary after a gate that has not opened is at infinity.
func (s *Script) Phases() []results.Phase {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.windowsLocked()
}

func (s *Script) windowsLocked() []results.Phase {
	out := s.asRanLocked()
	gateIdx := map[string]int{}
	for k, g := range s.p.Gates {
		gateIdx[g.Name] = k
	}
	for i := range out {
		ph := &out[i]
		if i == 0 { // the whole run
			ph.End = s.mapLocked(ph.End, false)
			continue
		}
		if ph.End == Gone {
			continue
		}
		if k, ok := gateIdx[ph.Name]; ok {
			switch {
			case k < len(s.holds):
				ph.Start, ph.End = s.holds[k].Closed, s.holds[k].Opened
			case s.closed != nil && s.closed.Gate.Name == ph.Name:
				ph.Start, ph.End = s.closed.Closed, never
			default:
				ph.Start, ph.End = never, never
			}
			continue
		}
		ph.Start, ph.End = s.mapLocked(ph.Start, true), s.mapLocked(ph.End, false)
	}
	return out
}

// asRanLocked is the plan's phases on script time, those derived from the
// fault timeline derived again from the faults as they ran: cut short by
// hand or by a halt, and added by hand. That is the timeline the game day's
// export writes, so its replay compiles the same phases and judges the same
// windows; and a fault removed early no longer stretches its phase over
// time it was off. Past windows do not move: faults change only from now
// on. Phases the new timeline derives that the plan did not have come after
// the plan's; those it no longer derives are Gone.
func (s *Script) asRanLocked() []results.Phase {
	out := append([]results.Phase(nil), s.p.Phases...)
	if len(s.cut) == 0 && len(s.manual) == 0 {
		return out
	}
	var tl []faults.Entry
	for _, e := range s.p.Timeline {
		if t, ok := s.cut[e.Name]; ok {
			end, ran := endBefore(e, t)
			if !ran {
				continue // removed before it started: the export leaves it out
			}
			e.Every, e.Times, e.Duration = 0, 0, end-e.Start
		}
		tl = append(tl, e)
	}
	tl = append(tl, s.manual...)
	for _, name := range s.extra {
		out = append(out, results.Phase{Name: name})
	}
	at := map[string]int{}
	for i, ph := range out {
		if s.derived[ph.Name] {
			at[ph.Name] = i
			out[i].Start, out[i].End = Gone, Gone
		}
	}
	for _, ph := range plan.DerivePhases(tl, s.p.Duration) {
		i, ok := at[ph.Name]
		if !ok {
			s.derived[ph.Name] = true
			s.extra = append(s.extra, ph.Name)
			i = len(out)
			out = append(out, ph)
		}
		out[i].Start, out[i].End = ph.Start, ph.End
	}
	return out
}

// endBefore is when e's last occurrence that began before t ended, cut at
// t; ran is false when none began before t.
func endBefore(e faults.Entry, t time.Duration) (end time.Duration, ran bool) {
	for i := e.Occurrences() - 1; i >= 0; i-- {
		on := e.Start + time.Duration(i)*e.Every
		if on < t {
			return min(on+e.Duration, t), true
		}
	}
	return 0, false
}

// FaultAdded notes a fault added by hand now, for the phases.
func (s *Script) FaultAdded(e faults.Entry) { s.faultAdded(e, s.clock.Now()) }

// faultAdded notes a fault added by hand at at on the run's clock.
func (s *Script) faultAdded(e faults.Entry, at time.Duration) {
	s.mu.Lock()
	now := s.scriptTimeAtLocked(at)
	e.Start = now
	if e.Duration == 0 || e.End() > s.p.Duration {
		e.Every, e.Times, e.Duration = 0, 0, max(s.p.Duration-now, 0)
	}
	for i := range s.manual {
		if m := &s.manual[i]; m.Name == e.Name {
			// Added again after a removal: one phase spans its
			// occurrences, as the export's span phase does.
			m.Duration = e.End() - m.Start
			s.mu.Unlock()
			_ = s.setPhases()
			return
		}
	}
	s.manual = append(s.manual, e)
	s.mu.Unlock()
	_ = s.setPhases()
}

// FaultEnded notes that a fault was removed now (by hand or by a halt),
// its occurrences to come cancelled, for the phases.
func (s *Script) FaultEnded(name string) { s.faultEnded(name, s.clock.Now()) }

// faultEnded notes that a fault was removed at at on the run's clock.
func (s *Script) faultEnded(name string, at time.Duration) {
	s.mu.Lock()
	now := s.scriptTimeAtLocked(at)
	changed := false
	for i := range s.manual {
		if e := &s.manual[i]; e.Name == name && e.End() > now {
			end, _ := endBefore(*e, now)
			e.Every, e.Times, e.Duration = 0, 0, max(end-e.Start, time.Nanosecond)
			changed = true
		}
	}
	for _, e := range s.p.Timeline {
		if _, done := s.cut[e.Name]; e.Name == name && !done && now < e.End() {
			if s.cut == nil {
				s.cut = map[string]time.Duration{}
			}
			s.cut[name] = now
			changed = true
		}
	}
	s.mu.Unlock()
	if changed {
		_ = s.setPhases()
	}
}

// mapLocked places script time t on the run's clock. A start at a gate's
// instant comes after the hold, an end before it.
func (s *Script) mapLocked(t time.Duration, start bool) time.Duration {
	shift := time.Duration(0)
	for k, g := range s.p.Gates {
		if !(g.At < t || (start && g.At == t)) {
			break
		}
		if k >= len(s.holds) {
			return never
		}
		shift += s.holds[k].Held()
	}
	return t + shift
}

// FinalPhases are the phases as they ran, for the summary: boundaries the
// run never reached (it was stopped) are cut at elapsed.
func (s *Script) FinalPhases(elapsed time.Duration) []results.Phase {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finalPhasesLocked(elapsed)
}

// finalPhasesLocked is FinalPhases under the script's lock.
func (s *Script) finalPhasesLocked(elapsed time.Duration) []results.Phase {
	out := s.windowsLocked()
	for i := range out {
		out[i].Start, out[i].End = min(out[i].Start, elapsed), min(out[i].End, elapsed)
	}
	return out
}

// Holds lists the gates passed so far, and the one closed now (Opened 0).
func (s *Script) Holds() []Hold {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]Hold(nil), s.holds...)
	if s.closed != nil {
		out = append(out, *s.closed)
	}
	return out
}

// Waiting is the gate closed now, if any.
func (s *Script) Waiting() (Hold, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed == nil {
		return Hold{}, false
	}
	return *s.closed, true
}

// NextGate is the next gate the script will reach, if any.
func (s *Script) NextGate() (plan.Gate, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := len(s.holds)
	if s.closed != nil {
		k++
	}
	if k < len(s.p.Gates) {
		return s.p.Gates[k], true
	}
	return plan.Gate{}, false
}

// ScriptTime is where the scenario's own clock stands.
func (s *Script) ScriptTime() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.scriptTimeLocked()
}

func (s *Script) scriptTimeLocked() time.Duration { return s.scriptTimeAtLocked(s.clock.Now()) }

// scriptTimeAtLocked is the scenario's clock at now on the run's.
func (s *Script) scriptTimeAtLocked(now time.Duration) time.Duration {
	if s.closed != nil {
		return s.closed.Gate.At
	}
	return max(now-s.shift, 0)
}

// OpenGate opens the gate that is closed now, on behalf of who, and
// returns its name and when it opened on the run's clock.
func (s *Script) OpenGate(who string) (string, time.Duration, error) {
	s.mu.Lock()
	switch {
	case s.stopped != "":
		s.mu.Unlock()
		return "", 0, ErrStopped
	case s.closed == nil:
		s.mu.Unlock()
		return "", 0, ErrNoGate
	}
	name := s.closed.Gate.Name
	req := openReq{who: who, opened: make(chan time.Duration, 1)}
	select {
	case s.openCh <- req:
	default: // another caller's request is queued: the gate opens now, so report this clock reading
		s.mu.Unlock()
		return name, s.clock.Now(), nil
	}
	s.mu.Unlock()
	// The hold in progress answers every request sent while its gate was
	// closed (see hold), so this wait ends.
	return name, <-req.opened, nil
}

// openReq asks the hold in progress to open its gate. The hold answers with
// the time it opened, so whoever asked reports the same instant the phase
// boundary and the gate.open event carry, not a clock read of its own a
// scheduling delay later.
type openReq struct {
	who    string
	opened chan time.Duration // buffered: the hold never waits on it
}

// Stop ends the load gracefully: no request is scheduled any more, those in
// flight finish, and the run is judged as usual.
func (s *Script) Stop(who string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped != "" {
		return ErrStopped
	}
	if s.finished {
		return ErrFinished
	}
	s.stopped, s.stopAt = who, s.clock.Now()
	close(s.stopCh)
	for _, cancel := range s.cancels {
		cancel()
	}
	return nil
}

// Stopped says who stopped the run ("" if no one did).
func (s *Script) Stopped() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// StoppedAt is when the run was stopped early (0 if it was not): the
// load's schedule ended there.
func (s *Script) StoppedAt() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopAt
}

// HaltFaults cancels every scripted fault onset still to come (auto-halt).
func (s *Script) HaltFaults() {
	s.mu.Lock()
	s.halted = true
	s.mu.Unlock()
}

// Run drives the script until it ends, is stopped, or ctx is cancelled
// (Ctrl-C: requests in flight are cut short, as in a plain run). It
// returns ctx.Err() when cancelled, nil otherwise.
func (s *Script) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("gameday: the script runs once")
	}
	s.started, s.runCtx = true, ctx
	s.mu.Unlock()
	if err := s.setPhases(); err != nil {
		return err
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
loop:
	for i, st := range s.steps {
		s.mu.Lock()
		due := st.at + s.shift
		s.mu.Unlock()
		if wait := due - s.clock.Now(); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				break loop
			case <-s.stopCh:
				break loop
			case <-timer.C:
			}
		}
		if ctx.Err() != nil || s.Stopped() != "" {
			break
		}
		switch st.kind {
		case stepSegment:
			s.startSegment(st.index, due)
		case stepGate:
			s.hold(ctx, st.index, due)
		case stepFaultStart, stepFaultStop:
			s.fault(st)
		}
		s.mu.Lock()
		s.next = i + 1
		s.mu.Unlock()
	}
	s.wg.Wait()
	s.mu.Lock()
	s.finished = true
	s.mu.Unlock()
	return ctx.Err()
}

func (s *Script) setPhases() error {
	if s.phases == nil {
		return nil
	}
	s.mu.Lock()
	w := s.windowsLocked()
	s.mu.Unlock()
	return s.phases.SetPhases(w)
}

// segmentBounds is segment k's script window.
func (s *Script) segmentBounds(k int) (time.Duration, time.Duration) {
	a, b := time.Duration(0), s.p.Duration
	if k > 0 {
		a = s.p.Gates[k-1].At
	}
	if k < len(s.p.Gates) {
		b = s.p.Gates[k].At
	}
	return a, b
}

func (s *Script) startSegment(k int, at time.Duration) {
	s.startGen(s.segmentConfig(k), at, fmt.Sprintf("segment %d", k))
}

// segmentConfig is segment k's load.
func (s *Script) segmentConfig(k int) loadgen.Config {
	a, b := s.segmentBounds(k)
	cfg := s.cfg
	cfg.Stages = CutStages(s.p.Load.Stages, a, b)
	cfg.Seed = s.cfg.Seed + uint64(k) // segment 0 repeats a plain run's request mix
	return cfg
}

func (s *Script) startGen(cfg loadgen.Config, offset time.Duration, what string) *loadgen.Generator {
	gclock := event.ClockAt(s.clock.At(offset))
	g, err := loadgen.New(cfg, shifted{s.rec, offset}, gclock, detached{s.tr, s.runCtx})
	if err != nil {
		s.sink.Emit(event.Event{T: s.clock.Now(), Source: "gameday", Type: "gameday.error", Attrs: map[string]any{"error": what + ": " + err.Error()}})
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped != "" || s.runCtx.Err() != nil {
		return nil
	}
	gctx, cancel := context.WithCancel(s.runCtx)
	s.gens = append(s.gens, g)
	s.cancels[g] = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = g.Run(gctx) // ends with its stages, its cancel, or the run
		s.mu.Lock()
		delete(s.cancels, g)
		s.mu.Unlock()
		cancel()
	}()
	return g
}

// hold closes gate k at run time closed (where the script reached it),
// holds the rate before it until someone opens it, max_hold passes, or the
// run stops, and moves everything after it by the time held.
func (s *Script) hold(ctx context.Context, k int, closed time.Duration) {
	g := s.p.Gates[k]
	s.mu.Lock()
	s.closed = &Hold{Gate: g, Closed: closed}
	s.mu.Unlock()
	_ = s.setPhases()
	s.sink.Emit(event.Event{T: s.clock.Now(), Source: "gameday", Type: "gate.close", Target: g.Name,
		Attrs: map[string]any{"phase": g.Name, "script_s": g.At.Seconds(), "rate": g.Rate, "max_hold_s": g.MaxHold.Seconds()}})
	var gen *loadgen.Generator
	if g.Rate > 0 {
		cfg := s.cfg
		cfg.Stages = []loadgen.Stage{{Duration: g.MaxHold, From: g.Rate, To: g.Rate}}
		cfg.Seed = s.cfg.Seed + 1000 + uint64(k)
		gen = s.startGen(cfg, closed, "hold "+g.Name)
	}
	limit := time.NewTimer(max(closed+g.MaxHold-s.clock.Now(), 0))
	defer limit.Stop()
	var by string
	var asked chan time.Duration
	select {
	case r := <-s.openCh:
		by, asked = r.who, r.opened
	case <-limit.C:
		by = "max_hold"
	case <-s.stopCh:
		by = "stop"
	case <-ctx.Done():
		by = "interrupted"
	}
	s.mu.Lock()
	if cancel := s.cancels[gen]; gen != nil && cancel != nil {
		cancel() // the hold's schedule ends; its requests in flight finish
	}
	opened := s.clock.Now()
	h := *s.closed
	h.Opened, h.By = opened, by
	s.holds = append(s.holds, h)
	s.closed = nil
	s.shift = opened - g.At
	// A request to open that lost the race with max_hold or a stop, or
	// came while this hold was ending, is answered too: it was for this
	// gate, and none can come now that closed is nil.
	select {
	case r := <-s.openCh:
		r.opened <- opened
	default:
	}
	s.mu.Unlock()
	_ = s.setPhases()
	s.sink.Emit(event.Event{T: opened, Source: "gameday", Type: "gate.open", Target: g.Name,
		Attrs: map[string]any{"phase": g.Name, "held_s": h.Held().Seconds(), "by": by}})
	if asked != nil { // after the phases moved and the event went out: the answer finds them
		asked <- opened
	}
}

// Remove marks a scripted fault of a gated plan as removed by hand, so
// that its occurrences to come do not start (a gated plan's scripted faults
// are steps of the script, not entries of the timeline, which cancels its
// own). It reports whether any occurrence was still to come.
func (s *Script) Remove(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	pending := false
	for _, st := range s.steps[s.next:] {
		pending = pending || st.kind == stepFaultStart && st.entry.Name == name
	}
	if pending {
		if s.removed == nil {
			s.removed = map[string]bool{}
		}
		s.removed[name] = true
	}
	return pending
}

// fault runs one scripted fault step of a gated plan.
func (s *Script) fault(st step) {
	s.mu.Lock()
	skip := s.halted || st.kind == stepFaultStart && s.removed[st.entry.Name]
	s.mu.Unlock()
	if skip {
		return
	}
	var err error
	if st.kind == stepFaultStart {
		err = s.tl.Start(st.entry)
	} else if err = s.tl.Stop(st.entry.Name); errors.Is(err, faults.ErrNotActive) {
		err = nil // already removed by hand
	}
	if err != nil {
		s.sink.Emit(event.Event{T: s.clock.Now(), Source: "gameday", Type: "fault.error", Target: st.entry.Target(),
			Attrs: map[string]any{"fault": st.entry.Name, "error": err.Error()}})
	}
}

// Progress sums every generator's counters, on the run's clock.
func (s *Script) Progress() loadgen.Progress {
	s.mu.Lock()
	gens := append([]*loadgen.Generator(nil), s.gens...)
	started, shift, closed := s.started, s.shift, s.closed
	s.mu.Unlock()
	var pr loadgen.Progress
	for _, g := range gens {
		x := g.Progress()
		pr.Scheduled += x.Scheduled
		pr.Completed += x.Completed
		pr.Errors += x.Errors
		pr.Dropped += x.Dropped
		pr.InFlight += x.InFlight
	}
	now := s.clock.Now()
	pr.Total = s.p.Duration + shift
	if closed != nil {
		pr.Total += max(now-closed.Closed, 0)
		pr.TargetRate = closed.Gate.Rate
	} else {
		pr.TargetRate = loadgen.NewPacer(s.p.Load.Stages).RateAt(max(now-shift, 0))
	}
	if started {
		pr.Elapsed = min(max(now, 0), pr.Total)
	}
	return pr
}

// Stages is the load profile as it ran on the run's clock: each hold is a
// constant stage at the gate's rate (a gate closed now counts up to now).
func (s *Script) Stages() []loadgen.Stage { return s.stagesAt(s.clock.Now()) }

// stagesAt is the profile as it ran up to now on the run's clock (a gate
// closed then held until now).
func (s *Script) stagesAt(now time.Duration) []loadgen.Stage {
	holds := s.Holds()
	var out []loadgen.Stage
	prev := time.Duration(0)
	for _, h := range holds {
		out = append(out, CutStages(s.p.Load.Stages, prev, h.Gate.At)...)
		held := h.Held()
		if h.Opened == 0 {
			held = max(now-h.Closed, 0)
		}
		if held > 0 {
			out = append(out, loadgen.Stage{Duration: held, From: h.Gate.Rate, To: h.Gate.Rate})
		}
		prev = h.Gate.At
	}
	return append(out, CutStages(s.p.Load.Stages, prev, s.p.Duration)...)
}

// Pacer is the schedule as it ran (for target rates per phase).
func (s *Script) Pacer() *loadgen.Pacer { return loadgen.NewPacer(s.Stages()) }

// CutStages returns the part of a profile between a and b (offsets from
// its start), as stages of their own; a ramp cut in its middle keeps its
// slope.
func CutStages(stages []loadgen.Stage, a, b time.Duration) []loadgen.Stage {
	var out []loadgen.Stage
	var start time.Duration
	for _, st := range stages {
		end := start + st.Duration
		lo, hi := max(a, start), min(b, end)
		if lo < hi {
			at := func(t time.Duration) float64 {
				return st.From + (st.To-st.From)*float64(t-start)/float64(st.Duration)
			}
			out = append(out, loadgen.Stage{Duration: hi - lo, From: at(lo), To: at(hi)})
		}
		start = end
	}
	return out
}

// shifted places a generator's samples on the run's clock.
type shifted struct {
	rec    loadgen.Recorder
	offset time.Duration
}

func (r shifted) Record(worker int, s *loadgen.Sample) {
	s.Intended += r.offset
	r.rec.Record(worker, s)
}

// detached binds requests to the run instead of to the generator that
// scheduled them: ending a generator's schedule (a gate opens, a graceful
// stop) lets its requests in flight finish; Ctrl-C still cuts them.
type detached struct {
	tr  loadgen.Transport
	run context.Context
}

func (d detached) RoundTrip(_ context.Context, req int, s *loadgen.Sample) {
	d.tr.RoundTrip(d.run, req, s)
}

package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/precise"
)

var discardLog = log.New(io.Discard, "", 0)

// RandomReplica as Entry.Replica targets one replica drawn from the run's
// seed at each onset (Chaos Monkey's choice, repeatable).
const RandomReplica = -2

// Entry is one fault on the timeline.
type Entry struct {
	Name     string        // unique within the timeline; names the fault in events
	Spec     Spec          // decoded and validated parameters
	Kind     string        // registered kind of Spec
	Upstream string        // target upstream
	Replica  int           // target replica index, -1 for every replica, RandomReplica
	Start    time.Duration // offset on the run's clock
	Duration time.Duration // of each occurrence; 0: until the timeline stops
	// Ramp scales the fault from nothing to full strength over this long
	// after each onset (what scales is the kind's Kind.Ramp); 0: at once.
	Ramp time.Duration
	// Every and Times repeat the fault: Times occurrences, Every apart from
	// onset to onset. Times 0 or 1 means once.
	Every time.Duration
	Times int
}

// Target names what the entry acts on: "api", "api[1]" or "api[random]".
func (e Entry) Target() string {
	switch {
	case e.Replica == RandomReplica:
		return e.Upstream + "[random]"
	case e.Replica < 0:
		return e.Upstream
	}
	return e.Upstream + "[" + strconv.Itoa(e.Replica) + "]"
}

// Occurrences is how many times the entry starts.
func (e Entry) Occurrences() int { return max(e.Times, 1) }

// End is when the entry's last occurrence ends (0 when it runs until the
// timeline stops).
func (e Entry) End() time.Duration {
	if e.Duration == 0 {
		return 0
	}
	return e.Start + time.Duration(e.Occurrences()-1)*e.Every + e.Duration
}

// Report says how often one timeline entry took effect, and if it never
// did, the likely reason.
type Report struct {
	Name        string        `json:"name"`
	Kind        string        `json:"kind"`
	Target      string        `json:"target"`
	Start       time.Duration `json:"-"`
	End         time.Duration `json:"-"` // 0 while active or never started
	Started     bool          `json:"started"`
	Occurrences int           `json:"occurrences"`
	// Fired counts also what a fault counted after it stopped (a wait it
	// caused that ended later); the fault.stop event's "fired" is the count
	// as it stopped.
	Fired int64 `json:"fired"`
	// Replicas the fault acted on (for a random target, the draws).
	Replicas []string `json:"replicas,omitempty"`
	// Stats are the counters behind Fired and Reason.
	Stats EffectStats `json:"-"`
	// Reason says why a started fault never took effect; "" otherwise.
	Reason string `json:"reason,omitempty"`
	// Effects is what a connection or packet fault did, beyond Fired.
	Effects Effects `json:"effects,omitzero"`
}

// Errors of the live API.
var (
	ErrTimelineDone = errors.New("the timeline has stopped")
	ErrFaultActive  = errors.New("a fault with this name is active")
	ErrUnknownFault = errors.New("no such fault on the timeline")
	ErrNotActive    = errors.New("the fault is not active")
)

// ApplyWindow is the longest a fault's firings go unreported: the first
// firing is an event at once, later ones are summed into one fault.apply
// event per fault per window, so events.jsonl stays small at any request
// rate while Report.Fired stays exact.
const ApplyWindow = time.Second

// Timeline runs fault entries against upstreams on the run's clock, and
// takes live Start/Stop calls while it runs (game days). This scheduler is
// cascade's own: it is the product (a fault's onset is evidence for later
// verdicts, so it is stamped by the injector itself, not a log).
type Timeline struct {
	upstreams map[string]*Upstream
	seed      uint64
	sink      event.Sink
	clock     *event.Clock

	mu     sync.Mutex
	slots  []*slot // in the order added
	byName map[string]*slot
	queue  []step
	wake   chan struct{}
	done   bool
}

// slot is one named entry's state.
type slot struct {
	mu      sync.Mutex // serialises this entry's start and stop
	e       Entry
	gen     int // bumped by Stop and by a live Start: pending steps of older generations are void
	active  bool
	occ     int // occurrences started (this generation)
	pick    *rand.Rand
	fault   Fault
	targets []*Replica
	base    []int64 // targets' Received at onset
	effects []*Effect
	rep     Report
	past    EffectStats // counters of finished occurrences, as they stopped
	// done are the effects of finished occurrences: a fault can count an
	// effect after it stopped (a database fault, a wait it caused that
	// ended later), so Reports reads them again.
	done    []*Effect
	pastFx  Effects // effects of finished occurrences (EffectReporter)
	applied atomic.Int64
}

type step struct {
	at    time.Duration
	start bool
	s     *slot
	gen   int
	occ   int
}

// NewTimeline checks that every entry targets an existing upstream/replica.
func NewTimeline(entries []Entry, upstreams []*Upstream, opts Options) (*Timeline, error) {
	opts.defaults()
	t := &Timeline{upstreams: map[string]*Upstream{}, seed: opts.Seed, sink: opts.Sink, clock: opts.Clock,
		byName: map[string]*slot{}, wake: make(chan struct{}, 1)}
	for _, u := range upstreams {
		t.upstreams[u.Name()] = u
	}
	for _, e := range entries {
		if err := t.check(e); err != nil {
			return nil, err
		}
		if t.byName[e.Name] != nil {
			return nil, fmt.Errorf("fault %s: the name is used twice", e.Name)
		}
		s := t.newSlot(e)
		t.push(step{at: e.Start, start: true, s: s})
	}
	return t, nil
}

func (t *Timeline) check(e Entry) error {
	if e.Name == "" {
		return errors.New("a fault needs a name")
	}
	if e.Spec == nil {
		return fmt.Errorf("fault %s: no parameters", e.Name)
	}
	u, ok := t.upstreams[e.Upstream]
	if !ok {
		return fmt.Errorf("fault %s: unknown upstream %q", e.Name, e.Upstream)
	}
	if e.Replica >= len(u.Replicas()) || e.Replica < RandomReplica {
		return fmt.Errorf("fault %s: upstream %s has no replica %d", e.Name, e.Upstream, e.Replica)
	}
	if e.Times > 1 && e.Every <= 0 {
		return fmt.Errorf("fault %s: repeating %d times needs an interval", e.Name, e.Times)
	}
	if e.Times > 1 && e.Duration > e.Every {
		return fmt.Errorf("fault %s: each occurrence (%s) outlasts the repeat interval (%s)", e.Name, e.Duration, e.Every)
	}
	if k, err := LookupKind(e.Kind); err != nil {
		return fmt.Errorf("fault %s: %w", e.Name, err)
	} else if err := k.Applies(u.Kind(), u.Containerised()); err != nil {
		return fmt.Errorf("fault %s on %s: %w", e.Name, e.Upstream, err)
	} else if err := u.ready(k); err != nil {
		return fmt.Errorf("fault %s on %s: %w", e.Name, e.Upstream, err)
	}
	return nil
}

func (t *Timeline) newSlot(e Entry) *slot {
	s := &slot{e: e, pick: seedFor(t.seed, "pick", e.Name), rep: Report{Name: e.Name, Kind: e.Kind, Target: e.Target()}}
	t.slots = append(t.slots, s)
	t.byName[e.Name] = s
	return s
}

// push adds a step, keeping the queue in time order with stops before
// starts at the same instant (back-to-back faults on one target never
// overlap). Callers hold t.mu or own t exclusively.
func (t *Timeline) push(st step) {
	i := sort.Search(len(t.queue), func(i int) bool {
		q := t.queue[i]
		if q.at != st.at {
			return q.at > st.at
		}
		return !st.start && q.start
	})
	t.queue = append(t.queue, step{})
	copy(t.queue[i+1:], t.queue[i:])
	t.queue[i] = st
}

func (t *Timeline) poke() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// Run applies the timeline until ctx ends, then reverts whatever is still
// active, so a cancelled run leaves no replica down.
func (t *Timeline) Run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	tick := time.NewTicker(ApplyWindow)
	defer tick.Stop()
	defer t.shutdown()
	for {
		wait, ran := t.runDue(ctx)
		if ctx.Err() != nil {
			return
		}
		if ran {
			continue // the steps may have queued more that are due now
		}
		// The Go timer is set precise.Handoff early and the last stretch
		// slept precisely: on the timer alone a fault began 0.24 ms late at
		// the median and up to 1.2 ms (its stop is covered by
		// Effect.Over, its onset was not), so a request sent at the
		// planned instant could miss it.
		timer.Reset(max(wait-precise.Handoff, 0))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			t.sleepToNext()
		case <-t.wake:
		case <-tick.C:
			t.flushApplies()
		}
	}
}

// sleepToNext sleeps precisely until the next step when it is at most
// precise.Handoff away: the thread blocks (a few ms at most, once per
// step), so the step runs tens of µs after its instant, not a timer's
// late wake-up.
func (t *Timeline) sleepToNext() {
	t.mu.Lock()
	var d time.Duration
	if len(t.queue) > 0 {
		d = t.queue[0].at - t.clock.Now()
	}
	t.mu.Unlock()
	if d > 0 && d <= precise.Handoff {
		precise.SleepUntil(time.Now().Add(d))
	}
}

// ApplyDue executes the steps due by now, and those they make due, before
// Run starts: a run calls it at clock zero, before its load, so that a
// fault from 0 is in place for the first request. (Left to Run's goroutine,
// it raced the load generator: a request sent in the first milliseconds
// could reach the upstream before the fault did.)
func (t *Timeline) ApplyDue(ctx context.Context) {
	for {
		if _, ran := t.runDue(ctx); !ran || ctx.Err() != nil {
			return
		}
	}
}

// runDue executes the steps due now; it reports how long until the next
// one and whether it executed any.
func (t *Timeline) runDue(ctx context.Context) (wait time.Duration, ran bool) {
	t.mu.Lock()
	now := t.clock.Now()
	var due []step
	for len(t.queue) > 0 && t.queue[0].at <= now {
		due = append(due, t.queue[0])
		t.queue = t.queue[1:]
	}
	wait = time.Hour
	if len(t.queue) > 0 {
		wait = t.queue[0].at - now
	}
	t.mu.Unlock()
	for _, st := range due {
		if ctx.Err() != nil {
			return wait, true
		}
		t.exec(st)
	}
	return wait, len(due) > 0
}

func (t *Timeline) shutdown() {
	t.mu.Lock()
	t.done = true
	slots := append([]*slot(nil), t.slots...)
	t.queue = nil
	t.mu.Unlock()
	for _, s := range slots {
		s.mu.Lock()
		if s.active {
			t.stopLocked(s)
		}
		s.mu.Unlock()
	}
}

func (t *Timeline) exec(st step) {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.gen != s.gen {
		return // cancelled by Stop or replaced by a live Start
	}
	if !st.start {
		if s.active && st.occ == s.occ {
			t.stopLocked(s)
		}
		return
	}
	if s.active {
		return
	}
	t.startLocked(s, st.at)
}

// startLocked activates occurrence s.occ of s, scheduled for onset at; it
// queues the occurrence's end and the next occurrence. Holds s.mu.
func (t *Timeline) startLocked(s *slot, at time.Duration) {
	e := s.e
	s.occ++
	s.active = true
	s.targets = t.targets(s)
	s.base = s.base[:0]
	s.effects = s.effects[:0]
	s.fault = e.Spec.New()
	now := t.clock.Now()
	if !s.rep.Started {
		s.rep.Started, s.rep.Start = true, now
	}
	s.rep.End = 0
	s.rep.Occurrences++
	names := make([]string, len(s.targets))
	for i, r := range s.targets {
		names[i] = r.Name()
		if !contains(s.rep.Replicas, r.Name()) {
			s.rep.Replicas = append(s.rep.Replicas, r.Name())
		}
	}
	attrs := map[string]any{"fault": e.Name, "kind": e.Kind, "replicas": names}
	if e.Occurrences() > 1 {
		attrs["occurrence"] = s.occ
	}
	if e.Ramp > 0 {
		attrs["ramp_s"] = e.Ramp.Seconds()
	}
	t.sink.Emit(event.Event{T: now, Source: "timeline", Type: "fault.start", Target: e.Target(), Attrs: attrs})
	var intensity func() float64
	if e.Ramp > 0 {
		onset, ramp, clock := now, e.Ramp, t.clock
		intensity = func() float64 { return min(1, max(0, float64(clock.Now()-onset)/float64(ramp))) }
	}
	for _, r := range s.targets {
		r := r
		fx := NewEffect(seedFor(t.seed, "fault", e.Name, r.Name(), strconv.Itoa(s.occ)), nil)
		fx.intensity = intensity
		if e.Duration > 0 {
			end, clock := at+e.Duration, t.clock
			fx.over = func() bool { return clock.Now() >= end }
		}
		fx.onFirst = func() {
			t.sink.Emit(event.Event{T: t.clock.Now(), Source: "upstream", Type: "fault.apply", Target: r.Name(),
				Attrs: map[string]any{"fault": e.Name, "kind": e.Kind, "first": true, "count": 1}})
		}
		s.effects = append(s.effects, fx)
		s.base = append(s.base, r.Received.Load())
	}
	forTargets(e.Kind, s.targets, func(i int, r *Replica) {
		if err := r.Activate(e.Name, s.fault, s.effects[i]); err != nil {
			t.sink.Emit(event.Event{T: t.clock.Now(), Source: "timeline", Type: "fault.error", Target: r.Name(),
				Attrs: map[string]any{"fault": e.Name, "error": err.Error()}})
		}
	})
	t.mu.Lock()
	if e.Duration > 0 {
		t.push(step{at: at + e.Duration, s: s, gen: s.gen, occ: s.occ})
	}
	if s.occ < e.Occurrences() {
		t.push(step{at: at + e.Every, start: true, s: s, gen: s.gen})
	}
	t.mu.Unlock()
	t.poke()
}

// forTargets calls do for each target replica: all at once for an
// instance fault on replicas in containers, where each call is a round trip
// to the Docker daemon (a pause or a stop takes 20-90 ms): one after
// another, the last of six replicas froze 230 ms after the fault's start
// and thawed 130 ms after its end. In order otherwise, as before.
func forTargets(kind string, targets []*Replica, do func(i int, r *Replica)) {
	parallel := len(targets) > 1
	if parallel {
		k, err := LookupKind(kind)
		parallel = err == nil && k.Layer == LayerInstance
	}
	for _, r := range targets {
		if r.proc == nil {
			parallel = false
		}
	}
	if !parallel {
		for i, r := range targets {
			do(i, r)
		}
		return
	}
	var wg sync.WaitGroup
	for i, r := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do(i, r)
		}()
	}
	wg.Wait()
}

// stopLocked ends the active occurrence of s. Holds s.mu.
func (t *Timeline) stopLocked(s *slot) {
	e := s.e
	// The fault ends when its stop begins, as it starts when its start
	// begins: undoing it may take a while after it is no longer in force
	// (a database fault waits for the waits it caused to end, so they are
	// counted), and that must not move its end.
	now := t.clock.Now()
	forTargets(e.Kind, s.targets, func(_ int, r *Replica) {
		if err := r.Deactivate(e.Name); err != nil {
			t.sink.Emit(event.Event{T: t.clock.Now(), Source: "timeline", Type: "fault.error", Target: r.Name(),
				Attrs: map[string]any{"fault": e.Name, "error": err.Error()}})
		}
	})
	st := t.currentStats(s)
	s.past.add(st)
	s.done = append(s.done, s.effects...)
	var late *precise.Lateness
	if er, ok := s.fault.(EffectReporter); ok {
		fx := er.Effects()
		s.pastFx.add(fx)
		late = fx.Lateness
	}
	s.active = false
	s.targets, s.effects, s.base = nil, nil, nil
	s.rep.End = now
	t.flushSlot(s, s.past.Fired)
	attrs := map[string]any{"fault": e.Name, "kind": e.Kind, "fired": st.Fired}
	if late != nil && late.Releases() > 0 { // named as tcpfault's own events name them
		attrs["lag_within_500us"] = late.Within(500 * time.Microsecond)
		attrs["max_lag_ms"] = float64(late.Max) / 1e6
	}
	if e.Occurrences() > 1 {
		attrs["occurrence"] = s.occ
	}
	t.sink.Emit(event.Event{T: now, Source: "timeline", Type: "fault.stop", Target: e.Target(), Attrs: attrs})
}

// currentStats sums the active occurrence's counters. Holds s.mu.
func (t *Timeline) currentStats(s *slot) EffectStats {
	var st EffectStats
	for i, fx := range s.effects {
		st.add(fx.Stats())
		st.Received += s.targets[i].Received.Load() - s.base[i]
	}
	return st
}

// flushApplies emits one aggregated fault.apply per fault that fired since
// the last window.
func (t *Timeline) flushApplies() {
	t.mu.Lock()
	slots := append([]*slot(nil), t.slots...)
	t.mu.Unlock()
	for _, s := range slots {
		s.mu.Lock()
		if s.active {
			t.flushSlot(s, s.past.Fired+t.currentStats(s).Fired)
		}
		s.mu.Unlock()
	}
}

func (t *Timeline) flushSlot(s *slot, total int64) {
	last := s.applied.Load()
	if total <= last {
		return
	}
	s.applied.Store(total)
	t.sink.Emit(event.Event{T: t.clock.Now(), Source: "timeline", Type: "fault.apply", Target: s.e.Target(),
		Attrs: map[string]any{"fault": s.e.Name, "kind": s.e.Kind, "count": total - last, "total": total}})
}

func (t *Timeline) targets(s *slot) []*Replica {
	rs := t.upstreams[s.e.Upstream].Replicas()
	switch {
	case s.e.Replica == RandomReplica:
		i := s.pick.IntN(len(rs))
		return rs[i : i+1]
	case s.e.Replica >= 0:
		return rs[s.e.Replica : s.e.Replica+1]
	}
	return rs
}

// Start activates e now, as a game day's operator would: e.Start is ignored
// (the onset is now); Duration, Ramp and repeats apply from now. A name
// that is already active is refused; an inactive one is replaced, and its
// report keeps counting.
func (t *Timeline) Start(e Entry) error {
	if err := t.check(e); err != nil {
		return err
	}
	if err := e.Spec.Validate(); err != nil {
		return fmt.Errorf("fault %s: %w", e.Name, err)
	}
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		return ErrTimelineDone
	}
	s := t.byName[e.Name]
	if s == nil {
		s = t.newSlot(e)
	}
	t.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active {
		return fmt.Errorf("%s: %w", e.Name, ErrFaultActive)
	}
	s.gen++
	s.occ = 0
	now := t.clock.Now()
	e.Start = now
	s.e = e
	s.rep.Kind, s.rep.Target = e.Kind, e.Target()
	t.startLocked(s, now)
	return nil
}

// Stop ends the named fault now and cancels its later occurrences.
func (t *Timeline) Stop(name string) error {
	t.mu.Lock()
	s := t.byName[name]
	t.mu.Unlock()
	if s == nil {
		return fmt.Errorf("%s: %w", name, ErrUnknownFault)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pending := t.pending(s)
	s.gen++
	if s.active {
		t.stopLocked(s)
		return nil
	}
	if !pending {
		return fmt.Errorf("%s: %w", name, ErrNotActive)
	}
	return nil
}

func (t *Timeline) pending(s *slot) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, st := range t.queue {
		if st.s == s && st.gen == s.gen && st.start {
			return true
		}
	}
	return false
}

// Active lists the names of the faults active now, sorted.
func (t *Timeline) Active() []string {
	t.mu.Lock()
	slots := append([]*slot(nil), t.slots...)
	t.mu.Unlock()
	var out []string
	for _, s := range slots {
		s.mu.Lock()
		if s.active {
			out = append(out, s.e.Name)
		}
		s.mu.Unlock()
	}
	sort.Strings(out)
	return out
}

// Reports says, per entry, whether it started, how often it took effect,
// and for one that never did, the likely reason.
func (t *Timeline) Reports() []Report {
	t.mu.Lock()
	slots := append([]*slot(nil), t.slots...)
	t.mu.Unlock()
	out := make([]Report, 0, len(slots))
	for _, s := range slots {
		s.mu.Lock()
		r := s.rep
		r.Replicas = append([]string(nil), r.Replicas...)
		r.Stats = s.past
		r.Stats.Fired = 0
		for _, fx := range s.done {
			r.Stats.Fired += fx.Count()
		}
		r.Effects = s.pastFx.clone()
		if s.active {
			r.Stats.add(t.currentStats(s))
			if er, ok := s.fault.(EffectReporter); ok {
				r.Effects.add(er.Effects())
			}
		}
		r.Fired = r.Stats.Fired
		if r.Started && r.Fired == 0 {
			r.Reason = explain(s, r)
		}
		s.mu.Unlock()
		out = append(out, r)
	}
	return out
}

// explain guesses why a started fault never took effect, from what the
// targets received and what the fault saw. Holds s.mu.
func explain(s *slot, r Report) string {
	if ex, ok := s.fault.(Explainer); ok {
		if why := ex.NoEffect(r.Stats); why != "" {
			return why
		}
	}
	st := r.Stats
	targets := strings.Join(r.Replicas, ", ")
	switch {
	case st.Received == 0:
		return fmt.Sprintf("no request reached %s while the fault was active: no traffic was balanced to it, "+
			"it was down, or the load had ended", targets)
	case st.Seen > 0 && st.Matched == 0:
		return fmt.Sprintf("%d requests reached %s while active, but none matched the fault's match filter", st.Seen, targets)
	case st.Matched > 0:
		return fmt.Sprintf("%d matching requests reached %s while active, but the probability drew none of them", st.Matched, targets)
	}
	return fmt.Sprintf("%d requests reached %s while active, but the fault never acted on one", st.Received, targets)
}

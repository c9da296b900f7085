package faults

import (
	"context"
	"fmt"
	"io"
	"log"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/cascadehq/cascade/internal/event"
)

var discardLog = log.New(io.Discard, "", 0)

// Entry is one fault on the timeline.
type Entry struct {
	Name     string        // unique within the timeline; names the fault in events
	Spec     Spec          // decoded and validated parameters
	Kind     string        // registered kind of Spec
	Upstream string        // target upstream
	Replica  int           // target replica index, or -1 for every replica
	Start    time.Duration // offset on the run's clock
	Duration time.Duration // 0: until the timeline stops
}

// Target names what the entry acts on: "api" or "api[1]".
func (e Entry) Target() string {
	if e.Replica < 0 {
		return e.Upstream
	}
	return e.Upstream + "[" + strconv.Itoa(e.Replica) + "]"
}

// Report says how often one timeline entry took effect.
type Report struct {
	Name    string        `json:"name"`
	Kind    string        `json:"kind"`
	Target  string        `json:"target"`
	Start   time.Duration `json:"-"`
	End     time.Duration `json:"-"` // 0 while active or never started
	Started bool          `json:"started"`
	Fired   int64         `json:"fired"`
}

// Timeline runs fault entries against upstreams on the run's clock. This
// scheduler is cascade's own: it is the product (a fault's onset is evidence
// for later verdicts, so it is stamped by the injector itself, not a log).
type Timeline struct {
	entries   []Entry
	upstreams map[string]*Upstream
	seed      uint64
	sink      event.Sink
	clock     *event.Clock

	mu      sync.Mutex
	effects map[string][]*Effect // by entry name
	reports map[string]*Report
}

// NewTimeline checks that every entry targets an existing upstream/replica.
func NewTimeline(entries []Entry, upstreams []*Upstream, opts Options) (*Timeline, error) {
	opts.defaults()
	t := &Timeline{entries: entries, upstreams: map[string]*Upstream{}, seed: opts.Seed, sink: opts.Sink,
		clock: opts.Clock, effects: map[string][]*Effect{}, reports: map[string]*Report{}}
	for _, u := range upstreams {
		t.upstreams[u.Name()] = u
	}
	for _, e := range entries {
		u, ok := t.upstreams[e.Upstream]
		if !ok {
			return nil, fmt.Errorf("fault %s: unknown upstream %q", e.Name, e.Upstream)
		}
		if e.Replica >= len(u.Replicas()) {
			return nil, fmt.Errorf("fault %s: upstream %s has no replica %d", e.Name, e.Upstream, e.Replica)
		}
		t.reports[e.Name] = &Report{Name: e.Name, Kind: e.Kind, Target: e.Target()}
	}
	return t, nil
}

type transition struct {
	at    time.Duration
	start bool
	entry int
}

// Run applies the timeline until ctx ends, then reverts whatever is still
// active, so a cancelled run leaves no replica down.
func (t *Timeline) Run(ctx context.Context) {
	var steps []transition
	for i, e := range t.entries {
		steps = append(steps, transition{at: e.Start, start: true, entry: i})
		if e.Duration > 0 {
			steps = append(steps, transition{at: e.Start + e.Duration, entry: i})
		}
	}
	// Stops before starts at the same instant, so back-to-back faults on one
	// target never overlap.
	sort.SliceStable(steps, func(a, b int) bool {
		if steps[a].at != steps[b].at {
			return steps[a].at < steps[b].at
		}
		return !steps[a].start && steps[b].start
	})
	active := map[int]bool{}
	defer func() {
		for i := range active {
			t.stop(i)
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for _, s := range steps {
		if wait := s.at - t.clock.Now(); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		if s.start {
			t.start(s.entry)
			active[s.entry] = true
		} else if active[s.entry] {
			t.stop(s.entry)
			delete(active, s.entry)
		}
	}
	<-ctx.Done()
}

func (t *Timeline) targets(e Entry) []*Replica {
	rs := t.upstreams[e.Upstream].Replicas()
	if e.Replica >= 0 {
		return rs[e.Replica : e.Replica+1]
	}
	return rs
}

func (t *Timeline) start(i int) {
	e := t.entries[i]
	now := t.clock.Now()
	t.mu.Lock()
	rep := t.reports[e.Name]
	rep.Started, rep.Start = true, now
	t.mu.Unlock()
	t.sink.Emit(event.Event{T: now, Source: "timeline", Type: "fault.start", Target: e.Target(),
		Attrs: map[string]any{"fault": e.Name, "kind": e.Kind}})
	for _, r := range t.targets(e) {
		r := r
		fx := NewEffect(seedFor(t.seed, "fault", e.Name, r.Name()), func() {
			t.sink.Emit(event.Event{T: t.clock.Now(), Source: "upstream", Type: "fault.apply", Target: r.Name(),
				Attrs: map[string]any{"fault": e.Name, "kind": e.Kind}})
		})
		t.mu.Lock()
		t.effects[e.Name] = append(t.effects[e.Name], fx)
		t.mu.Unlock()
		if err := r.Activate(e.Name, e.Spec.New(), fx); err != nil {
			t.sink.Emit(event.Event{T: t.clock.Now(), Source: "timeline", Type: "fault.error", Target: r.Name(),
				Attrs: map[string]any{"fault": e.Name, "error": err.Error()}})
		}
	}
}

func (t *Timeline) stop(i int) {
	e := t.entries[i]
	for _, r := range t.targets(e) {
		if err := r.Deactivate(e.Name); err != nil {
			t.sink.Emit(event.Event{T: t.clock.Now(), Source: "timeline", Type: "fault.error", Target: r.Name(),
				Attrs: map[string]any{"fault": e.Name, "error": err.Error()}})
		}
	}
	now := t.clock.Now()
	t.mu.Lock()
	t.reports[e.Name].End = now
	t.mu.Unlock()
	t.sink.Emit(event.Event{T: now, Source: "timeline", Type: "fault.stop", Target: e.Target(),
		Attrs: map[string]any{"fault": e.Name, "kind": e.Kind}})
}

// Reports says, per entry, whether it started and how often it took effect.
func (t *Timeline) Reports() []Report {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Report, 0, len(t.entries))
	for _, e := range t.entries {
		r := *t.reports[e.Name]
		for _, fx := range t.effects[e.Name] {
			r.Fired += fx.Count()
		}
		out = append(out, r)
	}
	return out
}

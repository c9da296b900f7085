package gameday

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/verdict"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// SafetyEvery is how often the safety checks are judged: a breach removes
// the faults within this (plus the removal itself) of the window crossing
// the bound.
const SafetyEvery = 100 * time.Millisecond

// check is one safety check's state. A check halts once per breach: it
// re-arms when its objective holds again, so a check still failing right
// after the faults are gone does not halt over and over. Holding again
// counts only over a window that starts after the halt: until then the
// window still holds the errors the removed faults caused, and as its edge
// moves in endWidth steps the rate saws across the bound, which re-armed
// the check on a dip and halted again on the next rise.
type check struct {
	plan.Safety
	armed  bool
	halted time.Duration // run clock of the last halt; the check re-arms on a window from then on
	last   results.ObjectiveResult
	seen   bool // judged on data at least once
}

// CheckStatus is a safety check as the dashboard shows it.
type CheckStatus struct {
	Name     string  `json:"name"`
	Window   float64 `json:"window_s"`
	Measured string  `json:"measured"`
	Bound    string  `json:"bound"`
	Pass     bool    `json:"pass"`
	NoData   bool    `json:"no_data"`
	Evidence string  `json:"evidence"`
	OnBreach string  `json:"on_breach"`
	Armed    bool    `json:"armed"`
}

// watch judges the safety checks until ctx ends.
func (s *Session) watch(ctx context.Context) {
	if len(s.checks) == 0 {
		return
	}
	t := time.NewTicker(SafetyEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.judgeSafety()
	}
}

func (s *Session) judgeSafety() {
	now := s.clock.Now()
	for _, c := range s.checks {
		st := s.live.Window(c.Window)
		ps := results.PhaseSummary{Name: plan.RunPhase, Start: results.Sec(max(now-c.Window, 0)), End: results.Sec(now)}
		if c.Window > 0 {
			ps.Stats.AchievedRate = float64(st.Sent()) / c.Window.Seconds()
			a := max(now-c.Window, 0)
			ps.Stats.TargetRate = s.script.Pacer().Expected(a, now) / c.Window.Seconds()
		}
		in := &verdict.Input{Summary: &results.Summary{}, Phases: map[string]*verdict.Phase{plan.RunPhase: {Summary: ps, Stats: st}}}
		r := c.Objective.Evaluate(in)
		s.mu.Lock()
		c.last, c.seen = r, r.Measured != ""
		breach := r.Measured != "" && !r.Pass // no data is no breach
		fire := breach && c.armed
		switch {
		case fire:
			c.armed, c.halted = false, now
		case breach:
			c.armed = false
		case r.Measured != "" && now-c.Window >= c.halted:
			c.armed = true
		}
		s.mu.Unlock()
		if fire {
			s.halt(c, r)
		}
	}
}

// halt removes every fault at once — active, scripted to come, added by
// hand — records the breach, and stops the run when the check says so.
func (s *Session) halt(c *check, r results.ObjectiveResult) {
	at := s.clock.Now()
	s.script.HaltFaults()
	names := map[string]bool{}
	for _, e := range s.p.Timeline {
		names[e.Name] = true
	}
	s.mu.Lock()
	for n := range s.manual {
		names[n] = true
	}
	s.mu.Unlock()
	for _, n := range s.tl.Active() {
		names[n] = true
	}
	removed := []string{}
	for n := range names {
		err := s.tl.Stop(n)
		switch {
		case err == nil:
			removed = append(removed, n)
		case errors.Is(err, faults.ErrNotActive), errors.Is(err, faults.ErrUnknownFault):
		default:
			s.sink.Emit(event.Event{T: s.clock.Now(), Source: "gameday", Type: "fault.error", Attrs: map[string]any{"fault": n, "error": err.Error()}})
		}
	}
	sort.Strings(removed)
	for n := range names {
		s.script.FaultEnded(n) // its phase ends now, as in the export
	}
	h := Halt{T: at, TS: at.Seconds(), Objective: c.Name, Window: c.Window.Seconds(), Measured: r.Measured, Bound: r.Bound,
		Evidence: r.Evidence, Removed: removed, Stop: c.Stop}
	s.mu.Lock()
	s.halts = append(s.halts, h)
	s.mu.Unlock()
	onBreach := plan.OnBreachContinue
	if c.Stop {
		onBreach = plan.OnBreachStop
	}
	s.sink.Emit(event.Event{T: at, Source: "gameday", Type: "gameday.halt", Target: c.Name, Attrs: map[string]any{
		"objective": c.Name, "window_s": c.Window.Seconds(), "measured": r.Measured, "bound": r.Bound,
		"evidence": r.Evidence, "removed": removed, "on_breach": onBreach}})
	s.journal.Add(Entry{T: at.Seconds(), Wall: time.Now(), Who: "safety", Action: ActHalt,
		Detail: fmt.Sprintf("%s measured %s over the last %s (bound %s); removed %d fault(s); %s", c.Name, r.Measured, c.Window, r.Bound, len(removed), onBreach)})
	fmt.Fprintf(s.cfg.Stderr, "game day: HALT at %s: %s measured %s over the last %s; removed %v; on_breach %s\n",
		fmtSeconds(at), c.Name, r.Measured, c.Window, removed, onBreach)
	if c.Stop {
		_ = s.script.Stop("safety: " + c.Name)
	}
}

// Checks is the safety checks' last judgement.
func (s *Session) Checks() []CheckStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]CheckStatus, 0, len(s.checks))
	for _, c := range s.checks {
		ob := plan.OnBreachContinue
		if c.Stop {
			ob = plan.OnBreachStop
		}
		out = append(out, CheckStatus{Name: c.Name, Window: c.Window.Seconds(), Measured: c.last.Measured, Bound: c.last.Bound,
			Pass: c.last.Pass, NoData: !c.seen, Evidence: c.last.Evidence, OnBreach: ob, Armed: c.armed})
	}
	return out
}

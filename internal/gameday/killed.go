package gameday

import (
	"fmt"
	"sort"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// KilledPlan is p as a game day killed at through (SIGKILL: no summary, no
// gameday.json) had run it so far, rebuilt for `cascade report` from what
// the run streamed: each gate's close and open (the gate.close and
// gate.open events, and the journal's phase.next for an opening whose
// event the kill lost), and the faults added and removed by hand and the
// safety halts (journal.jsonl), which move the phases derived from the
// faults. The same script code that moved the phases live moves them
// here. Boundaries the run had not reached (after a gate still closed) are
// put at through; the planned duration is the profile as it ran, a gate
// closed at the kill held until through. notes say what could not be
// replayed. Without gates, manual faults or halts, p is returned as is.
func KilledPlan(p *plan.Plan, evs []event.Event, journal []Entry, through time.Duration) (*plan.Plan, []string) {
	type act struct {
		t  time.Duration
		do func()
	}
	var acts []act
	s := &Script{p: p, derived: map[string]bool{}}
	for _, ph := range plan.DerivePhases(p.Timeline, p.Duration) {
		s.derived[ph.Name] = true
	}
	var notes []string
	// byJournal is the hold a journal phase.next opened, until its
	// gate.open event (a moment later, if the kill let it be written)
	// gives the opening's exact time.
	byJournal := -1
	for _, e := range evs {
		if e.Source != "gameday" || (e.Type != "gate.close" && e.Type != "gate.open") {
			continue
		}
		e := e
		acts = append(acts, act{e.T, func() {
			if e.Type == "gate.open" && byJournal >= 0 && s.holds[byJournal].Gate.Name == e.Target {
				h := &s.holds[byJournal]
				h.Opened, s.shift, byJournal = e.T, e.T-h.Gate.At, -1
				return
			}
			k := len(s.holds)
			if k >= len(p.Gates) || p.Gates[k].Name != e.Target {
				notes = append(notes, fmt.Sprintf("%s of %s at %.3fs is not the scenario's next gate: ignored", e.Type, e.Target, e.T.Seconds()))
				return
			}
			g := p.Gates[k]
			switch {
			case e.Type == "gate.close" && s.closed == nil:
				// Where the script reached it (the event follows by
				// a moment): the gate's instant moved by the holds.
				s.closed = &Hold{Gate: g, Closed: g.At + s.shift}
			case e.Type == "gate.open" && s.closed != nil:
				h := *s.closed
				h.Opened = e.T // the event's time is the opening's
				h.By, _ = e.Attrs["by"].(string)
				s.holds, s.closed, s.shift = append(s.holds, h), nil, e.T-g.At
			}
		}})
	}
	manual := false
	for _, je := range journal {
		if je.Error != "" {
			continue // refused: nothing changed
		}
		je := je
		t := secs(je.T)
		switch je.Action {
		case ActFaultAdd:
			manual = true
			acts = append(acts, act{t, func() {
				e, err := p.CompileFault(JournalFile, []byte(je.Spec), je.Fault)
				if err != nil {
					notes = append(notes, fmt.Sprintf("the fault %s added by hand at %.3fs does not compile offline (%v): the phases it derives are left out", je.Fault, je.T, err))
					return
				}
				e.Name = je.Fault
				s.faultAdded(e, t)
			}})
		case ActFaultRm:
			manual = true
			acts = append(acts, act{t, func() { s.faultEnded(je.Fault, t) }})
		case ActPhaseNext:
			// Journaled as it is done; its gate.open event is flushed a
			// second at a time, and a kill can lose it.
			acts = append(acts, act{t, func() {
				if s.closed == nil || s.closed.Gate.Name != je.Phase {
					return // its event opened it already
				}
				h := *s.closed
				h.Opened, h.By = t, je.Who
				s.holds, s.closed, s.shift = append(s.holds, h), nil, t-h.Gate.At
				byJournal = len(s.holds) - 1
			}})
		case ActHalt:
			manual = true
			acts = append(acts, act{t, func() {
				// As the halt: every fault ends now, scripted and manual.
				for _, e := range p.Timeline {
					s.faultEnded(e.Name, t)
				}
				for _, e := range append([]faults.Entry(nil), s.manual...) {
					s.faultEnded(e.Name, t)
				}
			}})
		}
	}
	if len(p.Gates) == 0 && !manual {
		return p, nil
	}
	sort.SliceStable(acts, func(i, j int) bool { return acts[i].t < acts[j].t })
	for _, a := range acts {
		a.do()
	}
	if h := s.closed; h != nil && h.Closed+h.Gate.MaxHold <= through {
		// Its max_hold ran out before the records end: it opened then,
		// though the kill lost the event that says so (the journal
		// keeps only openings by hand).
		o := *h
		o.Opened, o.By = h.Closed+h.Gate.MaxHold, "max_hold"
		s.holds, s.closed, s.shift = append(s.holds, o), nil, o.Opened-o.Gate.At
	}
	q := *p
	q.Phases = nil
	for _, ph := range s.windowsLocked() {
		if ph.End == Gone {
			continue // the faults as they ran do not make it
		}
		if ph.Start == never {
			ph.Start = through
		}
		if ph.End == never {
			// A gate closed after the records end (they trail the clock
			// by up to a client timeout in a gated game day): the phase
			// was not recorded, and does not end before it starts.
			ph.End = max(through, ph.Start)
		}
		q.Phases = append(q.Phases, ph)
	}
	q.Load.Stages = s.stagesAt(through)
	q.Duration = loadgen.NewPacer(q.Load.Stages).Duration()
	return &q, notes
}

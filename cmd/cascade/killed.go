package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cascadehq/cascade/internal/gameday"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/verdict"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// killedGameDay is the plan a game day (or a run with safety checks)
// killed before it wrote its summary had run so far: p with its gates'
// holds and the faults changed by hand or by a halt replayed from its
// events and journal (gameday.KilledPlan). ok is false for a run that was
// not one (no journal): p is then the plan that ran.
func killedGameDay(k *results.KilledRun, p *plan.Plan) (q *plan.Plan, notes []string, ok bool) {
	if _, err := os.Stat(filepath.Join(k.Dir, gameday.JournalFile)); err != nil {
		return p, nil, false
	}
	journal, cut, err := gameday.ReadKilledJournal(k.Dir)
	switch {
	case err != nil:
		// A line that does not decode before the last: the gates are in
		// the events still.
		notes = append(notes, fmt.Sprintf("%v: the faults added or removed by hand and the safety halts are not replayed: the phases derived from the faults are the scenario's as written", err))
		journal = nil
	case cut != "":
		notes = append(notes, fmt.Sprintf("%s: a line cut by the kill; the %d entries before it are replayed", cut, len(journal)))
	}
	q, more := gameday.KilledPlan(p, k.Events, journal, k.Through)
	return q, append(notes, more...), true
}

// rebuildKilled makes the summary of a run killed before it wrote one, on
// the plan compiled from its scenario copy (the phases, the gateway) and
// made again as the run made it (a ladder's rung, named by its load.start
// event; a game day's gates and live changes, replayed by killedGameDay),
// and says what the objectives cannot be judged without; it returns the
// plan it rebuilt on. It never writes into the run's directory: a later
// report must still see the run was killed.
func rebuildKilled(k *results.KilledRun, p *plan.Plan) (*results.Summary, *plan.Plan, verdict.Missing, error) {
	p, gdNotes, gameDay := killedGameDay(k, p)
	ran := *k
	if gameDay {
		// The profile as it ran, the gates' holds in it: its load.start
		// planned the scenario's.
		ran.Planned = p.Duration
	}
	s, err := ran.RebuildSummary(p.Phases)
	if err != nil {
		return nil, nil, verdict.Missing{}, err
	}
	if s.Scenario == "" {
		s.Scenario = p.Name
	}
	s.File, s.PlanHash, s.Ladder = p.File, p.Hash, k.Ladder
	switch {
	case p.GatewayContainer != nil:
		s.Gateway = results.GatewayContainerPrefix + p.GatewayContainer.Kind
	case p.Gateway != nil:
		s.Gateway = "builtin"
	default:
		s.Gateway = p.External
	}
	if s.Planned == 0 {
		s.Planned = results.Sec(p.Duration)
	}
	var warnings []string
	for _, w := range p.Warnings {
		warnings = append(warnings, w.String())
	}
	for _, n := range gdNotes {
		warnings = append(warnings, "game day: "+n)
	}
	if !gameDay && k.Planned > 0 && results.Sec(k.Planned) != results.Sec(p.Duration) {
		// A plan of its own that load.start did not name: a ladder's rung
		// run by a cascade from before load.start named the rung.
		warnings = append(warnings, fmt.Sprintf("the run planned %.1fs, the plan rebuilt from its %s %.1fs (a ladder rung run before its load.start event named the rung?): phases and objectives are the scenario's as written",
			k.Planned.Seconds(), results.ScenarioFile, p.Duration.Seconds()))
	}
	const only = "kept only in the summary the run did not write"
	m := verdict.Missing{
		Lag:          "the scheduling lag is " + only,
		CauseLatency: "the latency of failed requests by cause is " + only,
	}
	absent := []string{"the scheduling lag", "the latency of failed requests by cause", "per-executor and per-tag stats"}
	if p.Gateway != nil {
		absent = append(absent, "the built-in gateway's counts")
	}
	if p.Direct > 0 {
		m.Direct = "the direct load's stats (load.direct) are " + only
		absent = append(absent, "the direct load's stats")
	}
	warnings = append(warnings, "absent, as "+only+": "+strings.Join(absent, ", ")+"; objectives that need them are NOT JUDGED")
	if len(p.Upstreams) > 0 && k.UpstreamsThrough < k.Through {
		// An upstream's interval is written once its requests ended: it
		// can lag the client's, and a count over the client's span would
		// miss arrivals.
		m.Upstreams = fmt.Sprintf("%s reaches %.0fs, the client's records %.0fs", results.UpstreamsFile, k.UpstreamsThrough.Seconds(), k.Through.Seconds())
		warnings = append(warnings, "what the upstreams saw is recorded only up to "+fmt.Sprintf("%.0fs", k.UpstreamsThrough.Seconds())+": objectives measured at the upstreams are NOT JUDGED")
	}
	m.Phases = k.Unrecorded(p.Phases)
	s.Warnings = append(warnings, s.Warnings...)
	return s, p, m, nil
}

package main

import (
	"fmt"
	"strings"

	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/verdict"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// rebuildKilled makes the summary of a run killed before it wrote one, on
// the plan compiled from its scenario copy (the phases, the gateway) and
// made again as the run made it (a ladder's rung, named by its load.start
// event), and says what the objectives cannot be judged without. It never writes into
// the run's directory: a later report must still see the run was killed.
func rebuildKilled(k *results.KilledRun, p *plan.Plan) (*results.Summary, verdict.Missing, error) {
	s, err := k.RebuildSummary(p.Phases)
	if err != nil {
		return nil, verdict.Missing{}, err
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
	if k.Planned > 0 && results.Sec(k.Planned) != results.Sec(p.Duration) {
		// A ladder's rung or a game day ran a plan of its own, which only
		// the summary the run did not write would say.
		warnings = append(warnings, fmt.Sprintf("the run planned %.1fs, the plan rebuilt from its %s %.1fs (a ladder rung, a game day?): phases and objectives are the scenario's as written",
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
	s.Warnings = append(warnings, s.Warnings...)
	return s, m, nil
}

package run

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/faults/slowdb"
	"github.com/cascadehq/cascade/gateway"
	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/verdict"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// Rung is one step of the latency ladder: a delay just above one layer's
// timeout, with the layers inside it lifted out of the way, so that layer
// must be the one that answers, at its timeout. The last rung ("cascade")
// lifts nothing and delays past every timeout: the innermost layer must
// answer.
type Rung struct {
	Name    string        // the layer tested, or "cascade"
	Expect  string        // the layer that must answer
	Timeout time.Duration // its (shortest) timeout
	Delay   time.Duration // injected at the upstreams
	Lifted  []string      // inner layers whose timeouts were raised past the delay
	Plan    *plan.Plan
	// Skip says why the rung cannot run (an inner layer's timeout cannot
	// be lifted); its Plan is then nil. It is listed rather than dropped,
	// so that a ladder one rung short says which and why.
	Skip string
}

// Bounds of a ladder's rungs.
const (
	MaxLadderRate     = 100_000
	MaxLadderDuration = 10 * time.Minute
)

// LadderOptions shape the rungs' load.
type LadderOptions struct {
	Rate     float64       // requests per second (default 10)
	Duration time.Duration // of each rung's load (default 2s)
}

// lifters raise a layer's timeouts past d in a rung's plan. Layers without
// a lifter cannot be lifted; the rungs outside them are then skipped with a
// note (Rung.Skip).
var lifters = map[string]func(q *plan.Plan, past time.Duration){
	"gateway": func(q *plan.Plan, past time.Duration) {
		if q.GatewayContainer != nil {
			q.GatewayContainer.Timeout = past // the rung's copy (rungPlan)
			return
		}
		for i := range q.Gateway.Routes {
			t := &q.Gateway.Routes[i].Timeouts
			t.ResponseHeader, t.Total = units.Duration(past), units.Duration(past)
		}
	},
	"per_try": func(q *plan.Plan, past time.Duration) {
		for i := range q.Gateway.Routes {
			r := &q.Gateway.Routes[i]
			r.Timeouts.PerTry = 0
			if r.Retries != nil {
				rc := *r.Retries
				rc.PerTryTimeout = 0
				r.Retries = &rc
			}
		}
	},
	"upstream": func(q *plan.Plan, past time.Duration) {
		for i := range q.Upstreams {
			if db := q.Upstreams[i].Database; db != nil {
				c := *db
				c.UpstreamTimeout = units.Duration(past)
				q.Upstreams[i].Database = &c
			}
		}
	},
	"db": func(q *plan.Plan, past time.Duration) {
		for i := range q.Upstreams {
			if db := q.Upstreams[i].Database; db != nil {
				c := *db
				c.StatementTimeout, c.LockTimeout = units.Duration(past), units.Duration(past)
				q.Upstreams[i].Database = &c
			}
		}
	},
}

// insideUpstream are the layers whose timers run inside the upstream's
// handler: their rungs slow the database (slow_query), where the
// upstream's own deadline covers the wait. The other rungs delay at the
// replica's door (latency), outside the upstream's own timeouts.
var insideUpstream = map[string]bool{"upstream": true, "db": true}

// Ladder builds the latency ladder of a plan, innermost layer first.
func Ladder(p *plan.Plan, o LadderOptions) ([]Rung, error) {
	if len(p.Layers) == 0 {
		return nil, fmt.Errorf("%s declares no timeouts: nothing to climb", p.Name)
	}
	if o.Rate == 0 {
		o.Rate = 10
	}
	if o.Duration == 0 {
		o.Duration = 2 * time.Second
	}
	// A rung measures which layer answers, not throughput: bounds well
	// inside what any rung needs keep every rung short (rate × duration
	// requests, each delayed past a timeout).
	switch {
	case !(o.Rate > 0 && o.Rate <= MaxLadderRate): // NaN fails both
		return nil, fmt.Errorf("--rate %v: expected a rate above 0 and at most %d/s", o.Rate, MaxLadderRate)
	case o.Duration < 0 || o.Duration > MaxLadderDuration:
		return nil, fmt.Errorf("--duration %v: expected above 0 and at most %v per rung", o.Duration, MaxLadderDuration)
	}
	var rungs []Rung
	for i := len(p.Layers) - 1; i >= 0; i-- {
		l := p.Layers[i]
		t := l.RungTimeout()
		delay := above(t)
		past := 2*delay + time.Second
		q := rungPlan(p, o, l.Name, delay, insideUpstream[l.Name])
		r := Rung{Name: l.Name, Expect: l.Name, Timeout: t, Delay: delay, Plan: q}
		for _, inner := range p.Layers[i+1:] {
			lift := lifters[inner.Name]
			why := ""
			if lift != nil {
				why = unliftable(q, inner.Name)
			}
			if lift == nil || why != "" {
				r.Skip, r.Plan, r.Lifted = fmt.Sprintf("the %s timeout cannot be lifted out of its way%s", inner.Name, why), nil, nil
				break
			}
			lift(q, past)
			r.Lifted = append(r.Lifted, inner.Name)
		}
		if r.Skip != "" {
			rungs = append(rungs, r)
			continue
		}
		// Judged on the rung's own cascade: lifting an inner layer can
		// change when the layer tested answers (without the per-try
		// timeout, the response_header one bounds each retried attempt).
		q.Objectives = []verdict.Objective{&verdict.Cascade{Name: "timeouts answered by " + l.Name, Layers: plan.Layers(q), Expect: l.Name, Tolerance: tolerance(t)}}
		rungs = append(rungs, r)
	}
	// The whole cascade: nothing lifted, a delay past the outermost timeout.
	outer, inner := p.Layers[0], p.Layers[len(p.Layers)-1]
	delay := above(outer.Timeouts[len(outer.Timeouts)-1])
	q := rungPlan(p, o, "cascade", delay, insideUpstream[inner.Name])
	q.Objectives = []verdict.Objective{&verdict.Cascade{Name: "timeouts answered by " + inner.Name, Layers: p.Layers, Expect: inner.Name,
		Tolerance: tolerance(inner.RungTimeout())}}
	rungs = append(rungs, Rung{Name: "cascade", Expect: inner.Name, Timeout: inner.RungTimeout(), Delay: delay, Plan: q})
	return rungs, nil
}

// unliftable says why layer's timeouts cannot be raised in q ("" when
// they can): the gateway's can when it is cascade's, or a proxy in a
// container whose configuration renders the timeout (the generated one, or
// yours with {{timeout}}); per_try only on cascade's. A configuration of
// your own without {{timeout}} keeps its own timeout whatever the rung
// asks: the rungs outside it would be judged against a layer still firing.
func unliftable(q *plan.Plan, layer string) string {
	switch layer {
	case "gateway":
		gc := q.GatewayContainer
		switch {
		case q.Gateway != nil:
		case gc == nil || !gc.Declared:
			return ": the gateway's timeout is not declared"
		case gc.FixedTimeout:
			return fmt.Sprintf(": %s does not use {{timeout}}, so the proxy keeps its own", filepath.Base(gc.ConfigFile))
		}
	case "per_try":
		if q.Gateway == nil {
			return ": per-try timeouts are cascade's gateway's"
		}
	}
	return ""
}

// above is "just above" a timeout: 10% more, at least 20 ms.
func above(t time.Duration) time.Duration { return t + max(t/10, 20*time.Millisecond) }

// tolerance is how far from its timeout a layer may answer in a rung: a
// timer on a loaded machine fires late by tens of milliseconds, never
// early.
func tolerance(t time.Duration) time.Duration { return max(100*time.Millisecond, t/10) }

// rungPlan copies p with a short steady load and one fault per upstream:
// every answer is delay late, at the replica's door or, when inDB, in the
// database of the database upstreams. The faults last until the run stops,
// not until the load does: the load's last requests, and the retries of
// its earlier ones, are still in flight after it, and an answer on time
// there ("ok") was no layer firing. A rung with a short --duration, whose
// retries all came after the load, read as "the cascade was not exercised".
func rungPlan(p *plan.Plan, o LadderOptions, name string, delay time.Duration, inDB bool) *plan.Plan {
	q := *p
	q.Name = p.Name + "-ladder-" + name
	if p.Gateway != nil {
		g := *p.Gateway
		g.Routes = append([]gateway.Route(nil), p.Gateway.Routes...)
		q.Gateway = &g
	}
	if p.GatewayContainer != nil {
		gc := *p.GatewayContainer
		q.GatewayContainer = &gc
	}
	q.Upstreams = append([]faults.UpstreamConfig(nil), p.Upstreams...)
	q.Load.Stages = []loadgen.Stage{{Duration: o.Duration, From: o.Rate, To: o.Rate}}
	q.Duration = o.Duration
	q.Phases = []results.Phase{{Name: plan.RunPhase, Start: 0, End: o.Duration}}
	q.Timeline = nil
	for _, u := range p.Upstreams {
		e := faults.Entry{Name: "delay-" + u.Name, Kind: "latency", Upstream: u.Name, Replica: -1, Start: 0, Duration: 0, // until the run stops
			Spec: &faults.LatencySpec{Delay: dist.FixedLatency(delay), Selector: faults.Selector{Probability: 1}}}
		if inDB {
			if u.Database == nil {
				continue // no database: this layer is not here
			}
			e.Kind, e.Spec = "slow_query", &faults.SlowQuerySpec{SlowQuery: slowdb.SlowQuery{Latency: dist.FixedLatency(delay)}}
		}
		q.Timeline = append(q.Timeline, e)
	}
	q.Aborts, q.Autoscale, q.Direct, q.DirectUpstreams = nil, nil, 0, nil
	q.Ladder = &results.LadderRung{Rung: name, Rate: o.Rate, Duration: results.Sec(o.Duration)}
	return &q
}

// RungPlan rebuilds the plan of one recorded rung from the scenario it
// climbed, so that `cascade report` judges a rung's directory on the
// rung's objective, as the ladder did, and not on the scenario's own.
func RungPlan(p *plan.Plan, l results.LadderRung) (*plan.Plan, error) {
	rungs, err := Ladder(p, LadderOptions{Rate: l.Rate, Duration: l.Duration.D()})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, r := range rungs {
		if r.Skip != "" {
			continue // never ran: no directory names it
		}
		if r.Name == l.Rung {
			return r.Plan, nil
		}
		names = append(names, r.Name)
	}
	return nil, fmt.Errorf("the scenario's ladder has no rung %q (rungs: %v)", l.Rung, names)
}

// RungResult is a rung that ran.
type RungResult struct {
	Rung    Rung
	Summary *results.Summary
	Dir     string
	Pass    bool
	// Interrupted: the rung was cut short (Ctrl-C), so its verdict is
	// neither a pass nor a fail.
	Interrupted bool
	// Skipped: the rung could not run (Rung.Skip); no Summary, no Dir.
	Skipped bool
}

// RunLadder runs each rung in turn, each into its own directory under dir.
func RunLadder(ctx context.Context, rungs []Rung, dir string, opts Options) ([]RungResult, error) {
	var out []RungResult
	for _, r := range rungs {
		if r.Skip != "" {
			out = append(out, RungResult{Rung: r, Skipped: true})
			continue
		}
		o := opts
		o.OutDir = filepath.Join(dir, r.Name)
		res, err := Run(ctx, r.Plan, o)
		if err != nil {
			return out, fmt.Errorf("rung %s: %w", r.Name, err)
		}
		out = append(out, RungResult{Rung: r, Summary: res.Summary, Dir: res.Dir, Pass: res.Pass, Interrupted: res.Interrupted})
		if res.Interrupted {
			return out, ctx.Err()
		}
	}
	return out, nil
}

package verdict

import (
	"fmt"
	"sort"
	"strings"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/results"
)

// GatewayAdds is layer attribution ("bypass the gateway"): the same load
// sent straight to the upstreams and through the gateway, interleaved, and
// the difference of a metric between the two: how much latency, and which
// errors, the gateway adds. "gateway_adds: p99 < 5ms".
type GatewayAdds struct {
	Name string
	T    *Threshold
}

// Evaluate implements Objective.
func (g *GatewayAdds) Evaluate(in *Input) results.ObjectiveResult {
	r := results.ObjectiveResult{Name: g.Name, Phase: "run", Expr: "gateway_adds: " + g.T.Expr,
		Bound: g.T.op.String() + " " + g.T.format(g.T.bound)}
	via, ok := in.Phases["run"]
	if !ok || in.Direct == nil {
		r.Evidence = "the run sent no direct load: set load.direct to compare the gateway with the upstreams bypassed"
		return r
	}
	mk := func(p *Phase, label string) span {
		return span{st: p.Stats, from: p.Summary.Start.D(), to: p.Summary.End.D(), label: label, achieved: p.Summary.Stats.AchievedRate}
	}
	vg, _, _, ok1 := g.T.measure(in, mk(via, "through the gateway"))
	vd, _, _, ok2 := g.T.measure(in, mk(in.Direct, "direct"))
	if !ok1 || !ok2 {
		r.Evidence = fmt.Sprintf("nothing to compare: %d requests through the gateway, %d direct", via.Stats.Sent(), in.Direct.Stats.Sent())
		return r
	}
	v := vg - vd
	r.Value, r.Measured, r.Pass = v, g.T.format(v), g.T.op.holds(v, g.T.bound)
	r.Facts = map[string]float64{"gateway": vg, "direct": vd, "gateway_requests": float64(via.Stats.Sent()), "direct_requests": float64(in.Direct.Stats.Sent())}
	r.Evidence = fmt.Sprintf("%s through the gateway %s over %d requests, direct %s over %d; %s",
		g.T.metric.name, g.T.format(vg), via.Stats.Sent(), g.T.format(vd), in.Direct.Stats.Sent(), AddedErrors(via.Stats, in.Direct.Stats))
	return r
}

// AddedErrors lists the failures by cause that the gateway path had beyond
// the direct path, per request sent on each (so different shares compare).
func AddedErrors(via, direct *results.Stats) string {
	nv, nd := float64(max(via.Judged(), 1)), float64(max(direct.Judged(), 1))
	type kv struct {
		c    cause.Cause
		n    int64
		rate float64
	}
	var xs []kv
	for c := range via.Causes {
		k := cause.Cause(c)
		if !k.IsError() {
			continue
		}
		rv, rd := float64(via.Causes[c])/nv, float64(direct.Causes[c])/nd
		if rv > rd {
			xs = append(xs, kv{k, via.Causes[c], rv - rd})
		}
	}
	if len(xs) == 0 {
		return "the gateway added no errors"
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].rate > xs[j].rate })
	parts := make([]string, 0, len(xs))
	for _, x := range xs {
		parts = append(parts, fmt.Sprintf("%s +%s (%d) [%s]", x.c, FormatPercent(x.rate), x.n, x.c.Layer()))
	}
	return "errors the gateway added: " + strings.Join(parts, ", ")
}

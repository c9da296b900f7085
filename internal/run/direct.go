package run

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/internal/upstreamheader"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// directLoad is layer attribution ("bypass the gateway"): a share of the
// requests goes straight to the upstream replicas, interleaved with the rest
// by the generator's own seeded request mix. The templates are doubled: the
// first n go through the gateway, the next n straight to the upstream, with
// weights split by the share; the recorder puts each sample in its own
// collector.
//
//	generator ─req i < n─▶ gateway transport ─▶ collector (the phases)
//	          ─req i ≥ n─▶ replica transports (round robin) ─▶ direct collector
type directLoad struct {
	n         int
	via       loadgen.Transport
	direct    [][]loadgen.Transport // per request template: one per replica
	next      []atomic.Uint64
	collector *results.Collector
	phases    *results.Collector
}

// weightScale keeps the split exact to 1% with integer weights.
const weightScale = 100

// newDirectLoad rewrites cfg's request mix and returns the transport and
// recorder the generator must use.
func newDirectLoad(p *plan.Plan, cfg loadgen.Config, ups []*faults.Upstream, phases *results.Collector) (*directLoad, loadgen.Config, error) {
	d := &directLoad{n: len(cfg.Requests), phases: phases,
		// The run's phases, so that each phase knows how many of its
		// arrivals the mix sent straight to the upstreams (summarizeDirect).
		// No breakdown: load.direct takes a single executor (the list form
		// refuses it), so its Recorded counts, summed with the run's for
		// the watermark (recordedSum), never hold a mixed load's VUs.
		collector: results.NewCollector(p.Phases, IntervalWidth, 1)}
	via, err := loadgen.NewHTTPTransport(cfg)
	if err != nil {
		return nil, cfg, err
	}
	d.via = via
	byName := map[string]*faults.Upstream{}
	for _, u := range ups {
		byName[u.Name()] = u
	}
	viaW := int(math.Round((1 - p.Direct) * weightScale))
	dirW := int(math.Round(p.Direct * weightScale))
	out := cfg
	out.Requests = nil
	for _, r := range cfg.Requests {
		r.Weight = max(r.Weight, 1) * viaW
		out.Requests = append(out.Requests, r)
	}
	d.next = make([]atomic.Uint64, d.n)
	for i, r := range cfg.Requests {
		// Marked, so the replicas count it apart from the gateway's
		// attempts (amplification, blocks_while_ejected). Cloned: the
		// gateway path shares the template's header map.
		r.Header = r.Header.Clone()
		if r.Header == nil {
			r.Header = http.Header{}
		}
		r.Header.Set(upstreamheader.Direct, "1")
		u := byName[p.DirectUpstreams[i]]
		if u == nil {
			return nil, cfg, fmt.Errorf("direct load: no upstream %q", p.DirectUpstreams[i])
		}
		var ts []loadgen.Transport
		for _, rep := range u.Replicas() {
			c := cfg
			c.Target = rep.URL()
			c.Requests = []loadgen.Request{r}
			t, err := loadgen.NewHTTPTransport(c)
			if err != nil {
				return nil, cfg, err
			}
			ts = append(ts, t)
		}
		d.direct = append(d.direct, ts)
		r.Weight = max(r.Weight, 1) * dirW
		out.Requests = append(out.Requests, r)
	}
	return d, out, nil
}

// RoundTrip implements loadgen.Transport.
func (d *directLoad) RoundTrip(ctx context.Context, req int, s *loadgen.Sample) {
	if req < d.n {
		d.via.RoundTrip(ctx, req, s)
		return
	}
	i := req - d.n
	ts := d.direct[i]
	ts[(d.next[i].Add(1)-1)%uint64(len(ts))].RoundTrip(ctx, 0, s)
}

// FirstRequestError is the first request either path could not build.
func (d *directLoad) FirstRequestError() *loadgen.RequestError {
	if re := loadgen.FirstRequestError(d.via); re != nil {
		return re
	}
	for _, ts := range d.direct {
		for _, t := range ts {
			if re := loadgen.FirstRequestError(t); re != nil {
				return re
			}
		}
	}
	return nil
}

// FirstClientErrors is the first error of each client-side cause on
// either path.
func (d *directLoad) FirstClientErrors() []*loadgen.ClientError {
	lists := [][]*loadgen.ClientError{loadgen.FirstClientErrors(d.via)}
	for _, ts := range d.direct {
		for _, t := range ts {
			lists = append(lists, loadgen.FirstClientErrors(t))
		}
	}
	return loadgen.MergeClientErrors(lists...)
}

// Record implements loadgen.Recorder.
func (d *directLoad) Record(worker int, s *loadgen.Sample) {
	if s.Request >= d.n {
		s.Request -= d.n
		d.collector.Record(worker, s)
		return
	}
	d.phases.Record(worker, s)
}

// summarizeDirect adds the direct path to the summary and gives each of the
// gateway's phases its part of the target rate. That part is the share of
// the phase's arrivals the mix actually sent through the gateway, not the
// nominal 1 - direct: the split is a seeded weighted draw per request, so
// half of 200 requests is 100 ± 7, and achieved_rate would judge that
// draw as a shortfall or a surplus. scheduled counts all arrivals, both
// paths (Generator.Scheduled).
func summarizeDirect(p *plan.Plan, d *directLoad, sum *results.Summary, scheduled func(a, b time.Duration) float64) {
	dphases := d.collector.PhaseStats() // p.Phases; [0] is the whole run
	index := map[string]int{}
	for i, ph := range p.Phases {
		index[ph.Name] = i
	}
	viaShare := func(ph *results.PhaseSummary) float64 {
		if i, ok := index[ph.Name]; ok && i < len(dphases) {
			via, dir := float64(ph.Stats.Scheduled), float64(dphases[i].Scheduled())
			if via+dir > 0 {
				return via / (via + dir)
			}
		}
		return 1 - p.Direct
	}
	// The run's window (where the load ended, or was stopped), as the
	// gateway path's: the elapsed time ends with the last answer, and
	// with the arrivals counted whole, 200 over 1.99 s is not 100/s.
	end := sum.Run.End.D()
	ps := results.PhaseSummary{Name: "direct", Start: 0, End: results.Sec(p.Duration),
		Stats: results.Summarize(dphases[0], end, scheduled(0, end)*(1-viaShare(&sum.Run)))}
	sum.Direct = &ps
	scale := func(ph *results.PhaseSummary) {
		share := viaShare(ph)
		ph.Stats.TargetRate = math.Round(ph.Stats.TargetRate*share*1000) / 1000
		ph.Stats.ProfileRate = math.Round(ph.Stats.ProfileRate*(1-p.Direct)*1000) / 1000
	}
	scale(&sum.Run)
	for i := range sum.Phases {
		scale(&sum.Phases[i])
	}
}

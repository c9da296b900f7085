package verdict

import (
	"fmt"
	"sort"
	"strings"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/results"
)

// Layer is one layer of the timeout cascade with the timeouts it declares.
type Layer struct {
	Name string // client, gateway, per_try, upstream, db
	// Causes are how the layer reports a timeout it decided.
	Causes []cause.Cause
	// Timeouts are the values that apply (one per route for the gateway);
	// a timed-out request must end near one of them.
	Timeouts []time.Duration
	// Rung is the timeout a slow answer hits first at this layer (the
	// gateway's response_header, the database's statement_timeout): what
	// the latency ladder delays past. Zero: the shortest of Timeouts.
	Rung time.Duration
}

// RungTimeout is the timeout the latency ladder tests at this layer.
func (l Layer) RungTimeout() time.Duration {
	if l.Rung > 0 {
		return l.Rung
	}
	return l.Timeouts[0]
}

func (l Layer) timeouts() string {
	parts := make([]string, len(l.Timeouts))
	for i, t := range l.Timeouts {
		parts[i] = FormatDuration(t)
	}
	return strings.Join(parts, "/")
}

// TimeoutCauses are the causes that mean "a timeout fired", by layer.
var TimeoutCauses = map[string][]cause.Cause{
	"client":   {cause.ClientTimeout},
	"gateway":  {cause.GatewayTimeout},
	"per_try":  {cause.PerTryTimeout},
	"upstream": {cause.UpstreamTimeout},
	"db":       {cause.DBTimeout},
}

// LayerOrder lists the layers outermost first.
var LayerOrder = []string{"client", "gateway", "per_try", "upstream", "db"}

// Cascade is the dynamic half of the timeout cascade: for every request that
// timed out, which layer decided it (its termination cause says), asserting
// that the expected layer (by default the innermost one declared) answered
// every time, at its own timeout ± Tolerance, and that no other layer fired
// first. The latency is the service time (from the actual send), which is
// what each layer's timer measured.
type Cascade struct {
	Name      string
	Phase     string
	Layers    []Layer // outermost first
	Expect    string  // a Layer's Name
	Tolerance time.Duration
}

// DefaultTolerance is how far from its timeout a layer may answer.
const DefaultTolerance = 100 * time.Millisecond

// Evaluate implements Objective.
func (c *Cascade) Evaluate(in *Input) results.ObjectiveResult {
	tol := c.Tolerance
	if tol == 0 {
		tol = DefaultTolerance
	}
	var exp *Layer
	for i := range c.Layers {
		if c.Layers[i].Name == c.Expect {
			exp = &c.Layers[i]
		}
	}
	phase := phaseOr(c.Phase)
	r := results.ObjectiveResult{Name: c.Name, Phase: phase, Expr: "cascade: " + c.Expect}
	if exp == nil {
		r.Evidence = fmt.Sprintf("layer %q declares no timeout", c.Expect)
		return r
	}
	r.Bound = fmt.Sprintf("every timeout decided by %s at %s ± %s", exp.Name, exp.timeouts(), FormatDuration(tol))
	p, ok := in.Phases[phase]
	if !ok {
		r.Evidence = fmt.Sprintf("phase %q was not recorded (phases: %s)", phase, strings.Join(phaseNames(in), ", "))
		return r
	}
	st := p.Stats
	var total, good int64
	var lines []string
	facts := map[string]float64{}
	for _, name := range LayerOrder {
		var l *Layer
		for i := range c.Layers {
			if c.Layers[i].Name == name {
				l = &c.Layers[i]
			}
		}
		causes := TimeoutCauses[name]
		if l != nil {
			causes = l.Causes
		}
		for _, k := range causes {
			n := st.Causes[k]
			if n == 0 {
				continue
			}
			total += n
			facts[k.String()] = float64(n)
			h := causeHist(st, k)
			timing := ""
			if h != nil && h.TotalCount() > 0 {
				timing = fmt.Sprintf(" at %s–%s (p50 %s, p99 %s)", FormatDuration(usDur(h.Min())), FormatDuration(usDur(h.Max())),
					FormatDuration(usDur(h.ValueAtQuantile(50))), FormatDuration(usDur(h.ValueAtQuantile(99))))
				facts[k.String()+"_min_s"] = usDur(h.Min()).Seconds()
				facts[k.String()+"_p99_s"] = usDur(h.ValueAtQuantile(99)).Seconds()
			}
			switch {
			case l == nil:
				lines = append(lines, fmt.Sprintf("%d %s%s from %s, which declares no timeout", n, k, timing, name))
			case name != exp.Name:
				where := "outer"
				if layerIndex(name) > layerIndex(exp.Name) {
					where = "inner"
				}
				lines = append(lines, fmt.Sprintf("%d %s%s: the %s layer %s (%s) fired instead of %s (%s)",
					n, k, timing, where, name, l.timeouts(), exp.Name, exp.timeouts()))
			default:
				// The database's timers start once a request holds a
				// connection: one that waited for the pool reaches its
				// caller that much later than its timeout. The database
				// reports its longest such wait (db.timeout events); the
				// band reaches that far above the timeout, no further.
				var wait time.Duration
				if name == "db" {
					wait = dbWaitBefore(in, p.Summary)
				}
				ok := inBand(h, l.Timeouts, tol, wait)
				good += ok
				line := fmt.Sprintf("%d %s%s", n, k, timing)
				band := fmt.Sprintf("%s ± %s", l.timeouts(), FormatDuration(tol))
				if wait > 0 {
					band += fmt.Sprintf(" (+ up to %s waiting for a connection before the database's timer)", FormatDuration(wait))
					facts["db_wait_before_s"] = wait.Seconds()
				}
				if ok < n {
					line += fmt.Sprintf(": %d outside %s", n-ok, band)
				} else {
					line += ": all within " + band
				}
				lines = append(lines, line)
			}
		}
	}
	facts["timeouts"], facts["as_expected"] = float64(total), float64(good)
	r.Facts = facts
	if total == 0 {
		r.Measured = "no timeouts"
		r.Evidence = fmt.Sprintf("no request timed out in phase %s: the cascade was not exercised%s", phase, topCauses(st))
		return r
	}
	r.Value = float64(good) / float64(total)
	r.Measured = fmt.Sprintf("%s (%d of %d timeouts)", FormatPercent(r.Value), good, total)
	r.Pass = good == total
	r.Evidence = strings.Join(lines, "; ")
	return r
}

func layerIndex(name string) int {
	for i, n := range LayerOrder {
		if n == name {
			return i
		}
	}
	return -1
}

func causeHist(st *results.Stats, c cause.Cause) *hdr.Histogram {
	if st.ByCause == nil {
		return nil
	}
	return st.ByCause[c]
}

func usDur(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// dbWaitBefore is the longest a db_timeout of the phase waited for its
// connection, as the database reported it (db.timeout's max_wait_ms),
// over the events from the phase's start to a second past its end (the
// database reports a second at a time).
func dbWaitBefore(in *Input, ps results.PhaseSummary) time.Duration {
	from, to := ps.Start.D(), ps.End.D()+time.Second
	var wait time.Duration
	for _, e := range in.Events {
		if e.Type == "db.timeout" && e.T >= from && e.T <= to {
			wait = max(wait, time.Duration(num(e, "max_wait_ms")*float64(time.Millisecond)))
		}
	}
	return wait
}

// inBand counts the recorded values within tol of any of the timeouts, or
// up to wait more above one.
func inBand(h *hdr.Histogram, timeouts []time.Duration, tol, wait time.Duration) int64 {
	if h == nil {
		return 0
	}
	ts := append([]time.Duration(nil), timeouts...)
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	var n int64
	for _, b := range h.Distribution() {
		if b.Count == 0 {
			continue
		}
		v := usDur(b.From)
		for _, t := range ts {
			if v >= t-tol && v <= t+wait+tol {
				n += b.Count
				break
			}
		}
	}
	return n
}

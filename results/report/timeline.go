package report

import (
	"math"
	"sort"
	"strings"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/results"
)

// The events the timelines are drawn from. Other parts of cascade emit them;
// the report draws whatever of them a run recorded, and says plainly when
// there were none.
//
//	fault.start / fault.stop                attrs.fault names the fault: shaded windows on every chart
//	breaker.close|open|half_open|forced_open|disabled   Target names the breaker: one lane each
//	upstream.listen, replica.add, replica.remove        Target "api[0]": replica count per upstream
//	    (a replica.* or scale.* event with a numeric attrs.replicas sets the count outright)
//	outlier.eject / outlier.uneject         Target "api[addr]": ejected replicas per upstream
//	health.down / health.up                 Target "api[addr]": replicas failing active checks
const (
	evLoadStart    = "load.start"
	evFaultStart   = "fault.start"
	evFaultStop    = "fault.stop"
	evBreaker      = "breaker."
	evListen       = "upstream.listen"
	evReplicaAdd   = "replica.add"
	evReplicaRm    = "replica.remove"
	evEject        = "outlier.eject"
	evUneject      = "outlier.uneject"
	evHealthDown   = "health.down"
	evHealthUp     = "health.up"
	attrFault      = "fault"
	attrReplicas   = "replicas"
	breakerClosed  = "closed"
	breakerUnknown = "unknown"
)

// FaultWindow is a fault's active window on the run clock.
type FaultWindow struct {
	Name   string  `json:"name"`
	Kind   string  `json:"kind"`
	Target string  `json:"target"`
	Start  float64 `json:"start"`
	End    float64 `json:"end"`
	Open   bool    `json:"open"` // never stopped: the run ended first
}

// faultWindows pairs fault.start with fault.stop per fault. Without any
// fault events (an old run directory) it falls back to the summary.
func faultWindows(evs []event.Event, sum *results.Summary, end float64) []FaultWindow {
	out := []FaultWindow{}   // [] not null in the page's JSON
	open := map[string]int{} // fault name+target → index in out
	for _, e := range evs {
		key := e.Attr(attrFault) + "\x00" + e.Target
		switch e.Type {
		case evFaultStart:
			open[key] = len(out)
			out = append(out, FaultWindow{Name: e.Attr(attrFault), Kind: e.Attr("kind"), Target: e.Target,
				Start: max(e.T.Seconds(), 0), End: end, Open: true})
		case evFaultStop:
			if i, ok := open[key]; ok {
				out[i].End, out[i].Open = e.T.Seconds(), false
				delete(open, key)
			}
		}
	}
	if len(out) == 0 && sum != nil {
		for _, f := range sum.Faults {
			if f.Started {
				out = append(out, FaultWindow{Name: f.Name, Kind: f.Kind, Target: f.Target,
					Start: float64(f.Start), End: float64(f.End)})
			}
		}
	}
	return out
}

// StepSeries is a set of step functions on one shared time axis (what a
// chart library wants): Values[i][k] holds from X[k] until X[k+1].
type StepSeries struct {
	X      []float64   `json:"x"`
	Names  []string    `json:"names"`
	Values [][]float64 `json:"values"`
}

type change struct {
	t float64
	v float64
}

// steps aligns per-name changes onto one axis from 0 to end; a name's value
// before its first change is initial[name].
func steps(changes map[string][]change, initial map[string]float64, end float64) *StepSeries {
	if len(changes) == 0 {
		return nil
	}
	names := make([]string, 0, len(changes))
	xs := map[float64]bool{0: true, end: true}
	for n, cs := range changes {
		names = append(names, n)
		// Events from concurrent emitters can land slightly out of order.
		sort.SliceStable(cs, func(i, j int) bool { return cs[i].t < cs[j].t })
		for _, c := range cs {
			xs[c.t] = true
		}
	}
	sort.Strings(names)
	s := &StepSeries{Names: names}
	for x := range xs {
		s.X = append(s.X, x)
	}
	sort.Float64s(s.X)
	for _, n := range names {
		cs := changes[n]
		vals := make([]float64, len(s.X))
		v, j := initial[n], 0
		for k, x := range s.X {
			// Several changes at one instant: the last one holds.
			for j < len(cs) && cs[j].t <= x {
				v = cs[j].v
				j++
			}
			vals[k] = v
		}
		s.Values = append(s.Values, vals)
	}
	return s
}

// BreakerStates are the lanes' levels, in the order the legend lists them.
var BreakerStates = []string{breakerClosed, "half_open", "open", "forced_open", "disabled"}

func breakerLevel(state string) float64 {
	for i, s := range BreakerStates {
		if s == state {
			return float64(i)
		}
	}
	return -1 // an unknown state still gets a segment, drawn as unknown
}

// breakers turns breaker.* events into one lane per breaker; nil when the
// run recorded none (no breaker configured, or none ever changed state).
func breakers(evs []event.Event, end float64) *StepSeries {
	ch := map[string][]change{}
	initial := map[string]float64{}
	for _, e := range evs {
		state, ok := strings.CutPrefix(e.Type, evBreaker)
		if !ok {
			continue
		}
		if state == "close" {
			state = breakerClosed
		}
		name := e.Target
		if name == "" {
			name = "breaker"
		}
		ch[name] = append(ch[name], change{t: clampT(e.T.Seconds(), end), v: breakerLevel(state)})
		initial[name] = 0 // closed until told otherwise
	}
	return steps(ch, initial, end)
}

// ReplicaSeries holds, per upstream, the replica count and how many of its
// replicas were ejected or failing health checks.
type ReplicaSeries struct {
	*StepSeries
	Kinds     []string `json:"kinds"`     // per name: "replicas", "ejected", "unhealthy"
	Upstreams []string `json:"upstreams"` // per name
}

func replicas(evs []event.Event, end float64) *ReplicaSeries {
	type key struct{ upstream, kind string }
	count := map[key]float64{}
	sets := map[key]map[string]bool{}
	ch := map[string][]change{}
	meta := map[string]key{}
	set := func(k key, t, v float64) {
		name := k.upstream + " " + k.kind
		meta[name] = k
		count[k] = v
		ch[name] = append(ch[name], change{t: clampT(t, end), v: v})
	}
	member := func(k key, t float64, target string, in bool) {
		if sets[k] == nil {
			sets[k] = map[string]bool{}
		}
		if sets[k][target] == in {
			return
		}
		if in {
			sets[k][target] = true
		} else {
			delete(sets[k], target)
		}
		set(k, t, float64(len(sets[k])))
	}
	setup := setupEvents(evs)
	for i, e := range evs {
		t := e.T.Seconds()
		if i < setup {
			t = 0 // the state the load started with
		}
		up := upstreamOf(e)
		if n, ok := numAttr(e, attrReplicas); ok && (strings.HasPrefix(e.Type, "replica.") || strings.HasPrefix(e.Type, "scale.")) {
			set(key{up, "replicas"}, t, n)
			continue
		}
		switch e.Type {
		case evListen, evReplicaAdd:
			member(key{up, "replicas"}, t, e.Target, true)
		case evReplicaRm:
			member(key{up, "replicas"}, t, e.Target, false)
		case evEject:
			member(key{up, "ejected"}, t, e.Target, true)
		case evUneject:
			member(key{up, "ejected"}, t, e.Target, false)
		case evHealthDown:
			member(key{up, "unhealthy"}, t, e.Target, true)
		case evHealthUp:
			member(key{up, "unhealthy"}, t, e.Target, false)
		}
	}
	s := steps(ch, nil, end)
	if s == nil {
		return nil
	}
	out := &ReplicaSeries{StepSeries: s}
	for _, n := range s.Names {
		out.Kinds = append(out.Kinds, meta[n].kind)
		out.Upstreams = append(out.Upstreams, meta[n].upstream)
	}
	return out
}

// setupEvents counts the events written before load.start: the replicas
// and breakers that existed when the load began. Their offsets were taken
// before the run's clock was zeroed at the load's start, so they say nothing
// about when in the run they happened.
func setupEvents(evs []event.Event) int {
	for i, e := range evs {
		if e.Type == evLoadStart {
			return i
		}
	}
	return 0
}

// upstreamOf reads the upstream from a target "api[1]" or "api[127.0.0.1:80]",
// or from attrs.upstream.
func upstreamOf(e event.Event) string {
	if u := e.Attr("upstream"); u != "" {
		return u
	}
	if i := strings.IndexByte(e.Target, '['); i > 0 {
		return e.Target[:i]
	}
	return e.Target
}

func numAttr(e event.Event, k string) (float64, bool) {
	switch v := e.Attrs[k].(type) {
	case float64:
		return v, true
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	}
	return 0, false
}

// clampT puts setup events (negative offsets: before the load started) at 0.
func clampT(t, end float64) float64 {
	return math.Min(math.Max(t, 0), math.Max(end, 0))
}

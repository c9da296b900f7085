package verdict

import "github.com/cascadehq/cascade/results"

// Missing says what a run directory lacks that some objectives need, each
// as the reason given for not judging them ("" when it is there). A killed
// run's rebuilt summary has only what the run streamed: what the final
// summary alone keeps is missing.
type Missing struct {
	Lag          string // the scheduling lag (lag_* metrics)
	CauseLatency string // failed requests' latency by cause (timeout cascades)
	Direct       string // the direct load's stats (gateway_adds)
	Upstreams    string // the upstreams' records, as far as the client's go
	// Phases are the phases with nothing recorded, each with why
	// (results.KilledRun.Unrecorded): an objective on one is not judged.
	Phases map[string]string
}

// EvaluateMissing is Evaluate for a run directory that lacks what m names:
// an objective that needs it is not judged (NotJudged, never a pass, its
// evidence the reason); every other one is judged as Evaluate does. The
// second result is whether every objective was judged and passed.
func EvaluateMissing(objs []Objective, in *Input, m Missing) ([]results.ObjectiveResult, bool) {
	out, pass := Evaluate(objs, in)
	for i, o := range objs {
		if why := m.needed(o); why != "" {
			r := &out[i]
			r.Pass, r.NotJudged, r.Value, r.Measured, r.Facts = false, true, 0, "", nil
			r.Evidence = "not judged: " + why
			pass = false
		}
	}
	return out, pass
}

// needed is why o cannot be judged without what m lacks, or "".
func (m Missing) needed(o Objective) string {
	threshold := func(t *Threshold) string {
		switch {
		case t.Phase != "" && m.Phases[t.Phase] != "":
			return m.Phases[t.Phase]
		case t.metric.series == "lag":
			return m.Lag
		case t.UsesUpstreams():
			return m.Upstreams
		}
		return ""
	}
	switch o := o.(type) {
	case *Threshold:
		return threshold(o)
	case *Window:
		return threshold(o.T)
	case *GatewayAdds:
		if m.Direct != "" {
			return m.Direct
		}
		return threshold(o.T)
	case *Cascade:
		return m.CauseLatency
	case *Blocked, *Probes:
		return m.Upstreams
	case *Scaling:
		if o.Oracle {
			return m.Upstreams
		}
	}
	return ""
}

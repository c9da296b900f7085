package autoscale

import (
	"fmt"
	"math"
	"time"
)

type policy struct {
	pods    bool
	value   int
	period  time.Duration
	percent float64
}

type rules struct {
	window time.Duration
	sel    string
	pols   []policy
}

// Settings is a validated Spec with every default filled in, in the units
// the algorithm uses.
type Settings struct {
	Upstream     string
	Mode         string
	Min, Max     int
	Metric       string
	Target       float64 // in the metric's unit (requests, per second, seconds)
	Tolerance    float64
	SyncPeriod   time.Duration
	StartupDelay time.Duration
	up, down     rules
}

// Settings fills the defaults. Call Validate first: a bad spec gives
// unspecified settings.
func (s Spec) Settings() Settings {
	target, _ := ParseTarget(s.Metric, s.Target)
	out := Settings{Upstream: s.Upstream, Mode: s.Mode, Min: max(s.MinReplicas, 1), Max: s.MaxReplicas,
		Metric: s.Metric, Target: target, Tolerance: DefaultTolerance, SyncPeriod: s.SyncPeriod.D(), StartupDelay: s.StartupDelay.D()}
	if out.Mode == "" {
		out.Mode = ModeScale
	}
	if s.Tolerance != nil {
		out.Tolerance = s.Tolerance.F()
	}
	if out.SyncPeriod == 0 {
		out.SyncPeriod = DefaultSyncPeriod
	}
	out.up = rules{window: 0, sel: SelectMax, pols: []policy{
		{pods: true, value: DefaultUpPods, period: DefaultPolicyPeriod},
		{value: DefaultUpPercent, percent: DefaultUpPercent, period: DefaultPolicyPeriod}}}
	out.down = rules{window: DefaultDownStabilize, sel: SelectMax, pols: []policy{
		{value: DefaultDownPercent, percent: DefaultDownPercent, period: DefaultPolicyPeriod}}}
	apply := func(dst *rules, r *Rules) {
		if r == nil {
			return
		}
		if r.StabilizationWindow != nil {
			dst.window = r.StabilizationWindow.D()
		}
		if r.SelectPolicy != "" {
			dst.sel = r.SelectPolicy
		}
		if len(r.Policies) > 0 {
			dst.pols = nil
			for _, p := range r.Policies {
				dst.pols = append(dst.pols, policy{pods: p.Type == Pods, value: p.Value, percent: float64(p.Value), period: p.Period.D()})
			}
		}
	}
	apply(&out.up, s.Behavior.ScaleUp)
	apply(&out.down, s.Behavior.ScaleDown)
	return out
}

// Decision is one sync of the autoscaler.
type Decision struct {
	At       time.Duration // when it decided, on the run's clock
	From, To int           // replicas before and after
	Value    float64       // the metric as observed (per replica for Pods metrics)
	Ratio    float64       // Value ÷ target
	// Raw is the replica count the metric alone asks for (after the
	// tolerance); Stabilized after the stabilization window; To after the
	// scaling policies and min/max.
	Raw, Stabilized int
	// DeadBand: the metric was off target but within the tolerance, so the
	// autoscaler held still.
	DeadBand bool
	Reason   string // why To is what it is (Kubernetes' condition reasons)
}

// Scaled says whether the decision changed the replica count.
func (d Decision) Scaled() bool { return d.To != d.From }

type timed struct {
	at time.Duration
	n  int
}

// HPA is one horizontal pod autoscaler's memory: its recent
// recommendations (for stabilization) and scale events (for the rate
// policies). It holds no clock: Step takes now, so it is tested with fixed
// instants and replayed offline over recorded metrics.
type HPA struct {
	s     Settings
	recs  []timed // unstabilized recommendations
	ups   []timed // replicas added, by time
	downs []timed // replicas removed, by time
	began bool
}

// New returns an autoscaler with no history.
func New(s Settings) *HPA { return &HPA{s: s} }

// Settings returns what the autoscaler follows.
func (h *HPA) Settings() Settings { return h.s }

// Step is one sync at now: current replicas, the metric value (per replica
// for in_flight and request_rate; the upstream's for p95_latency). A NaN
// value (no data) keeps the replicas as they are, as the controller does
// when metrics are missing.
func (h *HPA) Step(now time.Duration, current int, value float64) Decision {
	d := Decision{At: now, From: current, Value: value}
	if !h.began {
		// maybeInitScaleDownStabilizationWindow: a new autoscaler remembers
		// the current count as a recommendation, so it does not scale down
		// in its first window on a single low reading.
		h.began = true
		if h.s.down.window > 0 {
			h.recs = append(h.recs, timed{now, current})
		}
	}
	switch {
	case current > h.s.Max:
		d.Raw, d.Stabilized, d.To, d.Reason = h.s.Max, h.s.Max, h.s.Max, "above max_replicas"
	case current < h.s.Min:
		d.Raw, d.Stabilized, d.To, d.Reason = h.s.Min, h.s.Min, h.s.Min, "below min_replicas"
	case math.IsNaN(value):
		d.Raw, d.Stabilized, d.To, d.Reason = current, current, current, "no metric"
	default:
		d.Ratio = value / h.s.Target
		d.Raw = current
		if math.Abs(1-d.Ratio) > h.s.Tolerance {
			d.Raw = int(math.Ceil(d.Ratio * float64(current)))
		} else if d.Ratio != 1 {
			d.DeadBand = true
		}
		d.Stabilized = h.stabilize(now, current, d.Raw)
		d.To, d.Reason = h.limit(now, current, d.Stabilized)
	}
	if d.To > current {
		h.ups = append(h.ups, timed{now, d.To - current})
	} else if d.To < current {
		h.downs = append(h.downs, timed{now, current - d.To})
	}
	h.forget(now)
	return d
}

// stabilize is stabilizeRecommendationWithBehaviors: the recommendation is
// held between the lowest recent one (up window) and the highest recent one
// (down window), and the unstabilized one is remembered.
func (h *HPA) stabilize(now time.Duration, current, desired int) int {
	up, down := desired, desired
	upCut, downCut := now-h.s.up.window, now-h.s.down.window
	for _, r := range h.recs {
		if r.at > upCut {
			up = min(up, r.n)
		}
		if r.at > downCut {
			down = max(down, r.n)
		}
	}
	h.recs = append(h.recs, timed{now, desired})
	rec := current
	if rec < up {
		rec = up
	}
	if rec > down {
		rec = down
	}
	return rec
}

// changeIn sums the replica changes within period before now.
func changeIn(events []timed, now, period time.Duration) int {
	n := 0
	for _, e := range events {
		if e.at > now-period {
			n += e.n
		}
	}
	return n
}

// limit is convertDesiredReplicasWithBehaviorRate.
func (h *HPA) limit(now time.Duration, current, desired int) (int, string) {
	switch {
	case desired > current:
		lim := h.upLimit(now, current)
		if lim < current {
			lim = current // no further up until old events age out
		}
		allowed, reason := h.s.Max, "too many replicas: max_replicas"
		if allowed > lim {
			allowed, reason = lim, "scale-up limited by policy"
		}
		if desired > allowed {
			return allowed, reason
		}
	case desired < current:
		lim := h.downLimit(now, current)
		if lim > current {
			lim = current
		}
		allowed, reason := h.s.Min, "too few replicas: min_replicas"
		if allowed < lim {
			allowed, reason = lim, "scale-down limited by policy"
		}
		if desired < allowed {
			return allowed, reason
		}
	}
	return desired, "desired within range"
}

// upLimit is calculateScaleUpLimitWithScalingRules.
func (h *HPA) upLimit(now time.Duration, current int) int {
	r := h.s.up
	if r.sel == SelectDisabled {
		return current
	}
	result := math.MinInt
	pick := func(a, b int) int { return max(a, b) }
	if r.sel == SelectMin {
		result, pick = math.MaxInt, func(a, b int) int { return min(a, b) }
	}
	for _, p := range r.pols {
		start := current - changeIn(h.ups, now, p.period) + changeIn(h.downs, now, p.period)
		var proposed int
		if p.pods {
			proposed = start + p.value
		} else {
			// Rounded up, so a percentage policy can always add one.
			proposed = int(math.Ceil(float64(start) * (1 + p.percent/100)))
		}
		result = pick(result, proposed)
	}
	return result
}

// downLimit is calculateScaleDownLimitWithBehaviors.
func (h *HPA) downLimit(now time.Duration, current int) int {
	r := h.s.down
	if r.sel == SelectDisabled {
		return current
	}
	result := math.MaxInt
	pick := func(a, b int) int { return min(a, b) }
	if r.sel == SelectMin {
		result, pick = math.MinInt, func(a, b int) int { return max(a, b) }
	}
	for _, p := range r.pols {
		start := current - changeIn(h.ups, now, p.period) + changeIn(h.downs, now, p.period)
		var proposed int
		if p.pods {
			proposed = start - p.value
		} else {
			proposed = int(float64(start) * (1 - p.percent/100))
		}
		result = pick(result, proposed)
	}
	return result
}

// forget drops history no window or policy can still see.
func (h *HPA) forget(now time.Duration) {
	keep := max(h.s.up.window, h.s.down.window)
	for _, p := range append(append([]policy(nil), h.s.up.pols...), h.s.down.pols...) {
		keep = max(keep, p.period)
	}
	cut := now - keep
	prune := func(xs []timed) []timed {
		i := 0
		for i < len(xs) && xs[i].at <= cut {
			i++
		}
		return xs[i:]
	}
	h.recs, h.ups, h.downs = prune(h.recs), prune(h.ups), prune(h.downs)
	if len(h.recs) > maxStabilizationHistory {
		h.recs = h.recs[len(h.recs)-maxStabilizationHistory:]
	}
}

// Sample is the metric as observed over one sync period.
type Sample struct {
	At       time.Duration
	Replicas int // replicas that served in the period
	// Total is the metric summed over replicas for Pods metrics (in-flight,
	// requests per second), or the upstream's value for p95_latency.
	Total float64
}

// Replay runs the HPA over recorded samples, as an oracle: the replicas
// start at the first sample's count and then follow the HPA's own
// decisions, with per-replica metrics rescaled to the replicas it would have
// had (Total ÷ replicas). For p95_latency the recorded value is used as is:
// how latency would have moved with more replicas is not knowable offline.
func Replay(s Settings, samples []Sample) []Decision {
	if len(samples) == 0 {
		return nil
	}
	h := New(s)
	current := min(max(samples[0].Replicas, s.Min), s.Max)
	var out []Decision
	for _, smp := range samples {
		v := smp.Total
		if PerReplica(s.Metric) && current > 0 {
			v = smp.Total / float64(current)
		}
		d := h.Step(smp.At, current, v)
		out = append(out, d)
		current = d.To
	}
	return out
}

// DeadBandReport summarises the syncs where the metric was off target but
// inside the tolerance: the autoscaler held still although the metric said
// otherwise. A target set so the steady metric sits just above it (by less
// than the tolerance) never scales up.
type DeadBandReport struct {
	Syncs, InBand, AboveInBand int
	First, Last                time.Duration
}

// String says how long the metric sat in the dead band, for evidence.
func (r DeadBandReport) String() string {
	if r.InBand == 0 {
		return fmt.Sprintf("the metric was never inside the tolerance dead band (%d syncs)", r.Syncs)
	}
	return fmt.Sprintf("the metric sat inside the tolerance dead band at %d of %d syncs (%d of them above target, between %.1fs and %.1fs): no scaling while it did",
		r.InBand, r.Syncs, r.AboveInBand, r.First.Seconds(), r.Last.Seconds())
}

// DeadBand reports the dead-band syncs of a decision sequence.
func DeadBand(ds []Decision) DeadBandReport {
	r := DeadBandReport{Syncs: len(ds)}
	for _, d := range ds {
		if !d.DeadBand {
			continue
		}
		if r.InBand == 0 {
			r.First = d.At
		}
		r.InBand++
		r.Last = d.At
		if d.Ratio > 1 {
			r.AboveInBand++
		}
	}
	return r
}

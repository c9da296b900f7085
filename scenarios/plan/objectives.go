package plan

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/cascadehq/cascade/autoscale"
	"github.com/cascadehq/cascade/gateway"
	"github.com/cascadehq/cascade/internal/yamlfile"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results/verdict"
	"github.com/cascadehq/cascade/scenarios"
)

// The keys that say what an objective judges; a mapping has exactly one.
var objectiveKinds = []string{"objective", "recovers_within", "breaker", "outlier", "autoscale", "cascade", "gateway_adds"}

// kindLabel names each kind in messages.
var kindLabel = map[string]string{"objective": "threshold", "recovers_within": "recovery", "breaker": "breaker",
	"outlier": "outlier", "autoscale": "autoscale", "cascade": "cascade", "gateway_adds": "gateway_adds"}

// Which fields qualify which kind (name applies to all).
var objectiveFields = map[string][]string{
	"objective":       {"phase", "upstream", "every", "abort"},
	"recovers_within": {"after", "baseline", "band", "error_band", "hold"},
	"breaker":         {"opens_within", "closes_within", "half_open_probes", "blocks_while_open", "after", "abort"},
	"outlier":         {"ejects_within", "returns_within", "blocks_while_ejected", "after", "abort"},
	"autoscale":       {"scales_up_within", "reaches", "direction_changes", "no_dead_band", "after", "abort"},
	"cascade":         {"phase", "tolerance"},
	"gateway_adds":    {},
}

// objectives compiles the slo list: threshold strings, and the typed forms
// (rolling windows, recovery, breaker and outlier timing, autoscaling, the
// dynamic timeout cascade, layer attribution). Every bad field is reported
// at its own position.
func (c *compiler) objectives() {
	seen := map[string]string{} // objective name -> the slo item that has it
	names := map[string]bool{}
	for _, p := range c.p.Phases {
		names[p.Name] = true
	}
	for i, o := range c.f.SLO {
		p := fmt.Sprintf("$.slo[%d]", i)
		set := c.setKeys(p, o)
		var kinds []string
		for _, k := range objectiveKinds {
			if set[k] {
				kinds = append(kinds, k)
			}
		}
		switch len(kinds) {
		case 0:
			c.errorf(p, "an objective needs one of: %s (e.g. objective: \"p99 < 300ms\")", strings.Join(objectiveKinds, ", "))
			continue
		case 1:
		default:
			c.errorf(p+"."+kinds[1], "an objective judges one thing: %s and %s exclude each other (write two objectives)", kinds[0], kinds[1])
			continue
		}
		kind := kinds[0]
		allowed := map[string]bool{"name": true, kind: true}
		for _, f := range objectiveFields[kind] {
			allowed[f] = true
		}
		bad := false
		for _, k := range sortedKeys(set) {
			if !allowed[k] {
				takes := strings.Join(objectiveFields[kind], ", ")
				if takes == "" {
					takes = "only name"
				}
				c.errorf(p+"."+k, "%s does not apply to a %s objective (it takes: %s)", k, kindLabel[kind], takes)
				bad = true
			}
		}
		if bad {
			continue
		}
		if o.Phase != "" && !names[o.Phase] {
			if !c.lostPhase(o.Phase) { // already reported at the fault
				c.errorf(p+".phase", "unknown phase %q (phases: %s)%s", o.Phase, phaseList(c.p.Phases), whyNoDerivedPhase(o.Phase, c.p.Timeline, c.p.Phases))
			}
			continue
		}
		var objs []verdict.Objective
		switch kind {
		case "objective":
			objs = c.threshold(p, o)
		case "recovers_within":
			objs = c.recovery(p, o, names)
		case "breaker":
			objs = c.breaker(p, o, names)
		case "outlier":
			objs = c.outlier(p, o, names)
		case "autoscale":
			objs = c.scaling(p, o, names)
		case "cascade":
			objs = c.cascadeObjective(p, o)
		case "gateway_adds":
			objs = c.gatewayAdds(p, o)
		}
		for _, obj := range objs {
			if o.Name != "" && len(objs) == 1 {
				setName(obj, o.Name)
			}
			// Results, compare and JUnit key objectives by name: a second
			// one with the same name would overwrite the first in compare
			// and make two test cases JUnit readers merge.
			if n := namePtr(obj); n != nil {
				if prev, dup := seen[*n]; dup {
					where := p
					if o.Name != "" {
						where = p + ".name"
					}
					c.errorf(where, "objective %q is also %s's name: give one of them a name: of its own", *n, prev)
					continue
				}
				seen[*n] = strings.TrimPrefix(p, "$.")
			}
			c.p.Objectives = append(c.p.Objectives, obj)
			if o.Abort {
				if a, ok := obj.(verdict.Abortable); ok {
					c.p.Aborts = append(c.p.Aborts, a)
				}
			}
		}
	}
}

// setKeys lists the keys a mapping objective sets ("objective" for the
// string shorthand).
func (c *compiler) setKeys(p string, o scenarios.Objective) map[string]bool {
	set := map[string]bool{}
	if m, ok := c.doc.Node(p).(*ast.MappingNode); ok {
		for _, v := range m.Values {
			set[yamlfile.KeyName(v.Key)] = true
		}
		return set
	}
	if o.Objective != "" {
		set["objective"] = true
	}
	return set
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func setName(o verdict.Objective, name string) {
	if n := namePtr(o); n != nil {
		*n = name
	}
}

// namePtr is where an objective keeps its name (nil for a kind without
// one).
func namePtr(o verdict.Objective) *string {
	switch x := o.(type) {
	case *verdict.Threshold:
		return &x.Name
	case *verdict.Window:
		return &x.Name
	case *verdict.Recovery:
		return &x.Name
	case *verdict.Transition:
		return &x.Name
	case *verdict.Blocked:
		return &x.Name
	case *verdict.Probes:
		return &x.Name
	case *verdict.Scaling:
		return &x.Name
	case *verdict.Cascade:
		return &x.Name
	case *verdict.GatewayAdds:
		return &x.Name
	}
	return nil
}

// exprPath is where a threshold's expression sits.
func (c *compiler) exprPath(p, field string) string {
	if c.doc.Node(p+"."+field) != nil {
		return p + "." + field
	}
	return p
}

func (c *compiler) threshold(p string, o scenarios.Objective) []verdict.Objective {
	phase := o.Phase
	if phase == RunPhase {
		phase = ""
	}
	t, err := verdict.ParseThreshold(o.Objective, phase)
	if err != nil {
		c.errorf(c.exprPath(p, "objective"), "%v", err)
		return nil
	}
	if t.RelativeToTarget() && !c.opts.Offline && !hasOpenModel(c.p.Load) {
		// Judged, it failed on "too short a window for a rate".
		c.errorf(c.exprPath(p, "objective"), "%q is a share of the target rate, and this load has none: its executors are closed-model (VUs), which send as fast as they are answered; bound the rate itself, e.g. achieved_rate >= 100/s", o.Objective)
		return nil
	}
	if t.OfLag() && !c.opts.Offline && !hasOpenModel(c.p.Load) {
		// Judged, it passed at 1 µs whatever the generator did.
		c.errorf(c.exprPath(p, "objective"), "%q judges how late the open model sent its requests, and this load has none: a closed-model (VU) request is due when it is sent, so its lag is 0 by construction", o.Objective)
		return nil
	}
	if t.UsesUpstreams() && len(c.ups) == 0 {
		// Counted where requests land, at cascade's fake upstreams: a
		// load on a target of your own (cascade load URL) has none.
		c.errorf(c.exprPath(p, "objective"), "%q is measured at cascade's fake upstreams, and this load has none (its target is your own service)", o.Objective)
		return nil
	}
	if o.Upstream != "" {
		if c.ups[o.Upstream] == nil {
			c.errorf(p+".upstream", "unknown upstream %q (declared: %s)", o.Upstream, strings.Join(c.upstreamNames(), ", "))
			return nil
		}
		if !t.UsesUpstreams() && !t.UsesEvents() {
			c.errorf(p+".upstream", "upstream applies to metrics measured at the upstreams (amplification, retries, orphans...) or event counts (breaker_opens, ejections), not to %q", o.Objective)
			return nil
		}
		t.Upstream = o.Upstream
		t.ClientTags = c.routedTags(p+".upstream", o.Upstream)
		t.ClientShare = c.mixShare(o.Upstream)
		t.Name += " (" + o.Upstream + ")"
	}
	if f := eventFeature[t.MetricName()]; f != "" && !c.gatewayHas(o.Upstream, f) {
		// breaker_opens == 0 with no breaker to open passed, saying only
		// "0 breaker.open events".
		where, what := c.exprPath(p, "objective"), "no upstream has one"
		if o.Upstream != "" {
			where, what = p+".upstream", fmt.Sprintf("upstream %q has none", o.Upstream)
		}
		c.errorf(where, "%s counts the %s's events, but %s (gateway.upstreams[].%s): it is always 0, so this objective has nothing to judge", t.MetricName(), f, what, f)
		return nil
	}
	if t.UsesUpstreams() && c.p.Gateway == nil {
		c.warnf(c.exprPath(p, "objective"), "%q is measured at cascade's fake upstreams; with a gateway other than cascade's it still counts what reached them", o.Objective)
	}
	c.propagationLint(c.exprPath(p, "objective"), t.MetricName())
	if o.Every != 0 {
		if err := t.Windowable(); err != nil {
			c.errorf(p+".every", "rolling windows: %v", err)
			return nil
		}
		if o.Every.D() < time.Second || o.Every.D()%time.Second != 0 {
			c.errorf(p+".every", "windows slide over 1 s intervals: give a whole number of seconds, at least 1s (got %s)", o.Every)
			return nil
		}
		if o.Every.D() > c.p.Duration && c.p.Duration > 0 {
			c.warnf(p+".every", "a %s window is longer than the load (%s): it is judged as one window", o.Every, c.p.Duration)
		}
		c.wholeSecondsLint(p+".every", o.Phase)
		name := fmt.Sprintf("%s in every %s window", t.Name, o.Every)
		return []verdict.Objective{&verdict.Window{Name: name, T: t, Every: o.Every.D()}}
	}
	if o.Abort {
		if err := t.CanAbort(); err != nil {
			c.errorf(p+".abort", "%v", err)
			return nil
		}
		if t.UsesUpstreams() || t.UsesEvents() {
			// Judged on what was recorded so far, like the client metrics.
		} else if err := t.Windowable(); err != nil {
			c.errorf(p+".abort", "%v", err)
			return nil
		}
	}
	return []verdict.Objective{t}
}

// wholeSecondsLint warns when a phase holds no whole second: rolling
// windows are made of the 1 s intervals lying wholly inside their phase (an
// interval across its edge holds the neighbour's requests), so such a
// window objective has nothing to judge and fails.
func (c *compiler) wholeSecondsLint(path, phase string) {
	if phase == "" {
		phase = RunPhase
	}
	for _, ph := range c.p.Phases {
		if ph.Name != phase {
			continue
		}
		lo := ph.Start.Truncate(time.Second)
		if lo < ph.Start {
			lo += time.Second
		}
		hi := ph.End.Truncate(time.Second)
		if ph.End == c.p.Duration {
			hi = ph.End // the run's last interval ends with the load
		}
		if hi <= lo && ph.End > ph.Start {
			c.warnf(path, "phase %s [%s, %s) holds no whole second: windows are made of the 1 s intervals wholly inside the phase, so there is nothing to judge; put its edges on whole seconds, or drop every:",
				ph.Name, ph.Start, ph.End)
		}
		return
	}
}

// routedTags names the requests (by tag, as the run counts them per phase)
// whose route goes to upstream: the client requests an upstream metric such
// as amplification is relative to. nil when every request goes there, or
// when the gateway is not cascade's (its routes are unknown).
func (c *compiler) routedTags(path, upstream string) []string {
	if c.p.Gateway == nil {
		return nil
	}
	execs := c.p.Load.Executors
	if len(execs) == 0 {
		execs = []loadgen.Config{c.p.Load}
	}
	tags := []string{}
	there, elsewhere := map[string]bool{}, map[string]bool{}
	for _, e := range execs {
		for _, r := range e.Requests {
			if c.routeOf(r.Path) != upstream {
				elsewhere[r.Name] = true
				continue
			}
			if !there[r.Name] {
				there[r.Name] = true
				tags = append(tags, r.Name)
			}
		}
	}
	if len(elsewhere) == 0 {
		return nil
	}
	for _, tag := range tags {
		if elsewhere[tag] {
			c.warnf(path, "requests named %q go to %s and to other upstreams: the run counts them together, so amplification for %s divides by all of them", tag, upstream, upstream)
		}
	}
	return tags
}

// routeOf is the upstream of the route the gateway picks for path (the
// longest prefix), or "".
func (c *compiler) routeOf(path string) string {
	best, up := -1, ""
	for _, rt := range c.p.Gateway.Routes {
		if strings.HasPrefix(path, rt.Path) && len(rt.Path) > best {
			best, up = len(rt.Path), rt.Upstream
		}
	}
	return up
}

// mixShare is the share of the request mix (by weight) whose route goes to
// upstream: an estimate of routedTags' count, for where requests were not
// counted per tag (rolling windows).
func (c *compiler) mixShare(upstream string) float64 {
	if c.p.Gateway == nil {
		return 1
	}
	var to, total int
	for _, r := range c.p.Load.Requests {
		total += r.Weight
		if c.routeOf(r.Path) == upstream {
			to += r.Weight
		}
	}
	if total == 0 {
		return 1
	}
	return float64(to) / float64(total)
}

var stageRE = regexp.MustCompile(`^stage\[(\d+)\]$`)

// stageStart is when load stage i starts, and how evidence names it.
func (c *compiler) stageStart(i int) (time.Duration, string, bool) {
	var at time.Duration
	for j, s := range c.p.Load.Stages {
		if j == i {
			rate := s.To
			return at, fmt.Sprintf("stage[%d] (%g/s)", i, rate), true
		}
		at += s.Duration
	}
	return 0, "", false
}

// anchor resolves `after`. end chooses a fault's end (or a phase's end)
// over its onset. onset is where the disturbance began (for a default
// baseline).
func (c *compiler) anchor(p string, after string, end bool, phases map[string]bool) (at, onset verdict.Anchor, ok bool) {
	if after == "" {
		switch len(c.p.Timeline) {
		case 1:
			after = c.p.Timeline[0].Name
		case 0:
			c.errorf(p, "after is required: name a load stage such as \"stage[1]\" (the scenario has no faults)")
			return at, onset, false
		default:
			var fs []string
			for _, e := range c.p.Timeline {
				fs = append(fs, e.Name)
			}
			c.errorf(p, "after is required with several faults: name one (%s) or a stage such as \"stage[1]\"", strings.Join(fs, ", "))
			return at, onset, false
		}
	}
	pa := p + ".after"
	if m := stageRE.FindStringSubmatch(after); m != nil {
		i, err := strconv.Atoi(m[1]) // too large for an int: no such stage either
		st, label, found := c.stageStart(i)
		if err != nil || !found {
			// m[1] as written: a number too large for an int would print clamped.
			c.errorf(pa, "the load has %d stage(s), stage[0] to stage[%d]: stage[%s] does not exist", len(c.p.Load.Stages), len(c.p.Load.Stages)-1, m[1])
			return at, onset, false
		}
		a := verdict.Offset(st, label)
		return a, a, true
	}
	for _, e := range c.p.Timeline {
		if e.Name == after {
			if end {
				return verdict.FaultEnd(after), verdict.FaultOnset(after), true
			}
			return verdict.FaultOnset(after), verdict.FaultOnset(after), true
		}
	}
	if c.lostPhase(after) {
		return at, onset, false
	}
	for _, ph := range c.p.Phases {
		if ph.Name == after {
			start := verdict.Offset(ph.Start, "the start of phase "+ph.Name)
			if end {
				return verdict.Offset(ph.End, "the end of phase "+ph.Name), start, true
			}
			return start, start, true
		}
	}
	var fs []string
	for _, e := range c.p.Timeline {
		fs = append(fs, e.Name)
	}
	c.errorf(pa, "after %q is not a fault (%s), a phase (%s) or a stage such as stage[1]", after, orNone(fs), phaseList(c.p.Phases))
	return at, onset, false
}

// plannedAt is where an anchor falls on the scenario's own clock: a fault's
// onset or end as planned (its first occurrence; one without a duration
// lasts until the load ends), or a fixed offset.
func (c *compiler) plannedAt(a verdict.Anchor) (time.Duration, bool) {
	if a.Fault == "" {
		return a.At, true
	}
	for _, e := range c.p.Timeline {
		if e.Name != a.Fault {
			continue
		}
		switch {
		case a.Edge == verdict.Onset:
			return e.Start, true
		case e.Duration == 0:
			return c.p.Duration, true
		}
		return e.Start + e.Duration, true
	}
	return 0, false
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}

func positive(c *compiler, path string, d time.Duration, what string) bool {
	if d <= 0 {
		c.errorf(path, "%s must be greater than 0", what)
		return false
	}
	return true
}

func (c *compiler) recovery(p string, o scenarios.Objective, phases map[string]bool) []verdict.Objective {
	if !positive(c, p+".recovers_within", o.RecoversWithin.D(), "recovers_within") {
		return nil
	}
	at, onset, ok := c.anchor(p, o.After, true, phases)
	if !ok {
		return nil
	}
	// Recovery is judged on what the load recorded after the anchor: an
	// anchor at the load's end leaves nothing, and could never pass.
	if t, ok := c.plannedAt(at); ok && c.p.Duration > 0 && t >= c.p.Duration {
		c.errorf(c.exprPath(p, "after"), "recovery is measured after %s, at %s, when the load ends (%s): nothing is recorded after it, so this can never pass; name a fault or a phase that ends before the load does, or a stage such as stage[1]",
			at, t, c.p.Duration)
		return nil
	}
	if o.Baseline != "" && !phases[o.Baseline] {
		if !c.lostPhase(o.Baseline) {
			c.errorf(p+".baseline", "unknown phase %q (phases: %s)", o.Baseline, phaseList(c.p.Phases))
		}
		return nil
	}
	rc := &verdict.Recovery{After: at, Onset: onset, Within: o.RecoversWithin.D(), Baseline: o.Baseline, Hold: o.Hold.D()}
	if o.Band != nil {
		// Written so that NaN fails too: band: .nan compared false both
		// ways and was accepted, and so was .inf, a band nothing leaves.
		if b := *o.Band; !(b >= 1) || math.IsInf(b, 1) {
			c.errorf(p+".band", "band multiplies the baseline p99 and must be a number from 1 (1.5: up to 50%% above), got %g", b)
			return nil
		}
		rc.Band = *o.Band
	}
	if o.ErrorBand != nil {
		if o.ErrorBand.F() < 0 {
			c.errorf(p+".error_band", "error_band must not be negative")
			return nil
		}
		rc.ErrorBand = o.ErrorBand.F()
		if rc.ErrorBand == 0 {
			rc.ErrorBand = 1e-9 // 0% means exactly the baseline's error rate
		}
	}
	if o.Hold < 0 {
		c.errorf(p+".hold", "hold must not be negative")
		return nil
	}
	// A recovery found late is held over what is left of the load. The
	// verdict still passes on that shorter stretch (its evidence says so);
	// say so before the run, when the file can still change.
	if t, ok := c.plannedAt(at); ok && c.p.Duration > 0 {
		hold := rc.Hold
		if hold == 0 {
			hold = verdict.DefaultHold
		}
		if left := c.p.Duration - t - rc.Within; left < hold {
			c.warnf(p, "the load ends %s after %s (at %s): a recovery found at the %s limit could be held only %s of the %s hold, and would pass on that; give the load %s more after it, or a shorter hold",
				c.p.Duration-t, at, t, o.RecoversWithin, max(left, 0), hold, hold-left)
		}
	}
	rc.Name = fmt.Sprintf("recovers within %s after %s", o.RecoversWithin, at)
	return []verdict.Objective{rc}
}

// eventFeature is the gateway feature whose events an event count
// (breaker_opens, ejections) counts.
var eventFeature = map[string]string{"breaker_opens": "breaker", "ejections": "outlier"}

// gatewayHas says whether cascade's gateway configures feature ("breaker"
// or "outlier") on upstream ("" for any upstream). An external gateway's
// configuration is unknown: true.
func (c *compiler) gatewayHas(upstream, feature string) bool {
	if c.p.Gateway == nil {
		return true
	}
	for _, u := range c.p.Gateway.Upstreams {
		if upstream != "" && u.Name != upstream {
			continue
		}
		if feature == "breaker" && u.Breaker != nil || feature == "outlier" && u.Outlier != nil {
			return true
		}
	}
	return false
}

func (c *compiler) checkGatewayFeature(p, what string) {
	if c.p.Gateway == nil {
		c.warnf(p, "%s are judged from cascade's gateway's events; a gateway other than cascade's (external, or nginx/HAProxy in a container) emits none, so this objective will fail", what)
	}
}

func (c *compiler) breaker(p string, o scenarios.Objective, phases map[string]bool) []verdict.Objective {
	if c.ups[o.Breaker] == nil {
		c.errorf(p+".breaker", "unknown upstream %q (declared: %s): a breaker is per upstream", o.Breaker, strings.Join(c.upstreamNames(), ", "))
		return nil
	}
	c.checkGatewayFeature(p+".breaker", "breakers")
	if !c.gatewayHas(o.Breaker, "breaker") {
		c.errorf(p+".breaker", "upstream %q has no breaker (gateway.upstreams[].breaker): it never opens, so this objective has nothing to judge", o.Breaker)
		return nil
	}
	var out []verdict.Objective
	any := false
	if o.OpensWithin != 0 {
		any = true
		if positive(c, p+".opens_within", o.OpensWithin.D(), "opens_within") {
			if at, _, ok := c.anchor(p, o.After, false, phases); ok {
				out = append(out, &verdict.Transition{Name: fmt.Sprintf("breaker %s opens within %s of %s", o.Breaker, o.OpensWithin, at),
					Subject: o.Breaker, What: "breaker " + o.Breaker + " opened", Types: []string{verdict.EvBreakerOpen, verdict.EvBreakerForcedOpen},
					After: at, Within: o.OpensWithin.D()})
			}
		}
	}
	if o.ClosesWithin != 0 {
		any = true
		if positive(c, p+".closes_within", o.ClosesWithin.D(), "closes_within") {
			if at, _, ok := c.anchor(p, o.After, true, phases); ok {
				out = append(out, &verdict.Transition{Name: fmt.Sprintf("breaker %s closes within %s of %s", o.Breaker, o.ClosesWithin, at),
					Subject: o.Breaker, What: "breaker " + o.Breaker + " closed", Types: []string{verdict.EvBreakerClose},
					After: at, Within: o.ClosesWithin.D()})
			}
		}
	}
	if o.HalfOpenProbes != nil {
		any = true
		if *o.HalfOpenProbes < 0 {
			c.errorf(p+".half_open_probes", "half_open_probes must not be negative")
		} else {
			out = append(out, &verdict.Probes{Name: fmt.Sprintf("breaker %s half-open probes <= %d", o.Breaker, *o.HalfOpenProbes),
				Subject: o.Breaker, Max: int64(*o.HalfOpenProbes)})
		}
	}
	if o.BlocksWhileOpen {
		any = true
		out = append(out, &verdict.Blocked{Name: fmt.Sprintf("no requests reach %s while its breaker is open", o.Breaker), Subject: o.Breaker})
	}
	if !any {
		c.errorf(p+".breaker", "say what to judge: opens_within, closes_within, half_open_probes or blocks_while_open")
	}
	return out
}

func (c *compiler) outlier(p string, o scenarios.Objective, phases map[string]bool) []verdict.Objective {
	m := targetRE.FindStringSubmatch(o.Outlier)
	if m == nil || c.ups[m[1]] == nil {
		c.errorf(p+".outlier", "%q must name an upstream (%s) or one replica such as api[0]", o.Outlier, strings.Join(c.upstreamNames(), ", "))
		return nil
	}
	if m[2] != "" {
		if i, _ := strconv.Atoi(m[2]); i >= c.ups[m[1]].Replicas {
			c.errorf(p+".outlier", "upstream %q has %d replica(s): index %d does not exist", m[1], c.ups[m[1]].Replicas, i)
			return nil
		}
	}
	c.checkGatewayFeature(p+".outlier", "outlier ejections")
	if !c.gatewayHas(m[1], "outlier") {
		c.errorf(p+".outlier", "upstream %q has no outlier detection (gateway.upstreams[].outlier): no replica of it is ever ejected, so this objective has nothing to judge", m[1])
		return nil
	}
	var out []verdict.Objective
	any := false
	if o.EjectsWithin != 0 {
		any = true
		if positive(c, p+".ejects_within", o.EjectsWithin.D(), "ejects_within") {
			if at, _, ok := c.anchor(p, o.After, false, phases); ok {
				out = append(out, &verdict.Transition{Name: fmt.Sprintf("%s is ejected within %s of %s", o.Outlier, o.EjectsWithin, at),
					Subject: o.Outlier, What: o.Outlier + " was ejected", Types: []string{verdict.EvOutlierEject}, After: at, Within: o.EjectsWithin.D()})
			}
		}
	}
	if o.ReturnsWithin != 0 {
		any = true
		if positive(c, p+".returns_within", o.ReturnsWithin.D(), "returns_within") {
			if at, _, ok := c.anchor(p, o.After, true, phases); ok {
				out = append(out, &verdict.Transition{Name: fmt.Sprintf("%s returns within %s of %s", o.Outlier, o.ReturnsWithin, at),
					Subject: o.Outlier, What: o.Outlier + " returned", Types: []string{verdict.EvOutlierUneject}, After: at, Within: o.ReturnsWithin.D()})
			}
		}
	}
	if o.BlocksWhileEjected {
		any = true
		out = append(out, &verdict.Blocked{Name: fmt.Sprintf("no requests reach %s while ejected", o.Outlier), Subject: o.Outlier, Ejection: true})
	}
	if !any {
		c.errorf(p+".outlier", "say what to judge: ejects_within, returns_within or blocks_while_ejected")
	}
	return out
}

func (c *compiler) scaling(p string, o scenarios.Objective, phases map[string]bool) []verdict.Objective {
	var spec *autoscale.Settings
	for i := range c.p.Autoscale {
		if c.p.Autoscale[i].Upstream == o.Autoscale {
			spec = &c.p.Autoscale[i]
		}
	}
	if spec == nil {
		var have []string
		for _, a := range c.p.Autoscale {
			have = append(have, a.Upstream)
		}
		c.errorf(p+".autoscale", "no autoscaler for %q (autoscale: declares %s)", o.Autoscale, orNone(have))
		return nil
	}
	oracle := spec.Mode == autoscale.ModeOracle
	base := verdict.Scaling{Upstream: o.Autoscale, Spec: *spec, Oracle: oracle}
	who := o.Autoscale
	if oracle {
		who += " (oracle)"
	}
	var out []verdict.Objective
	any := false
	if o.ScalesUpWithin != 0 {
		any = true
		if positive(c, p+".scales_up_within", o.ScalesUpWithin.D(), "scales_up_within") {
			if at, _, ok := c.anchor(p, o.After, false, phases); ok {
				s := base
				s.Assert, s.After, s.Within = verdict.ScalesUpWithin, at, o.ScalesUpWithin.D()
				s.Name = fmt.Sprintf("%s scales up within %s of %s", who, o.ScalesUpWithin, at)
				out = append(out, &s)
			}
		}
	}
	if o.Reaches != "" {
		any = true
		n := spec.Max
		if o.Reaches != "max" {
			v, err := strconv.Atoi(o.Reaches)
			if err != nil || v < 1 {
				c.errorf(p+".reaches", "reaches is a replica count or \"max\", got %q", o.Reaches)
				return out
			}
			if v > spec.Max {
				c.errorf(p+".reaches", "%d is above the autoscaler's max_replicas (%d): it can never be reached", v, spec.Max)
				return out
			}
			n = v
		}
		if u := c.ups[o.Autoscale]; u != nil && n <= u.Replicas {
			c.warnf(p+".reaches", "%s starts with %d replicas: reaches %d holds before any scaling; give a count above %d to judge a scale-up", o.Autoscale, u.Replicas, n, u.Replicas)
		}
		s := base
		s.Assert, s.N = verdict.Reaches, n
		s.Name = fmt.Sprintf("%s reaches %d replicas", who, n)
		out = append(out, &s)
	}
	if o.DirectionChanges != nil {
		any = true
		if *o.DirectionChanges < 0 {
			c.errorf(p+".direction_changes", "direction_changes must not be negative")
			return out
		}
		s := base
		s.Assert, s.N = verdict.DirectionChanges, *o.DirectionChanges
		s.Name = fmt.Sprintf("%s changes direction <= %d times", who, *o.DirectionChanges)
		out = append(out, &s)
	}
	if o.NoDeadBand {
		any = true
		s := base
		s.Assert = verdict.NoDeadBand
		s.Name = fmt.Sprintf("%s metric never sits above target inside the tolerance", who)
		out = append(out, &s)
	}
	if !any {
		c.errorf(p+".autoscale", "say what to judge: scales_up_within, reaches, direction_changes or no_dead_band")
	}
	return out
}

func (c *compiler) cascadeObjective(p string, o scenarios.Objective) []verdict.Objective {
	if len(c.p.Layers) == 0 {
		c.errorf(p+".cascade", "the scenario declares no timeouts to judge")
		return nil
	}
	expect := o.Cascade
	if expect == "innermost" {
		expect = c.p.Layers[len(c.p.Layers)-1].Name
	} else {
		found := false
		var names []string
		for _, l := range c.p.Layers {
			names = append(names, l.Name)
			found = found || l.Name == expect
		}
		if !found {
			c.errorf(p+".cascade", "%q is not a layer that declares a timeout here (innermost, %s)", o.Cascade, strings.Join(names, ", "))
			return nil
		}
	}
	if o.Tolerance < 0 {
		c.errorf(p+".tolerance", "tolerance must not be negative")
		return nil
	}
	phase := o.Phase
	if phase == RunPhase {
		phase = ""
	}
	name := "timeouts answered by " + expect
	if phase != "" {
		name = phase + ": " + name
	}
	return []verdict.Objective{&verdict.Cascade{Name: name, Phase: phase, Layers: c.p.Layers, Expect: expect, Tolerance: o.Tolerance.D()}}
}

func (c *compiler) gatewayAdds(p string, o scenarios.Objective) []verdict.Objective {
	t, err := verdict.ParseThreshold(o.GatewayAdds, "")
	if err != nil {
		c.errorf(c.exprPath(p, "gateway_adds"), "%v", err)
		return nil
	}
	if t.UsesUpstreams() || t.UsesEvents() {
		c.errorf(p+".gateway_adds", "gateway_adds compares what the client saw on both paths: use a latency, error rate or cause metric")
		return nil
	}
	if c.p.Direct <= 0 {
		c.errorf(p+".gateway_adds", "gateway_adds needs direct load to compare with: set load.direct, e.g. direct: 50%%")
		return nil
	}
	return []verdict.Objective{&verdict.GatewayAdds{Name: "gateway adds: " + o.GatewayAdds, T: t}}
}

// needsHeader names the upstream header each upstream metric reads, as
// listed in a route's propagate: a route that does not send it leaves
// the metric nothing to count.
var needsHeader = map[string]string{
	"retries": gateway.PropagateAttempt, "non_idempotent_retries": gateway.PropagateAttempt,
	"late_attempts": gateway.PropagateDeadline, "orphans": gateway.PropagateDeadline,
	"orphan_rate": gateway.PropagateDeadline, "orphan_time": gateway.PropagateDeadline,
}

// propagationLint warns when a route's propagate list leaves out the
// header an objective's metric is counted from.
func (c *compiler) propagationLint(path, metric string) {
	need, ok := needsHeader[metric]
	if !ok || c.p.Gateway == nil {
		return
	}
	for _, r := range c.p.Gateway.Routes {
		if len(r.Propagate) > 0 && !slices.Contains(r.Propagate, need) {
			c.warnf(path, "%s is counted from the %s header, which route %s does not send upstream (propagate: %v): its requests count as none",
				metric, need, r.Path, r.Propagate)
		}
	}
}

// hasOpenModel reports whether the load has an arrival-rate executor: the
// only kind with a target rate.
func hasOpenModel(cfg loadgen.Config) bool {
	if len(cfg.Executors) == 0 {
		return cfg.Kind != loadgen.VUs
	}
	for _, e := range cfg.Executors {
		if e.Kind != loadgen.VUs {
			return true
		}
	}
	return false
}

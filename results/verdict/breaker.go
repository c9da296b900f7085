package verdict

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/results"
)

// Event contracts the gateway fulfils (see gateway/doc.go): breaker
// transitions are events named for the state entered, with the upstream as
// Target; outlier ejections name the endpoint as "upstream[host:port]" with
// an "addr" attr.
const (
	EvBreakerOpen       = "breaker.open"
	EvBreakerHalfOpen   = "breaker.half_open"
	EvBreakerClose      = "breaker.close"
	EvBreakerForcedOpen = "breaker.forced_open"
	EvBreakerDisabled   = "breaker.disabled"
	EvOutlierEject      = "outlier.eject"
	EvOutlierUneject    = "outlier.uneject"
)

// DefaultSlack is how long after a breaker opens (or a replica is ejected)
// requests may still land: the ones the gateway had already sent.
const DefaultSlack = 5 * time.Millisecond

// subject names what a breaker or outlier objective is about: an upstream
// ("payments") or one replica ("api[1]").
type subject struct {
	upstream string
	replica  string // "" for the whole upstream
}

func parseSubject(s string) subject {
	if i := strings.IndexByte(s, '['); i > 0 && strings.HasSuffix(s, "]") {
		return subject{upstream: s[:i], replica: s}
	}
	return subject{upstream: s}
}

func (s subject) String() string {
	if s.replica != "" {
		return s.replica
	}
	return s.upstream
}

// matches says whether an event is about the subject. A replica is named by
// its index in the scenario and by its address in the gateway's events; the
// upstream records map one to the other.
func (s subject) matches(in *Input, e event.Event) bool {
	if !targets(e, s.upstream) {
		return false
	}
	if s.replica == "" || e.Target == s.replica {
		return true
	}
	addr := replicaAddr(in, s.replica)
	return addr != "" && (e.Target == s.upstream+"["+addr+"]" || e.Attr("addr") == addr)
}

func (s subject) events(in *Input, types ...string) []event.Event {
	var out []event.Event
	for _, e := range eventsOf(in, s.upstream, types...) {
		if s.matches(in, e) {
			out = append(out, e)
		}
	}
	return out
}

// Transition asserts that an event (a breaker opening, a replica being
// ejected) happens within a bound of an anchor (a fault's onset or end):
// `opens_within`, `closes_within`, `ejects_within`, `returns_within`.
type Transition struct {
	Name    string
	Subject string   // upstream or replica
	What    string   // how evidence names the transition: "breaker payments opened"
	Types   []string // the events that count
	After   Anchor
	Within  time.Duration
}

// Evaluate implements Objective.
func (tr *Transition) Evaluate(in *Input) results.ObjectiveResult {
	r := results.ObjectiveResult{Name: tr.Name, Phase: "run", Expr: tr.Name, Bound: "<= " + FormatDuration(tr.Within)}
	t0, anchorEv, ok := tr.After.Resolve(in)
	if !ok {
		r.Evidence = anchorEv
		return r
	}
	sub := parseSubject(tr.Subject)
	evs := sub.events(in, tr.Types...)
	r.Facts = map[string]float64{"anchor_s": t0.Seconds(), "events": float64(len(evs))}
	for _, e := range evs {
		if e.T < t0 {
			continue
		}
		d := e.T - t0
		r.Value, r.Pass = d.Seconds(), d <= tr.Within
		var b string
		r.Measured, b = exactPair(d, tr.Within)
		r.Bound = "<= " + b
		r.Facts["event_s"], r.Facts["delta_s"] = e.T.Seconds(), d.Seconds()
		r.Evidence = fmt.Sprintf("%s; %s at %s (%s%s): after %s", anchorEv, tr.What, secs(e.T), e.Type, attrNote(e), within(d))
		return r
	}
	r.Measured = "never"
	seen := make([]string, 0, len(evs))
	for _, e := range evs {
		seen = append(seen, e.Type+"@"+secs(e.T))
	}
	note := "none at all"
	if len(seen) > 0 {
		note = "only earlier: " + strings.Join(seen, ", ")
	}
	r.Evidence = fmt.Sprintf("%s; no %s event for %s after it (%s)", anchorEv, strings.Join(tr.Types, "/"), sub, note)
	return r
}

// Doomed implements Abortable: once the bound has passed without the event,
// it cannot come in time.
func (tr *Transition) Doomed(in *Input) (bool, string) {
	t0, _, ok := tr.After.Resolve(in)
	if !ok || in.Now <= t0+tr.Within {
		return false, ""
	}
	for _, e := range parseSubject(tr.Subject).events(in, tr.Types...) {
		if e.T >= t0 {
			return false, ""
		}
	}
	return true, fmt.Sprintf("%s: %s has passed %s after %s without it", tr.Name, secs(in.Now), FormatDuration(tr.Within), tr.After)
}

// attrInt reads a numeric attr (an int in memory, a float64 from JSON);
// 0 when absent.
func attrInt(e event.Event, k string) int64 {
	switch v := e.Attrs[k].(type) {
	case int64:
		return v
	case int:
		return int64(v)
	case float64:
		return int64(v)
	}
	return 0
}

// attrNote prints the attrs of a transition that explain it.
func attrNote(e event.Event) string {
	var parts []string
	for _, k := range []string{"reason", "failure_rate", "slow_call_rate", "calls", "consecutive", "ejection_ms"} {
		if v, ok := e.Attrs[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %v", k, v))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return ", " + strings.Join(parts, ", ")
}

// episode is a stretch of time in one state.
type episode struct {
	from, to time.Duration
	target   string
	// admitted is the start event's in_flight attr: calls the gateway had
	// let through (breaker) or sent (ejection) and not finished when the
	// state began, which may still arrive during it.
	admitted int64
}

// episodes pairs each start event with the next end event of the same
// target; an episode still open at the end of the run ends there.
func episodes(evs []event.Event, starts, ends []string, end time.Duration) []episode {
	is := func(t string, set []string) bool {
		for _, s := range set {
			if s == t {
				return true
			}
		}
		return false
	}
	open := map[string]episode{}
	var out []episode
	for _, e := range evs {
		switch {
		case is(e.Type, starts):
			if _, already := open[e.Target]; !already {
				open[e.Target] = episode{from: e.T, target: e.Target, admitted: attrInt(e, "in_flight")}
			}
		case is(e.Type, ends):
			if ep, ok := open[e.Target]; ok {
				ep.to = e.T
				out = append(out, ep)
				delete(open, e.Target)
			}
		}
	}
	for _, ep := range open {
		ep.to = max(end, ep.from)
		out = append(out, ep)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].from < out[j].from })
	return out
}

// Blocked asserts that no request reached the upstream (or replica) while
// the gateway said it would send none: a breaker open, a replica ejected.
// Counted at the upstream, to the millisecond, after a small slack for the
// requests already on their way.
type Blocked struct {
	Name    string
	Subject string
	Max     int64 // requests allowed to slip through (usually 0)
	Slack   time.Duration
	// Ejection: judge outlier ejections instead of breaker open states.
	Ejection bool
}

// Evaluate implements Objective.
func (b *Blocked) Evaluate(in *Input) results.ObjectiveResult {
	r := results.ObjectiveResult{Name: b.Name, Phase: "run", Expr: b.Name, Bound: fmt.Sprintf("<= %d requests", b.Max)}
	if !hasUpstreamRecords(in) {
		r.Evidence = noUpstreamRecords
		return r
	}
	sub := parseSubject(b.Subject)
	slack := b.Slack
	if slack == 0 {
		slack = DefaultSlack
	}
	var eps []episode
	state := "open"
	if b.Ejection {
		state = "ejected"
		eps = episodes(sub.events(in, EvOutlierEject, EvOutlierUneject), []string{EvOutlierEject}, []string{EvOutlierUneject}, runEnd(in))
	} else {
		eps = episodes(sub.events(in, EvBreakerOpen, EvBreakerForcedOpen, EvBreakerHalfOpen, EvBreakerClose, EvBreakerDisabled),
			[]string{EvBreakerOpen, EvBreakerForcedOpen}, []string{EvBreakerHalfOpen, EvBreakerClose, EvBreakerDisabled}, runEnd(in))
	}
	if len(eps) == 0 {
		r.Evidence = fmt.Sprintf("%s was never %s: nothing to judge", sub, state)
		return r
	}
	var total, excused int64
	var spent time.Duration
	var worst episode
	var worstN int64 = -1
	for _, ep := range eps {
		who := sub.replica
		if b.Ejection {
			who = strings.TrimSuffix(strings.TrimPrefix(ep.target, sub.upstream+"["), "]") // the address
		}
		// Only milliseconds wholly inside the state count: a request that
		// arrived in the millisecond the breaker changed state is not
		// evidence against it.
		n := upstreamArrivals(in, sub.upstream, who, ep.from+slack, ep.to, results.Inside)
		// Calls admitted before the breaker opened (or sent before the
		// ejection) may land after the slack on a loaded machine; as many
		// arrivals as there were such calls are not evidence against it.
		excused += min(n, ep.admitted)
		n -= min(n, ep.admitted)
		total += n
		spent += ep.to - ep.from
		if n > worstN {
			worst, worstN = ep, n
		}
	}
	r.Value, r.Measured, r.Pass = float64(total), fmt.Sprintf("%d requests", total), total <= b.Max
	r.Facts = map[string]float64{"episodes": float64(len(eps)), "requests": float64(total), "time_s": spent.Seconds(),
		"first_from_s": eps[0].from.Seconds()}
	r.Evidence = fmt.Sprintf("%s was %s %d time(s) for %s in total (first [%s, %s)); %d requests reached it while %s (after the first %s of each)",
		sub, state, len(eps), FormatDuration(spent), secs(eps[0].from), secs(eps[0].to), total, state, FormatDuration(slack))
	if excused > 0 {
		r.Evidence += fmt.Sprintf(", not counting %d the gateway had sent before", excused)
	}
	if total > 0 {
		r.Evidence += fmt.Sprintf("; most in [%s, %s): %d", secs(worst.from), secs(worst.to), worstN)
	}
	return r
}

// Probes asserts how many requests a breaker lets through in each half-open
// state (its probes): at most Max, counted at the upstream.
type Probes struct {
	Name    string
	Subject string
	Max     int64
}

// Evaluate implements Objective.
func (p *Probes) Evaluate(in *Input) results.ObjectiveResult {
	r := results.ObjectiveResult{Name: p.Name, Phase: "run", Expr: p.Name, Bound: fmt.Sprintf("<= %d per half-open state", p.Max)}
	if !hasUpstreamRecords(in) {
		r.Evidence = noUpstreamRecords
		return r
	}
	sub := parseSubject(p.Subject)
	evs := sub.events(in, EvBreakerOpen, EvBreakerForcedOpen, EvBreakerHalfOpen, EvBreakerClose, EvBreakerDisabled)
	eps := episodes(evs, []string{EvBreakerHalfOpen}, []string{EvBreakerOpen, EvBreakerForcedOpen, EvBreakerClose, EvBreakerDisabled}, runEnd(in))
	if len(eps) == 0 {
		r.Evidence = fmt.Sprintf("breaker %s never went half-open: no probes to judge", sub)
		return r
	}
	var most int64 = -1
	var at episode
	var total int64
	for _, ep := range eps {
		// A probe may land in the millisecond the breaker went half-open
		// (the transition and the probe are one call); after the state
		// ends, traffic resumes within the same millisecond: the window
		// takes the first edge's millisecond whole and the last one not.
		n := upstreamArrivals(in, sub.upstream, sub.replica, ep.from-time.Millisecond, ep.to, results.Inside)
		total += n
		if n > most {
			most, at = n, ep
		}
	}
	r.Value, r.Measured, r.Pass = float64(most), fmt.Sprintf("%d probes", most), most <= p.Max
	r.Facts = map[string]float64{"episodes": float64(len(eps)), "max": float64(most), "total": float64(total), "max_from_s": at.from.Seconds()}
	r.Evidence = fmt.Sprintf("breaker %s was half-open %d time(s); %d requests reached %s in all, at most %d in [%s, %s)",
		sub, len(eps), total, sub.upstream, most, secs(at.from), secs(at.to))
	return r
}

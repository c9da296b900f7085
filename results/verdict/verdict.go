// Package verdict evaluates a scenario's objectives against what a run
// recorded. It is cascade's own code because it is the product: every
// objective reports its measured value, its bound and the evidence, and works
// the same on a live run and on a run directory read back from disk.
package verdict

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/results"
)

// Input is what objectives are evaluated on: everything a run directory
// holds, so a verdict is the same live and offline.
type Input struct {
	Summary   *results.Summary
	Phases    map[string]*Phase // by name, "run" included
	Events    []event.Event
	Intervals []results.IntervalRecord
	// Upstreams is what cascade's fake upstreams saw (upstreams.jsonl).
	Upstreams []results.UpstreamRecord
	// Direct is the load sent straight to the upstreams, bypassing the
	// gateway (layer attribution); nil when the scenario sends none.
	Direct *Phase
	// Now is how far a run in progress has got (abort checks); zero once
	// the run is over.
	Now time.Duration
	// Planned is how many requests the whole profile schedules (abort
	// checks on rates).
	Planned float64
	// Open are a run's intervals still open (abort checks): the samples
	// answered so far of requests intended in them. Only what can only grow
	// (a count, the maximum, failures against the planned total) is judged
	// on them; a window's rate or quantile could still move either way.
	Open []results.IntervalRecord

	ivs   []interval // intervals decoded on first use
	ivErr error
	soFar *Input // Intervals and Open, decoded on first use
}

// intervalsSoFar is intervals() with the open intervals added.
func (in *Input) intervalsSoFar() ([]interval, error) {
	if len(in.Open) == 0 {
		return in.intervals()
	}
	if in.soFar == nil {
		in.soFar = &Input{Intervals: append(append([]results.IntervalRecord(nil), in.Intervals...), in.Open...)}
	}
	return in.soFar.intervals()
}

// Phase is a phase's recorded data.
type Phase struct {
	Summary results.PhaseSummary
	Stats   *results.Stats
}

// NewInput decodes a summary's histograms for evaluation.
func NewInput(s *results.Summary, events []event.Event, intervals []results.IntervalRecord) (*Input, error) {
	in := &Input{Summary: s, Phases: map[string]*Phase{}, Events: events, Intervals: intervals}
	for _, p := range append([]results.PhaseSummary{s.Run}, s.Phases...) {
		st, err := p.Stats.Stats()
		if err != nil {
			return nil, fmt.Errorf("phase %s: %w", p.Name, err)
		}
		in.Phases[p.Name] = &Phase{Summary: p, Stats: st}
	}
	if s.Direct != nil {
		st, err := s.Direct.Stats.Stats()
		if err != nil {
			return nil, fmt.Errorf("direct load: %w", err)
		}
		in.Direct = &Phase{Summary: *s.Direct, Stats: st}
	}
	return in, nil
}

// Objective is one thing a scenario asserts about a run.
type Objective interface {
	// Evaluate judges the run. It never fails: missing data is a failed
	// objective whose evidence says what was missing.
	Evaluate(in *Input) results.ObjectiveResult
}

// Evaluate runs every objective and reports whether all passed.
func Evaluate(objs []Objective, in *Input) ([]results.ObjectiveResult, bool) {
	out := make([]results.ObjectiveResult, 0, len(objs))
	pass := true
	for _, o := range objs {
		r := o.Evaluate(in)
		pass = pass && r.Pass
		out = append(out, r)
	}
	return out, pass
}

// Op is a comparison.
type Op string

// Comparisons an objective can use.
const (
	LT Op = "<"
	LE Op = "<="
	GT Op = ">"
	GE Op = ">="
	EQ Op = "=="
	NE Op = "!="
)

func (o Op) holds(a, b float64) bool {
	const eps = 1e-12
	switch o {
	case LT:
		return a < b
	case LE:
		return a <= b+eps
	case GT:
		return a > b
	case GE:
		return a >= b-eps
	case EQ:
		return math.Abs(a-b) <= eps
	case NE:
		return math.Abs(a-b) > eps
	}
	return false
}

// unit says how a metric's value is written and compared.
type unit int

const (
	unitDuration unit = iota // compared in seconds
	unitFraction             // 0..1, written as a percentage
	unitCount
	unitRate  // per second
	unitRatio // a plain ratio such as an amplification, written "1.21x"
)

// Threshold compares one metric of one phase with a bound: "p99 < 300ms",
// "gateway_timeout_rate < 1%", "achieved_rate >= 99%", "amplification <= 1.5".
type Threshold struct {
	Name  string
	Phase string
	Expr  string
	// Upstream restricts the upstream metrics (amplification, orphans...)
	// and event counts (breaker_opens...) to one upstream; "" is all.
	Upstream string
	// ClientTags are the request tags whose route goes to Upstream:
	// amplification divides by how many of them were sent in the span. nil
	// means every request goes there.
	ClientTags []string
	// ClientShare is the share of the client's request mix (by weight) that
	// goes to Upstream; 0 means all. An estimate, used only where the sent
	// requests were not counted per tag: rolling windows, and run
	// directories from before they were.
	ClientShare float64
	metric      metric
	op          Op
	bound       float64
	unit        unit
	// relative: the bound is a fraction of the target rate (achieved_rate >= 99%).
	relative bool
}

type metric struct {
	name     string
	unit     unit
	quantile float64     // for latency quantiles, 0..100
	series   string      // "latency", "service", "lag"
	cause    cause.Cause // for cause rates and counts
	stat     string      // "quantile", "max", "min", "mean", "error_rate", "cause_rate", "cause_count", ...
	// source says where the value comes from: "" the client's samples,
	// "upstream" the upstreams' own records, "events" the event stream.
	source string
	event  string // for event counts: the event type
}

// ParseThreshold parses "<metric> <op> <value>". phase is "" for the whole run.
func ParseThreshold(expr, phase string) (*Threshold, error) {
	fields := strings.Fields(expr)
	if len(fields) != 3 {
		// Allow "p99<300ms" without spaces.
		fields = splitCompact(expr)
	}
	if len(fields) != 3 {
		return nil, fmt.Errorf("objective %q: expected \"<metric> <op> <value>\" such as \"p99 < 300ms\"", expr)
	}
	m, err := parseMetric(fields[0])
	if err != nil {
		return nil, fmt.Errorf("objective %q: %w", expr, err)
	}
	op := Op(fields[1])
	switch op {
	case LT, LE, GT, GE, EQ, NE:
	default:
		return nil, fmt.Errorf("objective %q: unknown comparison %q (use <, <=, >, >=, ==, !=)", expr, fields[1])
	}
	t := &Threshold{Phase: phase, Expr: expr, metric: m, op: op, unit: m.unit}
	v := fields[2]
	switch m.unit {
	case unitDuration:
		d, err := units.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("objective %q: %s is a latency: %w", expr, m.name, err)
		}
		t.bound = d.D().Seconds()
	case unitFraction:
		if err := percentSign(m.name, v); err != nil {
			return nil, fmt.Errorf("objective %q: %w", expr, err)
		}
		p, err := units.ParsePercent(v)
		if err != nil {
			return nil, fmt.Errorf("objective %q: %s is a rate of requests: %w", expr, m.name, err)
		}
		t.bound = p.F()
	case unitCount:
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || !(n >= 0) || math.IsInf(n, 0) { // NaN would make every comparison false
			return nil, fmt.Errorf("objective %q: %s is a count: expected a number, got %q", expr, m.name, v)
		}
		if n != math.Trunc(n) {
			return nil, fmt.Errorf("objective %q: %s is a count: expected a whole number, got %s", expr, m.name, v)
		}
		t.bound = n
	case unitRatio:
		n, err := strconv.ParseFloat(strings.TrimSuffix(v, "x"), 64)
		if err != nil || !(n >= 0) || math.IsInf(n, 0) {
			return nil, fmt.Errorf("objective %q: %s is a ratio: expected a number such as 1.5, got %q", expr, m.name, v)
		}
		t.bound = n
	case unitRate:
		if strings.HasSuffix(v, "%") {
			p, err := units.ParsePercent(v)
			if err != nil {
				return nil, fmt.Errorf("objective %q: %w", expr, err)
			}
			t.bound, t.relative = p.F(), true
		} else {
			if _, err := strconv.ParseFloat(v, 64); err != nil && !strings.Contains(v, "/") {
				// "195rps": suggesting "195rps/s" read as nonsense.
				return nil, fmt.Errorf("objective %q: %s is a rate or a share of the target rate: expected e.g. 195/s or 98%%, got %q", expr, m.name, v)
			}
			if !strings.Contains(v, "/") {
				// A bare number is ambiguous: "achieved_rate >= 98" meant as
				// 98% passed at 98/s, and 0.98 (a fraction, as error_rate
				// reads it) passed any run sending one request a second.
				share := v
				if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 && f <= 1 {
					// 0.98 is a fraction (as error_rate reads one):
					// "0.98%" would pass a run that sent next to nothing.
					share = strconv.FormatFloat(math.Round(f*100*1e9)/1e9, 'f', -1, 64)
				}
				return nil, fmt.Errorf("objective %q: %s needs a unit: write %s/s for a rate, or %s%% for a share of the target rate", expr, m.name, v, share)
			}
			r, err := units.ParseRate(v)
			if err != nil {
				return nil, fmt.Errorf("objective %q: %s is a rate: %w (or a percentage of the target rate)", expr, m.name, err)
			}
			t.bound = r.PerSecond()
		}
	}
	if err := t.satisfiable(); err != nil {
		return nil, fmt.Errorf("objective %q: %w", expr, err)
	}
	t.Name = expr
	if phase != "" {
		t.Name = phase + ": " + expr
	}
	return t, nil
}

// percentSign refuses a rate of requests written as a bare number other
// than 0: "error_rate < 1" read as the fraction 1 is a bound of 100%, which
// every run but a total outage passes, and "error_rate < 0.5" is 50%, when
// 1% and 0.5% were meant. A threshold says which with a % sign.
func percentSign(metric, v string) error {
	v = strings.TrimSpace(v)
	if strings.HasSuffix(v, "%") {
		return nil
	}
	if f, err := strconv.ParseFloat(v, 64); err != nil || f <= 0 {
		return nil // 0 is 0% either way; a malformed or negative number gets ParsePercent's error
	} else if f <= 1 {
		return fmt.Errorf("%s is a rate of requests: write %s with a %% sign (as a fraction, %s would be %s, not %s%%)", metric, v, v, FormatPercent(f), v)
	}
	return fmt.Errorf("%s is a rate of requests: write it with a %% sign, e.g. %s%%", metric, v)
}

// satisfiable refuses a bound no run can meet: every metric is at least 0,
// and a request's latency is more than 0.
func (t *Threshold) satisfiable() error {
	if t.bound == 0 && t.op == LT {
		return fmt.Errorf("%s is never below 0: this can never pass", t.metric.name)
	}
	if t.bound == 0 && t.op == LE && t.unit == unitDuration && (t.metric.series == "latency" || t.metric.series == "service") {
		return fmt.Errorf("a request's %s is always above 0: this can never pass", t.metric.name)
	}
	if t.unit == unitFraction && t.op == GT && t.bound >= 1 {
		return fmt.Errorf("%s is never above 100%%: this can never pass", t.metric.name)
	}
	return nil
}

func splitCompact(expr string) []string {
	for _, op := range []string{"<=", ">=", "==", "!=", "<", ">"} {
		if i := strings.Index(expr, op); i > 0 {
			return []string{strings.TrimSpace(expr[:i]), op, strings.TrimSpace(expr[i+len(op):])}
		}
	}
	return nil
}

// MetricNames lists what a threshold can name, for help and errors.
func MetricNames() []string {
	out := []string{"p50", "p90", "p95", "p99", "p99.9", "p(N)", "max", "min", "mean",
		"service_p99 (uncorrected latency)", "lag_p99 (scheduling lag)",
		"error_rate", "errors", "requests", "achieved_rate", "<cause>_rate", "<cause>_count",
		"amplification", "upstream_requests", "retries", "non_idempotent_retries", "late_attempts",
		"orphans", "orphan_rate", "orphan_time", "breaker_opens", "ejections"}
	return out
}

// upstreamMetrics are measured where requests land, from upstreams.jsonl.
var upstreamMetrics = map[string]metric{
	"amplification":          {unit: unitRatio, stat: "amplification"},
	"upstream_requests":      {unit: unitCount, stat: "upstream_requests"},
	"retries":                {unit: unitCount, stat: "retries"},
	"non_idempotent_retries": {unit: unitCount, stat: "non_idempotent_retries"},
	"late_attempts":          {unit: unitCount, stat: "late_attempts"},
	"orphans":                {unit: unitCount, stat: "orphans"},
	"orphan_rate":            {unit: unitFraction, stat: "orphan_rate"},
	"orphan_time":            {unit: unitDuration, stat: "orphan_time"},
}

// eventMetrics count events of one type.
var eventMetrics = map[string]string{
	"breaker_opens": "breaker.open",
	"ejections":     "outlier.eject",
}

func parseMetric(s string) (metric, error) {
	if m, ok := upstreamMetrics[s]; ok {
		m.name, m.source = s, "upstream"
		return m, nil
	}
	if typ, ok := eventMetrics[s]; ok {
		return metric{name: s, unit: unitCount, stat: "events", source: "events", event: typ}, nil
	}
	series := "latency"
	name := s
	for _, p := range []string{"service_", "lag_"} {
		if strings.HasPrefix(name, p) {
			series = strings.TrimSuffix(p, "_")
			name = strings.TrimPrefix(name, p)
		}
	}
	if strings.HasPrefix(name, "p(") != strings.HasSuffix(name, ")") {
		return metric{}, fmt.Errorf("quantile %q: unbalanced parenthesis (write p99, p99.9 or p(99.9))", s)
	}
	if q, ok := parseQuantile(name); ok {
		return metric{name: s, unit: unitDuration, quantile: q, series: series, stat: "quantile"}, nil
	}
	switch name {
	case "max", "min", "mean":
		return metric{name: s, unit: unitDuration, series: series, stat: name}, nil
	}
	if series != "latency" {
		return metric{}, fmt.Errorf("unknown metric %q", s)
	}
	switch s {
	case "error_rate":
		return metric{name: s, unit: unitFraction, stat: "error_rate"}, nil
	case "errors":
		return metric{name: s, unit: unitCount, stat: "errors"}, nil
	case "requests":
		return metric{name: s, unit: unitCount, stat: "requests"}, nil
	case "achieved_rate":
		return metric{name: s, unit: unitRate, stat: "achieved_rate"}, nil
	}
	if base, ok := strings.CutSuffix(s, "_rate"); ok {
		if c, ok := cause.Parse(base); ok {
			return metric{name: s, unit: unitFraction, cause: c, stat: "cause_rate"}, clientSees(s, c)
		}
	}
	if base, ok := strings.CutSuffix(s, "_count"); ok {
		if c, ok := cause.Parse(base); ok {
			return metric{name: s, unit: unitCount, cause: c, stat: "cause_count"}, clientSees(s, c)
		}
	}
	return metric{}, fmt.Errorf("unknown metric %q (valid: %s; causes: %s)", s,
		strings.Join(MetricNames(), ", "), strings.Join(cause.Names(), ", "))
}

// clientSees refuses a cause the client's requests can never end in, so a
// metric of it is always 0: client_gone is the gateway's record that the
// client left first (the 499 goes to nobody).
func clientSees(metric string, c cause.Cause) error {
	if c == cause.ClientGone {
		return fmt.Errorf("%s is always 0: client_gone is what the gateway records when the client left first (in access.jsonl and events); the client never receives it. Judge client_timeout_rate (the client gave up) or orphans (work that went on after)", metric)
	}
	return nil
}

// parseQuantile reads "p99", "p99.9", "p999" (=99.9), "p(99.9)".
func parseQuantile(s string) (float64, bool) {
	if !strings.HasPrefix(s, "p") || len(s) < 2 {
		return 0, false
	}
	v := strings.TrimSuffix(strings.TrimPrefix(s[1:], "("), ")")
	if v == "999" {
		return 99.9, true
	}
	q, err := strconv.ParseFloat(v, 64)
	// Written so that NaN fails too: p(nan) compared false both ways, was
	// accepted, and judged a quantile that does not exist.
	if err != nil || !(q > 0 && q <= 100) {
		return 0, false
	}
	return q, true
}

// UsesUpstreams says whether the metric is measured at the upstreams.
func (t *Threshold) UsesUpstreams() bool { return t.metric.source == "upstream" }

// MetricName is the metric judged, as written ("p99", "late_attempts").
func (t *Threshold) MetricName() string { return t.metric.name }

// UsesEvents says whether the metric counts events.
func (t *Threshold) UsesEvents() bool { return t.metric.source == "events" }

// RelativeToTarget says whether the bound is a share of the target rate
// (achieved_rate >= 99%), which only an open model has.
func (t *Threshold) RelativeToTarget() bool { return t.relative }

// OfLag says whether the metric is the scheduling lag (lag_p99), which
// only an open model has: a VU's request is due when it is sent.
func (t *Threshold) OfLag() bool { return t.metric.series == "lag" }

// Windowable says whether the metric can be judged on interval data (for
// rolling windows and early aborts): not the scheduling lag, which intervals
// do not keep, and not a rate relative to the profile's target.
func (t *Threshold) Windowable() error {
	if t.metric.series == "lag" {
		return fmt.Errorf("%s: intervals do not keep the scheduling lag", t.metric.name)
	}
	if t.relative {
		return fmt.Errorf("achieved_rate as a percentage of the target needs the whole phase; give an absolute rate such as 190/s")
	}
	return nil
}

// span is what a threshold is measured on: client stats over a window.
type span struct {
	st       *results.Stats
	from, to time.Duration
	label    string  // "phase run [0.0s, 10.0s)"
	achieved float64 // sent per second
	// openAchieved is the open-model executors' sent per second when
	// closed-model ones ran beside them (nil: achieved is all open, or
	// there is no target): what the target rate is compared with.
	openAchieved *float64
	targetRate   float64 // per second, 0 when unknown
	// sliver: the run stopped less than an interval into the span, which
	// keeps no rate for it.
	sliver bool
	// sentByTag counts the span's sent requests per tag (nil when not
	// counted: one tag, a rolling window).
	sentByTag map[string]int64
	// upstreamTo, when after to, is where the counts made at the upstreams
	// end: the attempts of a window's last requests (a retry after a
	// timeout, after backoff) land after its last send.
	upstreamTo time.Duration
}

// afterEverything ends a span's upstream counts at the last record.
const afterEverything = time.Duration(1<<63 - 1)

// Evaluate implements Objective.
func (t *Threshold) Evaluate(in *Input) results.ObjectiveResult {
	phase := t.Phase
	if phase == "" {
		phase = "run"
	}
	r := results.ObjectiveResult{Name: t.Name, Phase: phase, Expr: t.Expr, Bound: t.op.String() + " " + t.format(t.bound)}
	p, ok := in.Phases[phase]
	if !ok {
		r.Evidence = fmt.Sprintf("phase %q was not recorded (phases: %s)", phase, strings.Join(phaseNames(in), ", "))
		return r
	}
	sum := p.Summary
	sp := span{st: p.Stats, from: sum.Start.D(), to: sum.End.D(),
		label:    phaseLabel(phase, sum),
		achieved: sum.Stats.AchievedRate, openAchieved: sum.Stats.OpenAchievedRate, targetRate: sum.Stats.TargetRate, sentByTag: sum.SentByTag,
		sliver: sum.Cut() && sum.End-sum.Start < 1}
	if phase == "run" {
		// Every attempt the upstreams recorded was made for one of the
		// run's requests, however late it landed. A phase's counts stop at
		// its end: its last requests' retries are credited to the next
		// phase (an arrival does not say when its client request was sent).
		sp.upstreamTo = afterEverything
	}
	v, ev, facts, ok := t.measure(in, sp)
	r.Evidence, r.Facts = ev, facts
	if !ok {
		return r
	}
	r.Value = v
	r.Measured = t.format(v)
	r.Pass = t.op.holds(v, t.bound)
	if m, b := t.exact(v); m != "" {
		r.Measured, r.Bound = m, t.op.String()+" "+b
	}
	return r
}

// exact prints the value and the bound with more digits when the usual
// ones print them alike but they differ: "FAIL measured 188.8ms (bound <
// 188.8ms)" reads as a wrong verdict. "" when the usual digits tell them
// apart.
func (t *Threshold) exact(v float64) (measured, bound string) {
	if v == t.bound || t.format(v) != t.format(t.bound) {
		return "", ""
	}
	return t.formatExact(v), t.formatExact(t.bound)
}

// formatExact is format to the precision the data has: microseconds for
// latencies, four decimals for percentages, rates and ratios.
func (t *Threshold) formatExact(v float64) string {
	switch t.unit {
	case unitDuration:
		return FormatDurationExact(time.Duration(math.Round(v * 1e9)))
	case unitFraction:
		return strconv.FormatFloat(v*100, 'f', 4, 64) + "%"
	case unitRate:
		if t.relative {
			return strconv.FormatFloat(v*100, 'f', 4, 64) + "% of target"
		}
		return strconv.FormatFloat(v, 'f', 4, 64) + "/s"
	case unitRatio:
		return strconv.FormatFloat(v, 'f', 4, 64) + "x"
	}
	return t.format(v)
}

// FormatDurationExact prints a duration to the microsecond, for where
// FormatDuration's three digits would make two different values read alike
// ("1.000312s", "188.799ms").
func FormatDurationExact(d time.Duration) string {
	if d < time.Second && d > -time.Second {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64) + "ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 6, 64) + "s"
}

// exactPair prints a measured duration and its bound, to the microsecond
// when FormatDuration would print them alike though they differ.
func exactPair(d, bound time.Duration) (measured, b string) {
	measured, b = within(d), FormatDuration(bound)
	if d != bound && measured == b {
		measured, b = FormatDurationExact(d), FormatDurationExact(bound)
	}
	return measured, b
}

// measure computes the metric on a span; ok is false when there is nothing
// to measure (evidence says why).
func (t *Threshold) measure(in *Input, sp span) (v float64, evidence string, facts map[string]float64, ok bool) {
	st, window := sp.st, sp.label
	switch t.metric.source {
	case "upstream":
		return t.measureUpstream(in, sp)
	case "events":
		evs := eventsOf(in, t.Upstream, t.metric.event)
		var n int
		var first time.Duration = -1
		for _, e := range evs {
			if e.T >= sp.from && e.T < sp.to {
				n++
				if first < 0 {
					first = e.T
				}
			}
		}
		ev := fmt.Sprintf("%d %s events in %s", n, t.metric.event, window)
		f := map[string]float64{"count": float64(n)}
		if first >= 0 {
			ev += ", first at " + secs(first)
			f["first_s"] = first.Seconds()
		}
		return float64(n), ev, f, true
	}
	n := st.Sent()
	switch t.metric.stat {
	case "quantile", "max", "min", "mean":
		h := st.Latency
		switch t.metric.series {
		case "service":
			h = st.Service
		case "lag":
			h = st.Lag
		}
		if h == nil || h.TotalCount() == 0 {
			if t.metric.series == "lag" && n > 0 {
				// A mixed load's closed-model requests keep no lag.
				return 0, fmt.Sprintf("no open-model request was sent in %s: the %d sent were closed-model (VU) requests, which have no scheduling lag", window, n), nil, false
			}
			return 0, "no requests were sent in " + window, nil, false
		}
		switch t.metric.stat {
		case "quantile":
			v = results.Quantile(h, t.metric.quantile).Seconds()
		case "max":
			v = float64(h.Max()) / 1e6
		case "min":
			v = float64(h.Min()) / 1e6
		case "mean":
			v = h.Mean() / 1e6
		}
		unsent := ""
		if d := st.Causes[cause.Dropped]; d > 0 && t.metric.series != "lag" {
			// A latency is measured on what was sent: with most of a phase
			// dropped, "p99 < 600ms" passed on the few that went out, and
			// nothing beside it said so.
			unsent = fmt.Sprintf(" (and %d dropped, never sent: no latency, not in the %s; see error_rate)", d, t.metric.name)
		}
		return v, fmt.Sprintf("%s over %d requests in %s%s", t.metric.name, h.TotalCount(), window, unsent),
			map[string]float64{"requests": float64(h.TotalCount())}, true
	case "error_rate":
		total := st.Judged()
		if total == 0 {
			return 0, "no requests in " + window, nil, false
		}
		v = float64(st.Errors()) / float64(total)
		return v, fmt.Sprintf("%d of %d requests failed in %s%s", st.Errors(), total, window, topCauses(st)),
			map[string]float64{"errors": float64(st.Errors()), "requests": float64(total)}, true
	case "cause_rate":
		total := st.Judged()
		if total == 0 {
			return 0, "no requests in " + window, nil, false
		}
		k := st.Causes[t.metric.cause]
		v = float64(k) / float64(total)
		return v, fmt.Sprintf("%d of %d requests ended in %s in %s", k, total, t.metric.cause, window),
			map[string]float64{"count": float64(k), "requests": float64(total)}, true
	case "cause_count":
		if st.Judged() == 0 {
			// "errors == 0" over a phase the client sent nothing in is
			// true of nothing: like error_rate, it has nothing to judge.
			return 0, "no requests in " + window + ": nothing to judge", nil, false
		}
		k := st.Causes[t.metric.cause]
		return float64(k), fmt.Sprintf("%d requests ended in %s in %s", k, t.metric.cause, window),
			map[string]float64{"count": float64(k)}, true
	case "errors":
		if st.Judged() == 0 {
			return 0, "no requests in " + window + ": nothing to judge", nil, false
		}
		return float64(st.Errors()), fmt.Sprintf("%d errors in %s%s", st.Errors(), window, topCauses(st)),
			map[string]float64{"count": float64(st.Errors())}, true
	case "requests":
		return float64(n), fmt.Sprintf("%d requests sent in %s", n, window), map[string]float64{"count": float64(n)}, true
	case "achieved_rate":
		v = sp.achieved
		ev := fmt.Sprintf("achieved %.1f/s against a target of %.1f/s in %s", v, sp.targetRate, window)
		if t.relative && sp.openAchieved != nil {
			// Closed-model executors have no target: their requests
			// counted as achieved let an open one that dropped most of
			// its load pass.
			v = *sp.openAchieved
			ev = fmt.Sprintf("open-model executors achieved %.1f/s against their target of %.1f/s in %s (closed-model ones, %.1f/s, have none)",
				v, sp.targetRate, window, sp.achieved-v)
		}
		if t.relative {
			if sp.targetRate == 0 {
				// A run stopped less than an interval into the span keeps no
				// rate for it (1 sent in 5 ms is not 200/s): that is not a
				// profile that scheduled nothing, which the summary's
				// scheduled count would contradict.
				if n := sp.st.Scheduled(); n > 0 && sp.sliver {
					return 0, fmt.Sprintf("%d requests were scheduled in %s: too short a window for a rate (the run stopped in it)", n, window), nil, false
				}
				if sp.st.Sent() > 0 {
					// VUs alone: a closed model sends as fast as it is
					// answered, so it has no target to be a share of
					// (this said "too short a window", of a whole run).
					return 0, fmt.Sprintf("achieved %.1f/s in %s, all from closed-model (VU) executors, which have no target rate: bound the rate itself, e.g. achieved_rate >= %.0f/s", sp.achieved, window, math.Max(1, math.Floor(sp.achieved*0.9))), nil, false
				}
				return 0, "the profile scheduled nothing in " + window, nil, false
			}
			v /= sp.targetRate
		}
		facts := map[string]float64{"achieved_per_s": sp.achieved, "target_per_s": sp.targetRate}
		if sp.openAchieved != nil {
			facts["open_achieved_per_s"] = *sp.openAchieved
		}
		return v, ev, facts, true
	}
	return 0, "unknown metric " + t.metric.name, nil, false
}

// measureUpstream computes a metric the upstreams measured themselves.
func (t *Threshold) measureUpstream(in *Input, sp span) (float64, string, map[string]float64, bool) {
	if !hasUpstreamRecords(in) {
		return 0, noUpstreamRecords, nil, false
	}
	who := "the upstreams"
	if t.Upstream != "" {
		who = t.Upstream
	}
	to, window := sp.to, sp.label
	var late int64 // arrivals after the last send, counted with the span
	if sp.upstreamTo > to {
		to = sp.upstreamTo
		if late = upstreamArrivals(in, t.Upstream, "", sp.to, to, results.Starting); late > 0 {
			sp.label += " and after its last send"
		}
	}
	sum, _ := sumRecords(in, t.Upstream, sp.from, to)
	switch t.metric.stat {
	case "amplification", "upstream_requests":
		arrivals := upstreamArrivals(in, t.Upstream, "", sp.from, to, results.Starting)
		// The direct path's requests (load.direct) are no attempt of the
		// gateway's, and the client requests below are the gateway path's
		// only: both sides leave them out.
		direct := ""
		if sum.DirectArrivals > 0 {
			direct = fmt.Sprintf("; not counting the %d requests load.direct sent straight to %s", sum.DirectArrivals, who)
		}
		if t.metric.stat == "upstream_requests" {
			after := ""
			if late > 0 {
				after = fmt.Sprintf(" (%d of them after its last send)", late)
			}
			return float64(arrivals), fmt.Sprintf("%d requests reached %s in %s%s%s", arrivals, who, window, after, direct),
				map[string]float64{"count": float64(arrivals)}, true
		}
		sent, note := t.clientRequests(sp)
		if sent == 0 {
			return 0, "no client requests" + note + " in " + window, nil, false
		}
		after := ""
		if late > 0 {
			after = fmt.Sprintf(", %d after its last send", late)
		}
		v := float64(arrivals) / sent
		return v, fmt.Sprintf("%d attempts reached %s for %.0f client requests%s in %s (%d of them retries%s)%s",
				arrivals, who, sent, note, window, sum.Retries, after, direct),
			map[string]float64{"upstream_requests": float64(arrivals), "client_requests": sent, "retries": float64(sum.Retries)}, true
	case "retries":
		return float64(sum.Retries), fmt.Sprintf("%d requests reached %s as a retry (attempt 2 or later) in %s", sum.Retries, who, sp.label),
			map[string]float64{"count": float64(sum.Retries)}, true
	case "non_idempotent_retries":
		return float64(sum.NonIdempotentRetries), fmt.Sprintf("%d retries of non-idempotent requests (POST, PATCH) reached %s in %s, of %d retries",
				sum.NonIdempotentRetries, who, sp.label, sum.Retries),
			map[string]float64{"count": float64(sum.NonIdempotentRetries), "retries": float64(sum.Retries)}, true
	case "late_attempts":
		return float64(sum.LateArrivals), fmt.Sprintf("%d attempts reached %s after the caller's total deadline had passed in %s", sum.LateArrivals, who, sp.label),
			map[string]float64{"count": float64(sum.LateArrivals)}, true
	case "orphans", "orphan_rate", "orphan_time":
		facts := map[string]float64{"orphans": float64(sum.Orphans), "with_deadline": float64(sum.WithBudget), "orphan_s": sum.OrphanMS / 1000,
			"still_running": float64(sum.OrphansRunning)}
		ev := fmt.Sprintf("%d of %d requests with a deadline were still being worked on by %s more than %s after their caller gave up in %s (%s of work nobody waited for)",
			sum.Orphans, sum.WithBudget, who, FormatDuration(results.OrphanSlack), sp.label, FormatDuration(time.Duration(sum.OrphanMS*float64(time.Millisecond))))
		if sum.OrphansRunning > 0 {
			ev += fmt.Sprintf("; %d of them still running when the run ended, counted until then", sum.OrphansRunning)
		}
		if sum.WithBudget == 0 && sum.Orphans == 0 {
			// Without a deadline a replica cannot tell an abandoned request
			// from an awaited one: zero orphans then proves nothing.
			return 0, fmt.Sprintf("no request reached %s with a deadline header in %s: nothing to judge", who, sp.label), facts, false
		}
		switch t.metric.stat {
		case "orphans":
			return float64(sum.Orphans), ev, facts, true
		case "orphan_time":
			return sum.OrphanMS / 1000, ev, facts, true
		}
		if sum.WithBudget == 0 {
			return 0, fmt.Sprintf("no request reached %s with a deadline header in %s", who, sp.label), facts, false
		}
		return float64(sum.Orphans) / float64(sum.WithBudget), ev, facts, true
	}
	return 0, "unknown metric " + t.metric.name, nil, false
}

// clientRequests is what amplification divides by: the client requests
// sent in the span whose route goes to the upstream, counted per request
// tag; note says which requests those were.
func (t *Threshold) clientRequests(sp span) (sent float64, note string) {
	switch {
	case t.Upstream == "" || t.ClientTags == nil:
		return float64(sp.st.Sent()), ""
	case sp.sentByTag != nil || len(t.ClientTags) == 0:
		var n int64
		for _, tag := range t.ClientTags {
			n += sp.sentByTag[tag]
		}
		return float64(n), " routed to " + t.Upstream
	case t.ClientShare > 0 && t.ClientShare < 1:
		// No per-tag counts: the mix's weights say roughly how many.
		return float64(sp.st.Sent()) * t.ClientShare,
			fmt.Sprintf(", the %s of the request mix routed to %s (an estimate: requests were not counted per route)", FormatPercent(t.ClientShare), t.Upstream)
	}
	return float64(sp.st.Sent()), ""
}

func (o Op) String() string { return string(o) }

func (t *Threshold) format(v float64) string {
	switch t.unit {
	case unitDuration:
		return FormatDuration(time.Duration(v * float64(time.Second)))
	case unitFraction:
		return FormatPercent(v)
	case unitRate:
		if t.relative {
			return FormatPercent(v) + " of target"
		}
		return strconv.FormatFloat(v, 'f', 1, 64) + "/s"
	case unitRatio:
		return strconv.FormatFloat(v, 'f', 2, 64) + "x"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// FormatDuration prints a latency the way people read them: microseconds
// below 0.1 ms, milliseconds below a second, seconds above, about 3
// significant digits. A bound such as lag_p99 < 5us printed in hundredths
// of a millisecond read "< 0.01ms", and 1us "< 0.00ms": a bound no run can
// meet, which validate refuses.
func FormatDuration(d time.Duration) string {
	if d < 0 {
		// A difference (gateway_adds) can be negative: "-706.05ms" had the
		// two decimals meant for values below 10 ms.
		return "-" + FormatDuration(-d)
	}
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case d > 0 && d < 100*time.Microsecond:
		return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 1, 64) + "µs"
	case ms < 10:
		return strconv.FormatFloat(ms, 'f', 2, 64) + "ms"
	case ms < 1000:
		return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
	case ms < 10000:
		return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) + "s"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
}

// FormatPercent prints a fraction as a percentage.
func FormatPercent(f float64) string {
	p := f * 100
	switch {
	case p == 0:
		return "0%"
	case p < 0.1:
		return strconv.FormatFloat(p, 'f', 3, 64) + "%"
	case p < 10:
		return strconv.FormatFloat(p, 'f', 2, 64) + "%"
	}
	return strconv.FormatFloat(p, 'f', 1, 64) + "%"
}

func topCauses(st *results.Stats) string {
	type kv struct {
		c cause.Cause
		n int64
	}
	var xs []kv
	for c, n := range st.Causes {
		if n > 0 && cause.Cause(c).IsError() {
			xs = append(xs, kv{cause.Cause(c), n})
		}
	}
	if len(xs) == 0 {
		return ""
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].n > xs[j].n })
	parts := make([]string, 0, 3)
	for i, x := range xs {
		if i == 3 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %d", x.c, x.n))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// phaseLabel names a phase and its window, to a tenth of a second, or to
// the millisecond for a window shorter than a second (a run of 300
// requests read "[0.0s, 0.0s)").
func phaseLabel(name string, p results.PhaseSummary) string {
	// A phase the run stopped before has no window: "[7.000s, 7.000s)"
	// read as a phase of no length that had run.
	if p.Cut() && p.End <= p.Start {
		return fmt.Sprintf("phase %s (planned [%.1fs, %.1fs); the run stopped before it began)", name, float64(p.Start), float64(p.PlannedEnd))
	}
	if p.End-p.Start < 1 {
		return fmt.Sprintf("phase %s [%.3fs, %.3fs)", name, float64(p.Start), float64(p.End))
	}
	return fmt.Sprintf("phase %s [%.1fs, %.1fs)", name, float64(p.Start), float64(p.End))
}

func phaseNames(in *Input) []string {
	var out []string
	for n := range in.Phases {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

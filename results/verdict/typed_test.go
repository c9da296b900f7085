package verdict

import (
	"encoding/json"
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/autoscale"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
)

// partial builds what a run has recorded after `secs` seconds of 100
// requests/s: intervals with `errPerSec` gateway timeouts each, and one
// latency of `slow` per second.
func partial(t *testing.T, secs, errPerSec int, slow time.Duration) *Input {
	t.Helper()
	c := results.NewCollector(nil, time.Second, 1)
	for s := 0; s < secs; s++ {
		for i := 0; i < 100; i++ {
			x := loadgen.Sample{Intended: time.Duration(s)*time.Second + time.Duration(i)*10*time.Millisecond, Latency: 5 * time.Millisecond, Cause: cause.OK}
			if i < errPerSec {
				x.Cause = cause.GatewayTimeout
			}
			if i == 99 {
				x.Latency = slow
			}
			x.Service = x.Latency
			c.Record(0, &x)
		}
	}
	var recs []results.IntervalRecord
	for _, iv := range c.TakeIntervals(time.Hour) {
		recs = append(recs, results.IntervalRecord{Start: results.Sec(iv.Start), Width: 1, Stats: results.Summarize(iv.Stats, time.Second, 0)})
	}
	in := &Input{Phases: map[string]*Phase{"run": {Summary: results.PhaseSummary{Name: "run", End: 100}, Stats: results.NewStats()}},
		Intervals: recs, Now: time.Duration(secs) * time.Second, Planned: 6000}
	return in
}

func TestDoomed(t *testing.T) {
	cases := []struct {
		expr       string
		secs, errs int
		slow       time.Duration
		doomed     bool
		why        string
	}{
		{"errors < 10", 3, 4, 0, true, "already 12"},
		{"errors < 20", 3, 4, 0, false, ""},
		{"gateway_timeout_count <= 5", 2, 3, 0, true, "already 6"},
		{"max < 1s", 2, 0, 2 * time.Second, true, "already 2.00"},
		{"max < 3s", 2, 0, 2 * time.Second, false, ""},
		// 60 of 6000 planned may fail under 1%: 70 already have.
		{"error_rate < 1%", 7, 10, 0, true, "70 failures already, of 6000 planned"},
		{"error_rate < 1%", 5, 10, 0, false, ""},
		// p99 < 1s allows 60 slow requests of 6000: 61 seconds' worth needed.
		{"p99 < 1s", 10, 0, 2 * time.Second, false, ""},
	}
	for _, tc := range cases {
		th, err := ParseThreshold(tc.expr, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := th.CanAbort(); err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		slow := tc.slow
		if slow == 0 {
			slow = 5 * time.Millisecond
		}
		d, why := th.Doomed(partial(t, tc.secs, tc.errs, slow))
		if d != tc.doomed || !strings.Contains(why, tc.why) {
			t.Errorf("%s after %ds: doomed %v (%q), want %v (%q)", tc.expr, tc.secs, d, why, tc.doomed, tc.why)
		}
	}
	// A quantile over the whole run is lost once more requests are slow than
	// it allows: 61 seconds with one 2s request each, against 60 allowed.
	in := partial(t, 61, 0, 2*time.Second)
	th, _ := ParseThreshold("p99 < 1s", "")
	if d, why := th.Doomed(in); !d || !strings.Contains(why, "61 requests already took longer than 1.000s") {
		t.Errorf("p99 after 61 slow: %v %q", d, why)
	}
	// The most a quantile allows is a whole count: 1% of 1050 is 10.5, so
	// 11 slow requests are more than the 10 it allows (it said "the 11").
	in = partial(t, 11, 0, 2*time.Second)
	in.Planned = 1050
	if d, why := th.Doomed(in); !d || !strings.Contains(why, "11 requests already took longer than 1.000s, more than the 10 of 1050 planned that p99 allows") {
		t.Errorf("p99 after 11 slow of 1050: %v %q", d, why)
	}
	// Windows: a failed window stays failed.
	w := &Window{Name: "w", T: mustThreshold(t, "max < 100ms"), Every: 2 * time.Second}
	if d, _ := w.Doomed(partial(t, 4, 0, 5*time.Millisecond)); d {
		t.Error("healthy windows doomed")
	}
	in = partial(t, 4, 0, 5*time.Millisecond)
	in2 := partial(t, 1, 0, time.Second)
	in2.Intervals[0].Start = 4
	in.Intervals = append(in.Intervals, in2.Intervals...)
	in.Now = 5 * time.Second
	if d, why := w.Doomed(in); !d || !strings.Contains(why, "window starting at 3.000s failed") {
		t.Errorf("window with a 1s request: %v %q", d, why)
	}
	// Open intervals count for what only grows, not for a window: there,
	// the requests still in flight could move its rate or quantile back.
	in = partial(t, 3, 0, 5*time.Millisecond)
	open := partial(t, 1, 12, time.Second)
	open.Intervals[0].Start = 3
	in.Open, in.Now = open.Intervals, 3500*time.Millisecond
	if d, why := mustThreshold(t, "errors < 10").Doomed(in); !d || !strings.Contains(why, "already 12") {
		t.Errorf("errors in an open interval: %v %q", d, why)
	}
	if d, why := w.Doomed(in); d {
		t.Errorf("a window judged on an open interval: %q", why)
	}
	for _, bad := range []string{"p99 > 1s", "achieved_rate < 10/s", "mean < 1s"} {
		if err := mustThreshold(t, bad).CanAbort(); err == nil {
			t.Errorf("%s: can abort", bad)
		}
	}
}

func mustThreshold(t *testing.T, expr string) *Threshold {
	t.Helper()
	th, err := ParseThreshold(expr, "")
	if err != nil {
		t.Fatal(err)
	}
	return th
}

func TestTransitionDoomed(t *testing.T) {
	tr := &Transition{Name: "opens", Subject: "pay", Types: []string{EvBreakerOpen}, After: FaultOnset("outage"), Within: time.Second}
	start := event.Event{T: 2 * time.Second, Type: "fault.start", Attrs: map[string]any{"fault": "outage"}}
	in := &Input{Events: []event.Event{start}, Now: 2500 * time.Millisecond}
	if d, _ := tr.Doomed(in); d {
		t.Error("doomed before the bound passed")
	}
	in.Now = 3100 * time.Millisecond
	if d, why := tr.Doomed(in); !d || !strings.Contains(why, "without it") {
		t.Errorf("not doomed after the bound: %q", why)
	}
	in.Events = append(in.Events, event.Event{T: 2900 * time.Millisecond, Type: EvBreakerOpen, Target: "pay"})
	if d, _ := tr.Doomed(in); d {
		t.Error("doomed although the breaker opened in time")
	}
}

// Scaling read back from events.jsonl: attrs are float64 there.
func TestScalingFromRecordedEvents(t *testing.T) {
	var evs []event.Event
	for i, ft := range [][2]int{{2, 6}, {6, 3}, {3, 7}, {7, 4}} {
		e := event.Event{T: time.Duration(i+1) * time.Second, Source: "autoscaler", Type: autoscale.EvScale, Target: "api",
			Attrs: map[string]any{"from": ft[0], "to": ft[1], "value": 9.5}}
		b, _ := json.Marshal(e)
		var back event.Event
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, back)
	}
	in := &Input{Events: evs}
	s := autoscale.Spec{Upstream: "api", MaxReplicas: 10, Metric: autoscale.InFlight, Target: "3"}.Settings()
	flap := (&Scaling{Name: "flap", Upstream: "api", Assert: DirectionChanges, N: 1, Spec: s}).Evaluate(in)
	if flap.Pass || flap.Value != 3 || !strings.Contains(flap.Evidence, "2→6@1.000s 6→3@2.000s 3→7@3.000s 7→4@4.000s") {
		t.Errorf("flapping: %+v", flap)
	}
	reach := (&Scaling{Name: "reach", Upstream: "api", Assert: Reaches, N: 7, Spec: s}).Evaluate(in)
	if !reach.Pass || reach.Facts["reached_s"] != 3 {
		t.Errorf("reaches: %+v", reach)
	}
	up := (&Scaling{Name: "up", Upstream: "api", Assert: ScalesUpWithin, After: Offset(2500*time.Millisecond, "stage[1]"), Within: time.Second, Spec: s}).Evaluate(in)
	if !up.Pass || up.Value != 0.5 || !strings.Contains(up.Evidence, "api scaled 3 → 7 at 3.000s on in_flight 9.50") {
		t.Errorf("scales up: %+v", up)
	}
	none := (&Scaling{Name: "none", Upstream: "web", Assert: Reaches, N: 2, Spec: s}).Evaluate(in)
	if none.Pass || !strings.Contains(none.Evidence, "no autoscaler ran") {
		t.Errorf("no events: %+v", none)
	}
}

func TestJUnit(t *testing.T) {
	s := &results.Summary{Scenario: "demo", Seed: 3, Elapsed: 10, Verdict: results.VerdictFail, Objectives: []results.ObjectiveResult{
		{Name: "p99 < 300ms", Pass: true, Measured: "120ms", Bound: "< 300.0ms", Evidence: "p99 over 100 requests"},
		{Name: "breaker pay opens within 2s", Pass: false, Measured: "never", Bound: "<= 2.000s", Evidence: "no breaker.open <after>"},
	}}
	out := JUnitString(s)
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suite    struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if doc.Tests != 2 || doc.Failures != 1 || doc.Suite.Name != "demo" || len(doc.Suite.Cases) != 2 {
		t.Fatalf("parsed %+v from\n%s", doc, out)
	}
	f := doc.Suite.Cases[1].Failure
	if doc.Suite.Cases[0].Failure != nil || f == nil || f.Message != "measured never (bound <= 2.000s)" || f.Text != "no breaker.open <after>" {
		t.Errorf("cases = %+v", doc.Suite.Cases)
	}
	s.Aborted = "errors < 10: already 12"
	if out := JUnitString(s); !strings.Contains(out, `tests="3" failures="2"`) || !strings.Contains(out, "the run stopped early: errors &lt; 10") {
		t.Errorf("aborted run:\n%s", out)
	}
	// A run stopped by an error is not green, whatever its objectives.
	s.Aborted, s.Verdict, s.Error = "", results.VerdictError, "write results: no space left on device"
	s.Objectives = s.Objectives[:1]
	if out := JUnitString(s); !strings.Contains(out, `tests="2" failures="1"`) || !strings.Contains(out, "the run stopped on an error: write results: no space left on device") {
		t.Errorf("run stopped by an error:\n%s", out)
	}
}

// Upstream metrics on recorded records: an attempt that reached the
// upstream after its caller's deadline is caught where it landed.
func TestUpstreamMetricsFromRecords(t *testing.T) {
	in := &Input{Phases: map[string]*Phase{"run": {Summary: results.PhaseSummary{Name: "run", End: 2}, Stats: results.NewStats()}},
		Upstreams: []results.UpstreamRecord{
			{Start: 0, Width: 1, Upstream: "api", Arrivals: 10, LateArrivals: 0, Retries: 1},
			{Start: 1, Width: 1, Upstream: "api", Arrivals: 10, LateArrivals: 2, Retries: 3, NonIdempotentRetries: 1, WithBudget: 8, Orphans: 2, OrphanMS: 900},
			{Start: 1, Width: 1, Upstream: "db", Arrivals: 5, LateArrivals: 4},
		}}
	cases := []struct {
		expr, upstream string
		pass           bool
		value          float64
		evidence       string
	}{
		{"late_attempts == 0", "", false, 6, "6 attempts reached the upstreams after the caller's total deadline"},
		{"late_attempts == 0", "api", false, 2, "reached api"},
		{"late_attempts <= 2", "api", true, 2, ""},
		{"non_idempotent_retries == 0", "", false, 1, "of 4 retries"},
		{"retries <= 4", "api", true, 4, ""},
		{"orphan_rate < 10%", "api", false, 0.25, "2 of 8 requests"},
		{"orphan_time < 1s", "", true, 0.9, "900.0ms of work nobody waited for"},
	}
	for _, c := range cases {
		th := mustThreshold(t, c.expr)
		th.Upstream = c.upstream
		r := th.Evaluate(in)
		if r.Pass != c.pass || r.Value != c.value || !strings.Contains(r.Evidence, c.evidence) {
			t.Errorf("%s (%s): pass %v value %v evidence %q; want %v %v %q", c.expr, c.upstream, r.Pass, r.Value, r.Evidence, c.pass, c.value, c.evidence)
		}
	}
	// Without upstream records (an external gateway's own upstreams), the
	// objective fails and says why.
	r := mustThreshold(t, "late_attempts == 0").Evaluate(&Input{Phases: in.Phases})
	if r.Pass || !strings.Contains(r.Evidence, "recorded no upstream arrivals") {
		t.Errorf("no records: %+v", r)
	}
}

// A breaker's open event says how many calls it had let through and not
// finished: that many arrivals after it opened are the calls already on
// their way, not calls it let through while open.
func TestBlockedExcusesCallsAdmittedBeforeOpening(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		admitted any // the in_flight attr as it comes: int64 in memory, float64 from events.jsonl
		pass     bool
		value    float64
		evidence string
	}{
		{nil, false, 3, "3 requests reached it while open"},
		{int64(1), false, 2, "not counting 1 the gateway had sent before"},
		{float64(5), true, 0, "0 requests reached it while open (after the first 5.00ms of each), not counting 3"},
	} {
		attrs := map[string]any{}
		if c.admitted != nil {
			attrs["in_flight"] = c.admitted
		}
		in := &Input{
			Upstreams: []results.UpstreamRecord{{Start: 0, Width: 1, Upstream: "pay", Arrivals: 4,
				PerReplica: []results.ReplicaRecord{{Replica: "pay[0]", Arrivals: 4, ArrivalsMS: []int32{20, 1, 100, 1, 300, 2}}}}},
			Events: []event.Event{
				{T: 50 * ms, Type: EvBreakerOpen, Target: "pay", Attrs: attrs},
				{T: 500 * ms, Type: EvBreakerHalfOpen, Target: "pay"},
			},
		}
		r := (&Blocked{Name: "blocked", Subject: "pay"}).Evaluate(in)
		if r.Pass != c.pass || r.Value != c.value || !strings.Contains(r.Evidence, c.evidence) {
			t.Errorf("in_flight %v: pass %v value %v evidence %q; want %v %v %q", c.admitted, r.Pass, r.Value, r.Evidence, c.pass, c.value, c.evidence)
		}
	}
}

func TestPhaseLabel(t *testing.T) {
	for _, tc := range []struct {
		start, end, planned results.Seconds
		want                string
	}{
		{0, 12, 0, "phase run [0.0s, 12.0s)"},
		{0, 0.011, 0, "phase run [0.000s, 0.011s)"},
		{9, 9.0046, 0, "phase run [9.000s, 9.005s)"},
		{7, 7, 9, "phase run (planned [7.0s, 9.0s); the run stopped before it began)"}, // was [7.000s, 7.000s)
		{7, 7.5, 9, "phase run [7.000s, 7.500s)"},
	} {
		if got := phaseLabel("run", results.PhaseSummary{Start: tc.start, End: tc.end, PlannedEnd: tc.planned}); got != tc.want {
			t.Errorf("[%v, %v): %q, want %q", tc.start, tc.end, got, tc.want)
		}
	}
}

// The replicas an upstream started with count toward reaches: 4 replicas
// that never scaled were "at most 2" (min_replicas) and failed reaches: 4.
func TestReachesCountsTheReplicasItStartedWith(t *testing.T) {
	s := autoscale.Spec{Upstream: "api", MinReplicas: 2, MaxReplicas: 6, Metric: autoscale.RequestRate, Target: "50"}.Settings()
	in := &Input{
		Events: []event.Event{{T: time.Second, Source: "autoscaler", Type: autoscale.EvSync, Target: "api", Attrs: map[string]any{"ratio": 0.5}}},
		Upstreams: []results.UpstreamRecord{
			{Start: 1, Width: 1, Upstream: "api", Replicas: 4},
			{Start: 0, Width: 1, Upstream: "api", Replicas: 4},
			{Start: 0, Width: 1, Upstream: "web", Replicas: 9},
		},
	}
	r := (&Scaling{Name: "reach", Upstream: "api", Assert: Reaches, N: 4, Spec: s}).Evaluate(in)
	if !r.Pass || r.Value != 4 || !strings.Contains(r.Evidence, "at most 4 replicas, the 4 it started with") {
		t.Errorf("reaches 4 with 4 from the start: %+v", r)
	}
	r = (&Scaling{Name: "reach", Upstream: "api", Assert: Reaches, N: 5, Spec: s}).Evaluate(in)
	if r.Pass || r.Value != 4 {
		t.Errorf("reaches 5 with 4 throughout: %+v", r)
	}
}

// Objectives that need what a killed run's rebuilt summary lacks are not
// judged: never a pass, said why, a JUnit failure of their own type; the
// others are judged as usual.
func TestEvaluateMissing(t *testing.T) {
	in := input(t)
	parse := func(expr string) *Threshold {
		th, err := ParseThreshold(expr, "")
		if err != nil {
			t.Fatal(err)
		}
		return th
	}
	objs := []Objective{parse("p99 < 2s"), parse("lag_p99 < 50ms"), parse("amplification <= 1.5"),
		&Window{Name: "w", T: parse("orphans <= 0"), Every: time.Second}, &Cascade{Name: "cascade", Expect: "gateway"}}
	m := Missing{Lag: "no lag", CauseLatency: "no cause latency", Upstreams: "upstreams short"}
	rs, pass := EvaluateMissing(objs, in, m)
	if pass {
		t.Fatal("passed with objectives not judged")
	}
	want := []struct {
		notJudged bool
		evidence  string
	}{{false, "p99 over"}, {true, "not judged: no lag"}, {true, "not judged: upstreams short"}, {true, "not judged: upstreams short"}, {true, "not judged: no cause latency"}}
	for i, w := range want {
		r := rs[i]
		if r.NotJudged != w.notJudged || (w.notJudged && (r.Pass || r.Measured != "")) || !strings.HasPrefix(r.Evidence, w.evidence) {
			t.Errorf("%s: not judged %v, pass %v, measured %q, evidence %q; want not judged %v, %q", r.Name, r.NotJudged, r.Pass, r.Measured, r.Evidence, w.notJudged, w.evidence)
		}
	}
	if !rs[0].Pass {
		t.Errorf("p99 < 2s on 1..1000 ms: %+v", rs[0])
	}
	// Nothing missing: Evaluate's results.
	if rs, _ := EvaluateMissing(objs[:2], in, Missing{}); rs[1].NotJudged {
		t.Errorf("lag judged without a reason not to: %+v", rs[1])
	}
	s := &results.Summary{Scenario: "demo", Verdict: results.VerdictError, Error: "killed", Objectives: rs[:2]}
	out := JUnitString(s)
	if !strings.Contains(out, `type="not_judged"`) || !strings.Contains(out, `tests="3" failures="2"`) {
		t.Errorf("junit:\n%s", out)
	}
}

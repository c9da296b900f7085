package verdict

import (
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
)

// input builds a recorded run: 1000 requests over 10 s, latencies 1..1000 ms,
// the slowest 20 ending in gateway_timeout; phase "late" is the last 5 s.
func input(t *testing.T) *Input {
	t.Helper()
	phases := []results.Phase{{Name: "run", End: 10 * time.Second}, {Name: "late", Start: 5 * time.Second, End: 10 * time.Second}}
	c := results.NewCollector(phases, time.Second, 2)
	for i := 0; i < 1000; i++ {
		s := loadgen.Sample{Intended: time.Duration(i) * 10 * time.Millisecond, Latency: time.Duration(i+1) * time.Millisecond, Cause: cause.OK}
		s.Service = s.Latency
		if i >= 980 {
			s.Cause = cause.GatewayTimeout
		}
		c.Record(i, &s)
	}
	return recordedRun(t, c, phases, 100)
}

// recordedRun is the input of a run recorded into c over phases (the first is
// the whole run) at a target of rate requests a second (0: a closed model).
func recordedRun(t *testing.T, c *results.Collector, phases []results.Phase, rate float64) *Input {
	t.Helper()
	sum := &results.Summary{}
	for i, st := range c.PhaseStats() {
		ph := phases[i]
		ps := results.PhaseSummary{Name: ph.Name, Start: results.Sec(ph.Start), End: results.Sec(ph.End),
			Stats: results.Summarize(st, ph.End-ph.Start, rate*(ph.End-ph.Start).Seconds())}
		if i == 0 {
			sum.Run = ps
		} else {
			sum.Phases = append(sum.Phases, ps)
		}
	}
	in, err := NewInput(sum, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestThresholds(t *testing.T) {
	in := input(t)
	cases := []struct {
		expr, phase string
		pass        bool
		value       float64
		evidence    string
	}{
		{"p99 < 1s", "", true, 0.990, "p99 over 1000 requests in phase run"},
		{"p99 < 900ms", "", false, 0.990, ""},
		{"p50<=501ms", "", true, 0.500, ""},
		{"p(99.9) < 999ms", "", false, 0.999, ""},
		{"max >= 1s", "", true, 1.0, ""},
		{"p50 < 800ms", "late", true, 0.750, "phase late [5.0s, 10.0s)"},
		{"gateway_timeout_rate < 1%", "", false, 0.02, "20 of 1000 requests ended in gateway_timeout"},
		{"gateway_timeout_rate < 5%", "late", true, 0.04, "20 of 500"},
		{"error_rate == 2%", "", true, 0.02, "(gateway_timeout 20)"},
		{"client_timeout_count == 0", "", true, 0, ""},
		{"errors <= 19", "", false, 20, ""},
		{"requests == 1000", "", true, 1000, ""},
		{"achieved_rate >= 99%", "", true, 1, "achieved 100.0/s against a target of 100.0/s"},
		{"achieved_rate >= 120/s", "", false, 100, ""},
		{"p99 < 1s", "nope", false, 0, `phase "nope" was not recorded`},
		// Still accepted: bounds a run can meet.
		{"p(99) < 1s", "", true, 0.990, ""},
		{"errors <= 20", "", true, 20, ""},
		{"client_timeout_count <= 0", "", true, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.phase+" "+tc.expr, func(t *testing.T) {
			th, err := ParseThreshold(tc.expr, tc.phase)
			if err != nil {
				t.Fatal(err)
			}
			r := th.Evaluate(in)
			if r.Pass != tc.pass {
				t.Errorf("pass = %v (%+v)", r.Pass, r)
			}
			if diff := r.Value - tc.value; diff > 0.002*max(1, tc.value) || diff < -0.002*max(1, tc.value) {
				t.Errorf("value = %v, want %v", r.Value, tc.value)
			}
			if !strings.Contains(r.Evidence, tc.evidence) {
				t.Errorf("evidence %q lacks %q", r.Evidence, tc.evidence)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for expr, want := range map[string]string{
		"p99 300ms":        "expected",
		"p99 ~ 300ms":      "unknown comparison",
		"p99 < 300":        "is a latency",
		"error_rate < 1.5": "with a % sign, e.g. 1.5%",
		// A bare number is a fraction to ParsePercent: 1 is 100%, which
		// every run but a total outage passes.
		"error_rate < 1":             "would be 100.0%, not 1%",
		"error_rate < 0.5":           "would be 50.0%, not 0.5%",
		"gateway_timeout_rate > 0.9": "with a % sign",
		"orphan_rate < 0.01":         "with a % sign",
		// 98 meant as 98% read as 98/s; 0.98 as 0.98/s.
		"achieved_rate >= 98":    "write 98/s for a rate, or 98% for a share",
		"achieved_rate >= 0.98":  "needs a unit",
		"bogus_rate < 1%":        "unknown metric",
		"errors < -1":            "is a count",
		"achieved_rate >= 1/y":   "unit must be",
		"lag_error_rate < 1%":    "unknown metric",
		"p0 < 1s":                "unknown metric",
		"p(nan) < 1s":            "unknown metric",
		"p(NaN) < 1s":            "unknown metric",
		"p(99 < 10ms":            "unbalanced parenthesis",
		"p99) < 10ms":            "unbalanced parenthesis",
		"requests == 1.5":        "expected a whole number",
		"errors < 0.5":           "expected a whole number",
		"p99 < 0ms":              "can never pass",
		"max <= 0s":              "can never pass",
		"error_rate < 0%":        "can never pass",
		"errors < 0":             "can never pass",
		"client_gone_rate < 1%":  "the client never receives it",
		"client_gone_count == 0": "the client never receives it",
	} {
		if _, err := ParseThreshold(expr, ""); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want it to mention %q", expr, err, want)
		}
	}
}

// Bounds at 0 that a run can meet stay accepted.
func TestParseAcceptsBoundsARunCanMeet(t *testing.T) {
	for _, expr := range []string{"orphan_time <= 0ms", "orphans == 0", "lag_p99 <= 0ms", "error_rate <= 0%", "requests >= 0", "p(99.9) < 1s", "p999 < 1s",
		"error_rate == 0", "error_rate <= 0.0", "error_rate < 1 %", "achieved_rate >= 98 %", "achieved_rate >= 3000/m"} {
		if _, err := ParseThreshold(expr, ""); err != nil {
			t.Errorf("%q: %v", expr, err)
		}
	}
}

func TestEvaluateAll(t *testing.T) {
	in := input(t)
	a, _ := ParseThreshold("p99 < 1s", "")
	b, _ := ParseThreshold("error_rate < 1%", "")
	res, pass := Evaluate([]Objective{a, b}, in)
	if pass || len(res) != 2 || !res[0].Pass || res[1].Pass {
		t.Fatalf("pass=%v %+v", pass, res)
	}
	if res[1].Measured != "2.00%" || res[1].Bound != "< 1.00%" {
		t.Fatalf("formatting: %q %q", res[1].Measured, res[1].Bound)
	}
}

// retryStorm is a run of 60 requests over 3 s, 20 a second, each tried 3
// times at the upstream; the last requests' retries land after the last
// send, in the interval from 3 s (as in a route with a long total timeout).
func retryStorm(t *testing.T) *Input {
	t.Helper()
	phases := []results.Phase{{Name: "run", End: 3 * time.Second}, {Name: "last", Start: 2 * time.Second, End: 3 * time.Second}}
	c := results.NewCollector(phases, time.Second, 1)
	for i := range 60 {
		s := loadgen.Sample{Intended: time.Duration(i) * 50 * time.Millisecond, Latency: 600 * time.Millisecond, Cause: cause.GatewayTimeout}
		s.Service = s.Latency
		c.Record(0, &s)
	}
	in := recordedRun(t, c, phases, 0)
	for sec, n := range []int32{48, 60, 60, 12} {
		retries := int64(n) * 2 / 3
		if sec == 3 {
			retries = int64(n)
		}
		in.Upstreams = append(in.Upstreams, results.UpstreamRecord{Start: results.Seconds(sec), Width: 1, Upstream: "api",
			Arrivals: int64(n), Retries: retries,
			PerReplica: []results.ReplicaRecord{{Replica: "api[0]", Arrivals: int64(n), ArrivalsMS: []int32{100, n}}}})
	}
	return in
}

// The whole run's upstream counts include the attempts that land after its
// last send; a phase's stop at its end.
func TestUpstreamCountsRunPastTheLastSend(t *testing.T) {
	in := retryStorm(t)
	for _, tc := range []struct {
		expr, phase string
		value       float64
		evidence    string
	}{
		{"amplification <= 3", "", 180.0 / 60, "180 attempts reached the upstreams for 60 client requests in phase run [0.0s, 3.0s) (124 of them retries, 12 after its last send)"},
		{"upstream_requests <= 200", "", 180, "180 requests reached the upstreams in phase run [0.0s, 3.0s) (12 of them after its last send)"},
		{"retries <= 200", "", 32 + 40 + 40 + 12, "124 requests reached the upstreams as a retry (attempt 2 or later) in phase run [0.0s, 3.0s) and after its last send"},
		{"amplification <= 3", "last", 60.0 / 20, "phase last [2.0s, 3.0s) ("},
	} {
		th, err := ParseThreshold(tc.expr, tc.phase)
		if err != nil {
			t.Fatal(err)
		}
		r := th.Evaluate(in)
		if r.Value != tc.value || !strings.Contains(r.Evidence, tc.evidence) {
			t.Errorf("%s %s = %v (%s), want %v (%q)", tc.phase, tc.expr, r.Value, r.Evidence, tc.value, tc.evidence)
		}
	}
}

// amplification for one upstream divides its attempts by the client
// requests really routed to it, counted per tag, not by the mix's weights:
// a random draw of equal weights sent 73 of 100 requests to /a.
func TestAmplificationPerUpstreamCountsRoutedRequests(t *testing.T) {
	in := retryStorm(t) // 60 requests
	in.Phases["run"].Summary.SentByTag = map[string]int64{"GET /a": 45, "GET /b": 15}
	th, err := ParseThreshold("amplification <= 1", "")
	if err != nil {
		t.Fatal(err)
	}
	th.Upstream, th.ClientTags, th.ClientShare = "api", []string{"GET /b"}, 0.5
	r := th.Evaluate(in)
	if r.Value != 180.0/15 || !strings.Contains(r.Evidence, "for 15 client requests routed to api in phase run") {
		t.Errorf("amplification = %v (%s), want 12 over the 15 requests routed to api", r.Value, r.Evidence)
	}
	// No request routes there: nothing to divide by.
	th.ClientTags = []string{}
	if r := th.Evaluate(in); r.Pass || !strings.Contains(r.Evidence, "no client requests routed to api") {
		t.Errorf("with no request routed to api: %+v", r)
	}
	// A run directory without per-tag counts falls back on the mix's share,
	// and says it is an estimate.
	th.ClientTags = []string{"GET /b"}
	in.Phases["run"].Summary.SentByTag = nil
	if r := th.Evaluate(in); r.Value != 180.0/30 || !strings.Contains(r.Evidence, "an estimate") {
		t.Errorf("without per-tag counts: %v (%s)", r.Value, r.Evidence)
	}
}

// A count over a phase the client sent nothing in is true of nothing:
// "errors == 0" there fails and says so, as error_rate does, while
// "requests == 0" still measures what it names.
func TestCountsOverAnEmptyPhaseHaveNothingToJudge(t *testing.T) {
	phases := []results.Phase{{Name: "run", End: 6 * time.Second}, {Name: "quiet", Start: 2 * time.Second, End: 4 * time.Second}}
	c := results.NewCollector(phases, time.Second, 2)
	for i := 0; i < 40; i++ {
		at := time.Duration(i) * 100 * time.Millisecond // 0..2s
		if i >= 20 {
			at += 2 * time.Second // 4..6s: nothing in quiet
		}
		s := loadgen.Sample{Intended: at, Latency: 5 * time.Millisecond, Service: 5 * time.Millisecond, Cause: cause.OK}
		c.Record(i, &s)
	}
	in := recordedRun(t, c, phases, 10)
	for expr, want := range map[string]string{
		"errors == 0":                "no requests in phase quiet [2.0s, 4.0s): nothing to judge",
		"gateway_timeout_count == 0": "no requests in phase quiet",
		"error_rate < 1%":            "no requests in phase quiet",
		"p99 < 1s":                   "no requests were sent in phase quiet",
	} {
		th, err := ParseThreshold(expr, "quiet")
		if err != nil {
			t.Fatal(err)
		}
		if r := th.Evaluate(in); r.Pass || !strings.Contains(r.Evidence, want) {
			t.Errorf("%s: pass %v, evidence %q; want a failure saying %q", expr, r.Pass, r.Evidence, want)
		}
	}
	th, _ := ParseThreshold("requests == 0", "quiet")
	if r := th.Evaluate(in); !r.Pass {
		t.Errorf("requests == 0 over an empty phase: %+v", r)
	}
	th, _ = ParseThreshold("errors == 0", "")
	if r := th.Evaluate(in); !r.Pass {
		t.Errorf("errors == 0 over the run: %+v", r)
	}
}

// A value and a bound that print alike but differ are printed to the
// microsecond: "FAIL measured 990.2ms (bound <= 990.2ms)" reads as a wrong
// verdict.
func TestMeasuredAndBoundThatReadAlikeGetMoreDigits(t *testing.T) {
	in := input(t)
	th, err := ParseThreshold("p99 <= 990.19ms", "") // p99 is the histogram's 990.207ms
	if err != nil {
		t.Fatal(err)
	}
	r := th.Evaluate(in)
	if r.Pass || r.Measured == strings.TrimPrefix(r.Bound, "<= ") || !strings.HasSuffix(r.Bound, "990.190ms") {
		t.Errorf("pass %v, measured %q, bound %q: want a failure whose digits differ", r.Pass, r.Measured, r.Bound)
	}
	th, _ = ParseThreshold("p99 < 2s", "")
	if r := th.Evaluate(in); r.Measured != "990.2ms" || r.Bound != "< 2.000s" {
		t.Errorf("measured %q, bound %q: the usual digits tell them apart", r.Measured, r.Bound)
	}

	tr := &Transition{Name: "opens", Subject: "api", What: "breaker api opened", Types: []string{EvBreakerOpen}, After: Offset(time.Second, "t"), Within: time.Second}
	in.Events = []event.Event{{T: 2*time.Second + 300*time.Microsecond, Type: EvBreakerOpen, Target: "api"}}
	if r := tr.Evaluate(in); r.Pass || r.Measured != "1.000300s" || r.Bound != "<= 1.000000s" {
		t.Errorf("pass %v, measured %q, bound %q", r.Pass, r.Measured, r.Bound)
	}
}

// A negative difference (the gateway path faster than the direct one) is
// written like a positive one, with its sign.
func TestFormatDurationNegative(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-706500 * time.Microsecond: "-706.5ms",
		-1500 * time.Millisecond:   "-1.500s",
		-2500 * time.Microsecond:   "-2.50ms",
		706500 * time.Microsecond:  "706.5ms",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// A latency objective is measured on the requests that were sent: when
// most of a phase was dropped, its evidence says how many were left out.
func TestLatencyEvidenceCountsDropped(t *testing.T) {
	phases := []results.Phase{{Name: "run", End: 2 * time.Second}}
	c := results.NewCollector(phases, time.Second, 1)
	for i := 0; i < 100; i++ {
		s := loadgen.Sample{Intended: time.Duration(i) * 20 * time.Millisecond, Latency: 5 * time.Millisecond, Service: 5 * time.Millisecond, Cause: cause.OK}
		if i%5 != 0 {
			s = loadgen.Sample{Intended: s.Intended, Cause: cause.Dropped}
		}
		c.Record(0, &s)
	}
	in := recordedRun(t, c, phases, 50)
	th, _ := ParseThreshold("p99 < 600ms", "")
	r := th.Evaluate(in)
	if !r.Pass || !strings.Contains(r.Evidence, "p99 over 20 requests in phase run [0.0s, 2.0s) (and 80 dropped, never sent") {
		t.Errorf("pass %v, evidence %q", r.Pass, r.Evidence)
	}
}

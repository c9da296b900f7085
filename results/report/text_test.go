package report

import (
	"strings"
	"testing"

	"github.com/cascadehq/cascade/results"
)

// The Load line's target is the arrival-rate executors' rate; a closed model
// has none, so a VU-only run must not claim "target 0/s" and a mixed run
// must say whose target it is.
func TestTextLoadLineTarget(t *testing.T) {
	open := results.GroupSummary{Name: "background", Kind: "arrival-rate"}
	closed := results.GroupSummary{Name: "burst", Kind: "vus"}
	cases := []struct {
		name   string
		target float64
		execs  []results.GroupSummary
		want   string
		absent string
	}{
		{"one open executor", 150, nil, "scheduled in 0ms · target 150.0/s · achieved", "open-model"},
		{"one closed executor", 0, nil, "scheduled in 0ms · achieved", "target"},
		{"open beside closed", 150, []results.GroupSummary{open, closed}, "· open-model target 150.0/s · achieved", "· target"},
		{"two open executors", 300, []results.GroupSummary{open, open}, "· target 300.0/s · achieved", "open-model"},
		{"closed executors only", 0, []results.GroupSummary{closed, closed}, "scheduled in 0ms · achieved", "target"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := stats(1, 2, 3, 4, 0, 306.6)
			st.TargetRate = tc.target
			s := summary(st, nil)
			s.Executors = tc.execs
			var b strings.Builder
			if err := Text(&b, s, ""); err != nil {
				t.Fatal(err)
			}
			line := ""
			for _, l := range strings.Split(b.String(), "\n") {
				if strings.HasPrefix(l, "Load ") {
					line = l
				}
			}
			if !strings.Contains(line, tc.want) {
				t.Errorf("Load line %q lacks %q", line, tc.want)
			}
			if strings.Contains(line, tc.absent) {
				t.Errorf("Load line %q has %q", line, tc.absent)
			}
		})
	}
}

// A run stopped at 9.0046 s: the phase it stopped in shows where (marked),
// one it barely entered has no rate, one it never reached says so, and
// none shows 0 ms latencies for requests that were never sent.
func TestTextPhasesCutShort(t *testing.T) {
	st := stats(1, 2, 3, 4, 0, 50)
	sliver := stats(3.09, 3.09, 3.09, 3.09, 0, 0)
	sliver.Sent, sliver.Scheduled = 1, 1
	s := summary(st, nil)
	s.Elapsed = 9.0046
	s.Phases = []results.PhaseSummary{
		{Name: "before", Start: 0, End: 2, Stats: st},
		{Name: "fault", Start: 2, End: 9, Stats: st}, // ended as planned, just before the stop
		{Name: "during", Start: 5, End: 9.0046, PlannedEnd: 10, Stats: st},
		{Name: "after", Start: 9, End: 9.0046, PlannedEnd: 12, Stats: sliver},
		{Name: "later", Start: 10, End: 10, PlannedEnd: 12},
	}
	var b strings.Builder
	if err := Text(&b, s, ""); err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, l := range strings.Split(b.String(), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			rows[f[0]] = strings.Join(f, " ")
		}
	}
	for name, want := range map[string]string{
		"fault":  "fault 2.0s–9.0s 1000 50.0 1.00ms",
		"during": "during 5.0s–9.0s* 1000 50.0 1.00ms",
		"after":  "after 9.0s–9.0s* 1 - 3.09ms",
		"later":  "later not reached (10.0s–12.0s) 0 - - - - - - none",
		"*":      "* the run stopped at 9.0s, before the phase's planned end",
	} {
		if !strings.HasPrefix(rows[name], want) {
			t.Errorf("%s row:\n got: %s\nwant: %s…", name, rows[name], want)
		}
	}
}

// A run with no objectives judged nothing: its verdict line says so rather
// than "PASS" beside whatever the outcomes were.
func TestTextNoObjectives(t *testing.T) {
	s := summary(stats(1, 2, 3, 4, 0, 306.6), nil)
	s.Objectives, s.Verdict = nil, results.VerdictPass
	var b strings.Builder
	if err := Text(&b, s, ""); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "Verdict: no objectives, nothing judged") || strings.Contains(out, "Verdict: PASS") {
		t.Errorf("verdict line:\n%s", out)
	}
}

// A run stopped while every request it sent was still in flight (62
// requests to an upstream that takes 3-7 s, Ctrl-C at 3 s) measured no
// latency: the report said "p50 0.00ms ... max 0.00ms", as if they had
// been answered at once.
func TestTextNoRequestAnswered(t *testing.T) {
	st := results.StatsSummary{Scheduled: 62, Sent: 62, Causes: map[string]int64{"aborted": 62}}
	s := summary(st, map[string]results.StatsSummary{"before": st})
	s.Interrupted = true
	var b strings.Builder
	if err := Text(&b, s, ""); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.Contains(out, "0.00ms") || !strings.Contains(out, "Latency   none measured: no request was answered") {
		t.Errorf("report of a run with nothing answered:\n%s", out)
	}
}

// A route that hedged says how often, beside its retries; one that did
// not keeps the line as it was.
func TestTextGatewayHedges(t *testing.T) {
	var b strings.Builder
	gatewayBlock(&b, &results.GatewayStats{Upstreams: []results.GatewayUpstream{{Name: "search", Requests: 300, Attempts: 448}},
		Routes: []results.GatewayRoute{{Path: "/search", Hedges: 148}, {Path: "/r", Retries: 2}}})
	out := b.String()
	for _, want := range []string{"route /search  0 retries, 148 hedges", "route /r       2 retries  "} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

// A summary rebuilt from a killed run's records says so before any
// number, an objective it cannot judge reads NOT JUDGED (not FAIL, not
// PASS), and a phase past the records is "not recorded": it may have run.
func TestTextRebuiltSummary(t *testing.T) {
	st := stats(1, 2, 3, 4, 0, 50)
	s := summary(st, nil,
		results.ObjectiveResult{Name: "p99 < 300ms", Pass: true, Measured: "3.00ms", Bound: "< 300.0ms"},
		results.ObjectiveResult{Name: "lag_p99 < 50ms", NotJudged: true, Bound: "< 50.0ms", Evidence: "not judged: the scheduling lag is kept only in the summary the run did not write"})
	s.Elapsed, s.Planned, s.Verdict = 7, 20, results.VerdictError
	s.Error = "the run was killed before it wrote its summary; rebuilt from its records up to 7s of the planned 20s"
	s.Rebuilt = &results.Rebuilt{Through: 7, LastEvent: 9.5, Files: []string{"intervals.jsonl", "events.jsonl"}, Rule: results.IntervalRule}
	s.Phases = []results.PhaseSummary{
		{Name: "before", Start: 0, End: 5, Stats: st},
		{Name: "during", Start: 5, End: 7, PlannedEnd: 10, Stats: st},
		{Name: "after", Start: 10, End: 10, PlannedEnd: 20},
	}
	var b strings.Builder
	if err := Text(&b, s, "run-dir"); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	if !strings.Contains(lines[1], "(KILLED: PARTIAL results, rebuilt up to 7.0s of 20.0s)") || strings.Contains(out, "STOPPED BY AN ERROR") {
		t.Errorf("title: %q", lines[1])
	}
	for _, want := range []string{
		"  PARTIAL: the run was killed before it wrote its summary (its last event at 9.5s); this report is rebuilt\n" +
			"  from the records it streamed up to 7.0s of the planned 20.0s (intervals.jsonl, events.jsonl); an interval counts in the phase that holds its start.\n",
		"not recorded (10.0s–20.0s)",
		"* the records end at 7.0s, before the phase's planned end",
		"NOT JUDGED  lag_p99 < 50ms",
		"PASS        p99 < 300ms",
		"Verdict: ERROR (the run was killed before it wrote its summary; rebuilt from its records up to 7s of the planned 20s; 1/2 objectives passed on what it recorded, 1 not judged)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
	// The banner comes before the first number.
	if strings.Index(out, "PARTIAL:") > strings.Index(out, "Load ") {
		t.Errorf("the banner comes after the numbers:\n%s", out)
	}
}

// A run stopped after its load ended, while it waited for requests still
// in flight, said "INTERRUPTED after 4.6s of 4.0s".
func TestTextInterruptedWhileWaitingForTheLastAnswers(t *testing.T) {
	st := results.StatsSummary{Scheduled: 350, Sent: 350, Causes: map[string]int64{"ok": 157, "aborted": 193}}
	s := summary(st, map[string]results.StatsSummary{"before": st})
	s.Interrupted, s.Elapsed, s.Planned = true, 4.6, 4
	var b strings.Builder
	if err := Text(&b, s, ""); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "(INTERRUPTED 0.6s after the 4.0s load ended, waiting for its last answers: partial results)") {
		t.Errorf("report:\n%s", out)
	}
	s.Elapsed = 2.5
	b.Reset()
	if err := Text(&b, s, ""); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "(INTERRUPTED after 2.5s of 4.0s: partial results)") {
		t.Errorf("report:\n%s", out)
	}
}

// A run's elapsed time includes the wait for answers still in flight after
// its load, while its achieved rate is over the load: "400 requests ... in
// 6.5s · achieved 100.0/s" read as a sum gone wrong. The Load line says
// which part was which; a wait of a few milliseconds is not worth a word.
func TestTextLoadLineSaysTheWaitAfterTheLoad(t *testing.T) {
	st := results.StatsSummary{Scheduled: 400, Sent: 400, AchievedRate: 100, Causes: map[string]int64{"ok": 400}}
	s := summary(st, nil)
	s.Run.Start, s.Run.End, s.Elapsed, s.Planned = 0, 4, 6.5, 4
	var b strings.Builder
	if err := Text(&b, s, ""); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "400 requests sent of 400 scheduled in 6.5s (4.0s of load, then 2.5s for the last answers)") {
		t.Errorf("report:\n%s", out)
	}
	s.Elapsed = 4.02
	b.Reset()
	if err := Text(&b, s, ""); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "scheduled in 4.0s · ") {
		t.Errorf("a run that ended with its load:\n%s", out)
	}
}

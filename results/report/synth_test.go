package report_test

import (
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
)

// synthStages is the profile of the synthetic run: a ramp, then a hold.
var synthStages = []loadgen.Stage{
	{Duration: 4 * time.Second, From: 0, To: 100},
	{Duration: 16 * time.Second, From: 100, To: 100},
}

// synthRun writes a run directory through the same Collector and Writer a
// real run uses, with the events that the gateway's breaker, outlier
// detection and autoscaling emit (the spine's gateway does not wire them in
// yet, so a real run cannot produce them): a breaker that opens during a
// fault and closes after it, a replica ejected and returned, a replica
// added and removed.
func synthRun(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "synth")
	w, err := results.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.WriteFile(results.ScenarioFile, []byte("name: synth\nseed: 9\n# a synthetic run for the report's tests\n")); err != nil {
		t.Fatal(err)
	}
	ev := func(sec float64, source, typ, target string, attrs map[string]any) {
		w.Emit(event.Event{T: time.Duration(sec * float64(time.Second)), Source: source, Type: typ, Target: target, Attrs: attrs})
	}
	// Setup: three replicas listen before the load starts (small offsets on
	// the not-yet-zeroed clock).
	for i, r := range []string{"api[0]", "api[1]", "api[2]"} {
		ev(0.0001*float64(i+1), "run", "upstream.listen", r, map[string]any{"addr": "127.0.0.1:1"})
	}
	ev(0.0002, "run", "upstream.listen", "db[0]", nil)
	ev(0, "run", "load.start", "http://127.0.0.1:1", nil)
	ev(5, "timeline", "fault.start", "api", map[string]any{"fault": "api-errors", "kind": "error"})
	for k := range 50 {
		ev(5+float64(k)*0.1, "upstream", "fault.apply", "api[0]", map[string]any{"fault": "api-errors", "kind": "error"})
	}
	ev(6, "gateway", "breaker.open", "api", map[string]any{"failures": 5})
	ev(7, "gateway", "outlier.eject", "api[127.0.0.1:2]", map[string]any{"reason": "consecutive_5xx"})
	ev(9, "gateway", "breaker.half_open", "api", nil)
	ev(9.5, "gateway", "breaker.open", "api", nil)
	ev(10, "timeline", "fault.stop", "api", map[string]any{"fault": "api-errors", "kind": "error"})
	ev(11, "gateway", "breaker.half_open", "api", nil)
	ev(11.5, "gateway", "breaker.close", "api", nil)
	ev(12, "gateway", "outlier.uneject", "api[127.0.0.1:2]", nil)
	ev(8, "gateway", "breaker.forced_open", "db", nil)
	ev(13, "gateway", "breaker.close", "db", nil)
	ev(14, "autoscaler", "replica.add", "api[3]", nil)
	ev(17, "autoscaler", "replica.remove", "api[3]", nil)
	ev(15, "timeline", "fault.start", "db", map[string]any{"fault": "db-slow", "kind": "latency"})
	ev(20, "run", "load.stop", "", nil)

	phases := []results.Phase{{Name: "run", Start: 0, End: 20 * time.Second}, {Name: "api-errors", Start: 5 * time.Second, End: 10 * time.Second}}
	c := results.NewCollector(phases, time.Second, 2)
	pacer := loadgen.NewPacer(synthStages)
	rng := rand.New(rand.NewPCG(9, 9))
	for n := int64(0); ; n++ {
		at, ok := pacer.At(n)
		if !ok {
			break
		}
		s := &loadgen.Sample{Intended: at, Cause: cause.OK, Status: 200}
		base := 5*time.Millisecond + time.Duration(rng.ExpFloat64()*float64(3*time.Millisecond))
		switch {
		case at >= 5*time.Second && at < 10*time.Second && rng.Float64() < 0.4:
			s.Cause, s.Status = cause.BreakerOpen, 503
			base = time.Millisecond
		case at >= 5*time.Second && at < 10*time.Second && rng.Float64() < 0.3:
			s.Cause, s.Status = cause.UpstreamError, 500
		case at >= 15*time.Second:
			base += 40 * time.Millisecond
		}
		if at >= 15*time.Second && rng.Float64() < 0.05 {
			s.Cause = cause.Dropped
		}
		s.Latency, s.Service = base, base
		c.Record(int(n%2), s)
	}
	w.WriteIntervals(c.TakeIntervals(1<<62), results.Sec(time.Second))
	sum := &results.Summary{Scenario: "synth", File: "synth.yaml", Seed: 9, PlanHash: "sha256:0000", Started: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
		Elapsed: 20, Planned: 20, Target: "http://127.0.0.1:1", Gateway: "builtin", Verdict: results.VerdictFail,
		Versions: map[string]string{"go": "test", "cascade": "dev"}}
	for i, st := range c.PhaseStats() {
		ph := phases[i]
		ps := results.PhaseSummary{Name: ph.Name, Start: results.Sec(ph.Start), End: results.Sec(ph.End),
			Stats: results.Summarize(st, ph.End-ph.Start, pacer.Expected(ph.Start, ph.End))}
		if i == 0 {
			sum.Run = ps
		} else {
			sum.Phases = append(sum.Phases, ps)
		}
	}
	sum.Faults = []results.FaultSummary{
		{Name: "api-errors", Kind: "error", Target: "api", Start: 5, End: 10, Started: true, Fired: 120},
		{Name: "db-slow", Kind: "latency", Target: "db", Start: 15, End: 20, Started: true, Fired: 0},
	}
	sum.Objectives = []results.ObjectiveResult{
		{Name: "p99 < 100ms", Phase: "run", Expr: "p99 < 100ms", Value: 50, Measured: "50.0ms", Bound: "< 100.0ms", Pass: true, Evidence: "p99 over all requests"},
		{Name: "api-errors: error_rate < 1%", Phase: "api-errors", Expr: "error_rate < 1%", Value: 0.5, Measured: "50.0%", Bound: "< 1.00%", Pass: false, Evidence: "<script>alert(1)</script> must be shown, not run"},
	}
	if err := w.WriteSummary(sum); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

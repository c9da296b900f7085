package gameday

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/scenarios/plan"
)

func TestCutStages(t *testing.T) {
	st := []loadgen.Stage{{Duration: 4 * time.Second, From: 0, To: 100}, {Duration: 6 * time.Second, From: 300, To: 300}}
	got := CutStages(st, time.Second, 5*time.Second)
	want := []loadgen.Stage{{Duration: 3 * time.Second, From: 25, To: 100}, {Duration: time.Second, From: 300, To: 300}}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i].Duration != want[i].Duration || math.Abs(got[i].From-want[i].From) > 1e-9 || math.Abs(got[i].To-want[i].To) > 1e-9 {
			t.Errorf("stage %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// Cut pieces schedule exactly what the whole did.
	whole := loadgen.NewPacer(st).Total()
	parts := loadgen.NewPacer(CutStages(st, 0, 3*time.Second)).Total() + loadgen.NewPacer(CutStages(st, 3*time.Second, 10*time.Second)).Total()
	if math.Abs(whole-parts) > 1e-6 {
		t.Errorf("pieces schedule %v requests, the whole %v", parts, whole)
	}
	if got := CutStages(st, 4*time.Second, 4*time.Second); len(got) != 0 {
		t.Errorf("empty window: %+v", got)
	}
}

// Phases move with the gates: a boundary after a gate that has not opened
// is unknown (infinity); once it opens, everything after it moves by the
// time held. Starts at the gate's instant come after the hold, ends before.
func TestPhaseWindowsFollowGates(t *testing.T) {
	s := time.Second
	p := &plan.Plan{
		Duration: 10 * s,
		Gates:    []plan.Gate{{Name: "g1", At: 4 * s, MaxHold: time.Minute}, {Name: "g2", At: 7 * s, MaxHold: time.Minute}},
		Phases: []results.Phase{
			{Name: "run", Start: 0, End: 10 * s},
			{Name: "before", Start: 0, End: 4 * s},
			{Name: "span", Start: 2 * s, End: 8 * s},
			{Name: "after-g1", Start: 4 * s, End: 6 * s},
			{Name: "g1", Start: 4 * s, End: 4 * s},
			{Name: "g2", Start: 7 * s, End: 7 * s},
		},
	}
	sc := &Script{p: p}
	w := func() map[string][2]time.Duration {
		out := map[string][2]time.Duration{}
		for _, ph := range sc.windowsLocked() {
			out[ph.Name] = [2]time.Duration{ph.Start, ph.End}
		}
		return out
	}
	check := func(step string, want map[string][2]time.Duration) {
		t.Helper()
		got := w()
		for name, wv := range want {
			if got[name] != wv {
				t.Errorf("%s: %s = [%v, %v), want [%v, %v)", step, name, got[name][0], got[name][1], wv[0], wv[1])
			}
		}
	}
	check("before any gate", map[string][2]time.Duration{
		"run": {0, never}, "before": {0, 4 * s}, "span": {2 * s, never}, "after-g1": {never, never}, "g1": {never, never}, "g2": {never, never}})
	sc.closed = &Hold{Gate: p.Gates[0], Closed: 4 * s}
	check("g1 closed", map[string][2]time.Duration{"g1": {4 * s, never}, "after-g1": {never, never}, "before": {0, 4 * s}})
	sc.holds = []Hold{{Gate: p.Gates[0], Closed: 4 * s, Opened: 9 * s}} // held 5 s
	sc.closed = nil
	check("g1 opened", map[string][2]time.Duration{
		"g1": {4 * s, 9 * s}, "after-g1": {9 * s, 11 * s}, "span": {2 * s, never}, "run": {0, never}, "g2": {never, never}})
	sc.holds = append(sc.holds, Hold{Gate: p.Gates[1], Closed: 12 * s, Opened: 13 * s}) // held 1 s
	check("g2 opened", map[string][2]time.Duration{
		"run": {0, 16 * s}, "span": {2 * s, 14 * s}, "g2": {12 * s, 13 * s}, "after-g1": {9 * s, 11 * s}})
	final := map[string]results.Phase{}
	for _, ph := range sc.finalPhasesLocked(15 * s) {
		final[ph.Name] = ph
	}
	if final["run"].End != 15*s {
		t.Errorf("a stopped run's phases end where it stopped: %+v", final["run"])
	}
}

// The game-day example compiles, with its gate and safety check.
func TestGameDayExampleCompiles(t *testing.T) {
	p, err := plan.CompileFile("../../scenarios/examples/gameday/gameday.yaml", plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Gates) != 1 || len(p.Safety) != 1 || p.Safety[0].Stop {
		t.Errorf("gates %+v, safety %+v", p.Gates, p.Safety)
	}
}

type nopTransport struct{}

func (nopTransport) RoundTrip(context.Context, int, *loadgen.Sample) {}

// Without gates the script answers the run's watermark as a plain run's
// generator would: its schedule's arrivals, counted before segment 0
// starts too, and the load's end, which a stop moves. With gates it cannot
// tell (segments start when gates open, shifted): the timeout rule.
func TestScriptTellsTheWatermarkOnlyWithoutGates(t *testing.T) {
	s := time.Second
	load := loadgen.Config{Requests: []loadgen.Request{{Path: "/"}}, Stages: []loadgen.Stage{{Duration: 10 * s, From: 10, To: 10}}}
	gated := &Script{p: &plan.Plan{Duration: 10 * s, Load: load, Gates: []plan.Gate{{Name: "g", At: 4 * s, MaxHold: time.Minute}}},
		cfg: load, clock: event.NewClock(), tr: nopTransport{}}
	if _, ok := gated.ArrivalsBefore(s); ok {
		t.Error("a gated script counted its arrivals ahead")
	}
	if _, ok := gated.OldestInFlight(); ok {
		t.Error("a gated script bounded its sends")
	}
	plain := &Script{p: &plan.Plan{Duration: 10 * s, Load: load}, cfg: load, clock: event.NewClock(), tr: nopTransport{}}
	if n, ok := plain.ArrivalsBefore(2 * s); !ok || n != 20 {
		t.Errorf("ArrivalsBefore(2s) = %d, %v; want 20 at 10/s", n, ok)
	}
	if _, ok := plain.OldestInFlight(); ok {
		t.Error("an open model bounded its VUs' sends")
	}
	if end := plain.End(); end != 10*s {
		t.Errorf("End = %s, want 10s", end)
	}
	plain.stopAt = 3500 * time.Millisecond
	if end := plain.End(); end != 3500*time.Millisecond {
		t.Errorf("stopped at 3.5 s: End = %s", end)
	}
	vus := loadgen.Config{Kind: loadgen.VUs, Requests: []loadgen.Request{{Path: "/"}}, Stages: []loadgen.Stage{{Duration: 10 * s, From: 2, To: 2}}}
	closed := &Script{p: &plan.Plan{Duration: 10 * s, Load: vus}, cfg: vus, clock: event.NewClock(), tr: nopTransport{}}
	if _, ok := closed.OldestInFlight(); !ok {
		t.Error("a closed model without gates did not bound its sends")
	}
	if _, ok := closed.ArrivalsBefore(s); ok {
		t.Error("a closed model counted arrivals")
	}
}

package gameday

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// A game day killed outright wrote no summary and no gameday.json: the
// plan it ran is rebuilt from its gate events and its journal, on the same
// script code as live. Everything after a gate moves by the time it was
// held; a gate closed at the kill is held until the records end; faults
// added and removed by hand, and a halt, move the phases they derive.
func TestKilledPlan(t *testing.T) {
	s := time.Second
	src := `name: killed-gd
upstreams: [{name: api, replicas: 1, latency: 1ms}]
gateway: {routes: [{path: /, upstream: api}]}
load:
  stages: [{duration: 10s, rate: 10/s}]
  requests: [{path: /}]
phases:
  - {name: g1, start: 4s, gate: manual, max_hold: 1m}
  - {name: g2, start: 7s, gate: manual, max_hold: 1m}
  - {name: late, start: 8s, end: 9s}
faults:
  - {name: slow, kind: latency, target: api, start: 1s, duration: 2s, params: {delay: 5ms}}
`
	p, err := plan.CompileBytes("killed-gd.yaml", []byte(src), plan.Options{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	evs := []event.Event{
		{T: 4*s + 2*time.Millisecond, Source: "gameday", Type: "gate.close", Target: "g1"},
		{T: 9 * s, Source: "gameday", Type: "gate.open", Target: "g1", Attrs: map[string]any{"by": "ana"}},
		{T: 12*s + 3*time.Millisecond, Source: "gameday", Type: "gate.close", Target: "g2"},
	}
	journal := []Entry{
		{T: 2, Action: ActFaultRm, Fault: "slow"},
		{T: 2.5, Action: ActFaultAdd, Fault: "by-hand", Spec: "{kind: latency, target: api, params: {delay: 9ms}}"},
		{T: 3, Action: ActFaultAdd, Fault: "refused", Error: "no", Spec: "{kind: latency, target: api, params: {delay: 9ms}}"},
		{T: 10, Action: ActHalt, Who: "safety"},
	}
	q, notes := KilledPlan(p, evs, journal, 13*s)
	if len(notes) > 0 {
		t.Errorf("notes: %v", notes)
	}
	got := map[string][2]time.Duration{}
	for _, ph := range q.Phases {
		got[ph.Name] = [2]time.Duration{ph.Start, ph.End}
	}
	want := map[string][2]time.Duration{
		"run":  {0, 13 * s}, // past g2, still closed: up to the records' end
		"g1":   {4 * s, 9 * s},
		"g2":   {12 * s, 13 * s}, // closed where the script reached it: 7s + 5s held
		"late": {13 * s, 13 * s}, // after g2: not reached
		"slow": {1 * s, 2 * s},   // removed by hand at 2s
		// Added at 2.5s, halted at 10s on the run's clock: 5s on the
		// scenario's (g1 held 5s).
		"by-hand": {2500 * time.Millisecond, 10 * s},
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("phase %s = %v (present %v), want %v", name, g, ok, w)
		}
	}
	if _, ok := got["refused"]; ok {
		t.Error("a refused fault made a phase")
	}
	// 4s, g1 held 5s, 3s, g2 held 1s until the records end, 3s.
	if q.Duration != 16*s {
		t.Errorf("planned %v, want 16s (stages %+v)", q.Duration, q.Load.Stages)
	}
	if p.Duration != 10*s || len(p.Load.Stages) != 1 {
		t.Errorf("the scenario's plan was changed: %v %+v", p.Duration, p.Load.Stages)
	}

	// Records that end before the gate closed (a gated game day writes
	// its intervals a client timeout late): the gate's phase is empty at
	// its close, not ending before it starts.
	q, _ = KilledPlan(p, evs[:1], nil, 3*s)
	for _, ph := range q.Phases {
		if ph.End < ph.Start {
			t.Errorf("records through 3s, g1 closed at 4s: phase %s %v–%v ends before it starts", ph.Name, ph.Start, ph.End)
		}
		if ph.Name == "g1" && (ph.Start != 4*s || ph.End != ph.Start) {
			t.Errorf("g1 = %v–%v, want empty at its close (4s)", ph.Start, ph.End)
		}
	}

	// A gate opened by hand in the second before the kill: its gate.open
	// event was lost, the journal's phase.next (written as it was done)
	// opens it. With the event there too, the event's time is kept and
	// nothing is said.
	byHand := []Entry{{T: 9, Who: "ana", Action: ActPhaseNext, Phase: "g1"}}
	for _, c := range []struct {
		what string
		evs  []event.Event
		want time.Duration
	}{
		{"journal only", evs[:1], 9 * s},
		{"journal and event", []event.Event{evs[0], {T: 9*s + time.Millisecond, Source: "gameday", Type: "gate.open", Target: "g1"}}, 9*s + time.Millisecond},
	} {
		q, notes := KilledPlan(p, c.evs, byHand, 10*s)
		for _, ph := range q.Phases {
			if ph.Name == "g1" && (ph.Start != 4*s || ph.End != c.want) {
				t.Errorf("%s: g1 = %v–%v, want 4s–%v", c.what, ph.Start, ph.End, c.want)
			}
		}
		// 4 s, g1 held until it opened, the scenario's other 6 s.
		if q.Duration != c.want+6*s {
			t.Errorf("%s: planned %v, want %v", c.what, q.Duration, c.want+6*s)
		}
		if len(notes) > 0 {
			t.Errorf("%s: notes %v", c.what, notes)
		}
	}

	// A fault that no longer compiles offline is said, not guessed.
	_, notes = KilledPlan(p, nil, []Entry{{T: 1, Action: ActFaultAdd, Fault: "bad", Spec: "{kind: nosuch, target: api}"}}, 5*s)
	if len(notes) != 1 || !strings.Contains(notes[0], "the fault bad added by hand at 1.000s does not compile offline") {
		t.Errorf("notes: %v", notes)
	}
	// No gates, nothing by hand: the plan as written.
	plain, _ := plan.CompileBytes("p.yaml", []byte(strings.Split(src, "phases:")[0]), plan.Options{Offline: true})
	if q, _ := KilledPlan(plain, nil, nil, 5*s); q != plain {
		t.Error("a run with nothing to replay got a plan of its own")
	}
}

// A gate whose max_hold ran out before the records end opened then, though
// the kill lost its gate.open event (and no journal line says so: nobody
// opened it by hand). It counted as held to the records' end.
func TestKilledPlanMaxHold(t *testing.T) {
	s := time.Second
	p, err := plan.CompileBytes("hold.yaml", []byte(`name: hold
upstreams: [{name: api, replicas: 1, latency: 1ms}]
gateway: {routes: [{path: /, upstream: api}]}
load:
  stages: [{duration: 6s, rate: 10/s}]
  requests: [{path: /}]
phases:
  - {name: g, start: 2s, gate: manual, max_hold: 3s}
`), plan.Options{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	closed := []event.Event{{T: 2 * s, Source: "gameday", Type: "gate.close", Target: "g"}}
	for _, c := range []struct {
		through, end, planned time.Duration
	}{
		{8 * s, 5 * s, 9 * s}, // held its 3 s, then the other 4 s
		{4 * s, 4 * s, 8 * s}, // still within its max_hold at the kill
	} {
		q, notes := KilledPlan(p, closed, nil, c.through)
		for _, ph := range q.Phases {
			if ph.Name == "g" && (ph.Start != 2*s || ph.End != c.end) {
				t.Errorf("records through %v: g = %v–%v, want 2s–%v", c.through, ph.Start, ph.End, c.end)
			}
		}
		if q.Duration != c.planned || len(notes) > 0 {
			t.Errorf("records through %v: planned %v, want %v; notes %v", c.through, q.Duration, c.planned, notes)
		}
	}
}

// A journal whose last write the kill cut keeps the entries before it; a
// bad line before the last is still an error, and ReadJournal (a finished
// run's) refuses both.
func TestReadKilledJournal(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, JournalFile), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	good := `{"t":1,"action":"fault.rm","fault":"slow"}` + "\n" + `{"t":2,"action":"halt","who":"safety"}` + "\n"
	write(good + `{"t":3,"action":"fault.a`)
	es, cut, err := ReadKilledJournal(dir)
	if err != nil || len(es) != 2 || !strings.HasSuffix(cut, JournalFile+":3") {
		t.Errorf("cut last line: %d entries, cut %q, %v", len(es), cut, err)
	}
	if _, err := ReadJournal(dir); err == nil {
		t.Error("ReadJournal took a cut line")
	}
	write(`{"t":1,"act` + "\n" + good)
	if _, _, err := ReadKilledJournal(dir); err == nil || !strings.Contains(err.Error(), JournalFile+":1") {
		t.Errorf("a bad first line: %v", err)
	}
	write(good)
	if es, cut, err := ReadKilledJournal(dir); err != nil || len(es) != 2 || cut != "" {
		t.Errorf("whole journal: %d entries, cut %q, %v", len(es), cut, err)
	}
}

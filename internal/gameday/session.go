// Package gameday runs a scenario live, as a game day: a control API on
// loopback (token required) through which people add and remove faults,
// open manual phase gates and stop the run; a live dashboard drawing the
// report's charts every second; safety checks that remove every fault at
// once when the system breaks too far (auto-halt); and a journal of
// everything done by hand, which `cascade gameday export` turns into a
// scenario that replays the game day in CI.
//
//	person ─ cascade fault add ─▶ control API ─▶ Session ─┬─ Timeline.Start/Stop (faults)
//	                                   │                  ├─ Script (load, gates, graceful stop)
//	browser ◀─ SSE every second ───────┘                  ├─ Live (recent stats) ─▶ safety checks ─▶ halt
//	                                                      └─ Journal (journal.jsonl)
//
// The run (internal/run) builds a Session when a run is live or declares
// gates or safety checks, and drives the load through it.
package gameday

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/internal/atomicfile"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// Config is what a Session needs before the run starts its upstreams.
type Config struct {
	Plan  *plan.Plan
	Dir   string // the run directory
	Clock *event.Clock
	// Control serves the control API and the dashboard on Listen (loopback
	// only; default 127.0.0.1:0). Without it the session only runs the
	// plan's gates-free script and safety checks (a plain run with safety:).
	Control bool
	Listen  string
	Stderr  io.Writer // the address and token are printed here
}

// Wiring is what the run has built by the time the load can start.
type Wiring struct {
	Timeline  *faults.Timeline
	Collector *results.Collector
	Target    string
	Sink      event.Sink
	Shards    int
	Transport loadgen.Transport // nil: net/http
}

// Session is one live run's control plane.
type Session struct {
	cfg     Config
	p       *plan.Plan
	clock   *event.Clock
	journal *Journal
	events  *eventLog
	server  *server

	// Set by Start.
	sink      event.Sink
	target    string
	tl        *faults.Timeline
	collector *results.Collector
	live      *Live
	script    *Script
	checks    []*check
	stream    *stream

	mu       sync.Mutex
	running  bool // the load has started and not ended
	ended    bool
	manual   map[string]*manualFault
	seq      map[string]int
	halts    []Halt
	scripted map[string]bool
}

type manualFault struct {
	entry faults.Entry
	who   string
	added time.Duration
	spec  string
}

// Halt is one auto-halt: a safety check broke and every fault was removed.
type Halt struct {
	T         time.Duration `json:"-"`
	TS        float64       `json:"t"`
	Objective string        `json:"objective"`
	Window    float64       `json:"window_s"`
	Measured  string        `json:"measured"`
	Bound     string        `json:"bound"`
	Evidence  string        `json:"evidence"`
	Removed   []string      `json:"removed"`
	Stop      bool          `json:"stop"`
}

// New prepares a session; with cfg.Control it binds the control API's
// listener now, so a bad address fails before anything starts.
func New(cfg Config) (*Session, error) {
	s := &Session{cfg: cfg, p: cfg.Plan, clock: cfg.Clock, events: &eventLog{}, manual: map[string]*manualFault{},
		seq: map[string]int{}, scripted: map[string]bool{}}
	if s.cfg.Stderr == nil {
		s.cfg.Stderr = io.Discard
	}
	for _, e := range s.p.Timeline {
		s.scripted[e.Name] = true
	}
	j, err := CreateJournal(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("game day journal: %w", err)
	}
	s.journal = j
	if cfg.Control {
		srv, err := newServer(s, cfg.Listen)
		if err != nil {
			j.Close()
			return nil, err
		}
		s.server = srv
	}
	return s, nil
}

// Sink returns next with the session listening in: the dashboard draws the
// fault windows, breakers and replicas from the events.
func (s *Session) Sink(next event.Sink) event.Sink {
	return event.Tee(next, s.events)
}

// TimelineEntries are the entries the run's Timeline starts with: the
// plan's, or none when the plan has gates (the script then starts each
// scripted fault on the scenario's clock).
func (s *Session) TimelineEntries() []faults.Entry {
	if len(s.p.Gates) > 0 {
		return nil
	}
	return s.p.Timeline
}

// Phases are the collector's phases to start with (phases after a gate
// start at infinity until it opens).
func (s *Session) Phases() []results.Phase {
	if s.script != nil {
		return s.script.Phases()
	}
	sc := &Script{p: s.p}
	return sc.windowsLocked()
}

// Start wires the session to the run, serves the control API, and prints
// how to reach it. The load starts with Run.
func (s *Session) Start(w Wiring) error {
	s.sink, s.tl, s.collector, s.target = w.Sink, w.Timeline, w.Collector, w.Target
	if s.sink == nil {
		s.sink = event.Discard
	}
	s.live = NewLive(w.Collector, s.clock, s.p.Load.ClientTimeout, w.Shards)
	sc, err := NewScript(ScriptConfig{Plan: s.p, Target: w.Target, Clock: s.clock, Sink: s.sink, Recorder: s.live,
		Phases: w.Collector, Timeline: w.Timeline, Transport: w.Transport})
	if err != nil {
		return err
	}
	s.script = sc
	for _, sf := range s.p.Safety {
		s.checks = append(s.checks, &check{Safety: sf, armed: true})
	}
	s.stream = newStream(s)
	if s.server != nil {
		if err := s.server.start(); err != nil {
			return err
		}
		s.announce()
	}
	return nil
}

func (s *Session) announce() {
	srv := s.server
	fmt.Fprintf(s.cfg.Stderr, "game day: control API %s (loopback only)\n", srv.url())
	fmt.Fprintf(s.cfg.Stderr, "  token     %s (also in %s, mode 0600)\n", srv.token, filepath.Join(s.cfg.Dir, ControlFile))
	fmt.Fprintf(s.cfg.Stderr, "  dashboard %s/?token=%s\n", srv.url(), srv.token)
	fmt.Fprintf(s.cfg.Stderr, "  from another shell: export CASCADE_RUN=%s; cascade fault ls\n", s.cfg.Dir)
	for _, g := range s.p.Gates {
		fmt.Fprintf(s.cfg.Stderr, "  gate %s at %s: waits for `cascade phase next` (at most %s)\n", g.Name, g.At, g.MaxHold)
	}
}

// Run drives the load through the script, with the safety checks and the
// dashboard's stream running beside it.
func (s *Session) Run(ctx context.Context) error {
	s.mu.Lock()
	s.running = true
	s.mu.Unlock()
	bg, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.watch(bg) }()
	go func() { defer wg.Done(); s.stream.run(bg) }()
	err := s.script.Run(ctx)
	s.mu.Lock()
	s.running, s.ended = false, true
	s.mu.Unlock()
	stop()
	wg.Wait()
	return err
}

// Progress implements the run's live display.
func (s *Session) Progress() loadgen.Progress { return s.script.Progress() }

// Pacer is the schedule as it ran.
func (s *Session) Pacer() *loadgen.Pacer { return s.script.Pacer() }

// FirstRequestError is the first request the session's load could not
// build, or nil.
func (s *Session) FirstRequestError() *loadgen.RequestError {
	return loadgen.FirstRequestError(s.script.tr)
}

// FirstClientErrors is the first error of each client-side cause in the
// session's load.
func (s *Session) FirstClientErrors() []*loadgen.ClientError {
	return loadgen.FirstClientErrors(s.script.tr)
}

// Stopped says who stopped the run early ("" if no one did).
func (s *Session) Stopped() string { return s.script.Stopped() }

// StoppedAt is when the load was stopped early (cascade stop, a safety
// check's on_breach: stop), on the run's clock; 0 if it was not.
func (s *Session) StoppedAt() time.Duration { return s.script.StoppedAt() }

// OldestInFlight, ArrivalsBefore and End tell the run when an interval can
// no longer receive samples (see Script.OldestInFlight).
func (s *Session) OldestInFlight() (time.Duration, bool) { return s.script.OldestInFlight() }

// ArrivalsBefore: see OldestInFlight.
func (s *Session) ArrivalsBefore(t time.Duration) (int64, bool) { return s.script.ArrivalsBefore(t) }

// End: see OldestInFlight.
func (s *Session) End() time.Duration { return s.script.End() }

// Close ends the control API, removes the control file, writes the game
// day's state for export and closes the journal.
func (s *Session) Close() error {
	var errs []error
	if s.server != nil {
		errs = append(errs, s.server.close())
	}
	if s.script != nil {
		errs = append(errs, s.writeState())
	}
	errs = append(errs, s.journal.Close())
	return errors.Join(errs...)
}

// RanPlan is p as it ran, for the summary and the report: phases where
// they fell on the run's clock (cut at elapsed), the load profile with the
// holds in it, and the planned duration including them.
func (s *Session) RanPlan(elapsed time.Duration) *plan.Plan {
	pp := *s.p
	pp.Phases = s.script.FinalPhases(elapsed)
	pp.Load.Stages = s.script.Stages()
	pp.Duration = loadgen.NewPacer(pp.Load.Stages).Duration()
	return &pp
}

// Reports completes the timeline's reports with the scripted faults it
// never heard of (a gated plan's faults the run did not reach).
func (s *Session) Reports(rs []faults.Report) []faults.Report {
	have := map[string]bool{}
	for _, r := range rs {
		have[r.Name] = true
	}
	for _, e := range s.p.Timeline {
		if !have[e.Name] {
			rs = append(rs, faults.Report{Name: e.Name, Kind: e.Kind, Target: e.Target()})
		}
	}
	return rs
}

// ActionError is a refused action, with the HTTP status that says why.
type ActionError struct {
	Status int
	Err    error
}

// Error says why the action was refused.
func (e *ActionError) Error() string { return e.Err.Error() }

// Unwrap gives the underlying error (faults.ErrFaultActive, ErrNoGate...).
func (e *ActionError) Unwrap() error { return e.Err }

func refuse(status int, err error) error { return &ActionError{Status: status, Err: err} }

// checkRunning refuses actions before the load starts and after it ends.
func (s *Session) checkRunning() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.ended:
		return refuse(409, ErrFinished)
	case !s.running:
		return refuse(409, errors.New("the load has not started yet"))
	}
	if who := s.script.Stopped(); who != "" {
		return refuse(409, fmt.Errorf("%w (stopped by %s)", ErrStopped, who))
	}
	return nil
}

// AddFault compiles a fault document (as one entry of a scenario's faults
// list) with the plan's own fault compiler and starts it now. source
// labels errors, as a file name does.
func (s *Session) AddFault(who, source string, doc []byte) (faults.Entry, error) {
	now := s.clock.Now()
	je := Entry{T: now.Seconds(), Wall: time.Now(), Who: who, Action: ActFaultAdd, Spec: string(doc)}
	e, err := s.addFault(source, doc)
	if err != nil {
		je.Error = err.Error()
	} else {
		je.Fault, je.Kind, je.Target = e.Name, e.Kind, e.Target()
		s.mu.Lock()
		s.manual[e.Name] = &manualFault{entry: e, who: who, added: now, spec: string(doc)}
		s.mu.Unlock()
		s.script.FaultAdded(e)
	}
	s.journal.Add(je)
	s.sink.Emit(event.Event{T: s.clock.Now(), Source: "gameday", Type: "gameday.action", Target: je.Target,
		Attrs: actionAttrs(ActFaultAdd, who, je)})
	return e, err
}

func (s *Session) addFault(source string, doc []byte) (faults.Entry, error) {
	if err := s.checkRunning(); err != nil {
		return faults.Entry{}, err
	}
	if strings.TrimSpace(string(doc)) == "" {
		return faults.Entry{}, refuse(400, errors.New("empty fault: send a fault as in a scenario's faults list, e.g. {kind: latency, target: api, params: {delay: 200ms}}"))
	}
	s.mu.Lock()
	kind := peekKind(doc)
	s.seq[kind]++
	def := fmt.Sprintf("manual-%s-%d", kind, s.seq[kind])
	s.mu.Unlock()
	e, err := s.p.CompileFault(source, doc, def)
	if err != nil {
		return faults.Entry{}, refuse(400, err)
	}
	if err := s.nameFree(e.Name); err != nil {
		return faults.Entry{}, err
	}
	if err := s.tl.Start(e); err != nil {
		switch {
		case errors.Is(err, faults.ErrFaultActive):
			return faults.Entry{}, refuse(409, err)
		case errors.Is(err, faults.ErrTimelineDone):
			return faults.Entry{}, refuse(409, ErrFinished)
		}
		return faults.Entry{}, refuse(400, err)
	}
	return e, nil
}

// nameFree refuses the names of scripted faults and of phases: a manual
// fault becomes a timeline entry (and a phase) of the exported scenario.
func (s *Session) nameFree(name string) error {
	if s.scripted[name] {
		return refuse(409, fmt.Errorf("%q is a scripted fault of the scenario: give the manual fault another name", name))
	}
	for _, ph := range s.p.Phases {
		if ph.Name == name {
			return refuse(409, fmt.Errorf("%q is a phase of the scenario: give the fault another name", name))
		}
	}
	return nil
}

// peekKind reads the kind for a default name; the compiler judges it.
func peekKind(doc []byte) (kind string) {
	defer func() {
		if recover() != nil { // the YAML library panics on some inputs; the compiler reports them
			kind = "fault"
		}
	}()
	var m struct {
		Kind string `yaml:"kind"`
	}
	if yaml.Unmarshal(doc, &m) != nil || m.Kind == "" || !nameChars(m.Kind) {
		return "fault"
	}
	return m.Kind
}

func nameChars(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return len(s) <= 40
}

// RemoveFault ends a fault now (manual or scripted) and cancels its later
// occurrences.
func (s *Session) RemoveFault(who, name string) error {
	je := Entry{T: s.clock.Now().Seconds(), Wall: time.Now(), Who: who, Action: ActFaultRm, Fault: name}
	err := s.checkRunning()
	if err == nil {
		cancelled := s.script != nil && s.script.Remove(name)
		err = s.tl.Stop(name)
		if cancelled && (errors.Is(err, faults.ErrUnknownFault) || errors.Is(err, faults.ErrNotActive)) {
			err = nil // not on now, and what was to come is cancelled
		}
		switch {
		case errors.Is(err, faults.ErrUnknownFault):
			err = refuse(404, err)
		case errors.Is(err, faults.ErrNotActive):
			err = refuse(409, err)
		case err != nil:
			err = refuse(409, err)
		}
	}
	if err != nil {
		je.Error = err.Error()
	} else {
		s.script.FaultEnded(name)
	}
	s.journal.Add(je)
	s.sink.Emit(event.Event{T: s.clock.Now(), Source: "gameday", Type: "gameday.action",
		Attrs: actionAttrs(ActFaultRm, who, je)})
	return err
}

// NextPhase opens the gate that is waiting and returns its name and when it
// opened on the run's clock (the instant the phase ends).
func (s *Session) NextPhase(who string) (string, time.Duration, error) {
	je := Entry{T: s.clock.Now().Seconds(), Wall: time.Now(), Who: who, Action: ActPhaseNext}
	err := s.checkRunning()
	var name string
	var opened time.Duration
	if err == nil {
		name, opened, err = s.script.OpenGate(who)
		if errors.Is(err, ErrNoGate) {
			msg := "no gate is waiting"
			if g, ok := s.script.NextGate(); ok {
				msg += fmt.Sprintf(" (the next, %s, closes at %s on the scenario's clock; it is at %s now)", g.Name, g.At, s.script.ScriptTime().Round(time.Millisecond))
			} else if len(s.p.Gates) == 0 {
				msg += " (the scenario declares no gate: phases: [{name: ..., start: ..., gate: manual}])"
			}
			err = refuse(409, errors.New(msg))
		} else if err != nil {
			err = refuse(409, err)
		}
	}
	je.Phase = name
	if err != nil {
		je.Error = err.Error()
	}
	s.journal.Add(je)
	s.sink.Emit(event.Event{T: s.clock.Now(), Source: "gameday", Type: "gameday.action", Target: name,
		Attrs: actionAttrs(ActPhaseNext, who, je)})
	return name, opened, err
}

// Stop ends the run gracefully: results are written and judged as usual.
func (s *Session) Stop(who string) error {
	je := Entry{T: s.clock.Now().Seconds(), Wall: time.Now(), Who: who, Action: ActStop}
	err := s.checkRunning()
	if err == nil {
		if err = s.script.Stop(who); err != nil {
			err = refuse(409, err)
		}
	}
	if err != nil {
		je.Error = err.Error()
	}
	s.journal.Add(je)
	s.sink.Emit(event.Event{T: s.clock.Now(), Source: "gameday", Type: "gameday.action",
		Attrs: actionAttrs(ActStop, who, je)})
	return err
}

// actionAttrs are a gameday.action event's details.
func actionAttrs(action, who string, je Entry) map[string]any {
	m := map[string]any{"action": action, "who": who}
	if je.Fault != "" {
		m["fault"] = je.Fault
	}
	if je.Error != "" {
		m["error"] = je.Error
	}
	return m
}

// FaultStatus is one active fault as the API lists it.
type FaultStatus struct {
	Name    string  `json:"name"`
	Kind    string  `json:"kind"`
	Target  string  `json:"target"`
	Since   float64 `json:"since_s"` // run clock
	Manual  bool    `json:"manual"`
	By      string  `json:"by,omitempty"`
	Fired   int64   `json:"fired"`
	EndsAt  float64 `json:"ends_s,omitempty"` // a manual fault with a duration
	Replica string  `json:"replicas,omitempty"`
}

// Faults lists the faults active now.
func (s *Session) Faults() []FaultStatus {
	if s.tl == nil {
		return nil
	}
	active := map[string]bool{}
	for _, n := range s.tl.Active() {
		active[n] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []FaultStatus
	for _, r := range s.tl.Reports() {
		if !active[r.Name] {
			continue
		}
		fs := FaultStatus{Name: r.Name, Kind: r.Kind, Target: r.Target, Since: r.Start.Seconds(), Fired: r.Fired,
			Replica: strings.Join(r.Replicas, ",")}
		if m := s.manual[r.Name]; m != nil {
			fs.Manual, fs.By, fs.Since = true, m.who, m.added.Seconds()
			if m.entry.Duration > 0 {
				fs.EndsAt = (m.added + m.entry.Duration).Seconds()
			}
		}
		out = append(out, fs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since < out[j].Since })
	return out
}

// Halts lists the auto-halts so far.
func (s *Session) Halts() []Halt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Halt(nil), s.halts...)
}

// Status is the run's state, as GET /v1/status returns it.
type Status struct {
	Scenario string        `json:"scenario"`
	Dir      string        `json:"dir"`
	Target   string        `json:"target"`   // what the load generator sends to
	T        float64       `json:"t"`        // run clock
	ScriptT  float64       `json:"script_t"` // the scenario's clock (stands still at a gate)
	State    string        `json:"state"`    // waiting, running, gated, stopping, ended
	Gate     *GateStatus   `json:"gate,omitempty"`
	NextGate *GateStatus   `json:"next_gate,omitempty"`
	Faults   []FaultStatus `json:"faults"`
	Halts    []Halt        `json:"halts"`
	Stopped  string        `json:"stopped_by,omitempty"`
	Progress ProgressView  `json:"progress"`
}

// GateStatus is a manual gate, closed now or still ahead.
type GateStatus struct {
	Name     string  `json:"name"`
	At       float64 `json:"script_s"`
	Since    float64 `json:"since_s,omitempty"` // run clock, when it closed
	MaxHold  float64 `json:"max_hold_s"`
	Deadline float64 `json:"opens_by_s,omitempty"` // run clock: max_hold
	Rate     float64 `json:"rate"`
}

// ProgressView is the load's counters.
type ProgressView struct {
	Scheduled  int64   `json:"scheduled"`
	Completed  int64   `json:"completed"`
	Errors     int64   `json:"errors"`
	Dropped    int64   `json:"dropped"`
	InFlight   int64   `json:"in_flight"`
	TargetRate float64 `json:"target_rate"`
	Planned    float64 `json:"planned_s"`
}

// Status reports the run's state now.
func (s *Session) Status() Status {
	st := Status{Scenario: s.p.Name, Dir: s.cfg.Dir, Target: s.target, T: s.clock.Now().Seconds(), Faults: s.Faults(), Halts: s.Halts()}
	if st.Faults == nil {
		st.Faults = []FaultStatus{}
	}
	if st.Halts == nil {
		st.Halts = []Halt{}
	}
	s.mu.Lock()
	running, ended := s.running, s.ended
	s.mu.Unlock()
	switch {
	case ended:
		st.State = "ended"
	case !running:
		st.State, st.T = "waiting", 0
	default:
		st.State = "running"
	}
	if s.script == nil {
		return st
	}
	st.ScriptT = s.script.ScriptTime().Seconds()
	if !running {
		st.ScriptT = 0
	}
	if h, ok := s.script.Waiting(); ok {
		st.State = "gated"
		st.Gate = &GateStatus{Name: h.Gate.Name, At: h.Gate.At.Seconds(), Since: h.Closed.Seconds(), MaxHold: h.Gate.MaxHold.Seconds(),
			Deadline: (h.Closed + h.Gate.MaxHold).Seconds(), Rate: h.Gate.Rate}
	}
	if g, ok := s.script.NextGate(); ok {
		st.NextGate = &GateStatus{Name: g.Name, At: g.At.Seconds(), MaxHold: g.MaxHold.Seconds(), Rate: g.Rate}
	}
	if who := s.script.Stopped(); who != "" {
		st.Stopped = who
		if !ended {
			st.State = "stopping"
		}
	}
	pr := s.script.Progress()
	st.Progress = ProgressView{Scheduled: pr.Scheduled, Completed: pr.Completed, Errors: pr.Errors, Dropped: pr.Dropped,
		InFlight: pr.InFlight, TargetRate: pr.TargetRate, Planned: pr.Total.Seconds()}
	return st
}

// State is gameday.json: what export needs beyond the events and the
// journal.
type State struct {
	Scenario string      `json:"scenario"`
	Gates    []HoldState `json:"gates"`
	Halts    []Halt      `json:"halts"`
	Stopped  string      `json:"stopped_by,omitempty"`
	// StoppedAt is when it was stopped, on the run's clock: the schedule
	// ended there.
	StoppedAt float64 `json:"stopped_s,omitempty"`
	// Stages is the load profile as it ran (holds included), on the run's
	// clock.
	Stages []StageState `json:"stages"`
}

// HoldState is a gate as it ran.
type HoldState struct {
	Name     string  `json:"name"`
	ScriptAt float64 `json:"script_s"`
	Closed   float64 `json:"closed_s"`
	Opened   float64 `json:"opened_s"`
	By       string  `json:"by"`
	Rate     float64 `json:"rate"`
}

// StageState is one stage of the profile as it ran.
type StageState struct {
	Duration float64 `json:"duration_s"`
	From     float64 `json:"from"`
	To       float64 `json:"to"`
}

func (s *Session) writeState() error {
	st := State{Scenario: s.p.Name, Halts: s.Halts(), Stopped: s.script.Stopped(), StoppedAt: s.script.StoppedAt().Seconds(),
		Gates: []HoldState{}, Stages: []StageState{}}
	for _, h := range s.script.Holds() {
		st.Gates = append(st.Gates, HoldState{Name: h.Gate.Name, ScriptAt: h.Gate.At.Seconds(), Closed: h.Closed.Seconds(),
			Opened: h.Opened.Seconds(), By: h.By, Rate: h.Gate.Rate})
	}
	for _, x := range s.script.Stages() {
		st.Stages = append(st.Stages, StageState{Duration: x.Duration.Seconds(), From: x.From, To: x.To})
	}
	if st.Halts == nil {
		st.Halts = []Halt{}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	// Whole or not at all: a "gameday export" may read it at this moment.
	return atomicfile.WriteFile(filepath.Join(s.cfg.Dir, StateFile), append(b, '\n'), 0o644)
}

// eventLog keeps the events the dashboard draws from (per-request events
// are left out: a long run has millions).
type eventLog struct {
	mu     sync.Mutex
	events []event.Event
}

const maxLiveEvents = 200_000

func (l *eventLog) Emit(e event.Event) {
	if e.Type == "fault.apply" {
		return
	}
	l.mu.Lock()
	if len(l.events) < maxLiveEvents {
		l.events = append(l.events, e)
	}
	l.mu.Unlock()
}

func (l *eventLog) snapshot() []event.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.events[:len(l.events):len(l.events)]
}

func fmtSeconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) + "s" }

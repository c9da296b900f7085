package gameday

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/report"
	"github.com/cascadehq/cascade/results/verdict"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// Dashboard timing: a snapshot a second, of the last ten minutes.
const (
	StreamEvery = time.Second
	LiveWindow  = 10 * time.Minute
)

// Snapshot is one message of the dashboard's stream.
type Snapshot struct {
	Status
	Safety []CheckStatus    `json:"safety"`
	SLO    []SLOStatus      `json:"slo"`
	Charts json.RawMessage  `json:"charts"`
	Events []string         `json:"log"` // recent gate, halt and manual actions, for people
	Error  string           `json:"error,omitempty"`
	Phases []PhaseWindowOut `json:"phases"`
}

// PhaseWindowOut is a phase's window as far as it is known.
type PhaseWindowOut struct {
	Name  string   `json:"name"`
	Start *float64 `json:"start_s"` // null: after a gate not yet opened
	End   *float64 `json:"end_s"`
}

// SLOStatus is one of the scenario's objectives judged on what was
// recorded so far: its burn.
type SLOStatus struct {
	Name     string `json:"name"`
	Phase    string `json:"phase"`
	State    string `json:"state"` // pass, fail, pending (its phase has not started or holds no request yet)
	Measured string `json:"measured"`
	Bound    string `json:"bound"`
	Evidence string `json:"evidence"`
}

type stream struct {
	s     *Session
	mu    sync.Mutex
	subs  map[chan []byte]struct{}
	endCh chan struct{}
	ended bool
	final []byte
}

func newStream(s *Session) *stream {
	return &stream{s: s, subs: map[chan []byte]struct{}{}, endCh: make(chan struct{})}
}

// run sends a snapshot every second to whoever watches.
func (st *stream) run(ctx context.Context) {
	t := time.NewTicker(StreamEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st.mu.Lock()
		n := len(st.subs)
		st.mu.Unlock()
		if n == 0 {
			continue
		}
		b := st.s.snapshotJSON()
		st.mu.Lock()
		for ch := range st.subs {
			select {
			case ch <- b:
			default: // a slow reader skips a second rather than holding the others
			}
		}
		st.mu.Unlock()
	}
}

// end tells every watcher the run ended, with a last snapshot.
func (st *stream) end() {
	b := st.s.snapshotJSON()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return
	}
	st.ended, st.final = true, b
	close(st.endCh)
}

func (st *stream) subscribe() (chan []byte, func()) {
	ch := make(chan []byte, 1)
	st.mu.Lock()
	st.subs[ch] = struct{}{}
	st.mu.Unlock()
	return ch, func() {
		st.mu.Lock()
		delete(st.subs, ch)
		st.mu.Unlock()
	}
}

// streamHandler is GET /v1/stream: server-sent events, one snapshot a
// second ("snapshot"), then "end" when the run ends.
func (v *server) streamHandler(w http.ResponseWriter, r *http.Request) {
	if ok, why := v.authorized(r, true); !ok {
		writeError(w, http.StatusUnauthorized, fmt.Errorf("%s", why))
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("streaming unsupported"))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	st := v.s.stream
	send := func(kind string, b []byte) bool {
		_, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", kind, b)
		fl.Flush()
		return err == nil
	}
	ch, unsubscribe := st.subscribe()
	defer unsubscribe()
	if !send("snapshot", v.s.snapshotJSON()) {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-st.endCh:
			st.mu.Lock()
			b := st.final
			st.mu.Unlock()
			send("end", b)
			return
		case b := <-ch:
			if !send("snapshot", b) {
				return
			}
		}
	}
}

func (s *Session) snapshotJSON() []byte {
	snap := s.snapshot()
	b, err := json.Marshal(snap)
	if err != nil {
		b, _ = json.Marshal(Snapshot{Error: err.Error()})
	}
	return b
}

// snapshot is the dashboard's view of the run now.
func (s *Session) snapshot() Snapshot {
	snap := Snapshot{Status: s.Status(), Safety: s.Checks(), SLO: []SLOStatus{}, Events: []string{}, Phases: []PhaseWindowOut{}}
	if s.script == nil || s.live == nil {
		return snap
	}
	now := s.clock.Now()
	if snap.State == "waiting" {
		now = 0
	}
	phases := s.script.Phases() // as the collector has them: phases[i]'s stats are PhaseStats()[i]
	shown := make([]int, 0, len(phases))
	for i, ph := range phases {
		if ph.End != Gone {
			shown = append(shown, i)
		}
	}
	// In time order, as the summary lists them: phases a fault added by
	// hand made come after the plan's in the collector, not in time.
	slices.SortStableFunc(shown, func(a, b int) int { return cmp.Compare(phases[a].Start, phases[b].Start) })
	for _, i := range shown {
		ph := phases[i]
		pw := PhaseWindowOut{Name: ph.Name}
		if ph.Start != never {
			v := ph.Start.Seconds()
			pw.Start = &v
		}
		if ph.End != never {
			v := ph.End.Seconds()
			pw.End = &v
		}
		snap.Phases = append(snap.Phases, pw)
	}
	snap.SLO = s.burn(phases, shown, now)
	// Charts: whole seconds only (the current one is still filling up).
	var ivs []results.IntervalRecord
	for _, iv := range s.live.Intervals() {
		if (iv.Start + iv.Width).D() <= now {
			ivs = append(ivs, iv)
		}
	}
	from := max(now-LiveWindow, 0).Seconds()
	run := &results.Run{Summary: results.Summary{Scenario: s.p.Name, Elapsed: results.Sec(now)}, Events: s.events.snapshot(), Intervals: ivs}
	charts, err := report.LiveCharts(report.Data{Run: run, Stages: s.script.Stages()}, from)
	if err != nil {
		snap.Error = "charts: " + err.Error()
		charts = []byte("null")
	}
	snap.Charts = charts
	for _, e := range s.journal.Entries() {
		line := fmt.Sprintf("%8.1fs  %-10s %s", e.T, e.Who, e.Action)
		switch {
		case e.Fault != "":
			line += " " + e.Fault
		case e.Phase != "":
			line += " " + e.Phase
		}
		if e.Target != "" {
			line += " on " + e.Target
		}
		if e.Detail != "" {
			line += ": " + e.Detail
		}
		if e.Error != "" {
			line += "  (refused: " + e.Error + ")"
		}
		snap.Events = append(snap.Events, line)
	}
	if n := len(snap.Events); n > 50 {
		snap.Events = snap.Events[n-50:]
	}
	return snap
}

// burn judges the scenario's objectives on what the collector holds now,
// each over the part of its phase that has run. phases are the collector's,
// index for index; only those in shown are judged (a Gone phase left out
// must not shift the stats of the phases after it onto the wrong window).
func (s *Session) burn(phases []results.Phase, shown []int, now time.Duration) []SLOStatus {
	out := []SLOStatus{}
	if len(s.p.Objectives) == 0 || s.collector == nil {
		return out
	}
	stats := s.collector.PhaseStats()
	pacer := s.script.Pacer()
	in := &verdict.Input{Summary: &results.Summary{}, Phases: map[string]*verdict.Phase{}}
	started := map[string]bool{}
	for _, i := range shown {
		ph := phases[i]
		if i >= len(stats) || ph.Start == never || ph.Start >= now {
			continue
		}
		end := min(ph.End, now)
		started[ph.Name] = true
		ps := results.PhaseSummary{Name: ph.Name, Start: results.Sec(ph.Start), End: results.Sec(end)}
		if w := end - ph.Start; w > 0 {
			ps.Stats.AchievedRate = float64(stats[i].Sent()) / w.Seconds()
			ps.Stats.TargetRate = pacer.Expected(ph.Start, end) / w.Seconds()
		}
		in.Phases[ph.Name] = &verdict.Phase{Summary: ps, Stats: stats[i]}
	}
	res, _ := verdict.Evaluate(s.p.Objectives, in)
	for _, r := range res {
		st := SLOStatus{Name: r.Name, Phase: r.Phase, Measured: r.Measured, Bound: r.Bound, Evidence: r.Evidence}
		switch {
		case !started[r.Phase] && r.Phase != plan.RunPhase, r.Measured == "":
			st.State = "pending"
			if !started[r.Phase] {
				st.Evidence = "the phase has not started"
			}
		case r.Pass:
			st.State = "pass"
		default:
			st.State = "fail"
		}
		out = append(out, st)
	}
	return out
}

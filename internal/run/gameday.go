package run

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/gameday"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// LiveOptions make a run a game day (cascade gameday, cascade run --live):
// a control API and dashboard on loopback, manual gates, the journal.
type LiveOptions struct {
	// Listen is the control API's and the dashboard's address (default
	// 127.0.0.1:0); anything but loopback is refused.
	Listen string
	// Ready, when set, is called once the control API answers, before the
	// load starts (tests and wrappers learn the address from the run
	// directory's control file).
	Ready func(dir string)
}

// ErrNeedsLive refuses a scenario with manual gates outside a game day:
// no one could open them.
var ErrNeedsLive = fmt.Errorf("the scenario has manual gates: run it with `cascade gameday` (or `cascade run --live`), where `cascade phase next` opens them")

// LiveExecutorsError refuses a game day of several executors side by side.
// A game day follows one load profile: its live view and state file show
// that profile's target rate, gates cut and hold it, and gameday export
// writes it back as the scenario's load. A list of executors would run,
// but what people watch and what export writes would not be that load.
// (Before this check the run panicked at its first request.)
func LiveExecutorsError(p *plan.Plan) error {
	at := p.LoadAt
	if at == "" {
		at = p.File
	}
	if n := len(p.Load.Executors); n > 1 {
		return fmt.Errorf("%s: load: a game day (cascade gameday, cascade run --live) drives one load profile, and this load is a list of %d executors side by side; run it with cascade run", at, n)
	}
	return fmt.Errorf("%s: load: a game day (cascade gameday, cascade run --live) drives one load profile, written as a mapping; this load is a list of one executor: write it without the list", at)
}

// loadDriver is what drives the load: a plain run's generator, or a game
// day's session (script, gates, graceful stop).
type loadDriver interface {
	Run(ctx context.Context) error
	Progress() loadgen.Progress
	Pacer() *loadgen.Pacer
}

// gameDay is the run's side of a live session; nil for a plain run (its
// methods then give what a plain run uses).
type gameDay struct {
	s     *gameday.Session
	ready func(string)
	dir   string
}

// newGameDay makes a session when the run is live or the plan declares
// gates or safety checks; nil otherwise.
func newGameDay(p *plan.Plan, opts Options, w *results.Writer, clock *event.Clock) (*gameDay, error) {
	live := opts.Live != nil
	if !live && len(p.Gates) > 0 {
		return nil, ErrNeedsLive
	}
	if live && len(p.Load.Executors) > 0 {
		return nil, LiveExecutorsError(p)
	}
	if !live && len(p.Safety) == 0 {
		return nil, nil
	}
	dir := w.Dir()
	w.Track(gameday.JournalFile, gameday.ControlFile, gameday.StateFile)
	cfg := gameday.Config{Plan: p, Dir: dir, Clock: clock, Control: live, Stderr: opts.Stderr}
	g := &gameDay{dir: dir}
	if live {
		cfg.Listen, g.ready = opts.Live.Listen, opts.Live.Ready
	}
	s, err := gameday.New(cfg)
	if err != nil {
		return nil, err
	}
	g.s = s
	return g, nil
}

func (g *gameDay) sink(next event.Sink) event.Sink {
	if g == nil {
		return next
	}
	return g.s.Sink(next)
}

func (g *gameDay) timeline(p *plan.Plan) []faults.Entry {
	if g == nil {
		return p.Timeline
	}
	return g.s.TimelineEntries()
}

func (g *gameDay) phases(p *plan.Plan) []results.Phase {
	if g == nil {
		return p.Phases
	}
	return g.s.Phases()
}

// start wires the session and serves its control API; the load starts
// with the driver's Run.
func (g *gameDay) start(tl *faults.Timeline, c *results.Collector, target string, sink event.Sink) (loadDriver, error) {
	if err := g.s.Start(gameday.Wiring{Timeline: tl, Collector: c, Target: target, Sink: sink, Shards: 2 * runtime.GOMAXPROCS(0)}); err != nil {
		return nil, err
	}
	if g.ready != nil {
		g.ready(g.dir)
	}
	return g.s, nil
}

func (g *gameDay) close() error {
	if g == nil {
		return nil
	}
	return g.s.Close()
}

// ran is the plan as it ran (phases moved by gates, holds in the profile)
// and the timeline's reports completed; a plain run's are unchanged.
// stoppedAt is when the game day's load was stopped early (cascade stop,
// a safety check's on_breach: stop), 0 if it was not or this is no game
// day: the run's own stop signals (Ctrl-C, an abort) are not this.
func (g *gameDay) stoppedAt() time.Duration {
	if g == nil {
		return 0
	}
	return g.s.StoppedAt()
}

func (g *gameDay) ran(p *plan.Plan, reports []faults.Report, elapsed time.Duration) (*plan.Plan, []faults.Report) {
	if g == nil {
		return p, reports
	}
	return g.s.RanPlan(elapsed), g.s.Reports(reports)
}

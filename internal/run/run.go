// Package run executes a plan: it starts the fake upstreams and the gateway,
// drives the load while the fault timeline runs, records everything on one
// clock, and judges the result.
//
//	plan ─▶ upstreams ─▶ gateway (or yours) ─▶ clock zero ─┬─ timeline (faults)
//	                                                      ├─ load generator ─▶ collector
//	                                                      └─ progress, interval flusher
//	        ─▶ summary ─▶ verdict ─▶ run directory + report
//
// Whatever happens (error, Ctrl-C), everything the run started is stopped
// and what was recorded is written.
package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/gateway"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/gameday"
	"github.com/cascadehq/cascade/internal/interrupt"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/report"
	"github.com/cascadehq/cascade/results/verdict"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// Options are the run's settings that are not part of the scenario.
type Options struct {
	OutDir      string // run directory; default ./cascade-results/<name>-<timestamp>
	Progress    ProgressMode
	Stdout      io.Writer // the report
	Stderr      io.Writer // progress and notices
	AllowRemote bool
	// UpstreamBinary is a static cascade binary for containerised replicas
	// (default: $CASCADE_UPSTREAM_BINARY, the running binary if static, or
	// one built from the module).
	UpstreamBinary string
	// Live makes the run a game day (see gameday.go); nil for a plain run.
	Live *LiveOptions
}

// Outcome is what the caller needs to pick an exit code.
type Outcome struct {
	Dir         string
	Summary     *results.Summary
	Pass        bool
	Interrupted bool
}

// ErrSetup wraps failures to start the run (a port that cannot be bound...),
// which are distinct from a run whose objectives failed.
var ErrSetup = errors.New("run setup failed")

// freeDir is base, or base-2, base-3... when two runs start in the same
// second: the default run directory never collides with an earlier run.
func freeDir(base string) string {
	dir := base
	for i := 2; ; i++ {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return dir
		}
		dir = fmt.Sprintf("%s-%d", base, i)
	}
}

// IntervalWidth is the resolution of the time series.
const IntervalWidth = time.Second

// Run executes p. ctx cancellation (Ctrl-C) ends the load early, or the
// setup before it; partial results are still written and the outcome is
// marked interrupted. A second stop signal (see package interrupt) cuts
// the teardown's waits short, not its removals.
func Run(ctx context.Context, p *plan.Plan, opts Options) (out *Outcome, err error) {
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	if opts.OutDir == "" {
		opts.OutDir = freeDir(filepath.Join("cascade-results", p.Name+"-"+time.Now().Format("20060102-150405")))
	}
	if err := checkPacketPrivileges(p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	w, err := results.Create(opts.OutDir)
	if err != nil {
		return nil, fmt.Errorf("%w: run directory: %w", ErrSetup, err)
	}
	defer func() {
		if cerr := w.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("write results: %w", cerr)
		}
	}()
	if err := w.WriteFile(results.ScenarioFile, p.Source); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	// A setup step that fails because ctx ended (Ctrl-C while PostgreSQL
	// starts, an image builds or SQLite seeds) was stopped by the user, not
	// broken: the run ends interrupted, with a summary that says where,
	// like any other interrupted run. Everything started so far is still
	// removed by the defers below.
	var rec *recording
	target, gwName := p.External, p.External
	setupFailed := func(step string, err error) (*Outcome, error) {
		if ctx.Err() == nil {
			return nil, fmt.Errorf("%w: %w", ErrSetup, err)
		}
		return interruptedInSetup(p, w, rec, opts, step, target, gwName)
	}

	clock := event.NewClock()
	gd, err := newGameDay(p, opts, w.Dir(), clock) // nil for a plain run
	if err != nil {
		return setupFailed("game day", err)
	}
	defer func() {
		if cerr := gd.close(); cerr != nil && err == nil {
			err = fmt.Errorf("game day: %w", cerr)
		}
	}()
	rec, err = newRecording(p, w.Dir(), clock)
	if err != nil {
		rec = nil
		return setupFailed("recording", err)
	}
	defer rec.close()
	sink := rec.sink(gd.sink(w))
	uopts := faults.Options{Seed: p.Seed, Sink: sink, Clock: clock, Observer: rec}

	// Upstreams (and the containers some need; removed after them).
	env := newUpstreamEnv(p.Name, p.Seed, sink, clock, opts.UpstreamBinary)
	defer interrupt.From(ctx).Running(env.runID)() // a stop signal's message names the run
	// The teardown below waits for work in flight (a replica's requests, a
	// container's graceful stop) until a second stop signal hurries it;
	// what it removes, it removes either way.
	teardown, endTeardown := interrupt.TeardownContext(ctx)
	defer endTeardown()
	defer env.close(teardown)
	links, err := startLinks(p, env.runID, sink, clock) // packet faults' namespaces; closed after the upstreams
	if err != nil {
		return setupFailed("packet links", err)
	}
	defer links.close()
	var ups []*faults.Upstream
	defer func() {
		for _, u := range ups {
			_ = u.CloseContext(teardown)
		}
	}()
	for _, uc := range p.Upstreams {
		uc, err := env.prepare(ctx, uc)
		if err != nil {
			return setupFailed("upstream "+uc.Name, err)
		}
		uc.Link = links[uc.Name]
		u := faults.NewUpstream(uc, uopts)
		if err := u.StartContext(ctx); err != nil {
			return setupFailed("upstream "+uc.Name, err)
		}
		ups = append(ups, u)
		for _, r := range u.Replicas() {
			sink.Emit(event.Event{T: clock.Now(), Source: "run", Type: "upstream.listen", Target: r.Name(), Attrs: map[string]any{"addr": r.Addr()}})
		}
	}

	// Gateway: ours, with targets now that replicas listen, or the user's.
	var gw *gateway.Gateway
	if p.Gateway != nil {
		var stop func() error
		if gw, stop, err = startGateway(p, ups, w.Dir(), sink, clock); err != nil {
			return setupFailed("gateway", err)
		}
		defer func() { _ = stop() }()
		target, gwName = gw.URL(), "builtin"
	}
	if err := plan.CheckTarget(target, opts.AllowRemote); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSetup, err)
	}

	timeline, err := faults.NewTimeline(gd.timeline(p), ups, uopts)
	if err != nil {
		return setupFailed("fault timeline", err)
	}
	lcfg := p.Load
	lcfg.Target = target
	collector := results.NewCollector(gd.phases(p), IntervalWidth, 2*runtime.GOMAXPROCS(0), results.WithBreakdown(breakdown(lcfg)))
	var gen loadDriver
	var direct *directLoad
	if gd == nil {
		var recorder loadgen.Recorder = collector
		var transport loadgen.Transport
		if p.Direct > 0 {
			if direct, lcfg, err = newDirectLoad(p, lcfg, ups, collector); err != nil {
				return setupFailed("direct load", err)
			}
			recorder, transport = direct, direct
		}
		gen, err = loadgen.New(lcfg, recorder, clock, transport)
	} else {
		gen, err = gd.start(timeline, collector, target, sink)
	}
	if err != nil {
		return setupFailed("load generator", err)
	}

	w.SetExpected(intervalTargets(p, gen))
	fdWarning := loadgen.FDWarning(p.Load)
	if fdWarning != "" {
		fmt.Fprintln(opts.Stderr, "warning:", fdWarning)
	}

	// Go: zero the clock, then start the timeline and the load together.
	started := time.Now()
	clock.Reset(started)
	w.SetStart(started)
	sink.Emit(event.Event{T: 0, Source: "run", Type: "load.start", Target: target,
		Attrs: map[string]any{"scenario": p.Name, "seed": p.Seed, "planned_s": p.Duration.Seconds()}})
	bg, stopBG := context.WithCancel(context.Background())
	loadCtx, stopLoad := context.WithCancel(ctx) // stopped early by an abort objective
	defer stopLoad()
	waitScalers, err := startAutoscalers(bg, p.Autoscale, ups, gw, rec, sink, clock)
	if err != nil {
		stopBG()
		return nil, fmt.Errorf("%w: %v", ErrSetup, err)
	}
	recDone := make(chan struct{})
	go func() {
		peek := func() []results.IntervalRecord {
			ivs := collector.PeekIntervals()
			out := make([]results.IntervalRecord, len(ivs))
			for i, iv := range ivs {
				out[i] = results.RecordOf(iv, results.Sec(IntervalWidth), 0)
			}
			return out
		}
		rec.background(bg, func() []*faults.Upstream { return ups }, plannedRequests(gen), peek, stopLoad)
		close(recDone)
	}()
	timeline.ApplyDue(bg) // faults from 0 are in place before the first request
	tlDone := make(chan struct{})
	go func() { timeline.Run(bg); close(tlDone) }()
	live := &liveStats{}
	progDone := make(chan struct{})
	go func() {
		showProgress(bg, opts.Stderr, opts.Progress, p.Name, gen, live, collector, clock)
		close(progDone)
	}()
	flushDone := make(chan struct{})
	go func() {
		flushIntervals(bg, w, collector, clock, p.Load.ClientTimeout, live, rec, gen)
		close(flushDone)
	}()

	runErr := gen.Run(loadCtx)
	elapsed := clock.Now()
	interrupted := ctx.Err() != nil
	aborted := rec.abortReason()
	sink.Emit(event.Event{T: elapsed, Source: "run", Type: "load.stop", Attrs: map[string]any{"interrupted": interrupted, "aborted": aborted != ""}})
	stopBG()
	emitUpstreamStats(sink, clock, ups)
	<-tlDone
	<-progDone
	<-flushDone
	<-recDone
	waitScalers()
	if runErr != nil && !interrupted && aborted == "" {
		return nil, runErr
	}
	ranPlan, reports := gd.ran(p, timeline.Reports(), elapsed) // a game day's gates move phases
	// The last interval ends where the load did, not a whole interval on:
	// a run stopped 10 ms into a second would chart 2 requests as a rate
	// of 2/s against a target of 100.
	last := loadEnd(ranPlan, gen, elapsed, interrupted || aborted != "")
	rec.keepIntervals(w.WriteIntervalsUntil(collector.TakeIntervals(1<<62), results.Sec(IntervalWidth), last))

	sum := summarize(ranPlan, collector, gen, reports, started, elapsed, interrupted || aborted != "", target, gwName)
	sum.Interrupted = interrupted
	sum.Aborted = aborted
	if fdWarning != "" {
		sum.Warnings = append(sum.Warnings, fdWarning)
	}
	if direct != nil {
		summarizeDirect(p, direct, sum, gen.(*loadgen.Generator).Scheduled)
	}
	sum.GatewayStats = gatewayStats(gw)
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("write results: %w", err)
	}
	in, err := rec.input(sum)
	if err != nil {
		return nil, err
	}
	var pass bool
	sum.Objectives, pass = verdict.Evaluate(p.Objectives, in)
	switch {
	case interrupted:
		sum.Verdict = results.VerdictInterrupted
	case pass && aborted == "":
		sum.Verdict = results.VerdictPass
	default:
		pass = false
		sum.Verdict = results.VerdictFail
	}
	if err := w.WriteSummary(sum); err != nil {
		return nil, fmt.Errorf("write summary: %w", err)
	}
	if err := writeJUnit(w.Dir(), sum); err != nil {
		return nil, err
	}
	if err := report.Text(opts.Stdout, sum, w.Dir()); err != nil {
		return nil, err
	}
	writeHTMLReport(w, ranPlan, opts.Stderr)
	return &Outcome{Dir: w.Dir(), Summary: sum, Pass: pass && !interrupted, Interrupted: interrupted}, nil
}

// interruptedInSetup ends a run that was stopped before its load started:
// it writes a summary like any interrupted run's (no request sent, every
// phase cut at zero, a warning naming the setup step the stop caught), so
// `cascade report` reads the directory, and returns an interrupted outcome
// (exit 130) instead of a setup failure (exit 3). rec is nil when the stop
// came before the recording existed.
func interruptedInSetup(p *plan.Plan, w *results.Writer, rec *recording, opts Options, step, target, gw string) (*Outcome, error) {
	sum := &results.Summary{Scenario: p.Name, File: p.File, Seed: p.Seed, PlanHash: p.Hash, Started: time.Now(),
		Planned: results.Sec(p.Duration), Interrupted: true, Target: target, Gateway: gw, Versions: versions(),
		Verdict: results.VerdictInterrupted, Ladder: p.Ladder}
	for _, wn := range p.Warnings {
		sum.Warnings = append(sum.Warnings, wn.String())
	}
	sum.Warnings = append(sum.Warnings, "interrupted during setup: "+step+" (the load never started: no request was sent)")
	c := results.NewCollector(p.Phases, IntervalWidth, 1)
	for i, st := range c.PhaseStats() {
		ph := p.Phases[i]
		ps := results.PhaseSummary{Name: ph.Name, Start: results.Sec(ph.Start), End: results.Sec(ph.Start),
			PlannedEnd: results.Sec(ph.End), Stats: results.Summarize(st, 0, 0)}
		if i == 0 {
			sum.Run = ps
		} else {
			sum.Phases = append(sum.Phases, ps)
		}
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("write results: %w", err)
	}
	// The objectives are judged as `cascade report` will judge them from
	// the directory, so the two never disagree; the verdict stays
	// interrupted whatever they say.
	var in *verdict.Input
	var err error
	if rec != nil {
		in, err = rec.input(sum)
	} else {
		in, err = verdict.NewInput(sum, nil, nil)
	}
	if err != nil {
		return nil, err
	}
	sum.Objectives, _ = verdict.Evaluate(p.Objectives, in)
	if err := w.WriteSummary(sum); err != nil {
		return nil, fmt.Errorf("write summary: %w", err)
	}
	if err := writeJUnit(w.Dir(), sum); err != nil {
		return nil, err
	}
	if err := report.Text(opts.Stdout, sum, w.Dir()); err != nil {
		return nil, err
	}
	return &Outcome{Dir: w.Dir(), Summary: sum, Interrupted: true}, nil
}

// flushIntervals writes every interval no request can still land in, each
// second, so memory stays flat and an interrupted run keeps its time series.
func flushIntervals(ctx context.Context, w *results.Writer, c *results.Collector, clock *event.Clock, clientTimeout time.Duration, live *liveStats, rec *recording, driver loadDriver) {
	t := time.NewTicker(IntervalWidth)
	defer t.Stop()
	wm := &watermark{timeout: clientTimeout}
	wm.frontier, _ = driver.(dispatchFrontier)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ivs := c.TakeIntervals(wm.before(clock.Now()))
		rec.keepIntervals(w.WriteIntervals(ivs, results.Sec(IntervalWidth)))
		_ = w.Flush()
		if len(ivs) > 0 {
			last := ivs[len(ivs)-1].Stats.Latency
			if last.TotalCount() > 0 {
				live.lastP99.Store(last.ValueAtQuantile(99))
			}
		}
		c.Recycle(ivs) // written: the histograms serve the next intervals
	}
}

// loadEnd is when the load ended on the run's clock, over which its rates
// are taken: where it was stopped (interrupted, aborted), where the
// executors sent their max_requests, else the plan's end.
func loadEnd(p *plan.Plan, gen loadDriver, elapsed time.Duration, stopped bool) time.Duration {
	ran := p.Duration
	switch g, plain := gen.(*loadgen.Generator); {
	case stopped:
		ran = min(ran, elapsed)
	case plain:
		ran = min(ran, g.End())
	}
	return ran
}

// intervalTargets is the profile's request count over a stretch of the
// run, for the intervals' target rates: a plain run's generator knows every
// executor's schedule, a game day's session the profile as it runs; the
// direct path's share is not the gateway's.
func intervalTargets(p *plan.Plan, gen loadDriver) func(a, b time.Duration) float64 {
	share := 1 - p.Direct
	if g, ok := gen.(*loadgen.Generator); ok {
		return func(a, b time.Duration) float64 { return g.Expected(a, b) * share }
	}
	return func(a, b time.Duration) float64 { return gen.Pacer().Expected(a, b) * share }
}

func summarize(p *plan.Plan, c *results.Collector, gen loadDriver, faultReports []faults.Report,
	started time.Time, elapsed time.Duration, interrupted bool, target, gw string) *results.Summary {
	// A plain run's generator knows every executor's schedule, Poisson
	// arrivals counted as seeded; a game day's session gives the profile as
	// it ran.
	scheduled, expected := gen.Pacer().Expected, gen.Pacer().Expected
	g, plain := gen.(*loadgen.Generator)
	if plain {
		scheduled, expected = g.Scheduled, g.Expected
	}
	s := &results.Summary{
		Scenario: p.Name, File: p.File, Seed: p.Seed, PlanHash: p.Hash, Started: started,
		Elapsed: results.Sec(elapsed), Planned: results.Sec(p.Duration), Interrupted: interrupted,
		Target: target, Gateway: gw, Versions: versions(), Ladder: p.Ladder,
	}
	for _, w := range p.Warnings {
		s.Warnings = append(s.Warnings, w.String())
	}
	if src, ok := gen.(loadgen.RequestErrorSource); ok {
		if re := src.FirstRequestError(); re != nil {
			s.Warnings = append(s.Warnings, "requests not sent (cause request_error); the first: "+re.Error())
		}
	}
	if src, ok := gen.(loadgen.ClientErrorSource); ok {
		for _, ce := range src.FirstClientErrors() {
			s.Warnings = append(s.Warnings, clientErrorWarning(ce))
		}
	}
	ran := loadEnd(p, gen, elapsed, interrupted)
	sentByTag := c.PhaseSentByTag()
	for i, st := range c.PhaseStats() {
		ph := p.Phases[i]
		if ph.End == gameday.Gone {
			continue // a game day's faults as they ran do not make it
		}
		end := min(ph.End, max(ran, ph.Start))
		window := end - ph.Start
		ps := results.PhaseSummary{Name: ph.Name, Start: results.Sec(ph.Start), End: results.Sec(end),
			Stats: results.Summarize(st, max(window, 0), scheduled(ph.Start, max(end, ph.Start)))}
		ps.Stats.SetProfileRate(expected(ph.Start, max(end, ph.Start)), window)
		if i < len(sentByTag) && len(sentByTag[i]) > 0 {
			ps.SentByTag = sentByTag[i] // an empty one reads back as none
		}
		if interrupted && end < ph.End {
			ps.PlannedEnd = results.Sec(ph.End)
			if window < IntervalWidth {
				// A stop a few ms into a phase: a request or two over
				// that sliver is no rate ("1 sent, 218/s").
				ps.Stats.TargetRate, ps.Stats.AchievedRate = 0, 0
			}
		}
		if i == 0 {
			s.Run = ps
		} else {
			s.Phases = append(s.Phases, ps)
		}
	}
	if plain {
		s.Executors, s.Tags = groupSummaries(c, g, elapsed, interrupted)
	}
	for _, f := range faultReports {
		fs := results.FaultSummary{Name: f.Name, Kind: f.Kind, Target: f.Target, Started: f.Started, Fired: f.Fired,
			Start: results.Sec(f.Start), End: results.Sec(f.End), Occurrences: f.Occurrences, Reason: f.Reason}
		if f.Started && f.End == 0 {
			fs.End = results.Sec(elapsed)
		}
		fs.Connection, fs.Packet = effectSummaries(f.Effects)
		fs.Lateness = f.Effects.Lateness
		s.Faults = append(s.Faults, fs)
	}
	return s
}

// clientErrorWarning says why requests failed in the client: the outcome
// table has only the cause, and a certificate the client does not trust
// or a protocol the server does not speak would otherwise show as nothing
// but transport_error. Running out of file descriptors leads: it is the
// generator's own limit, and it explains the failures it caused.
func clientErrorWarning(ce *loadgen.ClientError) string {
	var fd *loadgen.FDLimitError
	if errors.As(ce.Err, &fd) {
		return fmt.Sprintf("requests not sent (cause %s): %v; the first: request %q (sequence number %d)", ce.Cause, fd, ce.Request, ce.Seq)
	}
	return fmt.Sprintf("the first %s: %v", ce.Cause, ce)
}

func versions() map[string]string {
	v := map[string]string{"go": runtime.Version(), "cascade": "dev"}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v["cascade"] = bi.Main.Version
	}
	return v
}

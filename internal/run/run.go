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
// and what was recorded is written. A run that ends before its load
// started (its setup failed, or was interrupted) recorded nothing: it
// takes back what it wrote in the run directory, so that the same --out
// can be used again once the cause is fixed.
package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/gateway"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/gameday"
	"github.com/cascadehq/cascade/internal/interrupt"
	"github.com/cascadehq/cascade/internal/owner"
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

// ErrInterruptedInSetup is a run stopped (ctx ended: Ctrl-C, SIGTERM)
// before its load started: an interrupt, not a broken setup, but like a
// failed setup it sent no request and leaves no run directory.
var ErrInterruptedInSetup = errors.New("interrupted during setup")

// FreeDir is base, or base-2, base-3... when two runs start in the same
// second: the default run directory never collides with an earlier run.
func FreeDir(base string) string {
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

// Run executes p. ctx cancellation (Ctrl-C) ends the load early; partial
// results are still written and the outcome is marked interrupted. A
// cancellation during the setup before it ends the run with
// ErrInterruptedInSetup instead. Either error before the load starts
// (ErrSetup, ErrInterruptedInSetup) leaves opts.OutDir as it was before
// the run (see results.Writer.Discard). A second stop signal (see package
// interrupt) cuts the teardown's waits short, not its removals.
func Run(ctx context.Context, p *plan.Plan, opts Options) (out *Outcome, err error) {
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	if opts.OutDir == "" {
		opts.OutDir = FreeDir(filepath.Join("cascade-results", p.Name+"-"+time.Now().Format("20060102-150405")))
	}
	if err := checkPacketPrivileges(p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	w, err := results.Create(opts.OutDir)
	if err != nil {
		return nil, fmt.Errorf("%w: run directory: %w", ErrSetup, err)
	}
	// Registered first, so it runs last: after every step below has
	// stopped what it started and closed the files it wrote.
	loadStarted := false
	fail := &failure{}
	var sum *results.Summary // what the load measured, once it ended
	var html func()          // writes report.html of the run directory
	printed := false         // the report of sum is on stdout
	defer func() {
		if loadStarted {
			if cerr := w.Close(); cerr != nil {
				fail.set(fmt.Errorf("write results: %w", cerr))
			}
			// A run that failed once its load started keeps what it
			// measured, marked with why it stopped: a directory without
			// a summary was neither readable by report nor usable again.
			if ferr := fail.get(); ferr != nil {
				out, err = nil, keepFailed(w, sum, ferr, opts.Stdout, printed, html)
			}
			return
		}
		// No request was sent, nothing was measured: a directory with a
		// few empty files in it would only refuse the next run into it
		// (exit 2), after the user fixed what made this one fail.
		removed, derr := w.Discard()
		note := "what the run wrote in " + w.Dir() + " was removed"
		if removed != "" {
			note = removed + " was removed"
		}
		if derr != nil {
			note = "removing what the run wrote: " + derr.Error()
		}
		if err != nil {
			sep := " "
			if strings.Contains(err.Error(), "\n") {
				// A multi-line error ends with quoted output (a container's
				// log tail): the note would read as its last line.
				sep = "\n"
			}
			err = fmt.Errorf("%w%s(no request was sent; %s)", err, sep, note)
		}
	}()
	if err := w.WriteFile(results.ScenarioFile, p.Source); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	// A setup step that fails because ctx ended (Ctrl-C while PostgreSQL
	// starts, an image builds or SQLite seeds) was stopped by the user, not
	// broken: an interrupt (exit 130), which says where it caught the
	// setup. Everything started so far is still removed by the defers
	// below, and the run directory with it.
	target, gwName := p.External, p.External
	setupFailed := func(step string, err error) (*Outcome, error) {
		if ctx.Err() == nil {
			return nil, fmt.Errorf("%w: %w", ErrSetup, err)
		}
		return nil, fmt.Errorf("%w: %s", ErrInterruptedInSetup, step)
	}

	clock := event.NewClock()
	gd, err := newGameDay(p, opts, w, clock) // nil for a plain run
	if err != nil {
		return setupFailed("game day", err)
	}
	defer func() {
		if cerr := gd.close(); cerr != nil {
			if loadStarted {
				fail.set(fmt.Errorf("game day: %w", cerr))
			} else if err == nil {
				err = fmt.Errorf("game day: %w", cerr)
			}
		}
	}()
	w.Track(results.UpstreamsFile)
	rec, err := newRecording(p, w.Dir(), clock, fail)
	if err != nil {
		return setupFailed("recording", err)
	}
	defer func() {
		if cerr := rec.close(); cerr != nil && loadStarted {
			fail.set(fmt.Errorf("write results: %w", cerr))
		}
	}()
	// Setup events wait for the load's start, which moves the clock's zero,
	// and are then stamped before it (negative offsets): events.jsonl is on
	// one clock, in order.
	setupEvents := event.NewDeferred(rec.sink(gd.sink(w)))
	defer setupEvents.Release(0) // a setup that failed: as they are
	var sink event.Sink = setupEvents
	uopts := faults.Options{Seed: p.Seed, Sink: sink, Clock: clock, Observer: rec}

	// Upstreams (and the containers some need; removed after them).
	env := newUpstreamEnv(p.Name, p.Seed, sink, clock, opts.UpstreamBinary)
	if g := p.GatewayContainer; g != nil && g.Port != 0 {
		// Replicas start before the proxy: a free port handed to one of
		// them must not be the proxy's fixed one.
		env.reserve(g.Port)
	}
	if opts.Progress != ProgressOff {
		stderr := opts.Stderr
		env.notice = func(msg string) { fmt.Fprintln(stderr, "cascade:", msg) }
	}
	defer interrupt.From(ctx).Running(env.runID)() // a stop signal's message names the run
	// The teardown below waits for work in flight (a replica's requests, a
	// container's graceful stop) until a second stop signal hurries it;
	// what it removes, it removes either way.
	teardown, endTeardown := interrupt.TeardownContext(ctx)
	defer endTeardown()
	defer func() {
		// The last word on the run's containers: each upstream's own stop
		// may be cut short by a hurry, then this removes them by label.
		// What it cannot remove, the user must: said, not dropped.
		if err := env.close(teardown); err != nil {
			fmt.Fprintf(opts.Stderr, "warning: removing what run %s started: %v (cascade cleanup --run %s removes what is left)\n", env.runID, err, env.runID)
		}
	}()
	links, err := startLinks(ctx, p, env.runID, sink, clock) // packet faults' namespaces; closed after the upstreams
	if err != nil {
		return setupFailed("packet links", err)
	}
	defer links.close()
	var ups []*faults.Upstream
	defer func() {
		for _, u := range ups {
			// What a replica could not remove (a database's schema on the
			// user's server, a temporary file) is the user's to remove.
			err := u.CloseContext(teardown)
			if err != nil && teardown.Err() != nil && errors.Is(err, context.Canceled) {
				// A second Ctrl-C cut a graceful wait short (a
				// container's stop): its removal is env.close's, by
				// label, and that says if it fails. This warned that
				// the stop "left something behind" when nothing was.
				continue
			}
			if err != nil {
				fmt.Fprintf(opts.Stderr, "warning: upstream %s: stopping it left something behind: %v\n", u.Name(), err)
			}
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

	// Gateway: ours, with targets now that replicas listen, nginx or
	// HAProxy in a container, or the user's.
	if gc := p.GatewayContainer; gc != nil {
		url, err := env.startProxy(ctx, p, ups, w)
		if err != nil {
			return setupFailed("gateway "+gc.Kind, fmt.Errorf("gateway %s: %w", gc.Kind, err))
		}
		target, gwName = url, results.GatewayContainerPrefix+gc.Kind
	}
	var gw *gateway.Gateway
	flushAccess := func() error { return nil }
	if p.Gateway != nil {
		var stop func() error
		w.Track(AccessLogFile)
		if gw, stop, err = startGateway(p, ups, w.Dir(), sink, clock); err != nil {
			return setupFailed("gateway", err)
		}
		defer func() {
			if serr := stop(); serr != nil && loadStarted {
				fail.set(fmt.Errorf("write results: access log: %w", serr))
			}
		}()
		target, gwName = gw.URL(), "builtin"
		flushAccess = gw.FlushAccessLog
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
	collector := results.NewCollector(gd.phases(p), IntervalWidth, results.ShardsFor(runtime.GOMAXPROCS(0)), results.WithBreakdown(breakdown(lcfg)))
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

	// A stop signal during a setup step that does not watch ctx (making a
	// packet link, starting an in-process replica) lands here: the run is
	// interrupted in its setup, and leaves no run directory, rather than
	// starting a load only to stop it at once.
	if err := ctx.Err(); err != nil {
		return setupFailed("before the load started", err)
	}

	// Go: zero the clock, then start the timeline and the load together.
	started := time.Now()
	shift := clock.Offset(started)
	clock.Reset(started)
	setupEvents.Release(shift)
	w.SetStart(started)
	sink.Emit(event.Event{T: 0, Source: "run", Type: "load.start", Target: target, Attrs: loadStartAttrs(p)})
	bg, stopBG := context.WithCancel(context.Background())
	loadCtx, stopLoad := context.WithCancel(ctx) // stopped early by an abort objective
	defer stopLoad()
	waitScalers, err := startAutoscalers(bg, p.Autoscale, ups, gw, rec, sink, clock)
	if err != nil {
		stopBG()
		return nil, fmt.Errorf("%w: %v", ErrSetup, err)
	}
	loadStarted = true // from here on, what the run records is kept, even cut short
	fail.stopLoad(stopLoad)
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
	// The schedule counts the direct path's arrivals too (load.direct),
	// which its own collector records: an interval is whole when both
	// hold its requests.
	var recorded recordedCounter = collector
	if direct != nil {
		recorded = recordedSum{collector, direct.collector}
	}
	go func() {
		flushIntervals(bg, loadCtx.Done(), w, collector, recorded, clock, p.Load.ClientTimeout, live, rec, gen, flushAccess, fail)
		close(flushDone)
	}()

	runErr := gen.Run(loadCtx)
	elapsed := clock.Now()
	interrupted := ctx.Err() != nil
	if !interrupted {
		// A stop signal from here on cuts nothing short: say so.
		interrupt.From(ctx).LoadEnded(env.runID)
	}
	aborted := rec.abortReason()
	if runErr != nil && !interrupted && aborted == "" {
		fail.set(runErr) // unless a failure stopped it
	}
	failed := fail.get() != nil
	sink.Emit(event.Event{T: elapsed, Source: "run", Type: "load.stop", Attrs: map[string]any{"interrupted": interrupted, "aborted": aborted != "", "failed": failed}})
	stopBG()
	<-tlDone
	// After the timeline stopped the faults still on: a database fault's
	// stop counts the waits it ends, and the record must agree with the
	// fault report.
	emitUpstreamStats(sink, clock, ups)
	<-progDone
	<-flushDone
	<-recDone
	waitScalers()
	ranPlan, reports := gd.ran(p, timeline.Reports(), elapsed) // a game day's gates move phases
	// The last interval ends where the load did, not a whole interval on:
	// a run stopped 10 ms into a second would chart 2 requests as a rate
	// of 2/s against a target of 100.
	stopped := interrupted || aborted != "" || failed
	last := loadEnd(ranPlan, gen, elapsed, stopped)
	if at := gd.stoppedAt(); at > 0 {
		// A game day stopped from its control API or by a safety check
		// ended its load gracefully there: its last interval is as wide
		// as the part of it the load ran, as after Ctrl-C.
		last = min(last, at)
	}
	rec.keepIntervals(w.WriteIntervalsUntil(collector.TakeIntervals(1<<62), results.Sec(IntervalWidth), last))

	sum = summarize(ranPlan, collector, gen, reports, started, elapsed, stopped, target, gwName)
	sum.Interrupted = interrupted
	sum.Aborted = aborted
	if fdWarning != "" {
		sum.Warnings = append(sum.Warnings, fdWarning)
	}
	if direct != nil {
		summarizeDirect(p, direct, sum, gen.(*loadgen.Generator).Scheduled)
	}
	sum.GatewayStats = gatewayStats(gw)
	html = func() { writeHTMLPage(w.Dir(), ranPlan, opts.Stderr) }
	if err := w.Flush(); err != nil {
		fail.set(fmt.Errorf("write results: %w", err))
	}
	if err := flushAccess(); err != nil {
		fail.set(fmt.Errorf("write results: access log: %w", err))
	}
	// The objectives are judged on the records read back, as report
	// judges them; those of a run that failed may be cut short, and are
	// judged on what is whole of them (the summary is marked either way).
	rec.settle(sum)
	in, partial, err := rec.input(sum, fail.get() != nil)
	if err != nil {
		fail.set(fmt.Errorf("read back the results: %w", err))
	}
	if partial != "" {
		sum.Warnings = append(sum.Warnings, "the records were cut short by the error: "+partial)
	}
	var pass bool
	if in != nil {
		sum.Objectives, pass = verdict.Evaluate(p.Objectives, in)
	}
	if fail.get() != nil {
		return nil, fail.get() // written, marked, by keepFailed
	}
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
		fail.set(fmt.Errorf("write summary: %w", err))
		return nil, fail.get()
	}
	if err := writeJUnit(w.Dir(), sum); err != nil {
		fail.set(err)
		return nil, fail.get()
	}
	printed = true
	if err := report.Text(opts.Stdout, sum, w.Dir()); err != nil {
		return nil, err
	}
	writeHTMLReport(w, ranPlan, opts.Stderr)
	return &Outcome{Dir: w.Dir(), Summary: sum, Pass: pass && !interrupted, Interrupted: interrupted}, nil
}

// loadStartAttrs are what the load.start event says of the run: enough for
// `cascade report` to rebuild the plan that ran from the scenario copy when
// the run is killed before it writes its summary. owner tells a run still
// going from one that was killed (both have no summary yet) by whether it
// still runs; ladder names a ladder's rung (its rate and duration), whose
// plan is the scenario's rebuilt as the ladder builds it (RungPlan), and
// which only the summary would name otherwise.
func loadStartAttrs(p *plan.Plan) map[string]any {
	a := map[string]any{"scenario": p.Name, "seed": p.Seed, "planned_s": p.Duration.Seconds(), "owner": owner.Self().String()}
	if p.Ladder != nil {
		a["ladder"] = *p.Ladder
	}
	return a
}

// failure is the first error of a run once its load started: a write
// that failed (a full disk), the recording that failed. The load stops at
// it, as there is no sense in measuring what cannot be kept, and the run
// writes what it measured until then, marked with it (keepFailed).
type failure struct {
	mu   sync.Mutex
	err  error
	stop func() // stops the load
}

// set records err, if it is the first, and stops the load.
func (f *failure) set(err error) {
	if err == nil {
		return
	}
	f.mu.Lock()
	first := f.err == nil
	if first {
		f.err = err
	}
	stop := f.stop
	f.mu.Unlock()
	if first && stop != nil {
		stop()
	}
}

func (f *failure) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// stopLoad gives the function that stops the load, once it runs. A
// failure set before it (a results file the disk refused as the load
// started) stops the load at once: it ran to its planned end.
func (f *failure) stopLoad(stop func()) {
	f.mu.Lock()
	f.stop = stop
	failed := f.err != nil
	f.mu.Unlock()
	if failed {
		stop()
	}
}

// keepFailed ends a run that failed once its load started, with cause:
// the summary of what it measured until then (sum, nil if it never got
// that far) is written marked with the error, its verdict error, and the
// report printed (unless it was, printed) so the user sees what was
// measured and why it stopped. `cascade report` reads it back. When the
// summary cannot be written either (the disk is failing), the error says
// what the directory keeps.
func keepFailed(w *results.Writer, sum *results.Summary, cause error, stdout io.Writer, printed bool, html func()) error {
	if sum == nil {
		return fmt.Errorf("%w; %s keeps %s", cause, w.Dir(), w.Kept())
	}
	sum.Error = strings.ReplaceAll(cause.Error(), "\n", "; ") // one line: errors.Join's are several
	sum.Verdict = results.VerdictError
	if werr := w.WriteSummary(sum); werr != nil {
		return fmt.Errorf("%w; the summary could not be written either (%v), so cascade report cannot read %s: it keeps %s, each as far as it was written",
			cause, werr, w.Dir(), w.Kept())
	}
	// Never a green junit.xml or report.html beside a summary that says
	// the run failed: rewritten, else removed.
	if jerr := writeJUnit(w.Dir(), sum); jerr != nil {
		_ = os.Remove(filepath.Join(w.Dir(), verdict.JUnitFile))
	}
	if printed {
		_ = os.Remove(filepath.Join(w.Dir(), report.HTMLFile))
	} else {
		_ = report.Text(stdout, sum, w.Dir())
	}
	if html != nil {
		html()
	}
	return fmt.Errorf("%w; what the run measured until then is kept in %s, its summary marked with this error (cascade report %s)", cause, w.Dir(), w.Dir())
}

// flushIntervals writes every interval no request can still land in, each
// second, so memory stays flat and an interrupted run keeps its time series.
//
// A write that fails (the run directory's disk is full) is the run's
// failure: the load stops there (fail). flushAccess flushes the built-in
// gateway's access log, whose errors are the run's too.
func flushIntervals(ctx context.Context, loadStopped <-chan struct{}, w *results.Writer, c *results.Collector, recorded recordedCounter, clock *event.Clock, clientTimeout time.Duration, live *liveStats, rec *recording, driver loadDriver,
	flushAccess func() error, fail *failure) {
	t := time.NewTicker(IntervalWidth)
	defer t.Stop()
	wm := &watermark{timeout: clientTimeout, recorded: recorded, stopped: loadStopped}
	wm.frontier, _ = driver.(dispatchFrontier)
	wm.sched, _ = driver.(scheduleCounter)
	wm.inflight, _ = driver.(inFlightBound)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ivs := c.TakeIntervals(wm.before(clock.Now()))
		rec.keepIntervals(w.WriteIntervals(ivs, results.Sec(IntervalWidth)))
		if err := w.Flush(); err != nil {
			fail.set(fmt.Errorf("write results: %w", err))
		}
		if err := flushAccess(); err != nil {
			fail.set(fmt.Errorf("write results: access log: %w", err))
		}
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
	closedSent := c.PhaseClosedSent() // nil unless open and closed executors mix
	poisson := poissonExecutors(p.Load)
	for i, st := range c.PhaseStats() {
		ph := p.Phases[i]
		if ph.End == gameday.Gone {
			continue // a game day's faults as they ran do not make it
		}
		end := min(ph.End, max(ran, ph.Start))
		window := end - ph.Start
		ps := results.PhaseSummary{Name: ph.Name, Start: results.Sec(ph.Start), End: results.Sec(end),
			Stats: results.Summarize(st, max(window, 0), scheduled(ph.Start, max(end, ph.Start)))}
		if anyPoisson(poisson) {
			// A Poisson draw's count differs from the profile's mean by
			// sampling noise, and the summary says so; evenly spaced
			// arrivals differ from it only by rounding to whole requests.
			ps.Stats.SetProfileRate(expected(ph.Start, max(end, ph.Start)), window)
		}
		if i < len(sentByTag) && len(sentByTag[i]) > 0 {
			ps.SentByTag = sentByTag[i] // an empty one reads back as none
		}
		if i < len(closedSent) && ps.Stats.TargetRate > 0 && window > 0 {
			// The target is the open-model executors' alone.
			r := math.Round(float64(ps.Stats.Sent-closedSent[i])/window.Seconds()*1000) / 1000
			ps.Stats.OpenAchievedRate = &r
		}
		if interrupted && end < ph.End {
			ps.PlannedEnd = results.Sec(ph.End)
			if window < IntervalWidth {
				// A stop a few ms into a phase: a request or two over
				// that sliver is no rate ("1 sent, 218/s").
				ps.Stats.TargetRate, ps.Stats.AchievedRate, ps.Stats.OpenAchievedRate = 0, 0, nil
			}
		}
		if i == 0 {
			s.Run = ps
		} else {
			s.Phases = append(s.Phases, ps)
		}
	}
	if w := lagWarning(s.Run.Stats.Lag); w != "" {
		s.Warnings = append(s.Warnings, w)
	}
	// The plan lists the file's own phases after the derived ones, and a
	// game day's collector keeps the phases in the order they were made:
	// a reader wants them in time order.
	results.SortPhases(s.Phases)
	if plain {
		s.Executors, s.Tags = groupSummaries(c, g, elapsed, ran, interrupted, poisson)
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

// LagWarning is the generator's scheduling lag (p99) from which a run's
// summary warns that the machine, not the target, may be behind its
// latencies. A busy but healthy run stays under 20 ms.
const LagWarning = 50 * time.Millisecond

// lagWarning says when the load generator fell behind its own schedule.
// Latency counts from the intended send, so a stalled generator charges its
// own wait to the target, and requests it sent late land in later phases
// than the ones they were scheduled in (a phase's amplification, its error
// rate): the verdicts would blame the system under test for the machine.
func lagWarning(lag *results.Percentiles) string {
	if lag == nil || lag.P99 < LagWarning.Seconds()*1000 {
		return ""
	}
	d := func(ms float64) string { return verdict.FormatDuration(time.Duration(ms * float64(time.Millisecond))) }
	return fmt.Sprintf("the load generator fell behind its own schedule (scheduling lag p99 %s, max %s): latencies count from the intended send time, so that wait is charged to the target, and requests sent late count in the phases they were scheduled in but reach the upstreams in later ones; the machine running cascade was too busy for this rate (other work, too few cores): rerun on a quieter machine, or at a lower rate",
		d(lag.P99), d(lag.Max))
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

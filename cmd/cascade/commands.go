package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"

	"github.com/spf13/cobra"

	"github.com/cascadehq/cascade/internal/run"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/report"
	"github.com/cascadehq/cascade/results/verdict"
	"github.com/cascadehq/cascade/scenarios"
	"github.com/cascadehq/cascade/scenarios/plan"
)

type planFlags struct {
	seed        uint64
	strict      bool
	allowRemote bool
}

func (f *planFlags) register(cmd *cobra.Command) {
	cmd.Flags().Uint64Var(&f.seed, "seed", 0, "override the scenario's seed")
	cmd.Flags().BoolVar(&f.strict, "strict", false, "treat lint warnings (e.g. a misordered timeout cascade) as errors")
	cmd.Flags().BoolVar(&f.allowRemote, "allow-remote", false, "permit a non-loopback target (cascade refuses by default)")
}

func (f *planFlags) options(cmd *cobra.Command) plan.Options {
	o := plan.Options{Strict: f.strict, AllowRemote: f.allowRemote}
	if cmd.Flags().Changed("seed") {
		o.Seed = &f.seed
	}
	return o
}

func newRunCmd(stdout, stderr io.Writer) *cobra.Command {
	var pf planFlags
	var lf liveFlags
	var out, progress string
	var repeat int
	cmd := &cobra.Command{
		Use:   "run SCENARIO.yaml",
		Short: "Run a scenario and judge its SLOs (exit 0 pass, 1 fail)",
		Long: `Run starts the scenario's fake upstreams and gateway, drives the load while the fault
timeline runs, and prints a summary per phase with one line per SLO. Results go to a run
directory (summary.json, intervals.jsonl, events.jsonl, scenario.yaml) that
'cascade report' can re-read. Ctrl-C (or SIGTERM, SIGHUP) stops the run, writes partial
results, removes what the run started and exits 130 (3 if the partial results could not
be written: an error outranks the interruption, so a script does not take lost results
for saved ones). The first Ctrl-C cuts the load generator's requests short at once; a second stops waiting
for the upstreams' work in flight (replicas and containers finishing their requests) but
still removes what the run started; a third kills at once (then
'cascade cleanup --run <id>', with the id the first one printed, removes what is left,
and 'cascade report' rebuilds a partial report from what the run had written).
A run whose setup fails (exit 3: a port in use, a database that does not start), or is
stopped before its load starts, sent nothing and leaves no run directory: once the
cause is fixed, the same command runs again. A run that fails once its load started
(its results cannot be written: a full disk) stops the load, exits 3 and keeps what it
measured, its summary marked with the error ('cascade report' reads it).`,
		Example: `  cascade run scenarios/examples/quickstart.yaml
  cascade run --out /tmp/run1 --seed 7 scenarios/examples/slow-upstream-504.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if repeat < 1 || repeat > 1000 {
				return exitWith(ExitUsage, fmt.Errorf("--repeat must be between 1 and 1000"))
			}
			// Checked before a repeat too, which ran with a misspelt
			// --progress as if it were right.
			mode := run.ProgressMode(progress)
			switch mode {
			case run.ProgressAuto, run.ProgressBars, run.ProgressPlain, run.ProgressOff:
			default:
				return exitWith(ExitUsage, fmt.Errorf("--progress must be auto, bars, plain or off"))
			}
			// A repeat runs unattended, one seed after another, without a
			// control API: it took --live (and cascade gameday) and dropped
			// them, and --control without --live changed nothing.
			switch {
			case repeat > 1 && lf.live:
				return exitWith(ExitUsage, errors.New("--repeat runs the scenario unattended, one seed after another: a game day (cascade gameday, or --live) runs once"))
			case !lf.live && cmd.Flags().Changed("control"):
				return exitWith(ExitUsage, errors.New("--control is the game day's control API address: it applies with --live (or cascade gameday)"))
			}
			if repeat > 1 {
				return runRepeat(cmd.Context(), args[0], pf.options(cmd), repeat, out, stdout, stderr)
			}
			p, err := plan.CompileFile(args[0], pf.options(cmd))
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			for _, w := range p.Warnings {
				fmt.Fprintln(stderr, "warning:", w)
			}
			if err := lf.check(p); err != nil {
				return exitWith(ExitUsage, err)
			}
			o, err := run.Run(cmd.Context(), p, run.Options{OutDir: out, Progress: mode, Stdout: stdout, Stderr: stderr, AllowRemote: pf.allowRemote, Live: lf.options()})
			if err != nil {
				return exitWith(ExitRunFailed, err)
			}
			switch {
			case o.Interrupted:
				fmt.Fprintln(stderr, "cascade: interrupted; partial results in", o.Dir)
				return exitWith(ExitInterrupted, nil)
			case !o.Pass:
				return exitWith(ExitFail, nil)
			}
			return nil
		},
	}
	pf.register(cmd)
	lf.register(cmd)
	cmd.Flags().StringVar(&out, "out", "", "run directory (default ./cascade-results/<name>-<timestamp>)")
	cmd.Flags().StringVar(&progress, "progress", "auto", "live display: auto, bars, plain or off")
	cmd.Flags().IntVar(&repeat, "repeat", 1, "run N times with seeds seed..seed+N-1 and report each objective's pass rate (flaky: neither 0% nor 100%)")
	return cmd
}

func newValidateCmd(stdout, stderr io.Writer) *cobra.Command {
	var pf planFlags
	var checkPriv bool
	cmd := &cobra.Command{
		Use:   "validate SCENARIO.yaml",
		Short: "Check a scenario without running it (exit 0 valid, 2 invalid)",
		Long: `Validate decodes the scenario strictly, resolves every reference, parses every
objective and runs the static timeout-cascade lint. Errors name file:line:column.`,
		Example: `  cascade validate scenarios/examples/quickstart.yaml
  cascade validate --strict my-scenario.yaml   # lint warnings fail too`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := plan.CompileFile(args[0], pf.options(cmd))
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			for _, w := range p.Warnings {
				fmt.Fprintln(stderr, "warning:", w)
			}
			if err := packetNote(stderr, p, checkPriv); err != nil {
				return exitWith(ExitUsage, err)
			}
			fmt.Fprintf(stdout, "%s: valid (%d upstreams, %d faults, %d phases, %d objectives, %.0f requests over %s)\n",
				args[0], len(p.Upstreams), len(p.Timeline), len(p.Phases), len(p.Objectives), p.ScheduledRequests(), p.Duration)
			return nil
		},
	}
	pf.register(cmd)
	cmd.Flags().BoolVar(&checkPriv, "check-privileges", false, "also fail (exit 2) when the scenario needs root for packet faults and this process lacks it")
	return cmd
}

func newSchemaCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:     "schema",
		Short:   "Print the JSON Schema of scenario files (for editors)",
		Example: "  cascade schema > scenario.schema.json\n  # then in VS Code: \"yaml.schemas\": {\"./scenario.schema.json\": \"scenarios/*.yaml\"}",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := scenarios.Schema()
			if err != nil {
				return exitWith(ExitRunFailed, err)
			}
			_, err = fmt.Fprintln(stdout, string(b))
			return err
		},
	}
}

func newReportCmd(stdout, stderr io.Writer) *cobra.Command {
	var outs reportOutputs
	var junit string
	cmd := &cobra.Command{
		Use:   "report RUN_DIR",
		Short: "Re-print a run's summary and re-judge its SLOs from the recorded data",
		Long: `Report reads a run directory and recomputes every objective from the recorded
histograms and counts, against the scenario saved with the run. Exit code as for run
(3 for a run that stopped on an error once its load started: its summary holds what it
measured until then, and why it stopped; 3 too when --html, --csv, --hgrm or --junit cannot be
written, and the file of that name is left as it was).
A run killed before it wrote its summary (SIGKILL, a crash, a third Ctrl-C, a CI
timeout) gets a partial report rebuilt from the records it streamed, marked PARTIAL,
verdict error, exit 3: counts and percentiles of the intervals written, in the phases
that hold their starts; objectives that need what only a summary keeps (the scheduling
lag, a timeout cascade's latencies by cause) are NOT JUDGED. Nothing is written into
its directory (but report.html with --html).
--html rewrites the run's self-contained HTML report; --csv exports the per-interval series;
--hgrm writes a latency percentile distribution (wrk2's --latency spectrum) for
HdrHistogram's plotter.`,
		Example: `  cascade report cascade-results/quickstart-20261122-101500
  cascade report --html RUN_DIR && xdg-open "$(cascade report --html --open-path RUN_DIR)"
  cascade report --csv series.csv RUN_DIR
  cascade report --hgrm - --hgrm-phase outage RUN_DIR`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outs.check(); err != nil {
				return exitWith(ExitUsage, err)
			}
			// A run killed before it wrote its summary (SIGKILL, a crash,
			// a third Ctrl-C) left its streams: its summary is rebuilt
			// from them below, once the plan gives the phases.
			var killed *results.KilledRun
			var r *results.Run
			var err error
			if results.IsKilled(args[0]) {
				if killed, err = results.LoadKilled(args[0]); err != nil {
					return exitWith(ExitUsage, err)
				}
				r = &results.Run{Dir: killed.Dir, Events: killed.Events, Intervals: killed.Intervals, Upstreams: killed.Upstreams}
				// A ladder's rung said so at its start: its plan is rebuilt
				// below as for a rung that wrote its summary.
				r.Summary.Seed, r.Summary.Ladder = killed.Seed, killed.Ladder
			} else if r, err = results.Load(args[0]); err != nil {
				return exitWith(ExitUsage, err)
			}
			sum := r.Summary
			src, err := os.ReadFile(filepath.Join(r.Dir, results.ScenarioFile))
			if err != nil {
				return exitWith(ExitUsage, fmt.Errorf("the run's scenario copy: %w", err))
			}
			seed := sum.Seed
			// Named as the copy: offline, nothing is read relative to it,
			// and an error must point at the file that holds the text.
			copyPath := filepath.Join(r.Dir, results.ScenarioFile)
			p, err := plan.CompileBytes(copyPath, src, plan.Options{Seed: &seed, AllowRemote: true, Offline: true})
			if err != nil {
				return exitWith(ExitUsage, fmt.Errorf("the run's scenario no longer compiles: %w", err))
			}
			if sum.Ladder != nil {
				// A ladder rung ran a plan made from the scenario, with
				// its own load and objective: judge that, as the ladder did.
				if p, err = run.RungPlan(p, *sum.Ladder); err != nil {
					return exitWith(ExitUsage, fmt.Errorf("ladder rung %s: %w", sum.Ladder.Rung, err))
				}
			}
			var missing verdict.Missing
			if killed != nil {
				rebuilt, q, m, err := rebuildKilled(killed, p)
				if err != nil {
					return exitWith(ExitUsage, err)
				}
				sum, p, missing = *rebuilt, q, m
			}
			if err := outs.checkRun(&sum); err != nil {
				return exitWith(ExitUsage, err)
			}
			in, err := verdict.NewInput(&sum, r.Events, r.Intervals)
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			in.Upstreams = r.Upstreams
			objs, pass := verdict.EvaluateMissing(p.Objectives, in, missing)
			sum.Objectives = objs
			pass = pass && sum.Aborted == "" && sum.Error == ""
			if r.Partial != "" {
				// A run stopped by an error: judged on what is whole of its
				// records, as the run judged itself.
				if note := "the records were cut short by the error: " + r.Partial; !slices.Contains(sum.Warnings, note) {
					sum.Warnings = append(sum.Warnings, note)
				}
			}
			switch {
			case sum.Error != "":
				sum.Verdict = results.VerdictError
			case sum.Interrupted:
				sum.Verdict = results.VerdictInterrupted
			case pass:
				sum.Verdict = results.VerdictPass
			default:
				sum.Verdict = results.VerdictFail
			}
			text, err := outs.write(stdout, stderr, r, &sum, p, src)
			if err != nil {
				// As --junit below: the input was fine, the output
				// could not be written (a full disk, a missing directory).
				return exitWith(ExitRunFailed, err)
			}
			if text {
				if err := report.Text(stdout, &sum, r.Dir); err != nil {
					return err
				}
			}
			if junit != "" {
				if err := writeJUnitFile(junit, &sum); err != nil {
					return exitWith(ExitRunFailed, err)
				}
			}
			switch {
			case sum.Error != "":
				return exitWith(ExitRunFailed, nil) // as the run exited: it stopped on an error
			case sum.Interrupted:
				return exitWith(ExitInterrupted, nil)
			case !pass:
				return exitWith(ExitFail, nil)
			}
			return nil
		},
	}
	outs.register(cmd)
	cmd.Flags().StringVar(&junit, "junit", "", "also write the re-judged objectives as JUnit XML to this file")
	return cmd
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print cascade's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintf(stdout, "cascade %s (%s)\n", version(), runtime.Version())
		},
	}
}

func version() string { return "dev" }

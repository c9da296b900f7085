package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/run"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/verdict"
	"github.com/cascadehq/cascade/scenarios/plan"
)

func newLadderCmd(stdout, stderr io.Writer) *cobra.Command {
	var pf planFlags
	var out string
	var rate float64
	var dur time.Duration
	cmd := &cobra.Command{
		Use:   "ladder SCENARIO.yaml",
		Short: "Climb the latency ladder: a delay just above each layer's timeout, in turn; print which layer fired when",
		Long: `Ladder reads the scenario's timeout cascade (client, gateway, per try, upstream, database),
then runs one short rung per layer, innermost first: every upstream answers just later
than that layer's timeout, and the layers inside it have their timeouts lifted out of the
way, so that layer must answer, at its timeout. A last rung lifts nothing and delays past
every timeout: the innermost layer must answer. The scenario's own faults, load and SLOs
are not used. Exit 0 when every rung was answered by the layer expected, 1 otherwise.`,
		Example: `  cascade ladder scenarios/examples/cascade-ladder.yaml
  cascade ladder --rate 20 --duration 3s my-scenario.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := plan.CompileFile(args[0], pf.options(cmd))
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			for _, w := range p.Warnings {
				fmt.Fprintln(stderr, "warning:", w)
			}
			if !(rate > 0) || dur <= 0 { // the defaults are not zero: a zero was typed
				return exitWith(ExitUsage, fmt.Errorf("--rate and --duration must be above 0 (got %v and %v)", rate, dur))
			}
			rungs, err := run.Ladder(p, run.LadderOptions{Rate: rate, Duration: dur})
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			if out == "" {
				out = run.FreeDir(filepath.Join("cascade-results", p.Name+"-ladder-"+time.Now().Format("20060102-150405")))
			}
			// Before the first rung, as a single run checks its --out:
			// the rungs' folders went in beside the user's files.
			if err := results.CheckFree(out); err != nil {
				return exitWith(ExitUsage, err)
			}
			runnable := 0
			for _, r := range rungs {
				if r.Skip == "" {
					runnable++
				}
			}
			skipped := ""
			if runnable < len(rungs) {
				skipped = fmt.Sprintf(" (%d cannot run)", len(rungs)-runnable)
			}
			fmt.Fprintf(stdout, "cascade ladder: %s\n  timeout cascade: %s\n  %d rungs%s, results in %s\n", p.Name, plan.Chain(p), len(rungs), skipped, out)
			res, err := run.RunLadder(cmd.Context(), rungs, out, run.Options{Progress: run.ProgressOff, Stdout: io.Discard, Stderr: stderr, AllowRemote: pf.allowRemote})
			interrupted := err != nil && (errors.Is(err, run.ErrInterruptedInSetup) || cmd.Context().Err() != nil && errors.Is(err, cmd.Context().Err()))
			printLadder(stdout, res, runnable, interrupted)
			if err != nil {
				if interrupted && !errors.Is(err, run.ErrInterruptedInSetup) {
					fmt.Fprintln(stderr, "cascade: interrupted; partial results in", out) // as run says it
					return exitWith(ExitInterrupted, nil)
				}
				// A rung that fails (or is stopped) in its setup takes back
				// its directory, and out with it when the first rung made
				// it; the rungs before it ran, and are kept.
				if len(res) > 0 {
					ran := 0 // a skipped rung has no directory
					for _, r := range res {
						if !r.Skipped {
							ran++
						}
					}
					err = fmt.Errorf("%w; %s", err, keptBefore(ran, "rung", out))
				}
				return exitWith(ExitRunFailed, err)
			}
			for _, r := range res {
				if !r.Pass && !r.Skipped {
					return exitWith(ExitFail, nil)
				}
			}
			return nil
		},
	}
	pf.register(cmd)
	cmd.Flags().StringVar(&out, "out", "", "directory for the rungs' run directories (default ./cascade-results/<name>-ladder-<timestamp>)")
	cmd.Flags().Float64Var(&rate, "rate", 10, "requests per second in each rung")
	cmd.Flags().DurationVar(&dur, "duration", 2*time.Second, "how long each rung sends load")
	return cmd
}

// printLadder writes one row per rung: the delay, the layer expected at its
// timeout, and what fired, by cause, at what service time. planned counts
// the rungs that can run (not the skipped); fewer judged: the ladder was
// interrupted, or a rung failed to run.
func printLadder(w io.Writer, res []run.RungResult, planned int, interrupted bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\n  rung\tdelay\texpected\tlifted\tfired (service time min–max)\tverdict")
	passed, judged, skipped := 0, 0, 0
	for _, r := range res {
		if r.Skipped {
			skipped++
			fmt.Fprintf(tw, "  %s\t-\t%s at %s\t-\t-\tSKIPPED\n", r.Rung.Name, r.Rung.Expect, verdict.FormatDuration(r.Rung.Timeout))
			continue
		}
		mark := "FAIL"
		switch {
		case r.Interrupted:
			mark = "INTERRUPTED"
		case r.Pass:
			mark, passed = "PASS", passed+1
		}
		if !r.Interrupted {
			judged++
		}
		lifted := strings.Join(r.Rung.Lifted, ",")
		if lifted == "" {
			lifted = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s at %s\t%s\t%s\t%s\n", r.Rung.Name, verdict.FormatDuration(r.Rung.Delay), r.Rung.Expect,
			verdict.FormatDuration(r.Rung.Timeout), lifted, fired(r.Summary.Run.Stats), mark)
	}
	tw.Flush()
	for _, r := range res {
		switch {
		case r.Skipped:
			fmt.Fprintf(w, "  %s: not run: %s\n", r.Rung.Name, r.Rung.Skip)
		case !r.Pass && !r.Interrupted && len(r.Summary.Objectives) > 0:
			fmt.Fprintf(w, "  %s: %s\n", r.Rung.Name, r.Summary.Objectives[0].Evidence)
		}
	}
	if judged < planned {
		how := "stopped by an error"
		if interrupted {
			how = "interrupted"
		}
		fmt.Fprintf(w, "\nLadder: %s after %d of %d rungs; %d of them answered by the layer expected\n", how, judged, planned, passed)
		return
	}
	tail := ""
	if skipped > 0 {
		tail = fmt.Sprintf("; %d skipped", skipped)
	}
	fmt.Fprintf(w, "\nLadder: %d/%d rungs answered by the layer expected%s\n", passed, judged, tail)
}

// fired lists the outcomes that were not ok, by cause, with when they
// fired: "gateway_timeout[gateway] 20 at 1.001s–1.004s".
func fired(st results.StatsSummary) string {
	type kv struct {
		name string
		n    int64
	}
	var xs []kv
	for name, n := range st.Causes {
		if c, ok := cause.Parse(name); ok && c.IsError() {
			xs = append(xs, kv{name, n})
		}
	}
	if len(xs) == 0 {
		// A rung cut short by Ctrl-C: its requests in flight were
		// neither ok nor an error ("nothing (ok 0)" said less).
		if n := st.Causes[cause.Aborted.String()]; n > 0 {
			return fmt.Sprintf("nothing (ok %d, %d cut short by the stop)", st.Causes[cause.OK.String()], n)
		}
		return fmt.Sprintf("nothing (ok %d)", st.Causes[cause.OK.String()])
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].n > xs[j].n })
	parts := make([]string, 0, len(xs))
	for _, x := range xs {
		c, _ := cause.Parse(x.name)
		s := fmt.Sprintf("%s[%s] %d", x.name, c.Layer(), x.n)
		if p, ok := st.CauseLatency[x.name]; ok {
			s += " at " + ms(p.Min) + "–" + ms(p.Max)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func ms(v float64) string {
	return verdict.FormatDuration(time.Duration(v * float64(time.Millisecond)))
}

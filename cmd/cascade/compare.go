package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/report"
)

func newCompareCmd(stdout io.Writer) *cobra.Command {
	var threshold, judged string
	var markdown bool
	var minLatency time.Duration
	var alpha float64
	cmd := &cobra.Command{
		Use:   "compare RUN_A RUN_B",
		Short: "Compare run B against baseline run A (exit 0 no regression, 1 regression)",
		Long: `Compare reads two run directories and reports, for every objective, its value and
verdict in both runs, and for the whole run and each phase both runs have, the latency
percentiles (from the intended send time), error rate and achieved rate, with the change.

A regression is an objective that passed in A and fails in B, or a judged metric worse
by more than --threshold: latency above A×(1+threshold) and up by at least
--min-latency-change (1ms: below it, two runs of the same seed differ by scheduling
noise alone), achieved rate below A×(1−threshold), error rate up by more than the
threshold relatively and by at least 0.1 percentage points. p99.9 and max are shown but
not judged unless --judge names them. A phase, or the whole run, whose window differs
between the runs by more than 50 ms (a run stopped early) is shown, not judged.
Exit 1 when anything regressed, 0 when nothing did, 2 on usage errors, 3 when a run
did not finish (interrupted, or stopped by an error): its numbers cover only part of
the run, so the comparison is inconclusive either way.

Two repeats (directories of 'cascade run --repeat N') are compared as sets, as
benchstat compares benchmarks: for each metric of the whole run, the median and range
of each side's runs, and a Mann–Whitney U test of whether they differ, its p-value
Holm-adjusted over the judged metrics and the objectives (so that an unchanged system
fails the gate with probability under --alpha, not once per test). A change that is
not significant (adjusted p >= --alpha) is shown as "~" and cannot regress; a
significant one regresses beyond the thresholds above, applied to the medians. An
objective regresses when it passes in significantly fewer runs. With too few runs for
any difference to be significant (five judged metrics and one objective need 5 runs a
side) the comparison is inconclusive (exit 3) and says how many it takes. The phases
every run has are shown with raw p-values and judge nothing (an objective on a phase
gates it). Runs that did not finish are left out.`,
		Example: `  cascade compare cascade-results/quickstart-main cascade-results/quickstart-pr
  cascade compare --threshold 5% --markdown base/ head/ > comment.md
  cascade run --repeat 5 --out base-repeat scenario.yaml   # on main, then on the branch:
  cascade compare base-repeat head-repeat`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			th, err := parseThreshold(threshold)
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			if minLatency < 0 {
				return exitWith(ExitUsage, fmt.Errorf("--min-latency-change %v: expected 0 or more", minLatency))
			}
			opts := report.CompareOptions{Threshold: th, MinLatencyIncrease: minLatency}
			if cmd.Flags().Changed("judge") {
				opts.Judged = []string{}
				for _, m := range strings.Split(judged, ",") {
					m = strings.TrimSpace(m)
					if m == "" {
						continue
					}
					if !slices.Contains(report.CompareMetrics, m) {
						return exitWith(ExitUsage, fmt.Errorf("--judge: unknown metric %q (known: %s)", m, strings.Join(report.CompareMetrics, ", ")))
					}
					opts.Judged = append(opts.Judged, m)
				}
			}
			if !(alpha > 0 && alpha < 1) {
				return exitWith(ExitUsage, fmt.Errorf("--alpha %g: expected a significance level between 0 and 1, such as 0.05", alpha))
			}
			var sides [2][]*results.Summary
			var repeats [2]bool
			for i, dir := range args {
				if sides[i], repeats[i], err = loadCompared(dir); err != nil {
					return exitWith(ExitUsage, err)
				}
			}
			if repeats[0] != repeats[1] {
				return exitWith(ExitUsage, fmt.Errorf("%s is %s and %s is %s: compare a repeat with a repeat (cascade run --repeat N), or a run with a run",
					args[0], kindOfDir(repeats[0]), args[1], kindOfDir(repeats[1])))
			}
			if repeats[0] {
				sc := report.CompareSets(sides[0], sides[1], args[0], args[1], opts, alpha)
				if markdown {
					err = sc.Markdown(stdout)
				} else {
					err = sc.Text(stdout)
				}
				switch {
				case err != nil:
					return err
				case sc.Inconclusive():
					return exitWith(ExitRunFailed, nil)
				case sc.Regressions() > 0:
					return exitWith(ExitFail, nil)
				}
				return nil
			}
			c := report.Compare(sides[0][0], sides[1][0], args[0], args[1], opts)
			if markdown {
				err = c.Markdown(stdout)
			} else {
				err = c.Text(stdout)
			}
			if err != nil {
				return err
			}
			switch {
			case c.Inconclusive():
				return exitWith(ExitRunFailed, nil)
			case c.Regressions() > 0:
				return exitWith(ExitFail, nil)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&threshold, "threshold", "10%", "relative change beyond which a judged metric regresses")
	cmd.Flags().BoolVar(&markdown, "markdown", false, "write Markdown for a pull-request comment")
	cmd.Flags().DurationVar(&minLatency, "min-latency-change", report.DefaultMinLatencyIncrease, "smallest latency rise that can regress, however large relatively (0: none)")
	cmd.Flags().Float64Var(&alpha, "alpha", report.DefaultAlpha, "significance level when comparing two repeats (Mann–Whitney U test)")
	cmd.Flags().StringVar(&judged, "judge", strings.Join(report.DefaultJudged, ","), "metrics that can regress, comma-separated (of "+strings.Join(report.CompareMetrics, ", ")+")")
	return cmd
}

// parseThreshold reads "10%" or a fraction "0.1". Unlike a scenario's
// percentages it may exceed 100%: "p99 may double" is a fair threshold.
func parseThreshold(s string) (float64, error) {
	t := strings.TrimSpace(s)
	div := 1.0
	if strings.HasSuffix(t, "%") {
		t, div = strings.TrimSpace(strings.TrimSuffix(t, "%")), 100
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, fmt.Errorf("--threshold %q: expected a percentage such as 10%% (or a fraction such as 0.1), not negative", s)
	}
	// A bare number above 1 is a percentage without its sign far more often
	// than a fraction: --threshold 5 read as 500% let p99 grow sixfold
	// without a regression. As a scenario's percentages, it needs the sign.
	if div == 1 && v > 1 {
		return 0, fmt.Errorf("--threshold %q is above 1 as a fraction: write it with a %% sign (%s%%, or %s%% for a fraction of %s)", s, t, strconv.FormatFloat(v*100, 'g', -1, 64), t)
	}
	return v / div, nil
}

// loadCompared reads a run directory, or each run a repeat's repeat.json
// lists (repeat reports true). The runs are looked for inside dir, by
// their folder's name: repeat.json keeps their paths as the repeat was
// given them, relative to where it ran.
func loadCompared(dir string) (runs []*results.Summary, repeat bool, err error) {
	raw, err := os.ReadFile(filepath.Join(dir, RepeatFile))
	if errors.Is(err, fs.ErrNotExist) {
		r, err := results.Load(dir)
		if err != nil {
			return nil, false, err
		}
		return []*results.Summary{&r.Summary}, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	var rep RepeatReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		return nil, true, fmt.Errorf("%s: %w", filepath.Join(dir, RepeatFile), err)
	}
	if len(rep.Dirs) == 0 {
		return nil, true, fmt.Errorf("%s lists no finished run", filepath.Join(dir, RepeatFile))
	}
	for _, d := range rep.Dirs {
		r, err := results.Load(filepath.Join(dir, filepath.Base(d)))
		if err != nil {
			return nil, true, err
		}
		runs = append(runs, &r.Summary)
	}
	return runs, true, nil
}

func kindOfDir(repeat bool) string {
	if repeat {
		return "a repeat"
	}
	return "a single run"
}

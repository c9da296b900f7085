package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cascadehq/cascade/internal/atomicfile"
	"github.com/cascadehq/cascade/internal/run"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/verdict"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// RepeatFile is the stability report `cascade run --repeat N` writes.
const RepeatFile = "repeat.json"

// Stability is one objective's record over repeated runs.
type Stability struct {
	Name     string   `json:"name"`
	Passed   int      `json:"passed"`
	Runs     int      `json:"runs"`
	PassRate float64  `json:"pass_rate"`
	Flaky    bool     `json:"flaky"` // neither always nor never passed
	Measured []string `json:"measured"`
}

// RepeatReport is repeat.json.
type RepeatReport struct {
	Scenario string   `json:"scenario"`
	Planned  int      `json:"planned"` // runs asked for (--repeat)
	Seeds    []uint64 `json:"seeds"`   // of the runs that finished
	Dirs     []string `json:"dirs"`
	// Interrupted: a stop signal ended the repeat before its last run;
	// the runs that finished are tallied, the one cut short is not.
	Interrupted bool        `json:"interrupted,omitempty"`
	Objectives  []Stability `json:"objectives"`
	// Pass: every objective passed in every run asked for. False when
	// interrupted, whatever the runs that finished did: a CI step that
	// reads pass alone must not see a repeat cut short as green.
	Pass bool `json:"pass"`
}

// runRepeat runs the scenario n times with seeds seed, seed+1, ..., and
// reports each objective's pass rate, so a resilience test that passes only
// sometimes is called flaky instead of green or red by luck.
func runRepeat(ctx context.Context, path string, opts plan.Options, n int, out string, stdout, stderr io.Writer) error {
	base, err := plan.CompileFile(path, opts)
	if err != nil {
		return exitWith(ExitUsage, err)
	}
	if len(base.Gates) > 0 {
		// As a single run refuses it, before starting anything: no one
		// would open the gates (exit 2, not a run that failed to start).
		return exitWith(ExitUsage, fmt.Errorf("%w; --repeat runs unattended, so a gated scenario runs once", run.ErrNeedsLive))
	}
	for _, w := range base.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if out == "" {
		out = run.FreeDir(filepath.Join("cascade-results", base.Name+"-repeat-"+time.Now().Format("20060102-150405")))
	}
	// Before the first run, as a single run checks its --out: the runs'
	// folders and repeat.json went in beside the user's files, and over
	// an earlier repeat.json.
	if err := results.CheckFree(out); err != nil {
		return exitWith(ExitUsage, err)
	}
	rep := RepeatReport{Scenario: base.Name, Planned: n}
	var runs [][]results.ObjectiveResult
	fmt.Fprintf(stdout, "cascade: %s, %d runs (seeds %d..%d), results in %s\n", base.Name, n, base.Seed, base.Seed+uint64(n)-1, out)
	// interrupted ends the repeat at a stop signal: the runs that finished
	// are tallied and kept in repeat.json, as a single run keeps what it
	// measured; the run cut short is in its directory, not in the tally.
	interrupted := func(i int) error {
		fmt.Fprintln(stderr, "cascade: interrupted; partial results in", out)
		if len(runs) == 0 {
			return exitWith(ExitInterrupted, nil)
		}
		rep.Interrupted = true
		rep.Objectives, _ = stability(runs)
		printStability(stdout, rep.Objectives)
		if err := writeRepeat(out, &rep); err != nil {
			return exitWith(ExitRunFailed, fmt.Errorf("%w (the %d runs are kept in %s)", err, i, out))
		}
		fmt.Fprintf(stdout, "\nVerdict: INTERRUPTED after %d of %d runs (the tally above is theirs)\n", len(runs), n)
		return exitWith(ExitInterrupted, nil)
	}
	for i := 0; i < n; i++ {
		// A stop signal that came while the last run was being judged
		// (its load had ended): the next run must not start, only to be
		// "interrupted during setup".
		if ctx.Err() != nil {
			return interrupted(i)
		}
		seed := base.Seed + uint64(i)
		o := opts
		o.Seed = &seed
		p, err := plan.CompileFile(path, o)
		if err != nil {
			return exitWith(ExitUsage, err)
		}
		dir := filepath.Join(out, fmt.Sprintf("%02d-seed%d", i+1, seed))
		res, err := run.Run(ctx, p, run.Options{OutDir: dir, Progress: run.ProgressOff, Stdout: io.Discard, Stderr: stderr, AllowRemote: opts.AllowRemote})
		if err != nil && errors.Is(err, run.ErrInterruptedInSetup) && i > 0 {
			fmt.Fprintf(stdout, "  run %d seed %d: INTERRUPTED before its load started (nothing kept)\n", i+1, seed)
			return interrupted(i)
		}
		if err != nil {
			// A run that fails (or is stopped) in its setup takes back its
			// directory, and out with it when the first one made it. The
			// runs before it measured something: kept, and said where.
			err = fmt.Errorf("run %d (seed %d): %w", i+1, seed, err)
			if i > 0 {
				err = fmt.Errorf("%w; %s (without %s: the repeat did not finish)", err, keptBefore(i, "run", out), RepeatFile)
			}
			return exitWith(ExitRunFailed, err)
		}
		if res.Interrupted {
			fmt.Fprintf(stdout, "  run %d seed %d: INTERRUPTED (partial results in %s, not tallied)\n", i+1, seed, dir)
			return interrupted(i + 1)
		}
		rep.Seeds, rep.Dirs = append(rep.Seeds, seed), append(rep.Dirs, dir)
		runs = append(runs, res.Summary.Objectives)
		passed := 0
		for _, r := range res.Summary.Objectives {
			if r.Pass {
				passed++
			}
		}
		note := ""
		if res.Summary.Aborted != "" {
			note = " (aborted)"
		}
		fmt.Fprintf(stdout, "  run %d seed %d: %s (%d/%d objectives passed)%s\n", i+1, seed, strings.ToUpper(res.Summary.Verdict), passed, len(res.Summary.Objectives), note)
	}
	rep.Objectives, rep.Pass = stability(runs)
	printStability(stdout, rep.Objectives)
	if err := writeRepeat(out, &rep); err != nil {
		return exitWith(ExitRunFailed, fmt.Errorf("%w (the %d runs are kept in %s)", err, n, out))
	}
	if !rep.Pass {
		fmt.Fprintln(stdout, "\nVerdict: FAIL (an objective failed in at least one run; FLAKY ones passed in some)")
		return exitWith(ExitFail, nil)
	}
	fmt.Fprintln(stdout, "\nVerdict: PASS (every objective passed in every run)")
	return nil
}

// printStability writes the objectives' tally over the runs.
func printStability(stdout io.Writer, objs []Stability) {
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nObjective stability\n  \tobjective\tpassed\tpass rate\tmeasured")
	for _, s := range objs {
		mark := "PASS"
		switch {
		case s.Flaky:
			mark = "FLAKY"
		case s.Passed == 0:
			mark = "FAIL"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d/%d\t%s\t%s\n", mark, s.Name, s.Passed, s.Runs, verdict.FormatPercent(s.PassRate), strings.Join(s.Measured, ", "))
	}
	tw.Flush()
}

// writeRepeat writes repeat.json into out.
func writeRepeat(out string, rep *RepeatReport) error {
	b, _ := json.MarshalIndent(rep, "", "  ")
	return atomicfile.WriteFile(filepath.Join(out, RepeatFile), append(b, '\n'), 0o644)
}

// keptBefore says that the n runs (or rungs) before the one that failed
// are kept in dir.
func keptBefore(n int, noun, dir string) string {
	if n == 1 {
		return fmt.Sprintf("the %s before it is kept in %s", noun, dir)
	}
	return fmt.Sprintf("the %d %ss before it are kept in %s", n, noun, dir)
}

// stability tallies each objective over the runs, in the order objectives
// first appear; pass is true when every objective passed in every run.
func stability(runs [][]results.ObjectiveResult) ([]Stability, bool) {
	byName := map[string]*Stability{}
	var order []string
	for _, objs := range runs {
		for _, r := range objs {
			s := byName[r.Name]
			if s == nil {
				s = &Stability{Name: r.Name}
				byName[r.Name] = s
				order = append(order, r.Name)
			}
			s.Runs++
			if r.Pass {
				s.Passed++
			}
			s.Measured = append(s.Measured, r.Measured)
		}
	}
	pass := true
	out := make([]Stability, 0, len(order))
	for _, name := range order {
		s := byName[name]
		// An objective missing from a run (it did not compile the same way)
		// counts as failed there.
		if s.Runs < len(runs) {
			s.Runs = len(runs)
		}
		s.PassRate = float64(s.Passed) / float64(s.Runs)
		s.Flaky = s.Passed > 0 && s.Passed < s.Runs
		pass = pass && s.Passed == s.Runs
		out = append(out, *s)
	}
	return out, pass
}

package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cascadehq/cascade/internal/atomicfile"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/report"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// reportOutputs are the files `cascade report` can write besides the text:
// the HTML page, the CSV series and a latency distribution.
type reportOutputs struct {
	html                    bool
	openPath                bool
	csv                     string
	hgrm, hgrmOf, hgrmPhase string
}

func (o *reportOutputs) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&o.html, "html", false, "(re)write RUN_DIR/"+report.HTMLFile+", the self-contained HTML report")
	cmd.Flags().BoolVar(&o.openPath, "open-path", false, "with --html: print only the report's file:// URL on stdout, for a browser to open")
	cmd.Flags().StringVar(&o.csv, "csv", "", "write the per-interval series as CSV to FILE ('-' for stdout)")
	cmd.Flags().StringVar(&o.hgrm, "hgrm", "", "write the latency's percentile distribution, as wrk2 --latency prints it and HdrHistogram's plotter reads it, to FILE ('-' for stdout)")
	cmd.Flags().StringVar(&o.hgrmOf, "hgrm-of", "latency", "with --hgrm: latency (from the intended send) or service (from the actual send)")
	cmd.Flags().StringVar(&o.hgrmPhase, "hgrm-phase", "", "with --hgrm: this phase's distribution instead of the whole run's")
}

// check rejects flag combinations before any work.
func (o *reportOutputs) check() error {
	if o.openPath && !o.html {
		return errors.New("--open-path needs --html")
	}
	stdout := 0
	for _, f := range []string{o.csv, o.hgrm} {
		if f == "-" {
			stdout++
		}
	}
	if o.openPath {
		stdout++
	}
	if stdout > 1 {
		return errors.New("--open-path, --csv - and --hgrm - each want stdout: write all but one to a file")
	}
	if o.hgrm == "" && (o.hgrmOf != "latency" || o.hgrmPhase != "") {
		return errors.New("--hgrm-of and --hgrm-phase need --hgrm FILE")
	}
	if o.hgrmOf != "latency" && o.hgrmOf != "service" {
		return fmt.Errorf("--hgrm-of %q: expected latency or service", o.hgrmOf)
	}
	return nil
}

// checkRun rejects what the run cannot give: a phase it does not have.
func (o *reportOutputs) checkRun(sum *results.Summary) error {
	if o.hgrm == "" {
		return nil
	}
	_, err := report.HGRMPhase(sum, o.hgrmPhase)
	if err != nil {
		err = fmt.Errorf("--hgrm-phase: %w", err)
	}
	return err
}

// write writes what was asked for, from the run and its re-judged summary,
// and says whether the text report still belongs on stdout (not when stdout
// carries the CSV or the URL).
func (o *reportOutputs) write(stdout, stderr io.Writer, r *results.Run, sum *results.Summary, p *plan.Plan, src []byte) (text bool, err error) {
	run := *r
	run.Summary = *sum
	d := report.Data{Run: &run, Scenario: src, Stages: ranStages(r.Dir, loadgen.TargetProfile(p.Load))}
	if o.html {
		path := filepath.Join(r.Dir, report.HTMLFile)
		if err := report.WriteHTMLFile(path, d); err != nil {
			return false, fmt.Errorf("HTML report: %w", err)
		}
		if o.openPath {
			abs, err := filepath.Abs(path)
			if err != nil {
				return false, err
			}
			fmt.Fprintln(stdout, (&url.URL{Scheme: "file", Path: abs}).String())
		} else {
			fmt.Fprintf(stderr, "HTML report: %s\n", path)
		}
	}
	switch o.csv {
	case "":
	case "-":
		if err := report.CSV(stdout, d); err != nil {
			return false, fmt.Errorf("CSV: %w", err)
		}
	default:
		// Whole or not at all: a CSV cut short by a full disk would have
		// replaced the user's previous one.
		if err := atomicfile.Write(o.csv, 0o644, func(w io.Writer) error { return report.CSV(w, d) }); err != nil {
			return false, fmt.Errorf("CSV: %w", err) // which names the file
		}
		fmt.Fprintf(stderr, "CSV: %s\n", o.csv)
	}
	switch o.hgrm {
	case "":
	case "-":
		if err := report.HGRM(stdout, sum, o.hgrmOf, o.hgrmPhase); err != nil {
			return false, fmt.Errorf("--hgrm: %w", err)
		}
	default:
		if err := atomicfile.Write(o.hgrm, 0o644, func(w io.Writer) error { return report.HGRM(w, sum, o.hgrmOf, o.hgrmPhase) }); err != nil {
			return false, fmt.Errorf("--hgrm: %w", err)
		}
		fmt.Fprintf(stderr, "Percentile distribution: %s\n", o.hgrm)
	}
	return !o.openPath && o.csv != "-" && o.hgrm != "-", nil
}

package run

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/report"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// writeHTMLReport writes report.html into the run directory from what was
// just written there, so the page of a live run and the page `cascade report
// DIR --html` makes later are the same. A page that cannot be written is a
// notice, not a failed run: the verdict and the data stand without it.
func writeHTMLReport(w *results.Writer, p *plan.Plan, stderr io.Writer) {
	if err := w.Flush(); err != nil {
		fmt.Fprintf(stderr, "cascade: the HTML report could not be written: %v\n", err)
		return
	}
	writeHTMLPage(w.Dir(), p, stderr)
}

// writeHTMLPage is writeHTMLReport of a run directory already flushed (or
// closed: a run that failed writes its page after its streams are closed,
// from what of them is on disk).
func writeHTMLPage(dir string, p *plan.Plan, stderr io.Writer) {
	path := filepath.Join(dir, report.HTMLFile)
	r, err := report.Load(dir)
	if err == nil {
		err = report.WriteHTMLFile(path, report.Data{Run: r, Scenario: p.Source, Stages: loadgen.TargetProfile(p.Load)})
	}
	if err != nil {
		fmt.Fprintf(stderr, "cascade: the HTML report could not be written: %v\n", err)
		return
	}
	fmt.Fprintf(stderr, "HTML report: %s\n", path)
}

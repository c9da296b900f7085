package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/cascadehq/cascade/results"
)

// HGRM writes one of a run's latency histograms as HdrHistogram's
// percentile distribution: the "Detailed Percentile spectrum" wrk2 prints
// with --latency, in milliseconds, which HdrHistogram's plotter
// (hdrhistogram.github.io/HdrHistogram/plotFiles.html) draws, several runs
// or phases on one chart. The library writes the format itself
// (PercentilesPrint); this only picks the histogram and labels it.
//
// of is "latency" (from the intended send time: what the summary's
// Latency line reports) or "service" (from the actual send: what a closed
// loop would have claimed); phase is a phase's name, or "" for the run.
func HGRM(w io.Writer, sum *results.Summary, of, phase string) error {
	ps, err := HGRMPhase(sum, phase)
	if err != nil {
		return err
	}
	st, err := ps.Stats.Stats()
	if err != nil {
		return err
	}
	h := st.Latency
	what := "latency from the intended send time (corrected for coordinated omission)"
	switch of {
	case "latency":
	case "service":
		h = st.Service
		what = "service time from the actual send (what a closed loop would report)"
	default:
		return fmt.Errorf("%q: expected latency or service", of)
	}
	if h.TotalCount() == 0 {
		return fmt.Errorf("phase %s recorded no latency to plot", ps.Name)
	}
	// HdrHistogram's tools skip lines that start with '#': the header says
	// what is plotted without breaking the format.
	if _, err := fmt.Fprintf(w, "# cascade %s, phase %s: %s, in ms\n", sum.Scenario, ps.Name, what); err != nil {
		return err
	}
	_, err = h.PercentilesPrint(w, 5, 1000) // µs recorded, ms written
	return err
}

// HGRMPhase finds the phase HGRM plots: "" or "run" is the whole run.
func HGRMPhase(sum *results.Summary, phase string) (*results.PhaseSummary, error) {
	if phase == "" || phase == sum.Run.Name {
		return &sum.Run, nil
	}
	names := []string{sum.Run.Name}
	for i := range sum.Phases {
		if sum.Phases[i].Name == phase {
			return &sum.Phases[i], nil
		}
		names = append(names, sum.Phases[i].Name)
	}
	return nil, fmt.Errorf("no phase %q in this run (its phases: %s)", phase, strings.Join(names, ", "))
}

package report

import (
	"encoding/json"
	"fmt"
	"sort"
)

// PageAssets are the report's styles and script, the chart library
// included, for a page that draws the same charts (the game-day
// dashboard): its script draws from window.cascadeReport.draw(data).
func PageAssets() (css, js string) {
	return uplotCSS + "\n" + reportCSS, uplotJS + "\n" + reportJS
}

// LiveCharts is the data the report's script draws, for a run still going
// on: d.Run holds what was recorded so far (Summary.Elapsed is now), and
// only the time from `from` seconds on is drawn, so a long game day sends
// a bounded window every second.
func LiveCharts(d Data, from float64) ([]byte, error) {
	if d.Run == nil {
		return nil, fmt.Errorf("report: no run data")
	}
	run := *d.Run
	if from > 0 {
		run.Intervals = nil
		for _, iv := range d.Run.Intervals {
			if float64(iv.Start+iv.Width) > from {
				run.Intervals = append(run.Intervals, iv)
			}
		}
	}
	d.Run = &run
	cd, err := chartDataOf(d, maxChartPoints)
	if err != nil {
		return nil, err
	}
	cd.Live = true
	if from > 0 {
		cd.Start = from
		cd.Breakers = clipSteps(cd.Breakers, from)
		if cd.Replicas != nil {
			cd.Replicas.StepSeries = clipSteps(cd.Replicas.StepSeries, from)
		}
	}
	return json.Marshal(cd)
}

// clipSteps drops the steps before from, keeping the value that holds at
// from, so a windowed timeline starts where the other charts do.
func clipSteps(s *StepSeries, from float64) *StepSeries {
	if s == nil || len(s.X) == 0 || s.X[0] >= from {
		return s
	}
	k := sort.SearchFloat64s(s.X, from) // first X >= from
	out := &StepSeries{Names: s.Names, X: append([]float64{from}, s.X[k:]...)}
	for _, vals := range s.Values {
		v := append([]float64{vals[k-1]}, vals[k:]...)
		out.Values = append(out.Values, v)
	}
	return out
}

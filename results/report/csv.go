package report

import (
	"encoding/csv"
	"io"
	"math"
	"strconv"
)

// CSVFixedColumns are the columns every CSV export starts with; one column
// per termination cause seen in the run follows, in package cause's order.
var CSVFixedColumns = []string{
	"t_s", "width_s", "requests", "scheduled", "target_rate", "achieved_rate",
	"p50_ms", "p90_ms", "p99_ms", "max_ms", "error_rate",
}

// CSV writes one row per recorded interval (no merging, however long the
// run): when it started, how many requests were sent and scheduled, the
// target and achieved rates per second, latency percentiles from the
// intended send time, the error rate (0..1) and the count per cause. An
// interval in which nothing was sent has empty latency cells, not zeros; the
// target rate is empty when the load profile is unknown.
func CSV(w io.Writer, d Data) error {
	points, err := Series(d.Run.Intervals, d.Stages, 0)
	if err != nil {
		return err
	}
	causes := causeOrder(points)
	cw := csv.NewWriter(w)
	if err := cw.Write(append(append([]string(nil), CSVFixedColumns...), causes...)); err != nil {
		return err
	}
	for _, p := range points {
		row := []string{
			num(p.T), num(p.Width), strconv.FormatInt(p.Sent, 10), strconv.FormatInt(p.Scheduled, 10),
			num(p.TargetRate), num(p.AchievedRate),
		}
		if p.Measured > 0 {
			row = append(row, num(p.Latency.P50), num(p.Latency.P90), num(p.Latency.P99), num(p.Latency.Max))
		} else {
			row = append(row, "", "", "", "")
		}
		row = append(row, num(p.ErrorRate))
		for _, c := range causes {
			row = append(row, strconv.FormatInt(p.Causes[c], 10))
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// num formats without exponent and without trailing noise; NaN is empty.
func num(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return ""
	}
	return strconv.FormatFloat(math.Round(x*1e6)/1e6, 'f', -1, 64)
}

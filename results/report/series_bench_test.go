package report

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
)

// longRun makes n one-second interval records of 200 requests each, as a
// long run writes them.
func longRun(b *testing.B, n int) []results.IntervalRecord {
	b.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	c := results.NewCollector(nil, time.Second, 1)
	recs := make([]results.IntervalRecord, 0, n)
	for i := 0; i < n; i++ {
		for k := 0; k < 200; k++ {
			lat := time.Duration(rng.ExpFloat64() * float64(20*time.Millisecond))
			c.Record(0, &loadgen.Sample{Intended: time.Duration(i)*time.Second + time.Duration(k)*5*time.Millisecond, Latency: lat, Service: lat, Cause: cause.OK})
		}
		for _, iv := range c.TakeIntervals(time.Duration(i+1) * time.Second) {
			recs = append(recs, results.IntervalRecord{Start: results.Sec(iv.Start), Width: 1, Stats: results.Summarize(iv.Stats, time.Second, 0)})
		}
	}
	return recs
}

// BenchmarkSeriesHour measures drawing an hour-long run: 3600 intervals
// merged into at most maxChartPoints windows.
func BenchmarkSeriesHour(b *testing.B) {
	recs := longRun(b, 3600)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := Series(recs, nil, maxChartPoints); err != nil {
			b.Fatal(err)
		}
	}
}

package gameday

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
)

func TestLiveWindowAndIntervals(t *testing.T) {
	clock := event.ClockAt(time.Now().Add(-10 * time.Second)) // now is 10 s into the run
	c := results.NewCollector([]results.Phase{{Name: "run", End: time.Hour}}, time.Second, 2)
	l := NewLive(c, clock, time.Second, 2)
	// 10 requests a second for 10 s; the last 2 s all fail, slowly.
	for i := 0; i < 100; i++ {
		at := time.Duration(i) * 100 * time.Millisecond
		s := &loadgen.Sample{Intended: at, Latency: 5 * time.Millisecond, Cause: cause.OK}
		if at >= 8*time.Second {
			s.Cause, s.Latency = cause.UpstreamError, 50*time.Millisecond
		}
		l.Record(i%3, s)
	}
	w := l.Window(2 * time.Second)
	if got, want := w.Errors(), int64(20); got != want {
		t.Errorf("errors in the last 2 s = %d, want %d (causes %v)", got, want, w.Causes)
	}
	if w.Scheduled() < 19 || w.Scheduled() > 21 {
		t.Errorf("requests ended in the last 2 s = %d, want about 20", w.Scheduled())
	}
	if n := c.PhaseStats()[0].Scheduled(); n != 100 {
		t.Errorf("the collector got %d samples, want all 100", n)
	}
	ivs := l.Intervals()
	if len(ivs) != 10 {
		t.Fatalf("%d intervals, want 10", len(ivs))
	}
	if ivs[9].Stats.ErrorRate != 1 || ivs[0].Stats.ErrorRate != 0 || ivs[9].Stats.Latency.P50 < 49 || ivs[9].Stats.Latency.P50 > 51 {
		t.Errorf("interval 0 %+v, interval 9 %+v", ivs[0].Stats, ivs[9].Stats)
	}
	// Settled intervals are kept once, not recounted.
	if again := l.Intervals(); len(again) != 10 || again[0].Stats.Scheduled != 10 {
		t.Errorf("second read: %d intervals, first %+v", len(again), again[0].Stats)
	}
}

// BenchmarkRecord is the hot path a live run adds: every sample goes to
// the run's collector and to the live views. Compare with the collector
// alone (the plain run's path), measured in the same run.
func BenchmarkRecord(b *testing.B) {
	clock := event.NewClock()
	phases := []results.Phase{{Name: "run", End: time.Hour}, {Name: "p", Start: time.Second, End: time.Minute}}
	for _, bc := range []struct {
		name string
		rec  func() loadgen.Recorder
	}{
		{"collector", func() loadgen.Recorder { return results.NewCollector(phases, time.Second, 8) }},
		{"collector+live", func() loadgen.Recorder {
			return NewLive(results.NewCollector(phases, time.Second, 8), clock, 2*time.Second, 8)
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rec := bc.rec()
			var w atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				worker := int(w.Add(1))
				i := 0
				for pb.Next() {
					s := loadgen.Sample{Intended: time.Duration(i%60_000) * time.Millisecond, Latency: time.Duration(1000+i%5000) * time.Microsecond, Cause: cause.OK}
					rec.Record(worker, &s)
					i++
				}
			})
		})
	}
}

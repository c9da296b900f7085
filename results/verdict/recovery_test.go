package verdict

import (
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
)

// recorded builds the intervals of `secs` seconds of 200 requests/s that
// take 2 ms, except that latency(intended) may slow some down.
func recorded(t *testing.T, secs int, latency func(i int, intended time.Duration) time.Duration) []results.IntervalRecord {
	t.Helper()
	c := results.NewCollector(nil, time.Second, 1)
	for i := 0; i < 200*secs; i++ {
		at := time.Duration(i) * 5 * time.Millisecond
		x := loadgen.Sample{Intended: at, Latency: 2 * time.Millisecond, Cause: cause.OK}
		if latency != nil {
			x.Latency = latency(i, at)
		}
		x.Service = x.Latency
		c.Record(0, &x)
	}
	var recs []results.IntervalRecord
	for _, iv := range c.TakeIntervals(time.Hour) {
		recs = append(recs, results.IntervalRecord{Start: results.Sec(iv.Start), Width: 1, Stats: results.Summarize(iv.Stats, time.Second, 0)})
	}
	return recs
}

func faultEvents(name string, start, stop time.Duration) []event.Event {
	return []event.Event{
		{T: start, Type: "fault.start", Attrs: map[string]any{"fault": name}},
		{T: stop, Type: "fault.stop", Attrs: map[string]any{"fault": name}},
	}
}

func TestRecoveryFirstIntervalMustBeInBand(t *testing.T) {
	const slow = 300 * time.Millisecond
	tests := []struct {
		name     string
		stop     time.Duration // the fault's end
		latency  func(i int, at time.Duration) time.Duration
		wantTTR  time.Duration
		wantInEv string
		wantNoEv string
	}{
		{
			// The finding's run: +300 ms in [2 s, 3 s), then 2% of requests
			// still +300 ms in [3 s, 4 s). That second's p99 is out of the
			// band, though the 3 s stretch from 3 s, merged, is within it.
			name: "tail right after the anchor",
			stop: 3*time.Second + time.Millisecond,
			latency: func(i int, at time.Duration) time.Duration {
				switch {
				case at >= 2*time.Second && at < 3*time.Second:
					return slow
				case at >= 3*time.Second && at < 4*time.Second && i%50 == 0:
					return slow
				}
				return 2 * time.Millisecond
			},
			wantTTR: 999 * time.Millisecond, wantInEv: "back within the band from 4.000s", wantNoEv: "came before the anchor",
		},
		{
			name: "clean right after the anchor",
			stop: 3*time.Second + time.Millisecond,
			latency: func(i int, at time.Duration) time.Duration {
				if at >= 2*time.Second && at < 3*time.Second {
					return slow
				}
				return 2 * time.Millisecond
			},
			wantTTR: 0, wantInEv: "back within the band from 3.000s",
		},
		{
			// The fault ends mid-interval: the half before the anchor is
			// slow, so the interval holding the anchor cannot show the
			// recovery; the next one does, and the evidence says why.
			name: "anchor mid-interval, slow before it",
			stop: 3500 * time.Millisecond,
			latency: func(i int, at time.Duration) time.Duration {
				if at >= 2*time.Second && at < 3500*time.Millisecond {
					return slow
				}
				return 2 * time.Millisecond
			},
			wantTTR: 500 * time.Millisecond, wantInEv: "50% of it came before the anchor",
		},
		{
			// The same anchor, but the requests before it were fine too:
			// the interval holding it is within the band as a whole.
			name: "anchor mid-interval, clean around it",
			stop: 3500 * time.Millisecond,
			latency: func(i int, at time.Duration) time.Duration {
				if at >= 2*time.Second && at < 3*time.Second {
					return slow
				}
				return 2 * time.Millisecond
			},
			wantTTR: 0, wantInEv: "back within the band from 3.000s",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &Input{Intervals: recorded(t, 8, tt.latency), Events: faultEvents("slow", 2*time.Second, tt.stop)}
			rc := &Recovery{Name: "recovers", After: FaultEnd("slow"), Onset: FaultOnset("slow"), Within: 500 * time.Millisecond}
			r := rc.Evaluate(in)
			got := time.Duration(r.Value * float64(time.Second))
			if d := got - tt.wantTTR; d < -time.Millisecond || d > time.Millisecond {
				t.Errorf("time to recover %v, want %v; evidence: %s", got, tt.wantTTR, r.Evidence)
			}
			if want := tt.wantTTR <= rc.Within; r.Pass != want {
				t.Errorf("pass %v, want %v; evidence: %s", r.Pass, want, r.Evidence)
			}
			if !strings.Contains(r.Evidence, tt.wantInEv) {
				t.Errorf("evidence lacks %q: %s", tt.wantInEv, r.Evidence)
			}
			if tt.wantNoEv != "" && strings.Contains(r.Evidence, tt.wantNoEv) {
				t.Errorf("evidence has %q: %s", tt.wantNoEv, r.Evidence)
			}
		})
	}
}

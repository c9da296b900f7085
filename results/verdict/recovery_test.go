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

// The default baseline is the time before the onset while no other fault
// was active. Fault a slows everything to 300 ms in [2 s, 4 s); fault b runs
// in [4 s, 6 s), and the requests stay at 100 ms until 9 s. Measured
// against [1 s, 4 s) as a whole, the band was 450 ms wide and b's
// "recovery" came at once; against the calm [1 s, 2 s), it comes at 9 s.
func TestRecoveryBaselineLeavesOutOtherFaults(t *testing.T) {
	latency := func(i int, at time.Duration) time.Duration {
		switch {
		case at >= 2*time.Second && at < 4*time.Second:
			return 300 * time.Millisecond
		case at >= 6*time.Second && at < 9*time.Second:
			return 100 * time.Millisecond
		}
		return 2 * time.Millisecond
	}
	evs := append(faultEvents("a", 2*time.Second, 4*time.Second), faultEvents("b", 4*time.Second, 6*time.Second)...)
	in := &Input{Intervals: recorded(t, 12, latency), Events: evs}
	rc := &Recovery{Name: "recovers", After: FaultEnd("b"), Onset: FaultOnset("b"), Within: time.Second, Hold: 2 * time.Second}
	r := rc.Evaluate(in)
	if r.Pass || r.Facts["ttr_s"] != 3 {
		t.Errorf("pass %v, time to recover %v s; want a failure at 3 s; evidence: %s", r.Pass, r.Facts["ttr_s"], r.Evidence)
	}
	if want := "[1.000s, 4.000s) before the onset of fault b, leaving out the 2.000s while fault a was active: p99 2.00ms"; !strings.Contains(r.Evidence, want) {
		t.Errorf("evidence lacks %q: %s", want, r.Evidence)
	}

	// A fault active throughout the time before the onset leaves nothing
	// calm: the baseline keeps it, and says so.
	evs = append(faultEvents("a", 0, 10*time.Second), faultEvents("b", 4*time.Second, 6*time.Second)...)
	in = &Input{Intervals: recorded(t, 12, nil), Events: evs}
	r = rc.Evaluate(in)
	if !r.Pass || !strings.Contains(r.Evidence, "another fault was active throughout it: a") {
		t.Errorf("pass %v; evidence: %s", r.Pass, r.Evidence)
	}
}

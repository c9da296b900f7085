package verdict

import (
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
)

// edgeRun is the finding's run: 50 requests/s for 4 s (or until end, the
// last interval as wide as the part of it the load ran), every request in
// [1.5 s, 2.5 s) failing, and phases before [0, 1.5 s), boom [1.5 s,
// 2.5 s), after [2.5 s, end).
func edgeRun(t *testing.T, end time.Duration) *Input {
	t.Helper()
	c := results.NewCollector(nil, time.Second, 1)
	for at := time.Duration(0); at < end; at += 20 * time.Millisecond {
		x := loadgen.Sample{Intended: at, Latency: 2 * time.Millisecond, Cause: cause.OK}
		if at >= 1500*time.Millisecond && at < 2500*time.Millisecond {
			x.Cause = cause.UpstreamError
		}
		x.Service = x.Latency
		c.Record(0, &x)
	}
	in := &Input{Phases: map[string]*Phase{}}
	for _, iv := range c.TakeIntervals(time.Hour) {
		w := min(time.Second, end-iv.Start)
		in.Intervals = append(in.Intervals, results.IntervalRecord{Start: results.Sec(iv.Start), Width: results.Sec(w), Stats: results.Summarize(iv.Stats, w, 0)})
	}
	for _, p := range []struct {
		name     string
		from, to time.Duration
	}{{"run", 0, end}, {"before", 0, 1500 * time.Millisecond}, {"boom", 1500 * time.Millisecond, 2500 * time.Millisecond}, {"after", 2500 * time.Millisecond, end}} {
		in.Phases[p.name] = &Phase{Summary: results.PhaseSummary{Name: p.name, Start: results.Sec(p.from), End: results.Sec(p.to)}, Stats: results.NewStats()}
	}
	return in
}

func TestWindowsStayInsideThePhase(t *testing.T) {
	tests := []struct {
		phase, expr string
		every       time.Duration
		end         time.Duration // of the run
		pass        bool
		windows     float64
		evidence    string
	}{
		// Before the fix, [1 s, 2 s) was judged for "before" and [2 s, 3 s)
		// for "after": half of each is the fault's.
		{"before", "error_rate < 1%", time.Second, 4 * time.Second, true, 1, "windows over [0.000s, 1.000s), the whole intervals of [0.000s, 1.500s)"},
		{"after", "error_rate < 1%", time.Second, 4 * time.Second, true, 1, "windows over [3.000s, 4.000s)"},
		// No whole interval inside: say so, never a silent pass.
		{"boom", "error_rate < 1%", time.Second, 4 * time.Second, false, 0, "holds no whole 1.000s interval"},
		// The whole run: windows slide over every second.
		{"run", "error_rate < 1%", time.Second, 4 * time.Second, false, 4, "2 of 4 windows failed"},
		{"run", "error_rate < 60%", 2 * time.Second, 4 * time.Second, true, 3, "0 of 3 windows failed"},
		// A window longer than the load is one window, as validate warns.
		{"run", "error_rate < 30%", 10 * time.Second, 4 * time.Second, true, 1, "window [0.000s, 4.000s)"},
		// A run that stopped 700 ms into its last second: that interval is
		// wholly inside the phase and is judged.
		{"after", "requests >= 30", time.Second, 3700 * time.Millisecond, true, 1, "window [3.000s, 3.700s)"},
	}
	for _, tt := range tests {
		t.Run(tt.phase+" "+tt.expr, func(t *testing.T) {
			th, err := ParseThreshold(tt.expr, tt.phase)
			if err != nil {
				t.Fatal(err)
			}
			w := &Window{Name: "w", T: th, Every: tt.every}
			r := w.Evaluate(edgeRun(t, tt.end))
			if r.Pass != tt.pass || r.Facts["windows"] != tt.windows {
				t.Errorf("pass %v over %v windows, want %v over %v: %s", r.Pass, r.Facts["windows"], tt.pass, tt.windows, r.Evidence)
			}
			if !strings.Contains(r.Evidence, tt.evidence) {
				t.Errorf("evidence lacks %q: %s", tt.evidence, r.Evidence)
			}
		})
	}
}

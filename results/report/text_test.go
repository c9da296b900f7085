package report

import (
	"strings"
	"testing"

	"github.com/cascadehq/cascade/results"
)

// The Load line's target is the arrival-rate executors' rate; a closed model
// has none, so a VU-only run must not claim "target 0/s" and a mixed run
// must say whose target it is.
func TestTextLoadLineTarget(t *testing.T) {
	open := results.GroupSummary{Name: "background", Kind: "arrival-rate"}
	closed := results.GroupSummary{Name: "burst", Kind: "vus"}
	cases := []struct {
		name   string
		target float64
		execs  []results.GroupSummary
		want   string
		absent string
	}{
		{"one open executor", 150, nil, "scheduled in 0ms · target 150.0/s · achieved", "open-model"},
		{"one closed executor", 0, nil, "scheduled in 0ms · achieved", "target"},
		{"open beside closed", 150, []results.GroupSummary{open, closed}, "· open-model target 150.0/s · achieved", "· target"},
		{"two open executors", 300, []results.GroupSummary{open, open}, "· target 300.0/s · achieved", "open-model"},
		{"closed executors only", 0, []results.GroupSummary{closed, closed}, "scheduled in 0ms · achieved", "target"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := stats(1, 2, 3, 4, 0, 306.6)
			st.TargetRate = tc.target
			s := summary(st, nil)
			s.Executors = tc.execs
			var b strings.Builder
			if err := Text(&b, s, ""); err != nil {
				t.Fatal(err)
			}
			line := ""
			for _, l := range strings.Split(b.String(), "\n") {
				if strings.HasPrefix(l, "Load ") {
					line = l
				}
			}
			if !strings.Contains(line, tc.want) {
				t.Errorf("Load line %q lacks %q", line, tc.want)
			}
			if strings.Contains(line, tc.absent) {
				t.Errorf("Load line %q has %q", line, tc.absent)
			}
		})
	}
}

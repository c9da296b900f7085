package run

import (
	"strings"
	"testing"

	"github.com/cascadehq/cascade/results"
)

// A generator that fell behind its schedule charges its own wait to the
// target: the summary says so, and a run that kept up has no warning.
func TestLagWarning(t *testing.T) {
	if w := lagWarning(&results.Percentiles{P99: 12, Max: 40}); w != "" {
		t.Errorf("a run that kept up: %q", w)
	}
	if w := lagWarning(nil); w != "" {
		t.Errorf("no lag recorded: %q", w)
	}
	w := lagWarning(&results.Percentiles{P99: 1580, Max: 1640.4})
	for _, want := range []string{"fell behind its own schedule (scheduling lag p99 1.580s, max 1.640s)", "charged to the target", "too busy"} {
		if !strings.Contains(w, want) {
			t.Errorf("warning %q lacks %q", w, want)
		}
	}
}

package report

import (
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/precise"
	"github.com/cascadehq/cascade/results"
)

func TestEffectLinesSayHowPunctual(t *testing.T) {
	var r precise.Recorder
	for range 999 {
		r.Record(30 * time.Microsecond)
	}
	r.Record(800 * time.Microsecond)
	l := r.Snapshot()
	f := results.FaultSummary{Name: "slow", Kind: "latency", Started: true, Fired: 1000, Lateness: &l}
	got := strings.Join(effectLines(f), "\n")
	if want := "timing: 99.9% of 1000 within 0.5 ms of the asked delay, max 0.80 ms late"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	f.Lateness = &precise.Lateness{}
	if got := effectLines(f); len(got) != 0 {
		t.Errorf("no timed releases: %q", got)
	}
}

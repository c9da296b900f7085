package results

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
)

// A run directory is new or empty: an earlier run's results are never
// written over.
func TestCreateRefusesAnEarlierRun(t *testing.T) {
	empty := t.TempDir()
	w, err := Create(empty)
	if err != nil {
		t.Fatalf("an empty directory: %v", err)
	}
	if err := w.WriteSummary(&Summary{Scenario: "first"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(empty, SummaryFile))
	if _, err := Create(empty); err == nil || !strings.Contains(err.Error(), "does not write over earlier results") {
		t.Fatalf("second run into the same directory: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(empty, SummaryFile)); string(after) != string(before) {
		t.Fatal("the earlier summary changed")
	}
	if _, err := Create(filepath.Join(t.TempDir(), "new", "run")); err != nil {
		t.Fatalf("a new directory: %v", err)
	}
}

// A damaged run directory is refused, not reported as a run of nothing: a
// summary without a scenario, a missing events or intervals file.
func TestLoadRefusesDamage(t *testing.T) {
	write := func(t *testing.T, skip string, summary string) string {
		dir := filepath.Join(t.TempDir(), "run")
		w, err := Create(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, SummaryFile), []byte(summary), 0o644)
		if skip != "" {
			os.Remove(filepath.Join(dir, skip))
		}
		return dir
	}
	good := `{"scenario": "s", "plan_hash": "sha256:1"}`
	if _, err := Load(write(t, "", good)); err != nil {
		t.Fatalf("a whole directory: %v", err)
	}
	for _, tc := range []struct{ skip, summary, want string }{
		{"", "{}", "is not a cascade summary"},
		{EventsFile, good, "the run directory is incomplete"},
		{IntervalsFile, good, "the run directory is incomplete"},
	} {
		if _, err := Load(write(t, tc.skip, tc.summary)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("without %q, summary %s: %v, want %q", tc.skip, tc.summary, err, tc.want)
		}
	}
}

// Each interval line carries the profile's target rate over it, and no lag
// figures: intervals keep no lag histogram, and zeros there read as
// measurements.
func TestIntervalLinesCarryTheTarget(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.SetExpected(func(a, b time.Duration) float64 { return 100 * (b - a).Seconds() })
	c := NewCollector([]Phase{{Name: "run", End: 2 * time.Second}}, time.Second, 1)
	for i := range 150 {
		c.Record(0, sample(time.Duration(i)*10*time.Millisecond, time.Millisecond, cause.OK))
	}
	w.WriteIntervals(c.TakeIntervals(1<<62), 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, IntervalsFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d interval lines", len(lines))
	}
	for _, l := range lines {
		if !strings.Contains(l, `"target_rate":100`) || strings.Contains(l, "lag_ms") {
			t.Errorf("interval line %.200s", l)
		}
	}
}

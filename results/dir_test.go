package results

import (
	"fmt"
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

// A run whose setup fails takes back what it wrote, so the same directory
// can be used again; it removes only its own files and the directories it
// made, never what was there before or what someone else put there.
func TestDiscardTakesBackOnlyWhatTheRunWrote(t *testing.T) {
	write := func(t *testing.T, path, s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start := func(t *testing.T, dir string) *Writer {
		t.Helper()
		w, err := Create(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteFile(ScenarioFile, []byte("name: x\n")); err != nil {
			t.Fatal(err)
		}
		w.Track("access.jsonl", "never-written.json")
		write(t, filepath.Join(dir, "access.jsonl"), "")
		return w
	}
	t.Run("directories it made", func(t *testing.T) {
		root := t.TempDir()
		dir := filepath.Join(root, "results", "run")
		w := start(t, dir)
		if removed, err := w.Discard(); removed != filepath.Join(root, "results") || err != nil {
			t.Fatalf("Discard: removed %q, %v", removed, err)
		}
		if ents, _ := os.ReadDir(root); len(ents) != 0 {
			t.Fatalf("left %v in %s", ents, root)
		}
		if w, err := Create(dir); err != nil {
			t.Fatalf("the same directory again: %v", err)
		} else {
			w.Close()
		}
	})
	t.Run("an empty directory that was there", func(t *testing.T) {
		dir := t.TempDir()
		w := start(t, dir)
		if removed, err := w.Discard(); removed != "" || err != nil {
			t.Fatalf("Discard: removed %q, %v", removed, err)
		}
		if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
			t.Fatalf("%s: %v, %v; want it there and empty", dir, ents, err)
		}
	})
	t.Run("a parent that holds something else", func(t *testing.T) {
		root := t.TempDir()
		dir := filepath.Join(root, "results", "run")
		w := start(t, dir)
		write(t, filepath.Join(root, "results", "notes.txt"), "mine")
		if removed, err := w.Discard(); removed != dir || err != nil {
			t.Fatalf("Discard: removed %q, %v", removed, err)
		}
		if b, err := os.ReadFile(filepath.Join(root, "results", "notes.txt")); err != nil || string(b) != "mine" {
			t.Fatalf("notes.txt: %q, %v", b, err)
		}
	})
	t.Run("a file it did not write", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "run")
		w := start(t, dir)
		write(t, filepath.Join(dir, "notes.txt"), "mine")
		removed, err := w.Discard()
		if removed != "" || err == nil || !strings.Contains(err.Error(), "notes.txt, which this run did not write") {
			t.Fatalf("Discard: removed %q, %v", removed, err)
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 1 || ents[0].Name() != "notes.txt" {
			t.Fatalf("left %v, want notes.txt alone", ents)
		}
	})
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

// A run stopped by an error once its load started (a full disk) has a
// summary marked with it, and records whose last line may be cut where the
// disk refused it: Load reads them up to there and says what was cut. The
// same cut line in a run without the error is damage, and refused.
func TestLoadARunStoppedByAnError(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteIntervals([]Interval{{Start: 0, Stats: NewStats()}, {Start: time.Second, Stats: NewStats()}}, Sec(time.Second))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ivals := filepath.Join(dir, IntervalsFile)
	b, err := os.ReadFile(ivals)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ivals, b[:len(b)-20], 0o644); err != nil { // the second line cut
		t.Fatal(err)
	}
	sum := &Summary{Scenario: "s", PlanHash: "sha256:1", Verdict: VerdictError, Error: "write results: write intervals.jsonl: no space left on device"}
	if err := atomicWriteSummary(dir, sum); err != nil {
		t.Fatal(err)
	}
	r, err := Load(dir)
	if err != nil {
		t.Fatalf("a run stopped by an error: %v", err)
	}
	if len(r.Intervals) != 1 || !strings.Contains(r.Partial, IntervalsFile+":2:") || r.Summary.Error != sum.Error {
		t.Fatalf("%d intervals, partial %q, error %q", len(r.Intervals), r.Partial, r.Summary.Error)
	}
	// What a run that cannot write its summary says it kept.
	if kept := w.Kept(); !strings.Contains(kept, fmt.Sprintf("%s (%d bytes)", IntervalsFile, len(b)-20)) || !strings.Contains(kept, SummaryFile) {
		t.Errorf("Kept: %q", kept)
	}

	sum.Error, sum.Verdict = "", VerdictPass
	if err := atomicWriteSummary(dir, sum); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), IntervalsFile+":2:") {
		t.Fatalf("a cut line in a run that did not stop on an error: %v", err)
	}
}

// atomicWriteSummary rewrites a closed run directory's summary.
func atomicWriteSummary(dir string, s *Summary) error {
	w := &Writer{dir: dir}
	return w.WriteSummary(s)
}

// A directory without a summary.json that cascade made says what it is:
// report and compare were given a repeat's or a ladder's directory (its
// runs are one level down), or a run killed before its summary was
// written, and "not a cascade run directory" alone did not say either.
func TestLoadSaysWhatADirectoryHolds(t *testing.T) {
	parent := t.TempDir()
	for _, sub := range []string{"01-seed1", "02-seed2"} {
		if err := os.MkdirAll(filepath.Join(parent, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(parent, sub, SummaryFile), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Load(parent); err == nil || !strings.Contains(err.Error(), "give one of them ("+filepath.Join(parent, "01-seed1")) {
		t.Errorf("a repeat's directory: %v", err)
	}
	killed := t.TempDir()
	for _, f := range []string{IntervalsFile, EventsFile} {
		if err := os.WriteFile(filepath.Join(killed, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Load(killed); err == nil || !strings.Contains(err.Error(), "or was killed before it could write one") {
		t.Errorf("a killed run's directory: %v", err)
	}
	if _, err := Load(t.TempDir()); err == nil || strings.Contains(err.Error(), "; it holds") {
		t.Errorf("an empty directory: %v", err)
	}
}

package results

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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

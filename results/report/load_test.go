package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cascadehq/cascade/results"
)

// The HTML report reads the run directory itself: damage is located at its
// file, line and column there too.
func TestLoadLocatesDamage(t *testing.T) {
	for _, tc := range []struct{ file, content, want string }{
		{results.IntervalsFile, "{\"t\":0,\"width_s\":1}\n{\"t\":1,\"wi", "intervals.jsonl:2:10: "},
		{results.EventsFile, "\n{\"type\": 7}\n", "events.jsonl:2:10: "},
		{results.SummaryFile, "{\"scenario\": \"s\",\n \"plan_hash\": ", "summary.json:2:14: "},
	} {
		dir := t.TempDir()
		files := map[string]string{
			results.SummaryFile:   `{"scenario": "s", "plan_hash": "sha256:1"}`,
			results.EventsFile:    "",
			results.IntervalsFile: "",
		}
		files[tc.file] = tc.content
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.file, err, tc.want)
		}
		if _, err := results.Load(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("results.Load, %s: %v, want %q", tc.file, err, tc.want)
		}
	}
}

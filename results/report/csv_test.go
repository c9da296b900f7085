package report_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/report"
	"github.com/cascadehq/cascade/scenarios/plan"
)

const csvScenario = `name: csv
seed: 11
upstreams:
  - {name: api, replicas: 2, latency: 2ms}
gateway:
  routes:
    - {path: /, upstream: api, timeouts: {connect: 200ms, response_header: 300ms, total: 1s}}
load:
  client_timeout: 2s
  stages:
    - {duration: 1s, ramp_to: 60/s}
    - {duration: 2s, rate: 60/s}
  requests:
    - {path: /}
faults:
  - {name: broken, kind: error, target: "api[0]", start: 1s, duration: 1s, params: {status: 503}}
slo:
  - error_rate < 50%
`

// TestCSVMatchesIntervals checks the export of a real run against
// intervals.jsonl read on its own (as JSON, not through the results
// package), and the target rate against the profile: a 1 s ramp to 60/s
// averages 30/s over its first second.
func TestCSVMatchesIntervals(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "csv.yaml")
	if err := os.WriteFile(file, []byte(csvScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	dir, _ := runScenario(t, context.Background(), file)
	p, err := plan.CompileFile(file, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := results.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := report.CSV(&b, report.Data{Run: r, Stages: p.Load.Stages}); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatalf("not CSV: %v\n%s", err, b.String())
	}
	head := rows[0]
	if !slices.Equal(head[:len(report.CSVFixedColumns)], report.CSVFixedColumns) {
		t.Fatalf("header %v", head)
	}
	col := map[string]int{}
	for i, h := range head {
		col[h] = i
	}
	for _, c := range []string{"ok", "upstream_error"} {
		if _, ok := col[c]; !ok {
			t.Errorf("no column for cause %s: %v", c, head)
		}
	}

	raw := readJSONL(t, filepath.Join(dir, results.IntervalsFile))
	if len(rows)-1 != len(raw) || len(raw) < 3 {
		t.Fatalf("%d CSV rows for %d intervals", len(rows)-1, len(raw))
	}
	for i, iv := range raw {
		row := rows[i+1]
		st := iv["stats"].(map[string]any)
		lat := st["latency_ms"].(map[string]any)
		width := iv["width_s"].(float64)
		eq(t, i, "t_s", row[col["t_s"]], iv["t"].(float64))
		eq(t, i, "requests", row[col["requests"]], st["sent"].(float64))
		eq(t, i, "scheduled", row[col["scheduled"]], st["scheduled"].(float64))
		eq(t, i, "achieved_rate", row[col["achieved_rate"]], st["sent"].(float64)/width)
		eq(t, i, "p50_ms", row[col["p50_ms"]], lat["p50"].(float64))
		eq(t, i, "p90_ms", row[col["p90_ms"]], lat["p90"].(float64))
		eq(t, i, "p99_ms", row[col["p99_ms"]], lat["p99"].(float64))
		eq(t, i, "max_ms", row[col["max_ms"]], lat["max"].(float64))
		eq(t, i, "error_rate", row[col["error_rate"]], st["error_rate"].(float64))
		causes := st["causes"].(map[string]any)
		var sum float64
		for name, n := range causes {
			eq(t, i, name, row[col[name]], n.(float64))
			sum += n.(float64)
		}
		eq(t, i, "scheduled (sum of causes)", row[col["scheduled"]], sum)
	}
	// The profile's target: 30/s over the ramp's second, then 60/s.
	eq(t, 0, "target_rate", rows[1][col["target_rate"]], 30)
	eq(t, 1, "target_rate", rows[2][col["target_rate"]], 60)
	// The fault made api[0] answer 503 in the second second: errors there.
	if v, _ := strconv.ParseFloat(rows[2][col["error_rate"]], 64); v < 0.2 {
		t.Errorf("error rate during the fault %v", v)
	}

	// Without the profile, the target column is empty, not zero.
	b.Reset()
	if err := report.CSV(&b, report.Data{Run: r}); err != nil {
		t.Fatal(err)
	}
	rows, _ = csv.NewReader(&b).ReadAll()
	if rows[1][col["target_rate"]] != "" {
		t.Errorf("target without a profile: %q", rows[1][col["target_rate"]])
	}
}

func eq(t *testing.T, row int, name, cell string, want float64) {
	t.Helper()
	got, err := strconv.ParseFloat(cell, 64)
	if err != nil || math.Abs(got-want) > 1e-6*math.Max(1, math.Abs(want)) {
		t.Errorf("row %d %s: %q, want %v", row, name, cell, want)
	}
}

func readJSONL(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

package run

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/report"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// Phases read in time order wherever a run lists them: summary.json, the
// terminal report, report.html, and the report of a run directory read
// back. The gaps between faults were listed after every fault, and a
// phase of the file's own after every derived one.
func TestPhasesReadInTimeOrder(t *testing.T) {
	p, err := plan.CompileBytes("order.yaml", []byte(`name: phase-order
seed: 3
upstreams: [{name: api, latency: 1ms}]
gateway:
  routes: [{path: /, upstream: api}]
load:
  stages: [{duration: 4s, rate: 20/s}]
  requests: [{path: /}]
faults:
  - {name: two, kind: latency, target: api, start: 2500ms, duration: 500ms, params: {delay: 5ms}}
  - {name: one, kind: latency, target: api, start: 1s, duration: 500ms, params: {delay: 5ms}}
phases:
  - {name: warm, start: 200ms, end: 1s}
`), plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout bytes.Buffer
	out, err := Run(ctx, p, Options{OutDir: filepath.Join(t.TempDir(), "run"), Progress: ProgressOff, Stdout: &stdout})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"before", "warm", "one", "after-one", "two", "after"}
	check := func(where string, got []string) {
		t.Helper()
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s lists the phases as %v, want %v", where, got, want)
		}
	}
	names := func(ps []results.PhaseSummary) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return out
	}
	check("the summary", names(out.Summary.Phases))

	b, err := os.ReadFile(filepath.Join(out.Dir, results.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	var file results.Summary
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	check("summary.json", names(file.Phases))

	rows := func(text string) []string {
		var out []string
		block := text[strings.Index(text, "\nPhases\n"):]
		block = block[:strings.Index(block, "\n\n")]
		for _, l := range strings.Split(block, "\n")[3:] {
			out = append(out, strings.Fields(l)[0])
		}
		return out
	}
	check("the terminal report", rows(stdout.String()))

	html, err := os.ReadFile(filepath.Join(out.Dir, report.HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	htmlRows := func(page string) []string {
		sec := page[strings.Index(page, `<section id="phases">`):]
		sec = sec[:strings.Index(sec, "</section>")]
		var out []string
		for _, m := range regexp.MustCompile(`<tr><td class="l">([^<]*)</td>`).FindAllStringSubmatch(sec, -1) {
			out = append(out, m[1])
		}
		return out
	}
	check("report.html", htmlRows(string(html)))

	// A run directory written before phases were ordered reads back in
	// order too: reverse them in summary.json and report it again.
	rev := file
	rev.Phases = append([]results.PhaseSummary(nil), file.Phases...)
	for i, j := 0, len(rev.Phases)-1; i < j; i, j = i+1, j-1 {
		rev.Phases[i], rev.Phases[j] = rev.Phases[j], rev.Phases[i]
	}
	b, err = json.Marshal(rev)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out.Dir, results.SummaryFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, load := range []func(string) (*results.Run, error){results.Load, report.Load} {
		r, err := load(out.Dir)
		if err != nil {
			t.Fatal(err)
		}
		check("a run directory read back", names(r.Summary.Phases))
		var text bytes.Buffer
		if err := report.Text(&text, &r.Summary, out.Dir); err != nil {
			t.Fatal(err)
		}
		check("its terminal report", rows(text.String()))
		var page bytes.Buffer
		if err := report.HTML(&page, report.Data{Run: r}); err != nil {
			t.Fatal(err)
		}
		check("its report.html", htmlRows(page.String()))
	}
}

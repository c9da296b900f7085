package report_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/report"
)

func loadData(t *testing.T, dir string) report.Data {
	t.Helper()
	r, err := results.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(dir, results.ScenarioFile))
	if err != nil {
		t.Fatal(err)
	}
	return report.Data{Run: r, Scenario: src, Stages: synthStages}
}

func TestHTMLIsSelfContained(t *testing.T) {
	d := loadData(t, synthRun(t))
	var b bytes.Buffer
	if err := report.HTML(&b, d); err != nil {
		t.Fatal(err)
	}
	html := b.String()
	// Nothing is fetched: no external scripts, styles, images or fonts.
	for _, re := range []string{`<script[^>]+src=`, `<link[^>]+href=`, `<img[^>]+src=`, `@import`, `url\(\s*['"]?(https?:)?//`} {
		if m := regexp.MustCompile(re).FindString(html); m != "" {
			t.Errorf("the page loads something from outside: %q", m)
		}
	}
	for _, want := range []string{
		"/*! https://github.com/leeoniya/uPlot (v" + report.UPlotVersion + ")", // the vendored library, inline
		`id="cascade-data"`,
		"&lt;script&gt;alert(1)&lt;/script&gt; must be shown, not run", // evidence is escaped
		"cascade run --seed 9 scenario.yaml",
		"# a synthetic run for the report&#39;s tests", // the scenario, escaped
		`data-chart="breakers"`, `data-chart="replicas"`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(html, "<script>alert(1)") {
		t.Error("evidence reached the page unescaped")
	}
	// One inline data block whose strings cannot close the script element.
	data := regexp.MustCompile(`(?s)<script type="application/json" id="cascade-data">(.*?)</script>`).FindStringSubmatch(html)
	if data == nil || strings.Contains(data[1], "<") {
		t.Fatalf("data block missing or holds a raw '<'")
	}
	if n := b.Len(); n > 400<<10 {
		t.Errorf("a 20 s run's report is %d KiB; the chart library is ~50 KiB", n>>10)
	}
}

func TestVendoredLibraryMatchesVersion(t *testing.T) {
	b, err := os.ReadFile("assets/uPlot.iife.min.js")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("/*! https://github.com/leeoniya/uPlot (v"+report.UPlotVersion+")")) {
		t.Fatalf("assets/uPlot.iife.min.js is not uPlot %s: %q", report.UPlotVersion, b[:min(80, len(b))])
	}
	readme, err := os.ReadFile("assets/README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "uplot@"+report.UPlotVersion) {
		t.Errorf("assets/README.md does not record uplot@%s", report.UPlotVersion)
	}
}

// TestHTMLInBrowser loads the synthetic run's report, which has every kind
// of timeline, in headless Chromium.
func TestHTMLInBrowser(t *testing.T) {
	bctx := browser(t)
	dir := synthRun(t)
	path := filepath.Join(dir, report.HTMLFile)
	if err := report.WriteHTMLFile(path, loadData(t, dir)); err != nil {
		t.Fatal(err)
	}
	p := load(t, bctx, path)
	checkPage(t, p, []string{report.ChartLatency, report.ChartRate, report.ChartOutcomes, report.ChartBreakers, report.ChartReplicas})
	savePNG(t, p, "synth.png")
	if len(p.Empty) != 0 {
		t.Errorf("empty-chart notes on a run with breakers and replicas: %v", p.Empty)
	}
	// Both fault windows are shaded on every chart (db-slow never stopped:
	// it runs to the end).
	for name, n := range p.Faults {
		if n != 2 {
			t.Errorf("chart %s shades %d fault windows, want 2", name, n)
		}
	}
	// The breakers chart drew one segment per state held: api closed,
	// open, half-open, open, half-open, closed (6); db closed, forced-open,
	// closed (3).
	if got := p.Charts[report.ChartBreakers]; got != 9 {
		t.Errorf("breakers chart drew %d segments, want 9", got)
	}
	// Zooming one chart zooms them all to the same window.
	// (uPlot commits scale changes in a microtask: read them after a frame.)
	ranges, err := chromedp.Run(p.ctx, chromedp.Evaluate[map[string][]float64](`(async () => {
		const cs = window.cascadeReport.charts;
		cs[0].uplot.setScale("x", {min: 6, max: 12});
		await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
		const out = {};
		cs.forEach(c => { out[c.name] = [c.uplot.scales.x.min, c.uplot.scales.x.max]; });
		return out;
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if len(ranges) != 5 {
		t.Errorf("zoom: %v", ranges)
	}
	for name, r := range ranges {
		if len(r) != 2 || r[0] != 6 || r[1] != 12 {
			t.Errorf("after zooming the first chart to [6, 12], %s shows %v", name, r)
		}
	}
	for _, want := range []string{"FAIL", "1/2 objectives passed", "api-errors", "db-slow", "never (no request reached the target while it was active)"} {
		if !strings.Contains(p.Text, want) {
			t.Errorf("page text lacks %q", want)
		}
	}
	if !strings.Contains(p.Title, "synth") || !strings.Contains(p.Title, "FAIL") {
		t.Errorf("title %q", p.Title)
	}
}

// TestLoadDropsPerRequestEvents: report.Load reads what results.Load reads,
// minus the per-request fault firings.
func TestLoadDropsPerRequestEvents(t *testing.T) {
	dir := synthRun(t)
	full, err := results.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	lean, err := report.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var want []event.Event
	for _, e := range full.Events {
		if e.Type != "fault.apply" {
			want = append(want, e)
		}
	}
	if len(want) == len(full.Events) || len(want) == 0 {
		t.Fatalf("the synthetic run should have both kinds of event: %d of %d", len(want), len(full.Events))
	}
	if !reflect.DeepEqual(lean.Events, want) || !reflect.DeepEqual(lean.Intervals, full.Intervals) || !reflect.DeepEqual(lean.Summary, full.Summary) {
		t.Fatal("report.Load differs from results.Load beyond the per-request events")
	}
	if _, err := report.Load(t.TempDir()); err == nil {
		t.Fatal("an empty directory loaded")
	}
	bad := synthRun(t)
	if err := os.WriteFile(filepath.Join(bad, results.EventsFile), []byte("{\"t\":1,\"type\":\"x\"}\nnot json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := report.Load(bad); err == nil || !strings.Contains(err.Error(), "events.jsonl:2") {
		t.Fatalf("a corrupt line: %v", err)
	}
}

// A run interrupted after its load ended, while it waited for its last
// answers, read "interrupted after 4.6s of 4.0s" at the top of its page.
func TestHTMLInterruptedWhileWaitingForTheLastAnswers(t *testing.T) {
	d := loadData(t, synthRun(t))
	for _, tc := range []struct {
		elapsed results.Seconds
		want    string
	}{
		{d.Run.Summary.Planned + 0.6, "interrupted 0.6s after the " + fmt.Sprintf("%.1fs", float64(d.Run.Summary.Planned)) + " load ended, waiting for its last answers: partial results"},
		{d.Run.Summary.Planned - 2, fmt.Sprintf("interrupted after %.1fs of %.1fs: partial results", float64(d.Run.Summary.Planned-2), float64(d.Run.Summary.Planned))},
	} {
		d.Run.Summary.Interrupted, d.Run.Summary.Elapsed = true, tc.elapsed
		var b bytes.Buffer
		if err := report.HTML(&b, d); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("the page does not say %q", tc.want)
		}
	}
	// No planned duration known (planned_s 0): not "after the 0.0s load".
	d.Run.Summary.Planned, d.Run.Summary.Elapsed = 0, 4.6
	var b bytes.Buffer
	if err := report.HTML(&b, d); err != nil {
		t.Fatal(err)
	}
	if page := b.String(); strings.Contains(page, "load ended") || !strings.Contains(page, "interrupted after 4.6s of 0.0s") {
		t.Errorf("a summary with no planned duration reads as stopped after its load")
	}
}

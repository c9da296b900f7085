package report_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/faults/packet"
	"github.com/cascadehq/cascade/internal/containers"
	"github.com/cascadehq/cascade/internal/run"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/report"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// runScenario runs a scenario file for real (loopback upstreams, the
// gateway, the load generator) into a fresh run directory.
func runScenario(t *testing.T, ctx context.Context, file string) (string, *run.Outcome) {
	t.Helper()
	p, err := plan.CompileFile(file, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), p.Name)
	var out, errb bytes.Buffer
	o, err := run.Run(ctx, p, run.Options{OutDir: dir, Progress: run.ProgressOff, Stdout: &out, Stderr: &errb})
	if errors.Is(err, containers.ErrNoDocker) && os.Getenv("CASCADE_REQUIRE_DOCKER") != "1" {
		t.Skipf("%s runs containers and no Docker daemon answers (set CASCADE_REQUIRE_DOCKER=1 to make this a failure): %v", file, err)
	}
	if errors.Is(err, containers.ErrGatewayNotInstalled) && os.Getenv("CASCADE_REQUIRE_DOCKER") != "1" {
		t.Skipf("%s runs nginx or HAProxy in a container, assembled from this machine's binary, which is not installed (CI installs it: .ci/docker.sh): %v", file, err)
	}
	if errors.Is(err, packet.ErrPrivileges) && os.Getenv("CASCADE_REQUIRE_ROOT") != "1" {
		t.Skipf("%s has packet faults and this process may not make network namespaces (set CASCADE_REQUIRE_ROOT=1 to make this a failure): %v", file, err)
	}
	if err != nil {
		t.Fatalf("run %s: %v\n%s", file, err, errb.String())
	}
	if !strings.Contains(errb.String(), "HTML report: "+filepath.Join(dir, report.HTMLFile)) {
		t.Errorf("the run did not say where its HTML report is:\n%s", errb.String())
	}
	return dir, o
}

// wantCharts says which charts a run's page must draw: the three time
// series always; the breaker and replica timelines when the run recorded
// such events (otherwise the page must say so instead).
func wantCharts(t *testing.T, dir string) (charts, empty []string) {
	t.Helper()
	r, err := results.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	charts = []string{report.ChartLatency, report.ChartRate, report.ChartOutcomes}
	var breaker, replica bool
	for _, e := range r.Events {
		breaker = breaker || strings.HasPrefix(e.Type, "breaker.")
		replica = replica || e.Type == "upstream.listen" || strings.HasPrefix(e.Type, "replica.") || strings.HasPrefix(e.Type, "outlier.")
	}
	if breaker {
		charts = append(charts, report.ChartBreakers)
	} else {
		empty = append(empty, report.ChartBreakers)
	}
	if replica {
		charts = append(charts, report.ChartReplicas)
	} else {
		empty = append(empty, report.ChartReplicas)
	}
	return charts, empty
}

// TestExampleReportsInBrowser runs every example scenario for real (they
// are each under 20 s; run side by side, the whole takes about as long as
// the longest) and loads each run's report.html in headless Chromium.
//
// CASCADE_UPDATE_SCREENSHOT=1 also writes the quickstart's page to
// docs/report-screenshot.png, the picture the README shows.
func TestExampleReportsInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every example scenario for real (about 20 s); skipped with -short")
	}
	bctx := browser(t)
	files, err := filepath.Glob("../../scenarios/examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir, o := runScenario(t, context.Background(), f)
			p := load(t, bctx, filepath.Join(dir, report.HTMLFile))
			charts, empty := wantCharts(t, dir)
			checkPage(t, p, charts)
			for _, e := range empty {
				if !strings.Contains(strings.Join(p.Empty, " "), e) {
					t.Errorf("no %s chart and no note saying why (notes: %v)", e, p.Empty)
				}
			}
			started := 0
			for _, fs := range o.Summary.Faults {
				if fs.Started {
					started++
				}
			}
			for _, c := range charts {
				if p.Faults[c] != started {
					t.Errorf("chart %s shades %d fault windows; the run had %d", c, p.Faults[c], started)
				}
			}
			// The page says what the terminal said.
			for _, o := range o.Summary.Objectives {
				if !strings.Contains(p.Text, o.Name) {
					t.Errorf("objective %q is not on the page", o.Name)
				}
			}
			if !strings.Contains(p.Text, strings.ToUpper(o.Summary.Verdict)) {
				t.Errorf("verdict %s is not on the page", o.Summary.Verdict)
			}
			savePNG(t, p, name+".png")
			if name == "quickstart" && os.Getenv("CASCADE_UPDATE_SCREENSHOT") == "1" {
				writeDocsScreenshot(t, p, "../../docs/report-screenshot.png")
			}
		})
	}
}

// TestInterruptedRunHasReport: Ctrl-C during a run still leaves a report,
// marked interrupted, with the charts of what was recorded.
func TestInterruptedRunHasReport(t *testing.T) {
	src := `name: interrupted
seed: 5
upstreams:
  - {name: api, replicas: 2, latency: 3ms}
gateway:
  routes:
    - {path: /, upstream: api, timeouts: {connect: 200ms, response_header: 1s, total: 2s}}
load:
  client_timeout: 2s
  stages:
    - {duration: 30s, rate: 40/s}
  requests:
    - {path: /}
faults:
  - {name: slow, kind: latency, target: api, start: 1s, duration: 20s, params: {delay: 20ms}}
slo:
  - p99 < 1s
`
	t.Parallel() // beside the examples: it waits mostly on timers
	file := filepath.Join(t.TempDir(), "interrupted.yaml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(2500*time.Millisecond, cancel)
	dir, o := runScenario(t, ctx, file)
	if !o.Interrupted {
		t.Fatal("the run was not interrupted")
	}
	b, err := os.ReadFile(filepath.Join(dir, report.HTMLFile))
	if err != nil {
		t.Fatalf("no report after an interrupted run: %v", err)
	}
	// Marked as partial, with the objective and the fault that was on.
	for _, want := range []string{"INTERRUPTED", "partial results", "p99 &lt; 1s", `"name":"slow"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("interrupted report lacks %q", want)
		}
	}
	bctx := browser(t)
	p := load(t, bctx, filepath.Join(dir, report.HTMLFile))
	charts, _ := wantCharts(t, dir)
	checkPage(t, p, charts)
	for _, c := range charts {
		if p.Faults[c] != 1 {
			t.Errorf("chart %s shades %d fault windows, want 1", c, p.Faults[c])
		}
	}
	savePNG(t, p, "interrupted.png")
}

// writeDocsScreenshot keeps the top of the page, down to the last chart:
// the part a reader of the README needs to recognise.
func writeDocsScreenshot(t *testing.T, p *page, path string) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(p.PNG))
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	bottom := min(b.Max.Y, int(p.Bottom)+16)
	sub := img.(interface {
		SubImage(image.Rectangle) image.Image
	}).SubImage(image.Rect(b.Min.X, b.Min.Y, b.Max.X, bottom))
	var out bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&out, sub); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d KiB)", path, out.Len()>>10)
}

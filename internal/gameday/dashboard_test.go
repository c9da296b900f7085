package gameday_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cascadehq/cascade/internal/browsertest"
	"github.com/cascadehq/cascade/results/report"
)

// dashState is what the live page shows, read in the browser.
type dashState struct {
	Updates int               `json:"updates"`
	T       float64           `json:"t"`
	State   string            `json:"state"`
	Done    string            `json:"done"`
	Charts  map[string]string `json:"charts"`
	Faults  string            `json:"faults"`
	Safety  string            `json:"safety"`
	SLO     string            `json:"slo"`
	Ended   string            `json:"ended"`
	URL     string            `json:"url"`
}

const readDash = `(() => {
	const charts = {};
	document.querySelectorAll("[data-chart]").forEach(el => { charts[el.dataset.chart] = el.dataset.rendered || ""; });
	return {
		updates: +(document.body.dataset.updates || 0),
		t: +(document.body.dataset.t || 0),
		state: document.body.dataset.state || "",
		done: document.body.dataset.chartsDone || "",
		charts,
		faults: document.getElementById("live-faults").innerText,
		safety: document.getElementById("live-safety").innerText,
		slo: document.getElementById("live-slo").innerText,
		ended: document.body.dataset.ended || "",
		url: location.href,
	};
})()`

func dash(t *testing.T, tab *browsertest.Tab) dashState {
	t.Helper()
	st, err := chromedp.Run(tab.Ctx, chromedp.Evaluate[dashState](readDash))
	if err != nil {
		t.Fatalf("read the dashboard: %v", err)
	}
	return st
}

// The live dashboard opens with the printed URL, draws the report's
// charts with data, updates every second, and shows a fault added by hand,
// the safety checks and the objectives' burn; it says when the run ends.
func TestDashboardRendersAndUpdates(t *testing.T) {
	bctx := browsertest.Start(t)
	extra := `faults:
  - {name: slow, kind: latency, target: api, start: 1s, duration: 10s, params: {delay: 20ms}}
safety:
  - {objective: "error_rate < 90%", window: 2s, on_breach: continue}
slo:
  - p99 < 1s
  - {phase: slow, objective: "p50 > 15ms"}
`
	lr := startLive(t, scenario("    - {duration: 15s, rate: 100/s}", extra))
	tab := browsertest.Open(t, bctx, lr.c.Dashboard)
	tctx, cancel := context.WithTimeout(tab.Ctx, 60*time.Second)
	defer cancel()
	if _, err := chromedp.Run(tctx, chromedp.Poll[bool](`document.body && +(document.body.dataset.updates || 0) >= 3 && document.body.dataset.chartsDone === "1"`,
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("the dashboard never drew three snapshots: %v", err)
	}
	first := dash(t, tab)
	if strings.Contains(first.URL, "token=") {
		t.Errorf("the token stays in the address bar: %s", first.URL)
	}
	if _, err := lr.c.AddFault(context.Background(), "cli", []byte(`{name: by-hand, kind: error, target: api, params: {status: 503, probability: 0.05}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(tctx, chromedp.Poll[bool](`document.getElementById("live-faults").innerText.includes("by-hand")`,
		chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		t.Fatalf("the fault added by hand never showed: %v", err)
	}
	if _, err := chromedp.Run(tctx, chromedp.Poll[bool](fmt.Sprintf(`+(document.body.dataset.updates || 0) >= %d`, first.Updates+3),
		chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("the dashboard stopped updating after %d snapshots: %v", first.Updates, err)
	}
	later := dash(t, tab)
	// Snapshots per second of the run's clock (they carry it): about one.
	rate := float64(later.Updates-first.Updates) / (later.T - first.T)
	t.Logf("%d snapshots drawn; %.2f per second of run clock", later.Updates, rate)
	if later.T <= first.T || rate < 0.4 || rate > 1.6 {
		t.Errorf("updates %d → %d over t %.1f → %.1f: not about one a second", first.Updates, later.Updates, first.T, later.T)
	}
	for _, c := range []string{report.ChartLatency, report.ChartRate, report.ChartOutcomes} {
		if n := later.Charts[c]; n == "" || n == "0" {
			t.Errorf("chart %s drew no data (%q)", c, n)
		}
	}
	for _, want := range []string{"by-hand", "error", "tester", "slow"} {
		if !strings.Contains(later.Faults, want) {
			t.Errorf("active faults lack %q:\n%s", want, later.Faults)
		}
	}
	if !strings.Contains(later.Safety, "error_rate < 90%") || !strings.Contains(later.Safety, "OK") {
		t.Errorf("safety:\n%s", later.Safety)
	}
	if !strings.Contains(later.SLO, "p99 < 1s") || !strings.Contains(later.SLO, "PASS") {
		t.Errorf("objectives:\n%s", later.SLO)
	}
	tab.Screenshot(t, "dashboard.png")
	if _, err := lr.c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	lr.wait()
	if _, err := chromedp.Run(tctx, chromedp.Poll[bool](`document.body.dataset.ended === "1"`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Errorf("the page never heard the run end: %v", err)
	}
	if end := dash(t, tab); end.State != "ended" {
		t.Errorf("state at the end: %q", end.State)
	}
	if c := tab.Console(); len(c) > 0 {
		t.Errorf("console errors:\n  %s", strings.Join(c, "\n  "))
	}
	for _, r := range tab.Requests() {
		if !strings.HasPrefix(r, lr.c.URL) && !strings.HasPrefix(r, "data:") {
			t.Errorf("the dashboard requested %s: it must need nothing beyond the run", r)
		}
	}
}

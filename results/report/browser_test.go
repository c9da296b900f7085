package report_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/cascadehq/cascade/internal/browsertest"
)

// The report is checked in a real browser: Debian's chromium, headless.
// Where it is absent the browser tests skip, unless CASCADE_REQUIRE_BROWSER=1
// (CI) turns the skip into a failure, so an all-skipped run cannot look green.

// browser starts one headless Chromium for the test (and its subtests),
// kept off the network, and stops it when the test ends.
func browser(t *testing.T) context.Context { return browsertest.Start(t) }

// page is what the browser saw of one report.
type page struct {
	Charts   map[string]int // data-chart name → data-rendered
	Faults   map[string]int // data-chart name → fault windows shaded on it
	Empty    []string       // data-empty notes ("no breaker in this run")
	Console  []string       // console errors, warnings and uncaught exceptions
	Requests []string       // every URL the page asked for
	Title    string
	Text     string  // the body's text
	Bottom   float64 // where the charts section ends, in CSS pixels from the top
	PNG      []byte  // a full-page screenshot

	ctx context.Context // the tab, open until the test ends
}

// chartState is what the page reports about its charts once drawn.
type chartState struct {
	Done   string            `json:"done"`
	Charts map[string]string `json:"charts"`
	Faults map[string]string `json:"faults"`
	Empty  []string          `json:"empty"`
	Title  string            `json:"title"`
	Text   string            `json:"text"`
	Bottom float64           `json:"bottom"`
}

// tabs serialises page loads: one browser, one tab at a time keeps the
// shared 2-core machine responsive and the screenshots deterministic.
var tabs sync.Mutex

// load opens the report file in a new tab and waits until the page says
// its charts are drawn.
func load(t *testing.T, bctx context.Context, path string) *page {
	t.Helper()
	tabs.Lock()
	defer tabs.Unlock()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	// The tab stays open until the test ends, so the test can script it.
	tctx, cancel := chromedp.NewContext(bctx)
	t.Cleanup(cancel)
	tctx, cancelT := context.WithTimeout(tctx, 60*time.Second)
	t.Cleanup(cancelT)

	// Open the tab, then subscribe before navigating, so nothing the page
	// logs or requests is lost.
	if err := chromedp.Do(tctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	var mu sync.Mutex
	p := &page{ctx: tctx}
	lctx, stopListen := context.WithCancel(tctx)
	defer stopListen()
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		for m, err := range chromedp.Console(lctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException() {
				mu.Lock()
				p.Console = append(p.Console, m.String())
				mu.Unlock()
			}
		}
	}()
	reqDone := make(chan struct{})
	go func() {
		defer close(reqDone)
		for ev, err := range chromedp.Events(lctx, network.RequestWillBeSent) {
			if err != nil {
				return
			}
			mu.Lock()
			p.Requests = append(p.Requests, ev.Request.URL)
			mu.Unlock()
		}
	}()

	u := (&url.URL{Scheme: "file", Path: abs}).String()
	if err := chromedp.Do(tctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("navigate %s: %v", u, err)
	}
	if _, err := chromedp.Run(tctx, chromedp.Poll[bool](`document.body && document.body.dataset.chartsDone === "1"`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("%s: the page never finished drawing its charts: %v", path, err)
	}
	st, err := chromedp.Run(tctx, chromedp.Evaluate[chartState](`(() => {
		const charts = {}, faults = {};
		document.querySelectorAll("[data-chart]").forEach(el => {
			charts[el.dataset.chart] = el.dataset.rendered || "";
			faults[el.dataset.chart] = el.dataset.faults || "";
		});
		return {
			done: document.body.dataset.chartsDone,
			charts,
			faults,
			empty: Array.from(document.querySelectorAll("[data-empty]")).map(el => el.dataset.empty),
			title: document.title,
			text: document.body.innerText,
			bottom: (document.getElementById("charts") || document.body).getBoundingClientRect().bottom + window.scrollY,
		};
	})()`))
	if err != nil {
		t.Fatalf("read chart state: %v", err)
	}
	p.Charts, p.Faults = atoiMap(st.Charts), atoiMap(st.Faults)
	p.Empty, p.Title, p.Text, p.Bottom = st.Empty, st.Title, st.Text, st.Bottom
	png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	p.PNG = png
	stopListen()
	<-consoleDone
	<-reqDone
	mu.Lock()
	defer mu.Unlock()
	return p
}

// checker is the part of testing.T that checkPage uses, so a test can
// check the check.
type checker interface {
	Helper()
	Errorf(format string, args ...any)
}

// checkPage asserts what every report must satisfy in the browser: no
// console errors, no request beyond the file itself, and each wanted chart
// drawn with data.
func checkPage(t checker, p *page, want []string) {
	t.Helper()
	if len(p.Console) > 0 {
		t.Errorf("console errors:\n  %s", strings.Join(p.Console, "\n  "))
	}
	for _, r := range p.Requests {
		if !strings.HasPrefix(r, "file://") && !strings.HasPrefix(r, "data:") {
			t.Errorf("the page requested %s: a report must open offline", r)
		}
	}
	for _, name := range want {
		n, ok := p.Charts[name]
		switch {
		case !ok:
			t.Errorf("chart %q missing (have %v)", name, p.Charts)
		case n <= 0:
			t.Errorf("chart %q drew no data (data-rendered=%d)", name, n)
		}
	}
	for name := range p.Charts {
		if !slices.Contains(want, name) {
			t.Errorf("unexpected chart %q (rendered %d)", name, p.Charts[name])
		}
	}
	if len(p.PNG) < 8 || string(p.PNG[1:4]) != "PNG" {
		t.Errorf("screenshot is not a PNG (%d bytes)", len(p.PNG))
	}
}

func savePNG(t *testing.T, p *page, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, p.PNG, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	// To look at the pages after the test: CASCADE_SCREENSHOT_DIR=/some/dir.
	if keep := os.Getenv("CASCADE_SCREENSHOT_DIR"); keep != "" {
		if err := os.WriteFile(filepath.Join(keep, name), p.PNG, 0o644); err != nil {
			t.Error(err)
		}
	}
	return path
}

// atoiMap reads data-* counts; a missing or malformed one is -1.
func atoiMap(m map[string]string) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		n, err := strconv.Atoi(v)
		if err != nil {
			n = -1
		}
		out[k] = n
	}
	return out
}

// TestBrowserCheckCatchesFaults shows the check can fail: a page that logs
// an error, throws, fetches from the network and leaves a chart empty is
// caught on each count.
func TestBrowserCheckCatchesFaults(t *testing.T) {
	bctx := browser(t)
	path := filepath.Join(t.TempDir(), "bad.html")
	bad := `<!DOCTYPE html><html><head><title>bad</title>
<script src="http://127.0.0.1:1/never.js"></script></head>
<body><div data-chart="latency" data-rendered="0"></div>
<script>
console.error("deliberate console error");
setTimeout(function () { document.body.dataset.chartsDone = "1"; }, 10);
throw new Error("deliberate uncaught exception");
</script></body></html>`
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	p := load(t, bctx, path)
	joined := strings.Join(p.Console, "\n")
	for _, want := range []string{"deliberate console error", "deliberate uncaught exception"} {
		if !strings.Contains(joined, want) {
			t.Errorf("console capture missed %q; got:\n%s", want, joined)
		}
	}
	if !slices.ContainsFunc(p.Requests, func(u string) bool { return strings.HasPrefix(u, "http://127.0.0.1:1/") }) {
		t.Errorf("request capture missed the external script; got %v", p.Requests)
	}
	if p.Charts["latency"] != 0 {
		t.Errorf("data-rendered read as %d, want 0", p.Charts["latency"])
	}
	// And checkPage, run against a recorder, reports each of them.
	rec := &recorder{T: t}
	checkPage(rec, p, []string{"latency"})
	all := strings.Join(rec.errs, "\n")
	for _, want := range []string{"deliberate console error", "deliberate uncaught exception", "must open offline", `chart "latency" drew no data`} {
		if !strings.Contains(all, want) {
			t.Errorf("checkPage did not report %q; it said:\n%s", want, all)
		}
	}
}

// recorder collects what checkPage reports instead of failing the test.
type recorder struct {
	*testing.T
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Helper() {}

// Package browsertest opens pages in a real browser for tests: Debian's
// chromium, headless, kept off the network. Where no Chromium is found the
// test skips with a clear message, unless CASCADE_REQUIRE_BROWSER=1 (CI)
// makes that a failure, so an all-skipped run cannot look green.
//
// It is the harness of results/report's browser tests, shared so the game
// day's live dashboard is checked the same way.
package browsertest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// ChromiumPath finds a Chromium: $CASCADE_CHROMIUM, then the usual names.
func ChromiumPath() (string, error) {
	if p := os.Getenv("CASCADE_CHROMIUM"); p != "" {
		return exec.LookPath(p)
	}
	var errs []error
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		p, err := exec.LookPath(name)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

// Start starts one headless Chromium for the test and stops it when the
// test ends; it skips (or fails, under CASCADE_REQUIRE_BROWSER=1) where
// there is none.
func Start(t testing.TB) context.Context {
	t.Helper()
	bin, err := ChromiumPath()
	if err != nil {
		msg := "no Chromium found (apt-get install -y chromium, or set CASCADE_CHROMIUM): " + err.Error()
		if os.Getenv("CASCADE_REQUIRE_BROWSER") == "1" {
			t.Fatal("CASCADE_REQUIRE_BROWSER=1 but " + msg)
		}
		t.Skip(msg)
	}
	// The flags keep Chromium off the network: pages under test must not
	// need it, and this machine refuses Chromium's background connections.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	// The first action's context owns the browser: it must be bctx itself.
	if err := chromedp.Do(bctx); err != nil {
		cancelBrowser()
		cancelAlloc()
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	return bctx
}

// Tab is one page open in the browser, with what it logged and requested.
type Tab struct {
	Ctx context.Context

	mu       sync.Mutex
	console  []string
	requests []string
	stop     context.CancelFunc
	done     chan struct{}
}

// Open opens a new tab (closed when the test ends), starts recording its
// console errors, warnings and exceptions and every URL it requests, and
// navigates to url.
func Open(t testing.TB, bctx context.Context, url string) *Tab {
	t.Helper()
	tctx, cancel := chromedp.NewContext(bctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(tctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	lctx, stop := context.WithCancel(tctx)
	tab := &Tab{Ctx: tctx, stop: stop, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for m, err := range chromedp.Console(lctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException() {
				tab.mu.Lock()
				tab.console = append(tab.console, m.String())
				tab.mu.Unlock()
			}
		}
	}()
	go func() {
		defer wg.Done()
		for ev, err := range chromedp.Events(lctx, network.RequestWillBeSent) {
			if err != nil {
				return
			}
			tab.mu.Lock()
			tab.requests = append(tab.requests, ev.Request.URL)
			tab.mu.Unlock()
		}
	}()
	go func() { wg.Wait(); close(tab.done) }()
	t.Cleanup(tab.Close)
	if err := chromedp.Do(tctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate %s: %v", url, err)
	}
	return tab
}

// Close stops recording.
func (tab *Tab) Close() {
	tab.stop()
	<-tab.done
}

// Console is what the page logged as errors, warnings or exceptions.
func (tab *Tab) Console() []string {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	return append([]string(nil), tab.console...)
}

// Requests are the URLs the page asked for.
func (tab *Tab) Requests() []string {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	return append([]string(nil), tab.requests...)
}

// Screenshot saves a full-page PNG in the test's temporary directory (and
// in $CASCADE_SCREENSHOT_DIR when set) and returns its path.
func (tab *Tab) Screenshot(t testing.TB, name string) string {
	t.Helper()
	png, err := chromedp.Run(tab.Ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Errorf("screenshot is not a PNG (%d bytes)", len(png))
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	if keep := os.Getenv("CASCADE_SCREENSHOT_DIR"); keep != "" {
		if err := os.WriteFile(filepath.Join(keep, name), png, 0o644); err != nil {
			t.Error(err)
		}
	}
	return path
}

package slowdb

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/units"
)

// TestGatewayAnswersFirst puts a stdlib reverse proxy whose response-header
// timeout (300ms) is shorter than the upstream's (2s) in front of a slow
// query (1s): the client gets the gateway's 504 at 300ms while the upstream
// is still holding a database connection, and the upstream's work completes
// later for nobody.
func TestGatewayAnswersFirst(t *testing.T) {
	const gatewayTimeout, slow = 300 * time.Millisecond, time.Second
	cfg := Config{StatementTimeout: units.Duration(1500 * time.Millisecond), UpstreamTimeout: units.Duration(2 * time.Second)}
	eachDriver(t, cfg, func(t *testing.T, cfg Config) {
		f := start(t, cfg)
		inject(t, f.u, &SlowQuery{Latency: dist.FixedLatency(slow)})

		target, err := url.Parse(f.url)
		if err != nil {
			t.Fatal(err)
		}
		transport := &http.Transport{ResponseHeaderTimeout: gatewayTimeout}
		t.Cleanup(transport.CloseIdleConnections)
		proxy := &httputil.ReverseProxy{
			Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
			Transport: transport,
			// The stdlib default answers 502 to everything, which hides
			// the cascade; a gateway maps its own timeout to 504.
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					w.Header().Set(cause.Header, cause.GatewayTimeout.String())
					w.WriteHeader(http.StatusGatewayTimeout)
					return
				}
				w.Header().Set(cause.Header, cause.UpstreamConnectFailure.String())
				w.WriteHeader(http.StatusBadGateway)
			},
		}
		gw := httptest.NewServer(proxy)
		t.Cleanup(gw.Close)

		gf := &fixture{url: gw.URL}
		a := gf.get(t, "?customer=9", nil, 0)
		answered := time.Now()
		if a.status != http.StatusGatewayTimeout || a.cause != "gateway_timeout" {
			t.Fatalf("want the gateway's 504, got %v", a)
		}
		within(t, "gateway answer", a.elapsed, gatewayTimeout-20*time.Millisecond, gatewayTimeout+400*time.Millisecond)

		// The upstream is still at work: a connection is in use and the
		// request has not finished.
		s := f.u.Stats()
		if s.Pool.InUse < 1 || s.OK != 0 || s.Requests != 1 {
			t.Fatalf("upstream not still working when the gateway answered: %+v", s)
		}
		eventually(t, 5*time.Second, "the upstream to finish", func() bool { return f.u.Stats().Orphaned == 1 })
		if late := time.Since(answered); late < slow-gatewayTimeout-100*time.Millisecond {
			t.Fatalf("the upstream finished only %v after the gateway answered", late)
		}
		if s := f.u.Stats(); s.OK != 1 || s.UpstreamTimeouts != 0 {
			t.Fatalf("upstream should have completed its work: %+v", s)
		}
	})
}

package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
)

// HTTPTransport sends requests with net/http. It handles every protocol
// net/http does; loadgen/h1 is the faster path for plain HTTP/1.1.
type HTTPTransport struct {
	client  *http.Client
	reqs    []*http.Request
	timeout time.Duration
}

// NewHTTPTransport prepares the request templates against cfg.Target.
func NewHTTPTransport(cfg Config) (*HTTPTransport, error) {
	base, err := url.Parse(cfg.Target)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("loadgen: target %q must be an http:// or https:// URL with a host", cfg.Target)
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: cfg.ClientTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: max(cfg.MaxInFlight, 64),
		IdleConnTimeout:     90 * time.Second,
		DisableKeepAlives:   !cfg.KeepAlive,
		DisableCompression:  true,
	}
	t := &HTTPTransport{client: &http.Client{Transport: tr, CheckRedirect: noRedirects}, timeout: cfg.ClientTimeout}
	for _, r := range cfg.Requests {
		u, err := base.Parse(r.Path)
		if err != nil {
			return nil, fmt.Errorf("loadgen: request %q: bad path %q: %v", r.Name, r.Path, err)
		}
		method := r.Method
		if method == "" {
			method = http.MethodGet
		}
		req, err := http.NewRequest(method, u.String(), nil)
		if err != nil {
			return nil, fmt.Errorf("loadgen: request %q: %v", r.Name, err)
		}
		for k, vs := range r.Header {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
		if r.Body != nil {
			body := r.Body
			req.ContentLength = int64(len(body))
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		}
		t.reqs = append(t.reqs, req)
	}
	return t, nil
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// RoundTrip implements Transport.
func (t *HTTPTransport) RoundTrip(run context.Context, i int, s *Sample) {
	ctx, cancel := context.WithTimeout(run, t.timeout)
	defer cancel()
	req := t.reqs[i].WithContext(ctx)
	if req.GetBody != nil {
		req.Body, _ = req.GetBody()
	}
	res, err := t.client.Do(req)
	if err != nil {
		s.Cause = classify(run, ctx, err)
		return
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	s.Status = res.StatusCode
	if err != nil {
		s.Cause = classify(run, ctx, err)
		return
	}
	s.Cause = cause.FromResponse(res.StatusCode, res.Header.Get(cause.Header))
}

// CloseIdle releases pooled connections.
func (t *HTTPTransport) CloseIdle() { t.client.CloseIdleConnections() }

// classify maps a client-side error to a cause. run is the run's context (its
// end aborts requests, whatever its reason); ctx is the request's own, whose
// deadline is the client timeout.
func classify(run, ctx context.Context, err error) cause.Cause {
	if run.Err() != nil {
		return cause.Aborted
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return cause.ClientTimeout
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return cause.ConnectFailure
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return cause.Reset
	}
	return cause.TransportError
}

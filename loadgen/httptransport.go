package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/cascadehq/cascade/internal/cause"
)

// HTTPTransport sends requests with net/http. It handles every protocol
// net/http does: HTTP/1.1, HTTP/2 over TLS (ALPN) and h2c with prior
// knowledge (net/http bundles golang.org/x/net/http2 and exposes both
// through http.Protocols, so no second HTTP/2 stack is needed).
// loadgen/h1 is the faster path for plain HTTP/1.1.
type HTTPTransport struct {
	client  *http.Client
	base    *url.URL
	reqs    []*http.Request // prepared once; nil for templated requests
	set     *requestSet
	timeout time.Duration
	bufs    sync.Pool // *rendering
}

// NewHTTPTransport prepares the request templates against cfg.Target.
func NewHTTPTransport(cfg Config) (*HTTPTransport, error) {
	base, err := url.Parse(cfg.Target)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("loadgen: target %q must be an http:// or https:// URL with a host", cfg.Target)
	}
	timeout := cfg.ClientTimeout
	if timeout <= 0 {
		timeout = DefaultClientTimeout
	}
	tr := &http.Transport{
		DialContext:         targetOnly(base, &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}),
		MaxIdleConnsPerHost: max(cfg.MaxInFlight, cfg.MaxConns, 64),
		MaxConnsPerHost:     cfg.MaxConns,
		IdleConnTimeout:     workerIdle, // as the generator's idle workers: memory follows the concurrency needed now
		DisableKeepAlives:   !cfg.KeepAlive,
		DisableCompression:  true,
		TLSHandshakeTimeout: timeout,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: cfg.InsecureSkipVerify}, //nolint:gosec // opt-in, for self-signed test servers
	}
	secure := base.Scheme == "https"
	var protos http.Protocols
	switch cfg.Protocol {
	case ProtoAuto:
		protos.SetHTTP1(true)
		protos.SetHTTP2(secure)
	case ProtoHTTP1:
		protos.SetHTTP1(true)
	case ProtoH2:
		if !secure {
			return nil, fmt.Errorf("loadgen: protocol h2 needs an https:// target (use h2c for HTTP/2 over cleartext)")
		}
		protos.SetHTTP2(true)
	case ProtoH2C:
		if secure {
			return nil, fmt.Errorf("loadgen: protocol h2c needs an http:// target (use h2 for HTTP/2 over TLS)")
		}
		protos.SetUnencryptedHTTP2(true)
	default:
		return nil, fmt.Errorf("loadgen: unknown protocol %q (valid: http1, h2, h2c, or empty for automatic)", cfg.Protocol)
	}
	tr.Protocols = &protos
	set, err := compileRequests(cfg.Requests, cfg.Data, cfg.Seed)
	if err != nil {
		return nil, err
	}
	t := &HTTPTransport{client: &http.Client{Transport: tr, CheckRedirect: noRedirects}, base: base, set: set, timeout: timeout}
	t.bufs.New = func() any { return &rendering{} }
	for i, r := range cfg.Requests {
		if !set.reqs[i].static {
			t.reqs = append(t.reqs, nil)
			continue
		}
		var h [][2]string
		for k, vs := range r.Header {
			for _, v := range vs {
				h = append(h, [2]string{k, v})
			}
		}
		req, err := t.build(set.reqs[i].method, r.Path, h, r.Body) // checks the headers as a templated request's
		if err != nil {
			return nil, fmt.Errorf("loadgen: request %q: %w", r.Name, err)
		}
		t.reqs = append(t.reqs, req)
	}
	return t, nil
}

// build makes a request for path (a rendered path and query) to the
// target's host, whatever the path holds: resolving it as a URL reference
// would let "//other-host/x" replace the host, sending load where the
// loopback check never looked. The path goes out as written, as wrk and
// loadgen/h1 send it.
func (t *HTTPTransport) build(method, path string, header [][2]string, body []byte) (*http.Request, error) {
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	ref, err := url.ParseRequestURI(path)
	if err != nil || ref.Scheme != "" || ref.Host != "" {
		return nil, fmt.Errorf("bad path %q: expected a path such as /items?id=1", path)
	}
	// The target's own path (an external gateway at http://host/api) is
	// the prefix of every request's, as on loadgen/h1.
	u := *t.base
	prefix := strings.TrimSuffix(t.base.EscapedPath(), "/")
	raw := prefix + ref.EscapedPath()
	if u.Path, err = url.PathUnescape(raw); err != nil {
		return nil, fmt.Errorf("bad path %q: %v", path, err)
	}
	u.RawPath, u.RawQuery, u.Fragment, u.RawFragment = raw, ref.RawQuery, "", ""
	req, err := http.NewRequest(method, u.String(), nil)
	if err != nil {
		return nil, err
	}
	for _, h := range header {
		// As loadgen/h1 does: a rendering no client sends is the request's
		// fault (request_error), not a failure in flight (net/http's own
		// refusal came back from Do as a transport error).
		if !httpguts.ValidHeaderFieldName(h[0]) || !httpguts.ValidHeaderFieldValue(h[1]) {
			return nil, fmt.Errorf("header %s: value %q has control characters (a line break?)", h[0], h[1])
		}
		// net/http cut an invalid Host short on HTTP/1.1 (and sent the
		// request) and refused it on HTTP/2. An empty one means the
		// target's, as on loadgen/h1.
		if strings.EqualFold(h[0], "Host") && !httpguts.ValidHostHeader(h[1]) {
			return nil, fmt.Errorf("header Host: %q is not a host[:port]", h[1])
		}
		addHeader(req, h[0], h[1])
	}
	if body != nil {
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return req, nil
}

// addHeader adds a header; Host names the virtual host (net/http ignores
// it in Header).
func addHeader(req *http.Request, k, v string) {
	if strings.EqualFold(k, "Host") {
		req.Host = v
		return
	}
	req.Header.Add(k, v)
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// targetOnly dials the target's address and nothing else: a second guard,
// after build, that the load goes only where the target check allowed.
func targetOnly(base *url.URL, d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	port := base.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[base.Scheme]
	}
	want := net.JoinHostPort(base.Hostname(), port)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if !strings.EqualFold(addr, want) {
			return nil, fmt.Errorf("loadgen: refusing to dial %s: the target is %s", addr, want)
		}
		return d.DialContext(ctx, network, addr)
	}
}

// RoundTrip implements Transport.
func (t *HTTPTransport) RoundTrip(run context.Context, i int, s *Sample) {
	ctx, cancel := context.WithTimeout(run, t.timeout)
	defer cancel()
	var req *http.Request
	if t.reqs[i] != nil {
		req = t.reqs[i].WithContext(ctx)
	} else {
		r := t.bufs.Get().(*rendering)
		t.set.render(i, s.Seq, r)
		var body []byte
		if t.set.reqs[i].body != nil {
			body = bytes.Clone(r.body)
		}
		var err error
		req, err = t.build(t.set.reqs[i].method, string(r.path), r.header, body)
		t.bufs.Put(r)
		if err != nil {
			t.set.refused(i, s.Seq, err)
			s.Cause = cause.RequestError
			return
		}
		req = req.WithContext(ctx)
	}
	if req.GetBody != nil {
		req.Body, _ = req.GetBody()
	}
	// Time until a connection is in hand (pool wait under the cap, dial):
	// the part of the latency a closed loop does not see.
	start := time.Now()
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { s.ConnWait = time.Since(start) },
	}))
	res, err := t.client.Do(req)
	if err != nil {
		s.Cause = classify(run, ctx, err)
		s.fdLimit = t.set.failed(s.Cause, i, s.Seq, err)
		return
	}
	var body []byte
	if t.set.reqs[i].expect.checksBody() {
		body, err = io.ReadAll(io.LimitReader(res.Body, MaxCheckedBody))
	}
	if err == nil {
		_, err = io.Copy(io.Discard, res.Body)
	}
	res.Body.Close()
	s.Status = res.StatusCode
	if err != nil {
		s.Cause = classify(run, ctx, err)
		s.fdLimit = t.set.failed(s.Cause, i, s.Seq, err)
		return
	}
	s.Cause = t.set.check(i, s.Seq, res.StatusCode, cause.FromResponse(res.StatusCode, res.Header.Get(cause.Header)), body)
}

// FirstRequestError is the first templated request the client refused.
func (t *HTTPTransport) FirstRequestError() *RequestError { return t.set.firstBad.Load() }

// FirstClientErrors is the first error of each client-side cause.
func (t *HTTPTransport) FirstClientErrors() []*ClientError { return t.set.failures.list() }

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
	if isFDLimit(err) {
		// The generator's own limit, though the dial reports it: not the
		// target's connect failure.
		return cause.TransportError
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

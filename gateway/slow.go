package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
)

// slowHandler serves the requests the fast path hands to net/http: the
// same exchange, with the request read by Go's server and the answer
// written through its ResponseWriter.
type slowHandler struct{ g *Gateway }

// hopByHop are removed from requests and answers (RFC 9110 7.6.1), with
// the headers the gateway sets itself.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding",
	"Upgrade", "Host", "Content-Length", "Expect", HeaderAttempt, HeaderDeadline, HeaderRequestID, "X-Forwarded-For"}

func (h slowHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g := h.g
	g.srv.inFlight.Add(1)
	defer g.srv.requestEnded()
	if r.Context().Value(bothFramingsKey{}) != nil {
		w.Header().Set("Connection", "close") // see markBothFramings
	}
	if r.Method == http.MethodConnect || r.Header.Get("Upgrade") != "" {
		// Tunnels and protocol switches are not what cascade rehearses.
		http.Error(w, "the gateway does not proxy CONNECT or Upgrade", http.StatusNotImplemented)
		return
	}
	ex := &exchange{g: g, resp: &httpResponder{w: w, r: r}}
	ex.method = internMethod([]byte(r.Method))
	uri := r.RequestURI
	if !strings.HasPrefix(uri, "/") {
		uri = r.URL.RequestURI() // absolute-form: forward the origin-form
	}
	ex.uri, ex.host = []byte(uri), []byte(r.Host)
	path := ex.uri
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	ex.rt = g.match(path)
	var clientID []byte
	if id := r.Header.Get(HeaderRequestID); id != "" && len(id) <= 200 {
		ex.reqID = []byte(id)
		clientID = ex.reqID
	} else {
		ex.reqID = g.newID(nil)
	}
	var fwd []byte
	drop := map[string]bool{}
	for _, c := range r.Header.Values("Connection") {
		for t := range strings.SplitSeq(c, ",") {
			drop[http.CanonicalHeaderKey(strings.TrimSpace(t))] = true
		}
	}
	for k, vs := range r.Header {
		if drop[k] || contains(hopByHop, k) {
			continue
		}
		for _, v := range vs {
			fwd = append(fwd, k...)
			fwd = append(fwd, ": "...)
			fwd = append(fwd, v...)
			fwd = append(fwd, "\r\n"...)
		}
	}
	var ip []byte
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		ip = []byte(host)
	}
	xff := []byte(strings.Join(r.Header.Values("X-Forwarded-For"), ", "))
	ex.head = buildHead(nil, ex.method, ex.uri, ex.host, fwd)
	ex.head = propagationOf(ex.rt).appendHeaders(ex.head, xff, ip, clientID, ex.reqID)
	if err := ex.readBody(r); err != nil {
		ex.start = time.Now()
		if bodyCutShort(err) {
			// The client went away while sending its body: cut the
			// connection. Returning without an answer let net/http send
			// its default 200 for a request nobody forwarded.
			ex.fail(errClientGone)
			ex.finish()
			panic(http.ErrAbortHandler)
		}
		// Malformed framing (a bad chunk size, say): the client's error,
		// answered as net/http answers a malformed head.
		ex.status, ex.cause, ex.detail = http.StatusBadRequest, cause.HTTPError, "malformed request body: "+err.Error()
		w.Header().Set("Connection", "close")
		w.Header().Set(HeaderRequestID, string(ex.reqID))
		http.Error(w, "400 Bad Request: malformed request body", http.StatusBadRequest)
		ex.finish()
		return
	}
	g.handle(ex)
	if ex.abort {
		// The status is out (or nobody is listening): cut the connection
		// so the client sees the answer is incomplete.
		panic(http.ErrAbortHandler)
	}
}

// bodyCutShort reports a body read that failed because the client's
// connection ended or broke, rather than because its framing was invalid.
func bodyCutShort(err error) bool {
	var ne net.Error
	return isReset(err) || errors.Is(err, net.ErrClosed) || errors.As(err, &ne)
}

// readBody buffers a body of up to the route's max_replay_body, so it can
// be sent again on a retry (retry.PrepareBody's rule); a larger one, or
// one of unknown length that turns out larger, is streamed once.
func (ex *exchange) readBody(r *http.Request) error {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	bound := int64(defaultMaxBody)
	if ex.rt != nil {
		bound = ex.rt.maxBody
	}
	switch {
	case r.ContentLength > bound:
		ex.stream, ex.sLen, ex.once = r.Body, r.ContentLength, true
		return nil
	case r.ContentLength >= 0:
		ex.sendLen = true
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, bound+1))
	if err != nil {
		return err
	}
	if int64(len(buf)) > bound {
		ex.stream, ex.sLen, ex.once = io.MultiReader(bytes.NewReader(buf), r.Body), -1, true
		return nil
	}
	ex.body = buf
	ex.sendLen = ex.sendLen || len(buf) > 0
	return nil
}

// httpResponder writes answers through net/http.
type httpResponder struct {
	w http.ResponseWriter
	r *http.Request
}

func (h *httpResponder) writer() http.ResponseWriter { return h.w }
func (h *httpResponder) gone() bool                  { return h.r.Context().Err() != nil }
func (h *httpResponder) context() context.Context    { return h.r.Context() }

// forward copies the upstream's head into the ResponseWriter's header map
// and the body, de-chunked, through it (net/http frames it again).
func (h *httpResponder) forward(ex *exchange, u *upConn) (upErr, cliErr error) {
	rh := &ex.rh
	hd := h.w.Header()
	for _, line := range bytes.SplitAfter(rh.hdr, []byte("\n")) {
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		hd.Add(string(line[:colon]), string(bytes.TrimSpace(line[colon+1:])))
	}
	if rh.status >= 400 && !rh.hasCause {
		hd.Set("X-Cascade-Cause", "upstream_error")
	}
	if rh.clen >= 0 {
		hd.Set("Content-Length", strconv.FormatInt(rh.clen, 10))
	}
	hd.Set(HeaderRequestID, string(ex.reqID))
	h.w.WriteHeader(rh.status)
	u.r += rh.headEnd
	flush := func() {}
	if f, ok := h.w.(http.Flusher); ok && (rh.chunked || rh.untilClose) {
		flush = f.Flush // a stream: pass each piece on as it comes
	}
	write := func(p []byte) error {
		if len(p) == 0 {
			return nil
		}
		ex.collect(p)
		ex.bytes += int64(len(p))
		_, err := h.w.Write(p)
		return err
	}
	switch {
	case rh.noBody:
	case rh.clen >= 0:
		left := rh.clen
		for left > 0 {
			if u.unread() == 0 {
				if err := ex.fillBody(u); err != nil {
					u.close()
					return err, nil
				}
			}
			take := min(left, int64(u.unread()))
			if err := write(u.buf[u.r : u.r+int(take)]); err != nil {
				u.close()
				return nil, err
			}
			u.r += int(take)
			left -= take
		}
	case rh.chunked:
		var cs chunkScanner
		for !cs.done() {
			if u.unread() == 0 {
				flush()
				if err := ex.fillBody(u); err != nil {
					u.close()
					return err, nil
				}
			}
			p := u.buf[u.r:u.w]
			n, ds, de, err := cs.scan(p)
			if err != nil {
				u.close()
				return err, nil
			}
			if err := write(p[ds:de]); err != nil {
				u.close()
				return nil, err
			}
			u.r += n
		}
	default:
		for {
			if err := write(u.buf[u.r:u.w]); err != nil {
				u.close()
				return nil, err
			}
			u.r = u.w
			flush()
			err := ex.fillBody(u)
			if err == errBodyEOF {
				break
			}
			if err != nil {
				u.close()
				return err, nil
			}
		}
	}
	if rh.keep && u.unread() == 0 {
		u.pool.put(u, time.Now())
	} else {
		u.close()
	}
	return nil, nil
}

package gateway

import (
	"bytes"
	"errors"
	"net/http"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/httpsyntax"
)

// HTTP/1.1 message heads, parsed in place.
//
// The gateway's fast path parses requests and responses itself instead of
// going through net/http (see server.go for why). The parsers are strict on
// purpose: a request they do not fully understand is not an error but a
// reason to hand the connection to net/http (errHandoff), which then
// answers it exactly as Go's server would; a response they do not
// understand is the upstream's fault (upstream_malformed), as it is for
// net/http's client.

var (
	// errHandoff: the request is valid HTTP the fast path does not serve
	// (HTTP/1.0, Transfer-Encoding, Expect, Upgrade, an absolute URI, a
	// large body...) or not valid HTTP at all; net/http takes the
	// connection over from this request on.
	errHandoff = errors.New("handoff to net/http")
	// errMalformed: the upstream's answer is not valid HTTP/1.x.
	errMalformed = errors.New("malformed HTTP response")
)

// Limits of the fast path; beyond them net/http takes over.
const (
	maxHeadBytes = 64 << 10 // of one request or response head
	maxInterim   = 8        // 1xx answers skipped before the final one
)

// reqHead is what the server extracted from a request head.
type reqHead struct {
	method  string // interned for the common methods
	uri     []byte // origin-form request target, as sent
	host    []byte
	clen    int64 // -1: none
	close   bool  // Connection: close
	reqID   []byte
	xff     []byte
	headEnd int // offset just past the blank line
}

// parseRequest parses the head at the start of b (which holds at least
// the whole head, ending at end), copying the header lines to forward into
// fwd. It returns errHandoff for anything it leaves to net/http.
func parseRequest(b []byte, h *reqHead, fwd []byte) ([]byte, error) {
	*h = reqHead{clen: -1}
	nl := bytes.IndexByte(b, '\n')
	if nl < 1 || b[nl-1] != '\r' {
		return fwd, errHandoff
	}
	line := b[:nl-1]
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return fwd, errHandoff
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return fwd, errHandoff
	}
	method, uri, proto := line[:sp1], rest[:sp2], rest[sp2+1:]
	if string(proto) != "HTTP/1.1" || uri[0] != '/' || !httpsyntax.IsToken(method) || !validURI(uri) {
		return fwd, errHandoff
	}
	h.method, h.uri = internMethod(method), uri
	if h.method == "CONNECT" {
		return fwd, errHandoff
	}
	pos := nl + 1
	for {
		nl := bytes.IndexByte(b[pos:], '\n')
		if nl < 1 || b[pos+nl-1] != '\r' {
			return fwd, errHandoff
		}
		line := b[pos : pos+nl-1]
		start := pos
		pos += nl + 1
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !httpsyntax.IsToken(line[:colon]) {
			return fwd, errHandoff // also obs-fold: a line starting with a space
		}
		name, value := line[:colon], httpsyntax.TrimOWS(line[colon+1:])
		if !validValue(value) {
			return fwd, errHandoff
		}
		switch {
		case httpsyntax.EqualFold(name, "host"):
			if h.host != nil || len(value) == 0 {
				return fwd, errHandoff
			}
			h.host = value
			continue
		case httpsyntax.EqualFold(name, "content-length"):
			n, ok := parseUint(value)
			if !ok || h.clen >= 0 {
				return fwd, errHandoff
			}
			h.clen = n
			continue
		case httpsyntax.EqualFold(name, "connection"):
			close, other := connectionTokens(value)
			if other {
				return fwd, errHandoff
			}
			h.close = h.close || close
			continue
		case httpsyntax.EqualFold(name, "transfer-encoding"), httpsyntax.EqualFold(name, "expect"), httpsyntax.EqualFold(name, "upgrade"),
			httpsyntax.EqualFold(name, "te") && !httpsyntax.EqualFold(value, "trailers"):
			return fwd, errHandoff
		case httpsyntax.EqualFold(name, "keep-alive"), httpsyntax.EqualFold(name, "proxy-connection"), httpsyntax.EqualFold(name, "te"), httpsyntax.EqualFold(name, "trailer"),
			httpsyntax.EqualFold(name, "x-cascade-attempt"), httpsyntax.EqualFold(name, "x-cascade-deadline-ms"):
			continue // hop-by-hop, or ours to set
		case httpsyntax.EqualFold(name, "x-request-id"):
			if len(value) > 0 && len(value) <= 200 {
				h.reqID = value
			}
			continue
		case httpsyntax.EqualFold(name, "x-forwarded-for"):
			if h.xff != nil {
				return fwd, errHandoff // several: let net/http join them
			}
			h.xff = value
			continue
		}
		fwd = append(fwd, b[start:pos]...)
	}
	if h.host == nil {
		return fwd, errHandoff
	}
	h.headEnd = pos
	return fwd, nil
}

// respHead is what the client extracted from a response head.
type respHead struct {
	status     int
	statusLine []byte // "200 OK": code and reason as sent
	clen       int64  // -1: none
	chunked    bool
	untilClose bool // body delimited by the connection closing
	noBody     bool // HEAD, 204, 304
	keep       bool // the connection may carry another request
	hasCause   bool // the upstream set X-Cascade-Cause itself
	// upCause is the cause its first non-empty X-Cascade-Cause names, when
	// causeKnown: the value a client reads (loadgen's h1 takes the same).
	upCause    cause.Cause
	causeKnown bool
	causeRead  bool // a non-empty X-Cascade-Cause was read
	// retryAfter is the wait a valid Retry-After asked for (hasRetryAfter),
	// from now for an HTTP date: a retried 503 or 429 waits that long.
	retryAfter    time.Duration
	hasRetryAfter bool
	hdr           []byte
	headEnd       int
}

// outcome is the cause of the answer as the client will classify it once
// the gateway has passed it on (cause.FromResponse of its status and
// X-Cascade-Cause): the upstream's own cause (db_timeout, upstream_timeout,
// ...) when it names one, upstream_error for a failure that names none
// (the gateway adds that header), else what the status says. The run's
// summary counts the request under this cause, and so must the access log.
func (h *respHead) outcome() cause.Cause {
	switch {
	case h.causeKnown:
		return h.upCause
	case !h.hasCause && h.status >= 400:
		return cause.UpstreamError
	}
	return cause.FromResponse(h.status, "")
}

// parseResponse parses the response head at the start of b (complete up to
// its blank line) for a request with the given method, copying the header
// lines to forward into h.hdr (appending to its existing capacity).
func parseResponse(b []byte, method string, h *respHead) error {
	hdr := h.hdr[:0]
	*h = respHead{clen: -1, hdr: hdr}
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return errMalformed
	}
	line := b[:nl]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if len(line) < 12 || string(line[:5]) != "HTTP/" || line[5] != '1' || line[6] != '.' || line[8] != ' ' ||
		!httpsyntax.IsDigit(line[7]) || (len(line) > 12 && line[12] != ' ') {
		return errMalformed
	}
	minor := line[7] - '0'
	s := 0
	for _, c := range line[9:12] {
		if !httpsyntax.IsDigit(c) {
			return errMalformed
		}
		s = s*10 + int(c-'0')
	}
	if s < 100 {
		return errMalformed
	}
	h.status, h.statusLine = s, line[9:]
	keepAlive, close, te, teChunked, otherConn := false, false, false, false, false
	pos := nl + 1
	for {
		nl := bytes.IndexByte(b[pos:], '\n')
		if nl < 0 {
			return errMalformed
		}
		start := pos
		line := b[pos : pos+nl]
		pos += nl + 1
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return errMalformed // obs-fold: not worth the ambiguity
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !httpsyntax.IsToken(line[:colon]) {
			return errMalformed
		}
		name, value := line[:colon], httpsyntax.TrimOWS(line[colon+1:])
		if !validValue(value) {
			return errMalformed // a CR inside a value could split the header downstream
		}
		switch {
		case httpsyntax.EqualFold(name, "content-length"):
			n, ok := parseUint(value)
			if !ok || (h.clen >= 0 && h.clen != n) {
				return errMalformed
			}
			h.clen = n
			continue
		case httpsyntax.EqualFold(name, "transfer-encoding"):
			te = true
			teChunked = lastTokenChunked(value)
			continue
		case httpsyntax.EqualFold(name, "connection"):
			c, other := connectionTokens(value)
			close = close || c
			keepAlive = keepAlive || bytes.Contains(bytes.ToLower(value), []byte("keep-alive"))
			otherConn = otherConn || other
			continue
		case httpsyntax.EqualFold(name, "keep-alive"), httpsyntax.EqualFold(name, "proxy-connection"), httpsyntax.EqualFold(name, "upgrade"), httpsyntax.EqualFold(name, "te"),
			httpsyntax.EqualFold(name, "x-request-id"): // the gateway sets its own, the same one
			continue
		case httpsyntax.EqualFold(name, "retry-after"):
			h.retryAfter, h.hasRetryAfter = parseRetryAfter(value)
		case httpsyntax.EqualFold(name, "x-cascade-cause"):
			h.hasCause = true
			if !h.causeRead && len(value) > 0 {
				// The first value only, as the client reads it: an
				// unknown one leaves the status to judge.
				h.causeRead = true
				h.upCause, h.causeKnown = cause.ParseBytes(value)
			}
		}
		h.hdr = append(h.hdr, b[start:pos]...)
		if b[pos-2] != '\r' { // a bare LF line: forward it with CRLF
			h.hdr = append(h.hdr[:len(h.hdr)-1], '\r', '\n')
		}
	}
	if otherConn {
		// Headers named in Connection are hop-by-hop too (RFC 9110 7.6.1);
		// rare enough to pay for a second pass.
		h.hdr = dropConnectionNamed(b[:pos], h.hdr)
	}
	h.headEnd = pos
	h.keep = !close && (minor >= 1 || keepAlive)
	switch {
	case method == "HEAD" || s == 204 || s == 304 || s < 200:
		h.noBody = true
	case te:
		if minor == 0 {
			return errMalformed // RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing
		}
		if teChunked {
			h.chunked = true
			if h.clen >= 0 {
				h.keep = false // both framings: do not trust the connection after this
				h.clen = -1
			}
		} else {
			h.untilClose, h.keep, h.clen = true, false, -1
		}
	case h.clen < 0:
		h.untilClose, h.keep = true, false
	}
	return nil
}

// dropConnectionNamed removes from hdr the header lines named by the
// Connection headers of the head in b.
func dropConnectionNamed(b, hdr []byte) []byte {
	var named [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimRight(line, "\r")
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !httpsyntax.EqualFold(line[:colon], "connection") {
			continue
		}
		for _, t := range bytes.Split(line[colon+1:], []byte(",")) {
			if t = httpsyntax.TrimOWS(t); len(t) > 0 {
				named = append(named, t)
			}
		}
	}
	var out []byte
	for _, line := range bytes.SplitAfter(hdr, []byte("\n")) {
		colon := bytes.IndexByte(line, ':')
		drop := false
		for _, n := range named {
			if colon > 0 && bytes.EqualFold(line[:colon], n) {
				drop = true
			}
		}
		if !drop {
			out = append(out, line...)
		}
	}
	return out
}

// chunkScanner follows the framing of a chunked body as it passes, so the
// gateway can forward it as it came and still know where it ends.
type chunkScanner struct {
	state   uint8
	size    int64 // bytes of chunk data left, in stateData
	digits  int
	lineLen int
}

const (
	csSize      uint8 = iota // reading the hex size
	csExt                    // chunk extension up to CRLF
	csSizeLF                 // after CR of the size line
	csData                   // chunk data
	csDataCR                 // CRLF after the data
	csDataLF                 //
	csTrailer                // a trailer line (or the final blank line) begins
	csTrailerL               // inside a trailer line
	csTrailerLF              // after CR of a trailer line
	csFinalLF                // after CR of the final blank line
	csDone
)

// maxChunkLine bounds a size line or trailer line.
const maxChunkLine = 4096

// scan consumes framing from p and returns how many bytes belong to the
// body and where, within them, chunk data lies: p[dataStart:dataEnd] (empty
// when this call consumed only framing). It stops after at most one data
// span, so callers loop until n == len(p) or done.
func (s *chunkScanner) scan(p []byte) (n, dataStart, dataEnd int, err error) {
	for n < len(p) {
		c := p[n]
		switch s.state {
		case csSize:
			switch v := unhex(c); {
			case v >= 0:
				if s.digits++; s.digits > 15 {
					return n, 0, 0, errMalformed
				}
				s.size = s.size<<4 | int64(v)
			case s.digits == 0:
				return n, 0, 0, errMalformed
			case c == '\r':
				s.state = csSizeLF
			case c == ';' || c == ' ' || c == '\t':
				s.state, s.lineLen = csExt, 0
			case c == '\n':
				s.afterSize()
			default:
				return n, 0, 0, errMalformed
			}
			n++
		case csExt:
			if s.lineLen++; s.lineLen > maxChunkLine {
				return n, 0, 0, errMalformed
			}
			switch c {
			case '\r':
				s.state = csSizeLF
			case '\n':
				s.afterSize()
			}
			n++
		case csSizeLF:
			if c != '\n' {
				return n, 0, 0, errMalformed
			}
			s.afterSize()
			n++
		case csData:
			k := int64(len(p) - n)
			if k > s.size {
				k = s.size
			}
			start := n
			n += int(k)
			if s.size -= k; s.size == 0 {
				s.state = csDataCR
			}
			return n, start, n, nil
		case csDataCR:
			switch c {
			case '\r':
				s.state = csDataLF
			case '\n':
				s.state = csSize
			default:
				return n, 0, 0, errMalformed
			}
			n++
		case csDataLF:
			if c != '\n' {
				return n, 0, 0, errMalformed
			}
			s.state = csSize
			n++
		case csTrailer:
			switch c {
			case '\r':
				s.state = csFinalLF
			case '\n':
				s.state = csDone
				return n + 1, 0, 0, nil
			default:
				s.state, s.lineLen = csTrailerL, 1
			}
			n++
		case csTrailerL:
			if s.lineLen++; s.lineLen > maxChunkLine {
				return n, 0, 0, errMalformed
			}
			switch c {
			case '\r':
				s.state = csTrailerLF
			case '\n':
				s.state = csTrailer
			}
			n++
		case csTrailerLF:
			if c != '\n' {
				return n, 0, 0, errMalformed
			}
			s.state = csTrailer
			n++
		case csFinalLF:
			if c != '\n' {
				return n, 0, 0, errMalformed
			}
			s.state = csDone
			return n + 1, 0, 0, nil
		case csDone:
			return n, 0, 0, nil
		}
	}
	return n, 0, 0, nil
}

func (s *chunkScanner) afterSize() {
	s.digits = 0
	if s.size == 0 {
		s.state = csTrailer
	} else {
		s.state = csData
	}
}

func (s *chunkScanner) done() bool { return s.state == csDone }

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// connectionTokens reads a Connection header value.
func connectionTokens(v []byte) (close, other bool) {
	for len(v) > 0 {
		var t []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			t, v = v[:i], v[i+1:]
		} else {
			t, v = v, nil
		}
		t = httpsyntax.TrimOWS(t)
		switch {
		case len(t) == 0:
		case httpsyntax.EqualFold(t, "close"):
			close = true
		case httpsyntax.EqualFold(t, "keep-alive"):
		default:
			other = true
		}
	}
	return close, other
}

// lastTokenChunked reports whether the last transfer coding is chunked.
func lastTokenChunked(v []byte) bool {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return httpsyntax.EqualFold(httpsyntax.TrimOWS(v), "chunked")
}

func parseUint(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !httpsyntax.IsDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// validURI refuses control characters and spaces; net/http decides the rest.
func validURI(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// validValue refuses control characters other than tab (RFC 9110 5.5).
func validValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// internMethod returns a constant string for the common methods, so that
// the hot path converts without allocating.
func internMethod(b []byte) string {
	switch string(b) {
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "PATCH":
		return "PATCH"
	case "OPTIONS":
		return "OPTIONS"
	case "TRACE":
		return "TRACE"
	case "CONNECT":
		return "CONNECT"
	}
	return string(b)
}

// parseRetryAfter reads a Retry-After value (RFC 9110 10.2.3): delay
// seconds, or an HTTP date, which is read against the clock now (a date
// past is no wait). Anything else is no Retry-After.
func parseRetryAfter(v []byte) (time.Duration, bool) {
	if n, ok := parseUint(v); ok {
		if n > int64(1<<62/time.Second) {
			n = int64(1 << 62 / time.Second) // years: beyond any cap
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(string(v))
	if err != nil {
		return 0, false
	}
	return max(time.Until(t), 0), true
}

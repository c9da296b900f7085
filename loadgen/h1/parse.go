package h1

import (
	"bytes"
	"fmt"
	"io"
	"time"

	"github.com/cascadehq/cascade/internal/httpsyntax"
)

// Response parsing. It works on the Conn's buffer in place and keeps only
// what the load generator needs: status, framing, connection reuse and the
// cascade cause header. Framing follows RFC 9112 section 6.3:
//
//	HEAD request, 1xx, 204, 304  -> no body
//	Transfer-Encoding, chunked last -> chunked (a Content-Length is ignored and the connection closed)
//	Transfer-Encoding, other       -> body until close
//	Content-Length                 -> exactly that many bytes
//	neither                        -> body until close
//
// Anything that is not valid HTTP/1.x is an error, never a panic; every
// read is bounded by the request's deadline.

// head is what readHead extracted from a status line and header block.
type head struct {
	status    int
	minor     byte  // HTTP/1.minor
	clen      int64 // -1: none
	te        bool  // a Transfer-Encoding other than identity
	chunked   bool  // ... whose final coding is chunked
	close     bool  // Connection: close
	keepAlive bool  // Connection: keep-alive (matters for HTTP/1.0)
	tracked   bool  // the previous header line was one we interpret
	headers   int
}

// readResponse reads one response (after any 1xx) and reports whether the
// connection may carry another request.
func (c *Conn) readResponse(p *Prepared, r *Result, dl time.Duration) (bool, error) {
	var h head
	for n := 0; ; n++ {
		if n > maxInterim {
			return false, errTooManyInfo
		}
		if n == 0 && c.sameHead(&h, r) {
			break
		}
		h = head{clen: -1}
		start := c.r
		if err := c.readHead(&h, r, dl); err != nil {
			return false, err
		}
		if h.status >= 200 {
			if n == 0 {
				c.remember(start, &h, r)
			}
			break
		}
		if h.status == 101 {
			return false, errSwitching
		}
	}
	if h.te && h.minor == 0 {
		// RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has
		// faulty framing (probably forwarded by something that did not
		// de-chunk it).
		return false, errTE10
	}
	r.Status = h.status
	keep := !h.close && (h.minor >= 1 || h.keepAlive)
	var err error
	switch {
	case p.head || h.status == 204 || h.status == 304:
	case h.chunked:
		err = c.readChunked(r, dl)
		if h.clen >= 0 {
			keep = false // both framings: a smuggling attempt or a broken proxy; do not trust the connection
		}
	case h.te || h.clen < 0:
		err, keep = c.readUntilClose(r, dl), false
	default:
		err = c.readN(h.clen, r, dl)
	}
	if err != nil {
		return false, err
	}
	if c.r != c.w {
		// Bytes beyond the response: the server answered something we did
		// not ask for. The response itself is complete; the connection
		// cannot be trusted with the next one.
		keep = false
	}
	return keep, nil
}

// maxMemo bounds the head sameHead compares and remember copies.
const maxMemo = 512

// sameHead takes a response head that is byte for byte the last final head
// parsed on this Conn, when the buffer already holds all of it: parsing is
// a function of those bytes, so its result is the memo's. A server answers
// a load of one request with one head, but for its Date line once a second,
// and a comparison of ~150 bytes costs a few nanoseconds where the strict
// parse (every line checked against RFC 9112) was about 2 % of the
// generator's CPU at full speed (bench/LOADGEN.md).
func (c *Conn) sameHead(h *head, r *Result) bool {
	n := len(c.memo)
	if n == 0 || c.w-c.r < n || !bytes.Equal(c.buf[c.r:c.r+n], c.memo) {
		return false
	}
	*h = c.memoHead
	if r.causeLen == 0 && c.memoLen > 0 {
		r.causeLen = uint8(copy(r.causeBuf[:], c.memoBuf[:c.memoLen]))
	}
	c.r += n
	c.headBytes += n
	return true
}

// remember keeps the final head just parsed from start, if its bytes are
// still where they were read (a fill that moved the buffer's unread bytes
// lost them; the next response will do).
func (c *Conn) remember(start int, h *head, r *Result) {
	n := c.headBytes
	if n > maxMemo || start+n != c.r {
		c.memo = c.memo[:0]
		return
	}
	c.memo = append(c.memo[:0], c.buf[start:c.r]...)
	c.memoHead = *h
	c.memoLen = r.causeLen
	copy(c.memoBuf[:], r.causeBuf[:r.causeLen])
}

// readHead parses a status line and headers.
func (c *Conn) readHead(h *head, r *Result, dl time.Duration) error {
	line, err := c.readLine(dl, true)
	if err != nil {
		return err
	}
	if err := parseStatusLine(line, h); err != nil {
		return err
	}
	for {
		line, err := c.readLine(dl, true)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		if err := h.header(line, r); err != nil {
			return err
		}
	}
}

// parseStatusLine parses "HTTP/1.x SSS[ reason]".
func parseStatusLine(line []byte, h *head) error {
	if len(line) == 0 {
		return errEmptyStatus
	}
	if len(line) < 12 || string(line[:5]) != "HTTP/" || line[6] != '.' || line[8] != ' ' ||
		!httpsyntax.IsDigit(line[5]) || !httpsyntax.IsDigit(line[7]) || (len(line) > 12 && line[12] != ' ') {
		return errStatusLine
	}
	if line[5] != '1' {
		return errVersion
	}
	s := 0
	for _, b := range line[9:12] {
		if !httpsyntax.IsDigit(b) {
			return errStatusLine
		}
		s = s*10 + int(b-'0')
	}
	if s < 100 {
		return errStatusLine
	}
	h.status, h.minor = s, line[7]-'0'
	return nil
}

// header interprets one header line.
func (h *head) header(line []byte, r *Result) error {
	if line[0] == ' ' || line[0] == '\t' {
		// obs-fold: a continuation of the previous line. Harmless for
		// headers we ignore; refused for the ones that decide framing.
		if h.headers == 0 || h.tracked {
			return errObsFold
		}
		return nil
	}
	h.headers++
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return errHeaderLine
	}
	name, value := line[:colon], httpsyntax.TrimOWS(line[colon+1:])
	for _, b := range name {
		if !httpsyntax.TokenChar[b] {
			return errHeaderLine // includes whitespace before the colon
		}
	}
	h.tracked = true
	switch {
	case httpsyntax.EqualFold(name, "content-length"):
		n, ok := parseContentLength(value)
		if !ok || (h.clen >= 0 && n != h.clen) {
			return errContentLen
		}
		h.clen = n
	case httpsyntax.EqualFold(name, "transfer-encoding"):
		for tok := range tokens(value) {
			if httpsyntax.EqualFold(tok, "identity") {
				continue
			}
			h.te = true
			h.chunked = httpsyntax.EqualFold(tok, "chunked")
		}
	case httpsyntax.EqualFold(name, "connection"):
		for tok := range tokens(value) {
			switch {
			case httpsyntax.EqualFold(tok, "close"):
				h.close = true
			case httpsyntax.EqualFold(tok, "keep-alive"):
				h.keepAlive = true
			}
		}
	case httpsyntax.EqualFold(name, "x-cascade-cause"):
		if r.causeLen == 0 && len(value) > 0 {
			r.causeLen = uint8(copy(r.causeBuf[:], value))
		}
	default:
		h.tracked = false
	}
	return nil
}

// readLine returns the next line without its line ending (CRLF, or a bare
// LF as net/http also accepts). The slice is valid until the next read.
// limit counts the line against MaxHeaderBytes.
func (c *Conn) readLine(dl time.Duration, limit bool) ([]byte, error) {
	scanned := 0 // bytes after c.r already searched
	for {
		if i := bytes.IndexByte(c.buf[c.r+scanned:c.w], '\n'); i >= 0 {
			end := c.r + scanned + i
			line := c.buf[c.r:end]
			c.r = end + 1
			if limit {
				if c.headBytes += len(line) + 1; c.headBytes > c.opts.MaxHeaderBytes {
					return nil, c.headTooLarge()
				}
			}
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			return line, nil
		}
		scanned = c.w - c.r
		if limit && c.headBytes+scanned > c.opts.MaxHeaderBytes {
			return nil, c.headTooLarge()
		}
		if err := c.fill(dl); err != nil {
			switch {
			case err == errBufferFull && limit && c.growForHead():
				continue
			case err == errBufferFull && limit:
				return nil, c.headTooLarge()
			case err == errBufferFull:
				return nil, errLineTooLong
			case err == io.EOF && (c.r != c.w || c.nread > 0):
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// growForHead makes room for a head line longer than the read buffer: a
// big Set-Cookie, Content-Security-Policy or Link header is valid HTTP, and
// net/http and curl accept one up to their head limit, so the line is
// bounded by MaxHeaderBytes, not by the buffer. The buffer doubles (up to
// MaxHeaderBytes, enough for any line the limit lets through) and stays
// grown until the connection closes: a server that sends such a header
// usually sends it on every response, and regrowing per response would
// cost an allocation each time. Only a connection that met one pays; the
// steady state of every other keeps the normal buffer. False when the
// buffer is already as large as the limit.
func (c *Conn) growForHead() bool {
	if len(c.buf) >= c.opts.MaxHeaderBytes {
		return false
	}
	b := make([]byte, min(2*len(c.buf), c.opts.MaxHeaderBytes))
	c.w = copy(b, c.buf[c.r:c.w])
	c.r = 0
	c.buf = b
	return true
}

// headTooLarge is the error for a response head over MaxHeaderBytes,
// naming the limit: the user must be able to tell a limit of the client
// from a broken server. The default limit's is built once, so a server
// that always sends too much does not make the client allocate per
// response.
func (c *Conn) headTooLarge() error {
	if c.opts.MaxHeaderBytes == defaultMaxHeader {
		return errHeadTooLarge
	}
	return &protoError{fmt.Sprintf("response head over the client's limit of %d bytes (MaxHeaderBytes)", c.opts.MaxHeaderBytes)}
}

// readN consumes exactly n body bytes.
func (c *Conn) readN(n int64, r *Result, dl time.Duration) error {
	for n > 0 {
		if c.r == c.w {
			if err := c.fill(dl); err != nil {
				if err == io.EOF {
					return io.ErrUnexpectedEOF
				}
				return err
			}
		}
		k := int64(c.w - c.r)
		if k > n {
			k = n
		}
		keepBody(r, c.buf[c.r:c.r+int(k)])
		c.r += int(k)
		n -= k
		r.BodyBytes += k
	}
	return nil
}

// readUntilClose consumes the body of a response framed by the end of the
// connection.
func (c *Conn) readUntilClose(r *Result, dl time.Duration) error {
	for {
		if k := c.w - c.r; k > 0 {
			keepBody(r, c.buf[c.r:c.w])
			r.BodyBytes += int64(k)
			c.r = c.w
		}
		if err := c.fill(dl); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// readChunked consumes a chunked body and its trailers.
func (c *Conn) readChunked(r *Result, dl time.Duration) error {
	for {
		line, err := c.readLine(dl, false)
		if err != nil {
			return eofIsUnexpected(err)
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return errChunkSize
		}
		if size == 0 {
			for { // trailer section
				line, err := c.readLine(dl, true)
				if err != nil {
					return eofIsUnexpected(err)
				}
				if len(line) == 0 {
					return nil
				}
			}
		}
		if err := c.readN(size, r, dl); err != nil {
			return err
		}
		line, err = c.readLine(dl, false)
		if err != nil {
			return eofIsUnexpected(err)
		}
		if len(line) != 0 {
			return errChunkEnd
		}
	}
}

func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// keepBody copies the start of the body into the caller's buffer.
func keepBody(r *Result, b []byte) {
	if room := cap(r.Body) - len(r.Body); room > 0 {
		r.Body = append(r.Body, b[:min(len(b), room)]...)
	}
}

// parseChunkSize parses "hex[ BWS][;ext]".
func parseChunkSize(line []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		d, ok := unhex(line[i])
		if !ok {
			break
		}
		if i >= 15 {
			return 0, false // would overflow; no one sends a 1 EiB chunk
		}
		n = n<<4 | int64(d)
	}
	if i == 0 {
		return 0, false
	}
	rest := httpsyntax.TrimOWS(line[i:])
	return n, len(rest) == 0 || rest[0] == ';'
}

// parseContentLength accepts "N" and a list of identical values "N, N"
// (what a proxy that merged duplicate headers sends).
func parseContentLength(v []byte) (int64, bool) {
	val := int64(-1)
	for {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		n, ok := parseDec(httpsyntax.TrimOWS(tok))
		if !ok || (val >= 0 && n != val) {
			return 0, false
		}
		val = n
		if v == nil {
			return val, true
		}
	}
}

func parseDec(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, d := range b {
		if !httpsyntax.IsDigit(d) {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}

// tokens yields the non-empty, trimmed elements of a comma-separated list.
func tokens(v []byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(v) > 0 {
			var tok []byte
			if i := bytes.IndexByte(v, ','); i >= 0 {
				tok, v = v[:i], v[i+1:]
			} else {
				tok, v = v, nil
			}
			if tok = httpsyntax.TrimOWS(tok); len(tok) > 0 && !yield(tok) {
				return
			}
		}
	}
}

func unhex(b byte) (byte, bool) {
	switch {
	case '0' <= b && b <= '9':
		return b - '0', true
	case 'a' <= b && b <= 'f':
		return b - 'a' + 10, true
	case 'A' <= b && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}

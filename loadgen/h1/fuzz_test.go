package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/httpsyntax"
)

// FuzzReadResponse feeds arbitrary bytes to the response parser, delivered
// in reads of at most split bytes (0: all at once) through a minimal read
// buffer, so buffer compaction and every boundary get exercised. The parser
// must never panic, never report more than it was given, fail only with a
// malformed or reset error, and agree with net/http on every response both
// accept. Seeds are in testdata/fuzz/FuzzReadResponse.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 503 Service Unavailable\r\nX-Cascade-Cause: breaker_open\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
	} {
		f.Add([]byte(s), uint8(0), false)
		f.Add([]byte(s), uint8(1), false)
		f.Add([]byte(s), uint8(7), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint8, head bool) {
		c := newConn("127.0.0.1:1", Options{ReadBufferSize: minReadBuffer, MaxHeaderBytes: 2048}.withDefaults())
		m := &memConn{data: data}
		if split > 0 {
			m.chunks = make([]int, len(data)+1)
			for i := range m.chunks {
				m.chunks[i] = int(split)
			}
		}
		c.nc, c.buf = m, make([]byte, c.opts.ReadBufferSize)
		c.resetResponse()
		p := &Prepared{head: head}
		r := &Result{Body: make([]byte, 0, 64)}
		keep, err := c.readResponse(p, r, noDeadline)
		r.BytesRead = c.nread
		if c.r > c.w || c.w > len(c.buf) || len(r.Body) > cap(r.Body) {
			t.Fatalf("buffer state r=%d w=%d len=%d body %d/%d", c.r, c.w, len(c.buf), len(r.Body), cap(r.Body))
		}
		if r.BytesRead > int64(len(data)) || r.BodyBytes > int64(len(data)) {
			t.Fatalf("read %d bytes, body %d, from %d", r.BytesRead, r.BodyBytes, len(data))
		}
		if err != nil {
			if _, cs := classify(err); cs != cause.Reset && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error class %v: %v", cs, err)
			}
			return
		}
		if r.Status < 200 || r.Status > 999 {
			t.Fatalf("status %d", r.Status)
		}
		// Differential check against net/http on what both accept.
		req := &http.Request{Method: "GET"}
		if head {
			req.Method = "HEAD"
		}
		br := bufio.NewReader(bytes.NewReader(data))
		resp, herr := http.ReadResponse(br, req)
		for herr == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != 101 {
			resp, herr = http.ReadResponse(br, req) // net/http's client skips 1xx the same way
		}
		if herr != nil {
			return // net/http is stricter in places (and laxer in others)
		}
		body, berr := io.ReadAll(resp.Body)
		if berr != nil {
			return
		}
		if resp.StatusCode != r.Status {
			t.Fatalf("status %d, net/http %d", r.Status, resp.StatusCode)
		}
		if int64(len(body)) != r.BodyBytes || !bytes.HasPrefix(body, r.Body) {
			t.Fatalf("body %d bytes %q, net/http %d bytes %q", r.BodyBytes, r.Body, len(body), body)
		}
		if keep && resp.Close {
			t.Fatalf("we would reuse a connection net/http would close")
		}
	})
}

// FuzzRepeatedHead reads the same bytes twice on one Conn: the second time
// the head may come from the memo of the first (sameHead). Both reads must
// say the same, whatever the bytes and however they are split.
func FuzzRepeatedHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 503 Service Unavailable\r\nX-Cascade-Cause: breaker_open\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(0), false)
		f.Add([]byte(s), uint8(3), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint8, head bool) {
		c := newConn("127.0.0.1:1", Options{ReadBufferSize: minReadBuffer, MaxHeaderBytes: 2048}.withDefaults())
		c.buf = make([]byte, c.opts.ReadBufferSize)
		read := func() string {
			m := &memConn{data: data}
			if split > 0 {
				m.chunks = make([]int, len(data)+1)
				for i := range m.chunks {
					m.chunks[i] = int(split)
				}
			}
			c.nc, c.r, c.w = m, 0, 0
			c.resetResponse()
			r := &Result{Body: make([]byte, 0, 64)}
			keep, err := c.readResponse(&Prepared{head: head}, r, noDeadline)
			return fmt.Sprintf("keep=%v err=%v status=%d cause=%q body=%q (%d) read=%d left=%d",
				keep, err, r.Status, r.CauseHeader(), r.Body, r.BodyBytes, c.nread, c.w-c.r)
		}
		first, second := read(), read()
		if first != second {
			t.Fatalf("the same bytes read twice:\n first  %s\n second %s (memo %q)", first, second, c.memo)
		}
	})
}

// FuzzPrepare checks that whatever Prepare accepts serializes to a request
// net/http reads back identically, and that nothing makes it panic.
func FuzzPrepare(f *testing.F) {
	f.Add("GET", "http://127.0.0.1:8080/a?b=c", "", "X-A", "v", []byte(nil))
	f.Add("POST", "http://localhost/", "api.test", "Accept", "*/*", []byte("body"))
	f.Add("PUT", "http://[::1]:1/%41", "", "X", "a b\tc", []byte{0, 1})
	f.Fuzz(func(t *testing.T, method, url, host, hname, hval string, body []byte) {
		req := Request{Method: method, URL: url, Host: host, Body: body}
		if hname != "" {
			req.Header = [][2]string{{hname, hval}}
		}
		p, err := Prepare(req)
		if err != nil {
			return
		}
		got, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(p.wire)))
		if err != nil {
			t.Fatalf("net/http cannot read %q: %v", p.wire, err)
		}
		b, _ := io.ReadAll(got.Body)
		if got.Method != p.method || !bytes.Equal(b, body) {
			t.Fatalf("method %q body %q from %q", got.Method, b, p.wire)
		}
		if hname != "" && got.Header.Get(hname) != trimSpace(hval) {
			t.Fatalf("header %q=%q, net/http read %q", hname, hval, got.Header.Get(hname))
		}
	})
}

func trimSpace(s string) string { return string(httpsyntax.TrimOWS([]byte(s))) }

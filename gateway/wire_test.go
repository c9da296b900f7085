package gateway

import (
	"bytes"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/httpsyntax"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		handoff bool
		method  string
		uri     string
		host    string
		clen    int64
		close   bool
		fwd     string // forwarded header lines
		reqID   string
		xff     string
	}{
		{name: "simple GET", in: "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
			method: "GET", uri: "/a?b=1", host: "x", clen: -1, fwd: "Accept: */*\r\n"},
		{name: "hop-by-hop dropped", in: "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nProxy-Connection: x\r\nTE: trailers\r\nX-Cascade-Attempt: 9\r\nX-Cascade-Deadline-Ms: 1\r\nA: 1\r\n\r\n",
			method: "GET", uri: "/", host: "x", clen: -1, fwd: "A: 1\r\n"},
		{name: "close", in: "GET / HTTP/1.1\r\nhost: x\r\nconnection: Close\r\n\r\n", method: "GET", uri: "/", host: "x", clen: -1, close: true},
		{name: "body length", in: "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n", method: "POST", uri: "/p", host: "x", clen: 12},
		{name: "request id and xff kept aside", in: "GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc\r\nX-Forwarded-For: 127.0.0.9\r\n\r\n",
			method: "GET", uri: "/", host: "x", clen: -1, reqID: "abc", xff: "127.0.0.9"},
		{name: "odd method kept", in: "PROPFIND / HTTP/1.1\r\nHost: x\r\n\r\n", method: "PROPFIND", uri: "/", host: "x", clen: -1},
		{name: "HTTP/1.0", in: "GET / HTTP/1.0\r\nHost: x\r\n\r\n", handoff: true},
		{name: "chunked body", in: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", handoff: true},
		{name: "expect", in: "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", handoff: true},
		{name: "upgrade", in: "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", handoff: true},
		{name: "absolute URI", in: "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", handoff: true},
		{name: "no host", in: "GET / HTTP/1.1\r\nA: b\r\n\r\n", handoff: true},
		{name: "two hosts", in: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", handoff: true},
		{name: "two lengths", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", handoff: true},
		{name: "bad length", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", handoff: true},
		{name: "obs-fold", in: "GET / HTTP/1.1\r\nHost: a\r\nA: b\r\n c\r\n\r\n", handoff: true},
		{name: "space before colon", in: "GET / HTTP/1.1\r\nHost : a\r\n\r\n", handoff: true},
		{name: "bare LF", in: "GET / HTTP/1.1\nHost: a\n\n", handoff: true},
		{name: "control char in value", in: "GET / HTTP/1.1\r\nHost: a\r\nA: b\x01\r\n\r\n", handoff: true},
		{name: "CONNECT", in: "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", handoff: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h reqHead
			fwd, err := parseRequest([]byte(tt.in), &h, nil)
			if tt.handoff {
				if !errors.Is(err, errHandoff) {
					t.Fatalf("err = %v, want a handoff", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.method != tt.method || string(h.uri) != tt.uri || string(h.host) != tt.host || h.clen != tt.clen ||
				h.close != tt.close || string(fwd) != tt.fwd || string(h.reqID) != tt.reqID || string(h.xff) != tt.xff {
				t.Errorf("got %+v fwd %q", h, fwd)
			}
			if h.headEnd != len(tt.in) {
				t.Errorf("headEnd %d, want %d", h.headEnd, len(tt.in))
			}
		})
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		method    string
		bad       bool
		status    int
		clen      int64
		chunked   bool
		until     bool
		noBody    bool
		keep      bool
		fwd       string
		statusTxt string
	}{
		{name: "length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nA: b\r\nX-Request-Id: echoed\r\n\r\n", status: 200, clen: 5, keep: true, fwd: "A: b\r\n", statusTxt: "200 OK"},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", status: 200, clen: -1, chunked: true, keep: true},
		{name: "chunked and length", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", status: 200, clen: -1, chunked: true},
		{name: "until close", in: "HTTP/1.1 200 OK\r\nA: b\r\n\r\n", status: 200, clen: -1, until: true, fwd: "A: b\r\n"},
		{name: "HTTP/1.0 closes", in: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", status: 200, clen: 1},
		{name: "HTTP/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n", status: 200, clen: 1, keep: true},
		{name: "close", in: "HTTP/1.1 503 Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status: 503, clen: 0, statusTxt: "503 Nope"},
		{name: "HEAD has no body", in: "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", method: "HEAD", status: 200, clen: 50, noBody: true, keep: true},
		{name: "204", in: "HTTP/1.1 204 No Content\r\n\r\n", status: 204, clen: -1, noBody: true, keep: true},
		{name: "no reason", in: "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", status: 200, clen: 0, keep: true, statusTxt: "200"},
		{name: "bare LF", in: "HTTP/1.1 200 OK\nContent-Length: 0\nA: b\n\n", status: 200, clen: 0, keep: true, fwd: "A: b\r\n"},
		{name: "connection-named header dropped", in: "HTTP/1.1 200 OK\r\nConnection: x-private\r\nX-Private: 1\r\nContent-Length: 0\r\nA: b\r\n\r\n",
			status: 200, clen: 0, keep: true, fwd: "A: b\r\n"},
		{name: "garbage", in: "HTTP/1.1 two hundred OK\r\n\r\n", bad: true},
		{name: "HTTP/2", in: "HTTP/2.0 200 OK\r\n\r\n", bad: true},
		{name: "two lengths differ", in: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", bad: true},
		{name: "obs-fold", in: "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", bad: true},
		{name: "TE in 1.0", in: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", bad: true},
		{name: "status 99", in: "HTTP/1.1 099 X\r\n\r\n", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = "GET"
			}
			var h respHead
			err := parseResponse([]byte(tt.in), method, &h)
			if tt.bad {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("err = %v, want malformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.status != tt.status || h.clen != tt.clen || h.chunked != tt.chunked || h.untilClose != tt.until ||
				h.noBody != tt.noBody || h.keep != tt.keep || string(h.hdr) != tt.fwd {
				t.Errorf("got %+v hdr %q", h, h.hdr)
			}
			if tt.statusTxt != "" && string(h.statusLine) != tt.statusTxt {
				t.Errorf("status line %q", h.statusLine)
			}
		})
	}
}

func TestChunkScanner(t *testing.T) {
	tests := []struct {
		name string
		in   string
		data string
		bad  bool
	}{
		{"simple", "5\r\nhello\r\n0\r\n\r\n", "hello", false},
		{"two chunks, hex size", "a\r\n0123456789\r\n1\r\nx\r\n0\r\n\r\n", "0123456789x", false},
		{"extension", "5;name=v\r\nhello\r\n0\r\n\r\n", "hello", false},
		{"trailers", "5\r\nhello\r\n0\r\nA: b\r\nC: d\r\n\r\n", "hello", false},
		{"bare LF", "5\nhello\n0\n\n", "hello", false},
		{"not hex", "x\r\n", "", true},
		{"missing CRLF after data", "1\r\nab\r\n", "", true},
		{"size too large", "1234567890abcdef0\r\n", "", true},
	}
	for _, tt := range tests {
		for _, step := range []int{1, 3, 1000} { // byte by byte, small pieces, all at once
			var cs chunkScanner
			var data []byte
			var consumed int
			var err error
			in := []byte(tt.in)
			for pos := 0; pos < len(in) && err == nil && !cs.done(); {
				end := min(pos+step, len(in))
				p := in[pos:end]
				for len(p) > 0 && !cs.done() {
					var n, ds, de int
					n, ds, de, err = cs.scan(p)
					if err != nil {
						break
					}
					data = append(data, p[ds:de]...)
					p = p[n:]
					pos += n
					consumed += n
				}
			}
			if tt.bad {
				if err == nil {
					t.Errorf("%s/%d: no error", tt.name, step)
				}
				continue
			}
			if err != nil || !cs.done() || string(data) != tt.data || consumed != len(tt.in) {
				t.Errorf("%s/%d: data %q consumed %d/%d done %v err %v", tt.name, step, data, consumed, len(tt.in), cs.done(), err)
			}
		}
	}
	// Bytes after the final chunk are not part of the body.
	var cs chunkScanner
	in := []byte("1\r\na\r\n0\r\n\r\nHTTP/1.1 200 OK")
	total := 0
	for !cs.done() {
		n, _, _, err := cs.scan(in[total:])
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if total != len("1\r\na\r\n0\r\n\r\n") {
		t.Errorf("consumed %d", total)
	}
}

func TestHeadEnd(t *testing.T) {
	for in, want := range map[string]int{
		"GET / HTTP/1.1\r\n\r\n":     18,
		"GET / HTTP/1.1\r\nA: b\r\n": -1,
		"a\n\nrest":                  3,
		"":                           -1,
		"a\r\n\r":                    -1,
	} {
		if got := headEnd([]byte(in)); got != want {
			t.Errorf("headEnd(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestAppendJSON(t *testing.T) {
	got := string(appendJSON(nil, []byte("a\"b\\c\n\x01é\xff")))
	want := `"a\"b\\c\u000a\u0001é\ufffd"`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// FuzzParseResponse: whatever an upstream sends, the parser answers or
// refuses; it never panics, and what it forwards never splits a header.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.0 204 x\nA: b\n\n", "HTTP/1.1 200 OK\r\nConnection: a, b\r\nA: 1\r\n\r\n"} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, b []byte, head bool) {
		end := headEnd(b)
		if end < 0 {
			return
		}
		method := "GET"
		if head {
			method = "HEAD"
		}
		var h respHead
		if err := parseResponse(b[:end], method, &h); err != nil {
			return
		}
		for _, line := range bytes.SplitAfter(h.hdr, []byte("\r\n")) {
			if len(line) > 0 && (!bytes.HasSuffix(line, []byte("\r\n")) || bytes.ContainsAny(line[:len(line)-2], "\r\n")) {
				t.Fatalf("forwarded header line %q", line)
			}
		}
	})
}

// FuzzChunkScanner: the scanner consumes or refuses any input, never
// overruns it, and reports data spans inside what it consumed.
func FuzzChunkScanner(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"))
	f.Add([]byte("1;a=b\r\nx\r\n0\r\nT: 1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var cs chunkScanner
		for pos := 0; pos < len(b) && !cs.done(); {
			n, ds, de, err := cs.scan(b[pos:])
			if err != nil {
				return
			}
			if n < 0 || pos+n > len(b) || ds > de || de > n {
				t.Fatalf("scan returned n=%d span [%d,%d) at %d of %d", n, ds, de, pos, len(b))
			}
			if n == 0 {
				return
			}
			pos += n
		}
	})
}

// FuzzParseRequest: whatever a client sends, the fast path parses it or
// hands it to net/http; what it forwards never splits a header line, and
// it never keeps a hop-by-hop or gateway-owned header.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "POST /x?y HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: i\r\nX-Forwarded-For: 1.2.3.4\r\nA:  b \r\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		end := headEnd(b)
		if end < 0 {
			return
		}
		var h reqHead
		fwd, err := parseRequest(b[:end], &h, nil)
		if err != nil {
			return
		}
		if len(h.host) == 0 || len(h.uri) == 0 || h.uri[0] != '/' {
			t.Fatalf("accepted a request without host or origin-form URI: %q", b[:end])
		}
		for _, line := range bytes.SplitAfter(fwd, []byte("\r\n")) {
			if len(line) == 0 {
				continue
			}
			if !bytes.HasSuffix(line, []byte("\r\n")) || bytes.ContainsAny(line[:len(line)-2], "\r\n") {
				t.Fatalf("forwarded header line %q", line)
			}
			name := line[:bytes.IndexByte(line, ':')]
			for _, banned := range []string{"host", "content-length", "transfer-encoding", "connection", "x-cascade-attempt", "x-cascade-deadline-ms", "x-request-id"} {
				if httpsyntax.EqualFold(name, banned) {
					t.Fatalf("forwarded %s: %q", banned, line)
				}
			}
		}
	})
}

func TestParseRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		v      string
		ok     bool
		lo, hi time.Duration
	}{
		{"0", true, 0, 0},
		{"120", true, 120 * time.Second, 120 * time.Second},
		{time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat), true, 0, 0}, // past: no wait
		{time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), true, 58 * time.Minute, time.Hour},
		{"-1", false, 0, 0},
		{"1.5", false, 0, 0},
		{"soon", false, 0, 0},
		{"", false, 0, 0},
	} {
		d, ok := parseRetryAfter([]byte(tc.v))
		if ok != tc.ok || d < tc.lo || d > tc.hi {
			t.Errorf("%q: %v %v, want %v in [%v, %v]", tc.v, d, ok, tc.ok, tc.lo, tc.hi)
		}
	}
}

package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
)

func TestPrepareWire(t *testing.T) {
	p := mustPrepare(t, Request{Method: "PUT", URL: "http://localhost:8080/a/b?x=1&y=%20#frag", Host: "api.test",
		Header: [][2]string{{"Accept", "*/*"}}, Body: []byte("data"), SeqHeader: "X-Seq"})
	if p.Addr() != "127.0.0.1:8080" {
		t.Fatalf("addr %q", p.Addr())
	}
	for _, wire := range [][]byte{p.wire, p.wClose} {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(wire)))
		if err != nil {
			t.Fatalf("net/http cannot read our request: %v\n%s", err, wire)
		}
		body, _ := io.ReadAll(req.Body)
		if req.Method != "PUT" || req.RequestURI != "/a/b?x=1&y=%20" || req.Host != "api.test" ||
			req.Header.Get("Accept") != "*/*" || string(body) != "data" || req.Header.Get("X-Seq") != "00000000000000000000" {
			t.Fatalf("parsed %+v body %q", req, body)
		}
		if req.Close != bytes.Equal(wire, p.wClose) {
			t.Fatalf("close %v", req.Close)
		}
	}
	if string(p.wire[p.seqOff:p.seqOff+seqWidth]) != "00000000000000000000" ||
		string(p.wClose[p.seqOff:p.seqOff+seqWidth]) != "00000000000000000000" {
		t.Fatal("sequence field not at seqOff in both wires")
	}
	// A bodiless POST still says Content-Length: 0.
	p = mustPrepare(t, Request{Method: "POST", URL: "http://127.0.0.1:1/"})
	if !bytes.Contains(p.wire, []byte("Content-Length: 0\r\n")) {
		t.Fatalf("%s", p.wire)
	}
}

func TestPrepareRefuses(t *testing.T) {
	cases := map[string]Request{
		"remote host":       {URL: "http://192.0.2.1/"},
		"remote name":       {URL: "http://example.com/"},
		"https":             {URL: "https://127.0.0.1/"},
		"no host":           {URL: "http:///x"},
		"bad port":          {URL: "http://127.0.0.1:99999/"},
		"method with space": {Method: "GE T", URL: "http://127.0.0.1/"},
		"header injection":  {URL: "http://127.0.0.1/", Header: [][2]string{{"X", "a\r\nEvil: 1"}}},
		"bad header name":   {URL: "http://127.0.0.1/", Header: [][2]string{{"X Y", "a"}}},
		"framing header":    {URL: "http://127.0.0.1/", Header: [][2]string{{"content-length", "5"}}},
		"host header":       {URL: "http://127.0.0.1/", Header: [][2]string{{"Host", "x"}}},
		"host override CR":  {URL: "http://127.0.0.1/", Host: "a\rb"},
		"userinfo":          {URL: "http://u:p@127.0.0.1/"},
		"negative timeout":  {URL: "http://127.0.0.1/", Timeout: -1},
		"bad seq header":    {URL: "http://127.0.0.1/", SeqHeader: "X:Y"},
		"unparsable":        {URL: "http://127.0.0.1:80:80/%zz"},
	}
	for name, req := range cases {
		if _, err := Prepare(req); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Prepare(Request{URL: "http://192.0.2.1/"}); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("remote: %v", err)
	}
	for _, ok := range []string{"http://127.0.0.2:81/", "http://[::1]:8080/", "http://localhost/"} {
		if _, err := Prepare(Request{URL: ok}); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	if _, err := Prepare(Request{URL: "http://192.0.2.1/", AllowRemote: true}); err != nil {
		t.Errorf("AllowRemote: %v", err)
	}
}

// Rebuild reuses the buffers, and copes with a body that lives in them.
func TestRebuild(t *testing.T) {
	p := mustPrepare(t, Request{Method: "POST", URL: "http://127.0.0.1:1/short", Body: []byte("the body")})
	req := p.Request()
	req.URL = "http://127.0.0.1:1/a-much-longer-path-that-moves-the-body"
	if err := p.Rebuild(req); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(p.wire, []byte("\r\n\r\nthe body")) || string(p.Request().Body) != "the body" {
		t.Fatalf("%q", p.wire)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := p.Rebuild(Request{Method: "GET", URL: "http://127.0.0.1:1/x"}); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("Rebuild: %.0f allocs", allocs)
}

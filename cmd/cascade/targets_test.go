package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestReadTargets(t *testing.T) {
	ts, err := readTargets("t.txt", strings.NewReader(`# Vegeta's http format
GET http://127.0.0.1:8080/a?x=1
X-Account-ID: 8675309
Accept:   text/plain

  # a comment between targets
POST https://127.0.0.1:8443/b
Content-Type: application/json
@body.json


DELETE http://127.0.0.1:8080/c
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []vegetaTarget{
		{line: 2, method: "GET", url: "http://127.0.0.1:8080/a?x=1", headers: [][2]string{{"X-Account-ID", "8675309"}, {"Accept", "text/plain"}}},
		{line: 7, method: "POST", url: "https://127.0.0.1:8443/b", headers: [][2]string{{"Content-Type", "application/json"}}, bodyFile: "body.json"},
		{line: 12, method: "DELETE", url: "http://127.0.0.1:8080/c"},
	}
	if fmt.Sprint(ts) != fmt.Sprint(want) {
		t.Fatalf("got  %v\nwant %v", ts, want)
	}
	// One target a line, and a target right after a body, as Vegeta
	// reads them: a method line starts the next target.
	ts, err = readTargets("t.txt", strings.NewReader("GET http://127.0.0.1:8080/a\nGET http://127.0.0.1:8080/b\nX-A: 1\nPOST http://127.0.0.1:8080/c\n@c.json\nDELETE http://127.0.0.1:8080/d\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 4 || ts[1].url != "http://127.0.0.1:8080/b" || len(ts[1].headers) != 1 || ts[2].bodyFile != "c.json" || ts[3].method != "DELETE" {
		t.Fatalf("targets without blank lines: %v", ts)
	}
	// A byte order mark before the first line (a file saved by a
	// Windows editor) is no part of its method, as in the data files.
	ts, err = readTargets("t.txt", strings.NewReader("\ufeffGET http://127.0.0.1:8080/a\r\nX-A: 1\r\n\r\nPOST http://127.0.0.1:8080/b\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].method != "GET" || len(ts[0].headers) != 1 || ts[1].method != "POST" {
		t.Fatalf("a targets file with a byte order mark and CRLF lines: %v", ts)
	}
	// A scheme is case-insensitive (RFC 3986), as curl reads it.
	if ts, err = readTargets("t.txt", strings.NewReader("GET HTTP://127.0.0.1:8080/a\n")); err != nil || len(ts) != 1 {
		t.Fatalf("an upper-case scheme: %v %v", ts, err)
	}
	if base, path, err := splitURL("HTTPS://127.0.0.1:8443/x"); err != nil || base != "https://127.0.0.1:8443" || path != "/x" {
		t.Fatalf("splitURL of an upper-case scheme: %q %q %v", base, path, err)
	}
	for _, tc := range []struct{ in, want string }{
		{"", "t.txt: no target"},
		{"# only a comment\n", "t.txt: no target"},
		{"GET\n", `t.txt:1: "GET": expected METHOD URL`},
		{"GET http://127.0.0.1/ extra\n", "t.txt:1: "},
		{"G(T http://127.0.0.1/\n", `t.txt:1: "G(T" is not an HTTP method`},
		{"GET 127.0.0.1:80/\n", "expected an http:// or https:// URL"},
		{"GET http://127.0.0.1/\nno colon here\n", `t.txt:2: "no colon here": expected a header`},
		{"GET http://127.0.0.1/\n@a\n@b\n", "t.txt:3: a second body for the target of line 1"},
		{"GET http://127.0.0.1/\n@\n", "t.txt:2: @ without a file"},
		{"GET http://127.0.0.1/\n@a\nX: 1\n", `t.txt:3: "X: 1" after the body`},
		{"GET http://127.0.0.1/\n" + strings.Repeat("x", 2<<20) + "\n", "t.txt:2: a line longer than 1 MiB"},
	} {
		if _, err := readTargets("t.txt", strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.40q: error %v, want %q", tc.in, err, tc.want)
		}
	}
}

// FuzzReadTargets: any input gives targets or an error naming the file,
// never a panic; every target read has a method and an http(s) URL.
func FuzzReadTargets(f *testing.F) {
	f.Add("GET http://127.0.0.1:8080/\nX: 1\n@b.json\n\nPOST http://127.0.0.1/x\n")
	f.Add("# c\n\n\nDELETE https://127.0.0.1/\n")
	f.Add("GET http://a/\n:\n")
	f.Add("GET http://127.0.0.1/a\nGET http://127.0.0.1/b\nPOST http://127.0.0.1/c\n@x\nGET http://127.0.0.1/d\n")
	f.Fuzz(func(t *testing.T, in string) {
		ts, err := readTargets("f.txt", strings.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.txt") {
				t.Fatalf("error without the file's name: %v", err)
			}
			return
		}
		for _, x := range ts {
			if !validMethod(x.method) || !(strings.HasPrefix(x.url, "http://") || strings.HasPrefix(x.url, "https://")) || x.line < 1 {
				t.Fatalf("target %+v", x)
			}
		}
	})
}

// cascade load --targets sends every target of a Vegeta targets file, with
// its method, path, headers (its own and -H's) and body file (byte for
// byte, as Vegeta: no template), in about equal shares; an error in a
// target names its file and line.
func TestLoadTargets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen[fmt.Sprintf("%s %s acct=%s run=%s body=%s", r.Method, r.URL.RequestURI(), r.Header.Get("X-Account-ID"), r.Header.Get("X-Run"), b)]++
		mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	dir := t.TempDir()
	body := filepath.Join(dir, "body.json")
	if err := os.WriteFile(body, []byte(`{"n":1,"t":"{{seq}}"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	file := filepath.Join(dir, "targets.txt")
	if err := os.WriteFile(file, []byte(fmt.Sprintf("GET %s/orders/1\nX-Account-ID: 42\n\nPOST %s/orders\n@%s\n", base, base, body)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(context.Background(), "load", "--targets", file, "--rate", "200/s", "--duration", "1s", "-H", "X-Run: r1",
		"--out", filepath.Join(dir, "r"), "--progress", "off")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	get, post := seen["GET /orders/1 acct=42 run=r1 body="], seen[`POST /orders acct= run=r1 body={"n":1,"t":"{{seq}}"}`]
	if get+post != 200 || len(seen) != 2 || get < 60 || post < 60 {
		t.Fatalf("requests seen: %v; want 200 of the two targets, in about equal shares", seen)
	}
	if !strings.Contains(out, "GET /orders/1") || !strings.Contains(out, "POST /orders") {
		t.Errorf("no per-target rows in the report\n%s", out)
	}

	bad := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(bad, []byte(fmt.Sprintf("GET %s/a\n\nPOST %s/b\n@%s\n", base, base, filepath.Join(dir, "missing.json"))), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(context.Background(), "load", "--targets", bad, "--rate", "10/s", "--duration", "1s"); code != ExitUsage || !strings.Contains(errOut, bad+":3") {
		t.Errorf("a missing body file: exit %d, %s; want exit 2 naming %s:3", code, errOut, bad)
	}
	if code, _, errOut := runCLI(context.Background(), "load", "--targets", file, "--body", "x", "--rate", "10/s", "--duration", "1s"); code != ExitUsage || !strings.Contains(errOut, "each target gives its own") {
		t.Errorf("--body with --targets: exit %d, %s", code, errOut)
	}
}

// Past maxTargetTags targets, the report's rows are by method: a tag per
// target kept its histograms in every shard of the collector (2,000
// targets took 1.3 GB before a request was sent).
func TestManyTargetsAreTaggedByMethod(t *testing.T) {
	var few, many []vegetaTarget
	for i := range 3 {
		few = append(few, vegetaTarget{line: i + 1, method: "GET", url: fmt.Sprintf("http://127.0.0.1:8080/x/%d", i%2)})
	}
	for i := range maxTargetTags + 1 {
		m := "GET"
		if i%2 == 1 {
			m = "POST"
		}
		many = append(many, vegetaTarget{line: i + 1, method: m, url: fmt.Sprintf("http://127.0.0.1:8080/x/%d", i)})
	}
	names := func(ts []vegetaTarget) map[string]int {
		_, reqs, err := targetRequests(ts, nil, "t.txt")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, r := range reqs {
			out[r.(map[string]any)["name"].(string)]++
		}
		return out
	}
	if got := names(few); len(got) != 3 || got["GET /x/0"] != 1 || got["GET /x/0 #2"] != 1 || got["GET /x/1"] != 1 {
		t.Errorf("a few targets: names %v, want one each, a repeat numbered", got)
	}
	if got := names(many); len(got) != 2 || got["GET"]+got["POST"] != maxTargetTags+1 {
		t.Errorf("%d targets: names %v, want GET and POST", maxTargetTags+1, got)
	}
}

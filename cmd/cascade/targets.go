package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// A targets file is Vegeta's "http" format, so that a Vegeta user's
// targets run unchanged under `cascade load --targets FILE`:
//
//	GET http://127.0.0.1:8080/orders/1
//	X-Account-ID: 8675309
//
//	POST http://127.0.0.1:8080/orders
//	Content-Type: application/json
//	@body.json
//
// A target is a "METHOD URL" line, then its headers, then an optional
// "@FILE" body; blank lines separate targets, "#" lines are comments.
// The format is Vegeta's, so its reader is ours: no library reads it.

// vegetaTarget is one request of a targets file.
type vegetaTarget struct {
	line     int // of its METHOD URL line
	method   string
	url      string
	headers  [][2]string
	bodyFile string // "" for none; as written (relative to the working directory, as Vegeta reads it)
}

// maxTargets bounds a targets file: each target is a request template.
const maxTargets = 10000

// readTargets reads a targets file; name is for errors (file:line).
func readTargets(name string, r io.Reader) ([]vegetaTarget, error) {
	var out []vegetaTarget
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	errAt := func(n int, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s", name, n, fmt.Sprintf(format, args...))
	}
	var cur *vegetaTarget
	n := 0
	for sc.Scan() {
		n++
		text := sc.Text()
		if n == 1 {
			// A byte order mark, as Windows editors save UTF-8, read as
			// part of the first method: "\ufeffGET" is not an HTTP
			// method. The data files and the scenario skip it too.
			text = strings.TrimPrefix(text, "\ufeff")
		}
		line := strings.TrimSpace(text)
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case line == "":
			cur = nil // the next target starts at the next METHOD URL line
			continue
		case cur == nil || startsTarget(line):
			// A method line starts the next target without a blank line
			// before it, as Vegeta reads it: one "GET URL" per line is
			// the commonest targets file.
			method, url, ok := strings.Cut(line, " ")
			url = strings.TrimSpace(url)
			if !ok || url == "" || strings.ContainsAny(url, " \t") {
				return nil, errAt(n, "%q: expected METHOD URL, as GET http://127.0.0.1:8080/", line)
			}
			if !validMethod(method) {
				return nil, errAt(n, "%q is not an HTTP method (a token, as GET or POST)", method)
			}
			if scheme, _, _ := strings.Cut(url, "://"); !strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") {
				return nil, errAt(n, "%q: expected an http:// or https:// URL", url)
			}
			if len(out) == maxTargets {
				return nil, errAt(n, "more than %d targets", maxTargets)
			}
			out = append(out, vegetaTarget{line: n, method: method, url: url})
			cur = &out[len(out)-1]
		case strings.HasPrefix(line, "@"):
			if cur.bodyFile != "" {
				return nil, errAt(n, "a second body for the target of line %d", cur.line)
			}
			if cur.bodyFile = strings.TrimSpace(line[1:]); cur.bodyFile == "" {
				return nil, errAt(n, "@ without a file: expected @path/to/body")
			}
		default:
			if cur.bodyFile != "" {
				return nil, errAt(n, "%q after the body: headers come before @FILE", line)
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok || strings.TrimSpace(k) == "" || strings.ContainsAny(strings.TrimSpace(k), " \t") {
				return nil, errAt(n, "%q: expected a header 'Name: value', @FILE for the body, or a blank line before the next target", line)
			}
			cur.headers = append(cur.headers, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
		}
	}
	if err := sc.Err(); err != nil {
		if err == bufio.ErrTooLong {
			return nil, fmt.Errorf("%s:%d: a line longer than 1 MiB", name, n+1)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no target (expected lines such as GET http://127.0.0.1:8080/)", name)
	}
	return out, nil
}

// startsTarget reports whether line is a target's first line: an
// upper-case method, a space, a URL. A header line has a colon right
// after its name, so "GET http://..." is never one.
func startsTarget(line string) bool {
	m, rest, ok := strings.Cut(line, " ")
	if !ok || m == "" || strings.ToUpper(m) != m || !validMethod(m) {
		return false
	}
	rest = strings.TrimSpace(rest)
	return strings.HasPrefix(rest, "http://") || strings.HasPrefix(rest, "https://")
}

// validMethod reports whether m is a method token (RFC 9110 9.1).
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`"(),/:;<=>?@[\]{}`), c) >= 0 {
			return false
		}
	}
	return true
}

// loadTargets reads the --targets file (at most 16 MiB).
func loadTargets(path string) ([]vegetaTarget, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--targets: %w", err)
	}
	defer f.Close()
	ts, err := readTargets(path, io.LimitReader(f, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("--targets: %w", err)
	}
	return ts, nil
}

// maxTargetTags is how many targets get a row each in the report (a
// request name, a tag): each tag keeps its histograms in every shard of
// the collector (about 350 KiB a shard), so 2,000 targets took 1.3 GB
// before a request was sent. Beyond it, targets are tagged by method.
const maxTargetTags = 50

// targetRequests turns targets into the scenario's requests, all against
// one base (scheme://host:port): cascade load sends to one target, and
// the scenario's gateway is that base. Headers from -H go first in every
// request, each target's own after them.
func targetRequests(ts []vegetaTarget, global http.Header, name string) (base string, reqs []any, err error) {
	byMethod := len(ts) > maxTargetTags
	seen := map[string]int{}
	for _, t := range ts {
		b, path, err := splitURL(t.url)
		if err != nil {
			return "", nil, fmt.Errorf("%s:%d: %w", name, t.line, err)
		}
		switch {
		case base == "":
			base = b
		case b != base:
			return "", nil, fmt.Errorf("%s:%d: %s is not %s, the first target's: cascade load sends to one host (write a scenario for several)", name, t.line, b, base)
		}
		h := global.Clone()
		if h == nil {
			h = http.Header{}
		}
		for _, kv := range t.headers {
			h.Add(kv[0], kv[1])
		}
		rname := t.method + " " + path
		switch {
		case byMethod:
			rname = t.method // targets of one method share its row
		case seen[rname] > 0:
			// Names tag the per-request stats: two targets of the same
			// method and path (different bodies) stay apart.
			rname = fmt.Sprintf("%s #%d", rname, seen[rname]+1)
		}
		seen[t.method+" "+path]++
		req := map[string]any{"name": rname, "method": t.method, "path": path}
		if len(h) > 0 {
			req["headers"] = joinHeaders(h)
		}
		if t.bodyFile != "" {
			abs, err := filepath.Abs(t.bodyFile)
			if err != nil {
				return "", nil, fmt.Errorf("%s:%d: %w", name, t.line, err)
			}
			req["body_file"] = abs
			// Byte for byte, as Vegeta sends it: a body file made for
			// Vegeta (a protobuf, JSON holding "{{") is no template.
			req["raw_body"] = true
		}
		reqs = append(reqs, req)
	}
	return base, reqs, nil
}

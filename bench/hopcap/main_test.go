//go:build linux

package main

import (
	"strings"
	"testing"
	"time"
)

// The matcher pairs the four stamps of a request across the proxy's two
// connections, counts a segment once though loopback shows it twice, and
// leaves out a request the capture cut short.
func TestMatcherSplitsHops(t *testing.T) {
	t0 := time.Unix(0, 0)
	at := func(us int) time.Time { return t0.Add(time.Duration(us) * time.Microsecond) }
	m := newMatcher(8080, 9090)
	for _, p := range []struct {
		sport, dport uint16
		seq          uint32
		data         string
		us           int
	}{
		{40000, 8080, 1, "GET /?h1-1 HTTP/1.1\r\n\r\n", 0},
		{40000, 8080, 1, "GET /?h1-1 HTTP/1.1\r\n\r\n", 5}, // the same segment arriving
		{50000, 9090, 7, "GET /?h1-1 HTTP/1.1\r\n\r\n", 40},
		{9090, 50000, 3, "HTTP/1.1 200 OK\r\n\r\n", 100},
		{8080, 40000, 9, "HTTP/1.1 200 OK\r\n\r\n", 130},
		{40001, 8080, 1, "GET /?h1-2 HTTP/1.1\r\n\r\n", 200}, // never answered
		{50000, 9090, 8, "GET /?h1-2 HTTP/1.1\r\n\r\n", 230},
	} {
		m.packet(p.sport, p.dport, p.seq, []byte(p.data), at(p.us))
	}
	got := strings.Join(m.hops(), "\n")
	want := strings.Join([]string{
		"in-hop\t1\t40\t40\t40\t40",
		"upstream\t1\t60\t60\t60\t60",
		"out-hop\t1\t30\t30\t30\t30",
		"total\t1\t130\t130\t130\t130",
	}, "\n")
	if got != want {
		t.Fatalf("hops:\n%s\nwant:\n%s", got, want)
	}
}

//go:build linux

package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// Every response counted was served, and every request served but the
// ones in flight when the run ended was counted; the run ends on time.
func TestCountsWhatTheServerServed(t *testing.T) {
	var served atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		fmt.Fprint(w, "hello")
	}))
	defer up.Close()
	const conns = 6
	t0 := time.Now()
	res, err := run(up.URL+"/x?y=1", conns, 2, 300*time.Millisecond)
	took := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("a 300ms run took %v", took)
	}
	if res.requests < 10 || res.errors != 0 {
		t.Fatalf("%v", res)
	}
	if s := served.Load(); s < res.requests || s > res.requests+conns {
		t.Errorf("server served %d, floor counted %d (at most %d in flight)", s, res.requests, conns)
	}
	if got := res.latency.TotalCount(); got != res.requests {
		t.Errorf("histogram holds %d values for %d requests", got, res.requests)
	}
}

// A response with another framing fails its connection; the run goes on
// and says so.
func TestChunkedFailsTheConnection(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello"))
		w.(http.Flusher).Flush() // no Content-Length: chunked
	}))
	defer up.Close()
	res, err := run(up.URL, 3, 1, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.requests != 0 || res.errors != 3 {
		t.Fatalf("%v; want 0 requests and 3 connection errors", res)
	}
}

func TestRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		url   string
		conns int
		dur   time.Duration
	}{
		{"http://192.0.2.1:80/", 1, time.Second},
		{"https://127.0.0.1:1/", 1, time.Second},
		{"http://127.0.0.1:1/", 0, time.Second},
		{"http://127.0.0.1:1/", 1, 0},
		{"http://127.0.0.1:1/", 1, 2 * time.Hour},
	} {
		if _, err := run(tc.url, tc.conns, 1, tc.dur); err == nil {
			t.Errorf("%s -c %d -d %v was accepted", tc.url, tc.conns, tc.dur)
		}
	}
}

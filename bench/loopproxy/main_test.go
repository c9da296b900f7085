//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Keep-alive requests through the proxy reach the upstream and come back
// whole, over both loops.
func TestRelay(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	defer up.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // loopproxy binds it again with SO_REUSEPORT
	p, err := start(addr, strings.TrimPrefix(up.URL, "http://"), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for c := range 4 {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(conn)
		for i := range 3 {
			path := fmt.Sprintf("/c%d-r%d", c, i)
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if string(body) != "hello "+path {
				t.Fatalf("%s: %q", path, body)
			}
		}
		conn.Close()
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	if _, err := start("192.0.2.1:80", "127.0.0.1:1", 1); err == nil {
		t.Fatal("a non-loopback listen address was accepted")
	}
}

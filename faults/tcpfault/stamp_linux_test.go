package tcpfault

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Bytes that waited in the socket are stamped with when they arrived, not
// when they were read.
func TestStampReaderUsesKernelArrival(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stampListener(ln)                 // as the proxy does: the kernel turns stamping on
	time.Sleep(20 * time.Millisecond) // asynchronously, and accepted sockets inherit it
	c := dial(t, ln.Addr().String())
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sr := newStampReader(s.(*net.TCPConn))
	if sr == nil {
		t.Fatal("SO_TIMESTAMPNS not available")
	}
	sent := time.Now()
	c.Write([]byte("hello"))
	time.Sleep(30 * time.Millisecond)
	var pool sync.Pool
	pool.New = func() any { b := make([]byte, 16); return &b }
	bp, n, at, err := sr.read(&pool)
	read := time.Now()
	if err != nil || string((*bp)[:n]) != "hello" {
		t.Fatalf("read %d bytes, %v", n, err)
	}
	if at.Before(sent.Add(-time.Millisecond)) || read.Sub(at) < 25*time.Millisecond {
		t.Errorf("arrival %v after send, %v before the read; want ~0 and ~30ms", at.Sub(sent), read.Sub(at))
	}
	c.Close()
	if _, n, _, err := sr.read(&pool); n != 0 || err == nil {
		t.Errorf("after close: %d, %v; want EOF", n, err)
	}
}

package tcptest

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// Connections are handled, and the cleanup ends a handler that is still
// blocked on a connection its client never closed.
func TestServeHandlesAndCleansUp(t *testing.T) {
	done := make(chan struct{})
	t.Run("server", func(t *testing.T) {
		addr := Serve(t, func(c net.Conn) {
			defer close(done)
			io.Copy(c, c) // returns only when the connection is closed
		})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo: %q, %v", buf, err)
		}
		// c is left open: the subtest's cleanup must close the server side.
	})
	select {
	case <-done:
	default:
		t.Fatal("the handler was still running after cleanup")
	}
}

func TestRefusedRefusesAndKeepsItsPort(t *testing.T) {
	addr := Refused(t)
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			t.Fatalf("dial %s: connected, want refused", addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s: %v, want connection refused", addr, err)
		}
	}
	// The port stays taken: a listener cannot have it.
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatalf("listen on %s succeeded; the port was not held", addr)
	}
}

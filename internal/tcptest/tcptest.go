// Package tcptest gives tests a TCP server on loopback whose connections
// they handle by hand: raw HTTP, echo, silence, resets.
package tcptest

import (
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
)

// Serve listens on 127.0.0.1, serves every accepted connection with handle
// on a goroutine of its own and closes it when handle returns. It returns
// the listener's host:port. At cleanup it closes the listener and every
// connection still open, then waits for the handlers, so no test leaves a
// goroutine or a socket behind.
func Serve(t testing.TB, handle func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// Refused returns a loopback host:port where a connection is refused for the
// whole test. Closing a listener is not enough: the kernel hands its port to
// the next listener on port 0, maybe another test's, and the "refused" case
// then talks to that server. A socket bound but not listening keeps the port
// taken, and a SYN to it is answered with a reset.
func Refused(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

// HoldLowPort listens on a free loopback port below the ephemeral range
// until the test ends or the caller closes it. Below 32768: the load
// generator's client sockets take ephemeral ports and could collide with a
// fixed listen port there (a plan refuses one). Holding the port is how a
// test occupies an address a run needs, and how it gets two distinct free
// ports (FreeLowPort alone would return the same one twice).
func HoldLowPort(t testing.TB) net.Listener {
	t.Helper()
	for p := 20000 + os.Getpid()%5000; p < 32000; p += 7 {
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			t.Cleanup(func() { ln.Close() })
			return ln
		}
	}
	t.Fatal("tcptest: no free loopback port below 32000")
	return nil
}

// FreeLowPort is a loopback port below the ephemeral range that is free
// now (see HoldLowPort).
func FreeLowPort(t testing.TB) int {
	t.Helper()
	ln := HoldLowPort(t)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

package tcpfault

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
)

// listenBacklog creates the socket by hand to choose the accept-queue
// length: with a small one, a proxy that stops accepting makes clients time
// out on connect after a handful of connections instead of thousands.
func listenBacklog(addr string, backlog int) (net.Listener, error) {
	host, portS, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return nil, fmt.Errorf("listen %s: bad port", addr)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("listen %s: not an IP address", addr)
	}
	var (
		family int
		sa     syscall.Sockaddr
	)
	if ip4 := ip.To4(); ip4 != nil {
		family = syscall.AF_INET
		s := &syscall.SockaddrInet4{Port: port}
		copy(s.Addr[:], ip4)
		sa = s
	} else {
		family = syscall.AF_INET6
		s := &syscall.SockaddrInet6{Port: port}
		copy(s.Addr[:], ip.To16())
		sa = s
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	fail := func(op string, err error) (net.Listener, error) {
		syscall.Close(fd)
		return nil, fmt.Errorf("listen %s: %w", addr, os.NewSyscallError(op, err))
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		return fail("setsockopt", err)
	}
	if err := syscall.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	if err := syscall.Listen(fd, backlog); err != nil {
		return fail("listen", err)
	}
	f := os.NewFile(uintptr(fd), "tcpfault-listener")
	defer f.Close() // FileListener dups the descriptor
	return net.FileListener(f)
}

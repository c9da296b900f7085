package slowdb

import (
	"fmt"
	"syscall"
)

// refusingPort is a loopback TCP port that refuses connections for real:
// a socket bound to it but never listening. Holding the bound socket keeps
// anyone else from listening there, and keeps the kernel from handing the
// port out to outgoing connections, for as long as the upstream lives.
type refusingPort struct {
	fd   int
	port int
}

func newRefusingPort() (*refusingPort, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("bind 127.0.0.1:0: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("getsockname: unexpected address %T", sa)
	}
	return &refusingPort{fd: fd, port: in4.Port}, nil
}

func (p *refusingPort) close() error { return syscall.Close(p.fd) }

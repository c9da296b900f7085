//go:build !linux

package slowdb

import "net"

// refusingPort is a loopback TCP port nothing listens on. Elsewhere than
// Linux it is found by listening on port 0 and closing, so another program
// could in principle take it before the fault is used.
type refusingPort struct{ port int }

func newRefusingPort() (*refusingPort, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return nil, err
	}
	return &refusingPort{port: port}, nil
}

func (p *refusingPort) close() error { return nil }

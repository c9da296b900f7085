//go:build !linux

package tcpfault

import (
	"errors"
	"net"
)

func listenBacklog(addr string, backlog int) (net.Listener, error) {
	return nil, errors.New("tcpfault: Config.Backlog is supported on Linux only")
}

package tcpfault

import (
	"context"
	"net"
)

// listen binds a TCP listener; a non-zero backlog needs the platform's own
// socket calls (listenBacklog), because net.Listen always asks for
// somaxconn.
func listen(ctx context.Context, addr string, backlog int) (net.Listener, error) {
	if backlog > 0 {
		return listenBacklog(addr, backlog)
	}
	var lc net.ListenConfig
	return lc.Listen(ctx, "tcp", addr)
}

package tcpfault

import (
	"context"
	"net"
)

// listen binds a TCP listener; a non-zero backlog needs the platform's own
// socket calls (listenBacklog), because net.Listen always asks for
// somaxconn.
func listen(ctx context.Context, addr string, backlog int) (ln net.Listener, err error) {
	if backlog > 0 {
		ln, err = listenBacklog(addr, backlog)
	} else {
		var lc net.ListenConfig
		ln, err = lc.Listen(ctx, "tcp", addr)
	}
	if err == nil {
		stampListener(ln)
	}
	return ln, err
}

package containers

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

// Bounds of the ports [FreePort] picks from: above the well-known and common
// service ports, below the ephemeral range (32768-60999) the load
// generator's client sockets use.
const (
	freePortMin = 20000
	freePortMax = MaxPort
)

// ErrNoFreePort reports that no free port was found.
var ErrNoFreePort = errors.New("no free port below 32768")

// FreePort returns a TCP port in 20000..32767 that is free on 127.0.0.1 at
// the time of the call, for a container process to bind (with host
// networking the container cannot be handed port 0). The choice is random,
// from r, so concurrent runs rarely try the same port; a port taken between
// this check and the container's bind shows up as a start failure.
func FreePort(r *rand.Rand) (int, error) {
	if r == nil {
		return 0, fmt.Errorf("%w: FreePort needs a *rand.Rand", ErrInvalidSpec)
	}
	var last error
	for range 200 {
		p := freePortMin + r.IntN(freePortMax-freePortMin+1)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			last = err
			continue
		}
		if err := ln.Close(); err != nil {
			return 0, fmt.Errorf("free port %d: %w", p, err)
		}
		return p, nil
	}
	return 0, fmt.Errorf("%w: 200 tries, last: %v", ErrNoFreePort, last)
}

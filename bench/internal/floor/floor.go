// Package floor holds what the measurement floors under bench/ (loopproxy,
// loadfloor) share: the one HTTP/1.1 framing they handle and their refusal
// of anything but loopback. They are not products; they do the least that
// their kind of program can do, so that a benchmark can tell a cost of
// cascade's from a limit of the machine.
package floor

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
)

// ErrFraming: a response framed other than by Content-Length.
var ErrFraming = errors.New("unsupported framing (a floor reads Content-Length only)")

var (
	headEnd       = []byte("\r\n\r\n")
	contentLength = []byte("\r\nContent-Length: ")
)

// MessageEnd returns the length of the first complete message in b, or 0
// when it is not complete yet. A request is its head (no body); a response
// is its head and a body of exactly Content-Length bytes, spelled as Go's
// net/http and most servers spell it.
func MessageEnd(b []byte, response bool) (int, error) {
	he := bytes.Index(b, headEnd)
	if he < 0 {
		return 0, nil
	}
	end := he + len(headEnd)
	if !response {
		return end, nil
	}
	i := bytes.Index(b[:he], contentLength)
	if i < 0 {
		return 0, ErrFraming
	}
	cl := 0
	for j := i + len(contentLength); j < he && b[j] >= '0' && b[j] <= '9'; j++ {
		cl = cl*10 + int(b[j]-'0')
	}
	if len(b) < end+cl {
		return 0, nil
	}
	return end + cl, nil
}

// Loopback parses host:port and refuses anything outside 127.0.0.0/8.
func Loopback(hostport string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil || !ap.Addr().Is4() || !ap.Addr().IsLoopback() {
		return netip.AddrPort{}, fmt.Errorf("%q: want a 127.0.0.0/8 address:port", hostport)
	}
	return ap, nil
}

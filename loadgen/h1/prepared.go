package h1

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/cascadehq/cascade/internal/httpsyntax"
)

// Request describes one kind of request a load generator sends. It is
// serialized once by Prepare; nothing in it is looked at per request.
type Request struct {
	// Method is the HTTP method; "" means GET.
	Method string
	// URL is an absolute http:// URL. Its host must be a loopback address
	// (127.0.0.0/8, ::1 or "localhost") unless AllowRemote is set.
	URL string
	// Host overrides the Host header (virtual hosting at a gateway); ""
	// uses the URL's host.
	Host string
	// Header holds extra request headers, in order. Framing headers
	// (Content-Length, Transfer-Encoding, Connection, Host) are refused:
	// the client owns the framing.
	Header [][2]string
	// Body is sent with a Content-Length. It is copied.
	Body []byte
	// SeqHeader, when set, names a header that carries Result.Seq of each
	// request as 20 zero-padded decimal digits. The digits are patched into
	// a copy of the serialized request, so it costs a small copy per
	// request, not a rebuild.
	SeqHeader string
	// Timeout is the client timeout of this request, counted from the call
	// to Do: the top of the timeout cascade. 0 uses the Conn's or Pool's
	// Options.Timeout. A context deadline that comes first wins.
	Timeout time.Duration
	// AllowRemote permits a non-loopback host. Off by default because a
	// load generator pointed at the wrong address is an attack.
	AllowRemote bool
}

// seqWidth is the fixed width of the sequence field: enough digits for any
// uint64, so patching never moves a byte.
const seqWidth = 20

// Prepared is a request serialized to wire bytes once, ready to be sent any
// number of times by any number of goroutines. It is immutable after
// Prepare (or Rebuild) returns.
type Prepared struct {
	req     Request
	addr    string // host:port to dial
	method  string
	head    bool   // HEAD: the response has no body whatever its headers say
	wire    []byte // the request with keep-alive
	wClose  []byte // the same request with "Connection: close"
	headLen int    // length of the header block in wire (wClose's is longer)
	seqOff  int    // offset of the sequence digits in both wires, or -1
	timeout time.Duration
}

// Errors returned by Prepare.
var (
	// ErrNotLoopback is returned for a non-loopback target without AllowRemote.
	ErrNotLoopback = errors.New("h1: target is not a loopback address (set AllowRemote to permit it)")
	// ErrBadRequest wraps every other reason a Request cannot be prepared.
	ErrBadRequest = errors.New("h1: bad request")
)

// Prepare validates req and serializes it.
func Prepare(req Request) (*Prepared, error) {
	p := &Prepared{}
	if err := p.Rebuild(req); err != nil {
		return nil, err
	}
	return p, nil
}

// Rebuild re-serializes p from req, reusing p's buffers. It is the path for
// requests that differ in more than a sequence number: slower than a patch
// (it parses the URL) but correct. p must not be in use by another
// goroutine while it is rebuilt.
func (p *Prepared) Rebuild(req Request) error {
	u, err := url.Parse(req.URL)
	if err != nil {
		return fmt.Errorf("%w: url: %w", ErrBadRequest, err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("%w: url %q: scheme must be http (HTTPS and h2 are not this client's job)", ErrBadRequest, req.URL)
	}
	if u.User != nil {
		return fmt.Errorf("%w: url %q: userinfo is not supported; set an Authorization header", ErrBadRequest, req.URL)
	}
	addr, err := dialAddr(u.Host, req.AllowRemote)
	if err != nil {
		return err
	}
	method := req.Method
	if method == "" {
		method = "GET"
	}
	if !isToken(method) {
		return fmt.Errorf("%w: method %q is not a token", ErrBadRequest, method)
	}
	target := u.RequestURI()
	if u.Opaque != "" || !strings.HasPrefix(target, "/") && !(method == "OPTIONS" && target == "*") {
		return fmt.Errorf("%w: url %q: no absolute path", ErrBadRequest, req.URL)
	}
	if !validTarget(target) {
		return fmt.Errorf("%w: url %q: request target has control characters or spaces", ErrBadRequest, req.URL)
	}
	host := req.Host
	if host == "" {
		host = u.Host
	}
	if !validHost(host) || host == "" {
		return fmt.Errorf("%w: host %q", ErrBadRequest, host)
	}
	for _, h := range req.Header {
		if !isToken(h[0]) {
			return fmt.Errorf("%w: header name %q is not a token", ErrBadRequest, h[0])
		}
		if !validValue(h[1]) {
			return fmt.Errorf("%w: header %s: value has control characters", ErrBadRequest, h[0])
		}
		switch strings.ToLower(h[0]) {
		case "content-length", "transfer-encoding", "connection", "host", "te", "upgrade", "trailer":
			return fmt.Errorf("%w: header %s is set by the client itself", ErrBadRequest, h[0])
		}
	}
	if req.SeqHeader != "" && !isToken(req.SeqHeader) {
		return fmt.Errorf("%w: SeqHeader %q is not a token", ErrBadRequest, req.SeqHeader)
	}
	if req.Timeout < 0 {
		return fmt.Errorf("%w: negative timeout %v", ErrBadRequest, req.Timeout)
	}

	// Reuse p's buffers unless the new body lives inside them (a caller
	// passing p.Request().Body back), which the appends would overwrite.
	b, c := p.wire[:0], p.wClose[:0]
	if overlaps(req.Body, p.wire) || overlaps(req.Body, p.wClose) {
		b, c = nil, nil
	}
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	for _, h := range req.Header {
		b = append(b, h[0]...)
		b = append(b, ": "...)
		b = append(b, h[1]...)
		b = append(b, "\r\n"...)
	}
	if len(req.Body) > 0 || bodyExpected(method) {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(req.Body)), 10)
		b = append(b, "\r\n"...)
	}
	p.seqOff = -1
	if req.SeqHeader != "" {
		b = append(b, req.SeqHeader...)
		b = append(b, ": "...)
		p.seqOff = len(b)
		b = append(b, "00000000000000000000\r\n"...)
	}
	common := len(b)
	b = append(b, "\r\n"...)
	p.headLen = len(b)
	b = append(b, req.Body...)

	c = append(c, b[:common]...)
	c = append(c, "Connection: close\r\n\r\n"...)
	c = append(c, req.Body...)

	req.Body = b[p.headLen:] // keep our copy, not the caller's slice
	req.Header = append(p.req.Header[:0:0], req.Header...)
	req.Method = method
	*p = Prepared{req: req, addr: addr, method: method, head: method == "HEAD",
		wire: b, wClose: c, headLen: p.headLen, seqOff: p.seqOff, timeout: req.Timeout}
	return nil
}

// Request returns what p was prepared from, with Method filled in, so that
// another transport (HTTP/2 through net/http) can build its own form of the
// same request once.
func (p *Prepared) Request() Request { return p.req }

// Addr is the host:port the request is sent to.
func (p *Prepared) Addr() string { return p.addr }

// Wire returns the serialized request as sent with keep-alive (with the
// sequence digits zeroed). The slice must not be modified.
func (p *Prepared) Wire() []byte { return p.wire }

// bodyExpected reports whether a request with this method carries a
// Content-Length even when the body is empty, as net/http does: some
// servers answer 411 to a bodiless POST.
func bodyExpected(method string) bool {
	return method == "POST" || method == "PUT" || method == "PATCH"
}

// dialAddr checks that hostport names a loopback address (or that remote
// targets are allowed) and returns the address to dial, with the port
// defaulted to 80.
func dialAddr(hostport string, allowRemote bool) (string, error) {
	if hostport == "" {
		return "", fmt.Errorf("%w: url has no host", ErrBadRequest)
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		// No port: net.SplitHostPort fails with "missing port".
		host, port = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), "80"
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("%w: bad port in %q", ErrBadRequest, hostport)
	}
	if !allowRemote && !isLoopback(host) {
		return "", fmt.Errorf("%w: %q", ErrNotLoopback, hostport)
	}
	if host == "localhost" {
		// Resolve it ourselves: the resolver might answer ::1 first, or
		// consult something other than /etc/hosts.
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Zone() == "" && a.Unmap().IsLoopback()
}

// isToken reports whether s is an RFC 9110 token (method, header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !httpsyntax.TokenChar[s[i]] {
			return false
		}
	}
	return true
}

// overlaps reports whether a and b share memory.
func overlaps(a, b []byte) bool {
	if len(a) == 0 || cap(b) == 0 {
		return false
	}
	a0, b0 := uintptr(unsafe.Pointer(unsafe.SliceData(a))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return a0 < b0+uintptr(cap(b)) && b0 < a0+uintptr(len(a))
}

// validValue accepts an RFC 9110 field value: visible characters, spaces,
// tabs and obs-text; no control characters that could split a line.
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' && b != '\t' || b == 0x7f {
			return false
		}
	}
	return true
}

// validHost accepts what net/http accepts in a Host header: the characters
// of a reg-name, an IP literal and a port.
func validHost(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b >= 0x80 ||
			strings.IndexByte("!$%&'()*+,-.:;=[]_~", b) >= 0) {
			return false
		}
	}
	return true
}

// validTarget refuses whitespace and control characters in the request
// target, which would corrupt the request line.
func validTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

package loadgen

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"

	"github.com/cascadehq/cascade/internal/cause"
)

// Why requests failed in the client.
//
// A sample has room for a cause, not a message: a request that failed in
// the client says transport_error, connect_failure or reset and nothing
// more. The reason (a certificate the client does not trust, a server
// without HTTP/2, the generator's own file-descriptor limit) is kept here
// instead: the first error of each client-side cause, once per transport,
// as requestSet.refused keeps the first request it could not build. It is
// taken only when a request fails (an atomic load; a compare-and-swap and
// an allocation the first time), so the success path pays nothing.

// ClientError is the first request that ended with a client-side cause,
// and the error the client gave for it.
type ClientError struct {
	Cause   cause.Cause
	Request string // the template's name
	Seq     uint64
	Err     error
}

func (e *ClientError) Error() string {
	return fmt.Sprintf("request %q (sequence number %d): %v", e.Request, e.Seq, e.Err)
}

func (e *ClientError) Unwrap() error { return e.Err }

// FDLimitError is a request the generator could not send because it could
// not open a socket: it ran out of file descriptors. That is the
// generator's own resource limit, not a connect failure of the target's
// (the error a dial returns says "connect" all the same), so it is kept
// apart from the other errors and named for what it is.
type FDLimitError struct {
	Err error
	// System: ENFILE, the whole system's file table is full; otherwise
	// EMFILE, this process reached its own limit.
	System bool
	// Limit is the process's soft RLIMIT_NOFILE when it happened (0:
	// unknown).
	Limit uint64
}

func (e *FDLimitError) Error() string {
	const fewer = "lower the concurrency (--max-in-flight or max_in_flight in the open model, fewer VUs or --conns in the closed one)"
	if e.System {
		return fmt.Sprintf("the system's file table is full (ENFILE): the load generator cannot open sockets, "+
			"a resource problem of this machine, not the target's; %s, or raise fs.file-max: %v", fewer, e.Err)
	}
	limit := ""
	if e.Limit > 0 {
		limit = fmt.Sprintf(" of %d", e.Limit)
	}
	return fmt.Sprintf("the load generator ran out of file descriptors (EMFILE): its own limit%s, not the target's; "+
		"raise it (ulimit -n) or %s: %v", limit, fewer, e.Err)
}

func (e *FDLimitError) Unwrap() error { return e.Err }

// UntrustedCertError is a TLS handshake that failed because the client
// does not trust the server's certificate: most often a self-signed test
// server, which the run can be told to accept.
type UntrustedCertError struct{ Err error }

func (e *UntrustedCertError) Error() string {
	return fmt.Sprintf("%v (for a test server with a self-signed certificate, accept any certificate: --insecure, or insecure_skip_verify: true in a scenario's load)", e.Err)
}

func (e *UntrustedCertError) Unwrap() error { return e.Err }

// fdLimitError says whether err is the generator's lack of file
// descriptors, and if so names it.
func fdLimitError(err error) (*FDLimitError, bool) {
	switch {
	case errors.Is(err, syscall.EMFILE):
		return &FDLimitError{Err: err, Limit: openFileLimit()}, true
	case errors.Is(err, syscall.ENFILE):
		return &FDLimitError{Err: err, System: true}, true
	}
	return nil, false
}

// isFDLimit is fdLimitError without building the error.
func isFDLimit(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// keptCause says which causes keep their first error: the client-side
// failures whose name alone does not say why. A client timeout says all
// there is to say; request_error has its own (RequestError); aborted is
// the run's end, not a failure.
func keptCause(c cause.Cause) bool {
	return c == cause.ConnectFailure || c == cause.Reset || c == cause.TransportError || c == cause.UnexpectedResponse
}

// has reports whether the first error of cause c is kept already, so that
// a caller can skip building the next one.
func (f *firstErrors) has(c cause.Cause) bool {
	return int(c) < cause.Count && f.byCause[c].Load() != nil
}

// firstErrors holds the first error of each kept cause, and apart from
// them the first file-descriptor shortage: a transport_error of another
// kind that came first must not hide it.
type firstErrors struct {
	byCause [cause.Count]atomic.Pointer[ClientError]
	fdLimit atomic.Pointer[ClientError]
}

// note keeps err as the first of its kind, if it is, and says whether it
// is a file-descriptor shortage. Call it only for a failed request.
func (f *firstErrors) note(c cause.Cause, request string, seq uint64, err error) (fdLimit bool) {
	if err == nil || c == cause.Aborted || int(c) >= cause.Count {
		return false
	}
	fd := isFDLimit(err)
	var slot *atomic.Pointer[ClientError]
	switch {
	case fd:
		slot = &f.fdLimit
	case keptCause(c):
		slot = &f.byCause[c]
	default:
		return false
	}
	if slot.Load() != nil {
		return fd
	}
	if fd {
		err, _ = fdLimitError(err)
	} else if ce := (*tls.CertificateVerificationError)(nil); errors.As(err, &ce) {
		err = &UntrustedCertError{Err: err}
	}
	slot.CompareAndSwap(nil, &ClientError{Cause: c, Request: request, Seq: seq, Err: err})
	return fd
}

// list is the kept errors: a file-descriptor shortage first (it explains
// the others), then by cause.
func (f *firstErrors) list() []*ClientError {
	var out []*ClientError
	if e := f.fdLimit.Load(); e != nil {
		out = append(out, e)
	}
	for i := range f.byCause {
		if e := f.byCause[i].Load(); e != nil {
			out = append(out, e)
		}
	}
	return out
}

// ClientErrorSource is a transport, or a whole load, that keeps the first
// error of each client-side cause (every transport in this package is
// one).
type ClientErrorSource interface {
	FirstClientErrors() []*ClientError
}

// FirstClientErrors is what tr kept of its failed requests (see
// ClientErrorSource), or nil.
func FirstClientErrors(tr Transport) []*ClientError {
	if s, ok := tr.(ClientErrorSource); ok {
		return s.FirstClientErrors()
	}
	return nil
}

// MergeClientErrors keeps, across lists (each from FirstClientErrors), the
// first error of each cause and the first file-descriptor shortage, in the
// order of the lists.
func MergeClientErrors(lists ...[]*ClientError) []*ClientError {
	var out []*ClientError
	type key struct {
		c  cause.Cause
		fd bool
	}
	seen := map[key]bool{}
	for _, l := range lists {
		for _, e := range l {
			var fd *FDLimitError
			k := key{e.Cause, errors.As(e.Err, &fd)}
			if !seen[k] {
				seen[k] = true
				out = append(out, e)
			}
		}
	}
	return out
}

// fdHeadroom is what a process needs besides its VUs' sockets: the run
// directory's files, the upstreams' and the gateway's listeners and
// connections, the event loops' epoll descriptors.
const fdHeadroom = 64

// FDWarning says, before a run, when a closed model's VUs need more sockets
// than the process may open (RLIMIT_NOFILE): a VU past the limit cannot
// dial, and sends nothing but failures, spaced by its back-off (vuRun).
// "" when the limit is enough or unknown.
func FDWarning(cfg Config) string {
	limit := openFileLimit()
	if limit == 0 {
		return ""
	}
	execs := cfg.Executors
	if len(execs) == 0 {
		execs = []Config{cfg}
	}
	var vus float64
	for _, e := range execs {
		if e.Kind != VUs {
			continue
		}
		peak := 0.0
		for _, s := range e.Stages {
			peak = max(peak, s.From, s.To)
		}
		vus += peak
	}
	if vus+fdHeadroom <= float64(limit) {
		return ""
	}
	return fmt.Sprintf("%.0f VUs need as many sockets, and this process may open %d files (ulimit -n): the VUs past that cannot connect, and wait (up to 1 s) before each new try; raise the limit or run fewer VUs", vus, limit)
}

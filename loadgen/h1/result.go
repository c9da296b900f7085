package h1

import (
	"context"
	"errors"
	"io"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/cascadehq/cascade/internal/cause"
)

// Result is what one request did. The caller owns it and reuses it: Do
// fills it in place without allocating. Times are offsets on the clock
// given in Options.Clock.
type Result struct {
	// Seq is the request's sequence number. The caller sets it before Do;
	// Do sends it in the Prepared's SeqHeader (if any) and leaves it alone,
	// so a result can be matched with its request.
	Seq uint64
	// Body, when the caller gives it capacity, receives the first
	// cap(Body) bytes of the response body (de-chunked). Do sets its length.
	Body []byte

	// Status is the response status code, 0 when no response head arrived.
	Status int
	// Cause is the termination cause: cause.FromResponse of the status and
	// the X-Cascade-Cause header for an answer, or the client-side cause of
	// a failure (ClientTimeout, ConnectFailure, Reset, TransportError,
	// Dropped).
	Cause cause.Cause
	// Err is nil for a complete response (whatever its status), otherwise
	// the same error Do returns.
	Err error
	// BytesRead counts every response byte read (head and framing included).
	BytesRead int64
	// BodyBytes counts the response body's bytes, after de-chunking.
	BodyBytes int64
	// Reused is true when the request went out on a connection that had
	// carried an earlier one.
	Reused bool
	// Dialed is true when Do opened a new connection for this request.
	Dialed bool

	// Start is when Do was called; WriteStart when the request was handed
	// to the kernel, after any wait for a pooled connection, idle probe or
	// dial (when there was none, WriteStart is Start: the clock is not read
	// for a few hundred nanoseconds); FirstByte when the first response
	// byte was read (0 if none); End when Do finished.
	Start, WriteStart, FirstByte, End time.Duration

	causeLen uint8
	causeBuf [32]byte // longer than any cause name, so a truncated value never matches one
}

// CauseHeader returns the response's X-Cascade-Cause value (the first one,
// truncated to 32 bytes), or "" when it had none. It allocates; the hot
// path uses Cause instead.
func (r *Result) CauseHeader() string { return string(r.causeBuf[:r.causeLen]) }

// causeHeader returns the header value without copying; valid until the
// Result is reused.
func (r *Result) causeHeader() string {
	if r.causeLen == 0 {
		return ""
	}
	return unsafe.String(&r.causeBuf[0], int(r.causeLen))
}

// reset clears everything Do fills, keeping the caller's inputs.
func (r *Result) reset(start time.Duration) {
	seq, body := r.Seq, r.Body[:0]
	*r = Result{Seq: seq, Body: body, Start: start}
}

// Errors Do returns (wrapped with details where there are any). Each maps to
// one cause; use errors.Is.
var (
	// ErrTimeout: the client timeout (Request.Timeout, Options.Timeout or the
	// context's deadline) passed. Cause: ClientTimeout.
	ErrTimeout error = timeoutError{}
	// ErrConnect: the connection could not be opened. Cause: ConnectFailure.
	ErrConnect = errors.New("h1: connect failed")
	// ErrFDLimit: no socket could be opened because this process (EMFILE)
	// or the system (ENFILE) is out of file descriptors: the client's own
	// limit, so not a connect failure of the target's. Cause:
	// TransportError.
	ErrFDLimit = errors.New("h1: out of file descriptors")
	// ErrReset: the connection was reset or closed while a request was in
	// flight. Cause: Reset.
	ErrReset = errors.New("h1: connection reset or closed mid-request")
	// ErrMalformed: the response was not valid HTTP/1.x. Cause: TransportError.
	ErrMalformed = errors.New("h1: malformed response")
	// ErrTargetMismatch: the Prepared names another address than the Conn
	// or Pool dials. Cause: TransportError.
	ErrTargetMismatch = errors.New("h1: request target differs from the connection's address")
	// ErrPoolExhausted: every connection was busy and the pool fails fast.
	// Cause: Dropped (the request was never sent).
	ErrPoolExhausted = errors.New("h1: all connections busy")
	// ErrClosed: the Pool was closed. Cause: TransportError.
	ErrClosed = errors.New("h1: pool closed")
)

// timeoutError is ErrTimeout: it matches context.DeadlineExceeded and
// os.ErrDeadlineExceeded too, so callers that test for either see it.
type timeoutError struct{}

func (timeoutError) Error() string   { return "h1: client timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
func (timeoutError) Is(target error) bool {
	return target == context.DeadlineExceeded || target == os.ErrDeadlineExceeded
}

// protoError is a malformed response, saying what was wrong.
type protoError struct{ what string }

func (e *protoError) Error() string        { return "h1: malformed response: " + e.what }
func (e *protoError) Is(target error) bool { return target == ErrMalformed }

// Pre-built protocol errors: a broken server must not make the client
// allocate per response.
var (
	errStatusLine   = &protoError{"bad status line"}
	errVersion      = &protoError{"unsupported HTTP version"}
	errHeaderLine   = &protoError{"bad header line"}
	errObsFold      = &protoError{"folded framing header"}
	errHeadTooLarge = &protoError{"response head over the client's limit of 1 MiB (MaxHeaderBytes)"}
	errLineTooLong  = &protoError{"chunk line longer than the read buffer"}
	errContentLen   = &protoError{"bad Content-Length"}
	errChunkSize    = &protoError{"bad chunk size line"}
	errChunkEnd     = &protoError{"chunk data not followed by CRLF"}
	errSwitching    = &protoError{"unexpected 101 Switching Protocols"}
	errTooManyInfo  = &protoError{"too many 1xx responses"}
	errUnsolicited  = &protoError{"bytes after the response"}
	errEmptyStatus  = &protoError{"status line is empty"}
	errTE10         = &protoError{"Transfer-Encoding in an HTTP/1.0 response"}
)

// resetError wraps the underlying network error of a reset.
type resetError struct{ err error }

func (e *resetError) Error() string {
	return "h1: connection reset or closed mid-request: " + e.err.Error()
}
func (e *resetError) Unwrap() error        { return e.err }
func (e *resetError) Is(target error) bool { return target == ErrReset }

// connectError wraps a dial error.
type connectError struct{ err error }

func (e *connectError) Error() string        { return "h1: connect failed: " + e.err.Error() }
func (e *connectError) Unwrap() error        { return e.err }
func (e *connectError) Is(target error) bool { return target == ErrConnect }

// fdLimitError wraps a dial error that is the client's lack of file
// descriptors.
type fdLimitError struct{ err error }

func (e *fdLimitError) Error() string        { return "h1: out of file descriptors: " + e.err.Error() }
func (e *fdLimitError) Unwrap() error        { return e.err }
func (e *fdLimitError) Is(target error) bool { return target == ErrFDLimit }

// isFDLimit reports whether a dial error means the client is out of file
// descriptors.
func isFDLimit(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// isReset reports whether a read or write error means the peer closed or
// reset the connection.
func isReset(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// classify maps an I/O error to the error Do returns and its cause.
func classify(err error) (error, cause.Cause) {
	switch {
	case err == nil:
		return nil, cause.OK
	case errors.Is(err, ErrTimeout):
		return ErrTimeout, cause.ClientTimeout
	case errors.Is(err, ErrConnect):
		return err, cause.ConnectFailure
	case errors.Is(err, ErrFDLimit):
		return err, cause.TransportError
	case errors.Is(err, context.Canceled):
		return err, cause.TransportError
	case errors.Is(err, ErrReset):
		return err, cause.Reset
	case errors.Is(err, ErrPoolExhausted):
		return err, cause.Dropped
	case isReset(err):
		return &resetError{err}, cause.Reset
	default:
		return err, cause.TransportError
	}
}

// Package h1 is the load generator's HTTP/1.1 client: the measuring
// instrument, so it has to be cheaper than the servers it measures and
// exact about what happened to every request.
//
//	Request --Prepare--> Prepared (wire bytes, immutable, shared by all goroutines)
//	                          |
//	   goroutine --Do(ctx, Prepared, *Result)--> Pool --borrow--> Conn --write (1 syscall)--> server
//	                                              ^                 |  <--read, parse in place--
//	                                              +-----return------+
//	                                                                |
//	                                     Result: status, cause, bytes, timestamps (no allocation)
//
// A Prepared request is serialized once; per request at most a sequence
// number is patched into a copy. A Conn carries one request at a time (no
// pipelining), reads the response into its own buffer and parses only what
// a load generator needs: the status, the framing (Content-Length, chunked,
// until close), whether the connection may be reused, and the
// X-Cascade-Cause header that says which layer of the cascade decided the
// answer. Failures are mapped to client-side causes:
//
//	client timeout (Timeout or context deadline) -> cause.ClientTimeout  (ErrTimeout)
//	connection refused, other dial errors        -> cause.ConnectFailure (ErrConnect)
//	out of file descriptors (EMFILE, ENFILE)     -> cause.TransportError (ErrFDLimit: the client's limit, not the target's)
//	reset / EOF while a request was in flight    -> cause.Reset          (ErrReset)
//	pool exhausted with FailFast                 -> cause.Dropped        (ErrPoolExhausted)
//	malformed response, cancel, anything else    -> cause.TransportError
//
// A connection that failed or timed out is closed, never reused. A server
// closing an idle keep-alive connection is not a failure: the next request
// reconnects transparently (see Options.IdleCheck).
//
// Conns wait in one of two ways. On their own, a goroutine owns each and
// waits in Go's network poller. An event loop (internal/evloop) instead
// runs many goroutine-style tasks as coroutines on one epoll loop per
// thread: a Conn from NewLoopConn dials and waits through the loop, with
// the same code above the socket. The closed model of cascade load uses loops (a response then
// costs no trip through Go's scheduler); anything sharing its process with
// latency-sensitive servers keeps goroutines, because a loop keeps its
// thread while it waits.
//
// HTTP/2, TLS and h2c are out of scope: net/http does them. Doer is the
// interface both kinds of transport can satisfy.
package h1

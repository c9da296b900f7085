package gateway

import (
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/cascadehq/cascade/gateway/breaker"
	"github.com/cascadehq/cascade/gateway/limit"
	"github.com/cascadehq/cascade/internal/cause"
)

// classify is the gateway's one map from a failure to a termination cause
// (and so to the status the client gets: cause.Status). Every refusal and
// every failed attempt goes through it, so a client-visible outcome always
// says which layer decided it. Order matters: a deadline that fired
// explains the connection errors it caused.
//
//	no route                      404 no_route
//	rate limit                    429 rate_limited
//	breaker open / probes taken   503 breaker_open
//	bulkhead, max_connections     503 overflow
//	no available replica          503 no_healthy_upstream
//	total timeout                 504 gateway_timeout
//	response_header timeout       504 gateway_timeout
//	per-try timeout (last try)    504 per_try_timeout
//	idle between body reads       (status already sent: connection cut) gateway_timeout
//	client went away              499 client_gone
//	dial refused / timed out      502 upstream_connect_failure
//	reset or closed mid-exchange  502 upstream_reset
//	not HTTP                      502 upstream_malformed
func classify(err error) (cause.Cause, string) {
	switch {
	case errors.Is(err, errNoRoute):
		return cause.NoRoute, "no route for the path"
	case errors.Is(err, limit.ErrRateLimited):
		return cause.RateLimited, "route rate limit"
	case errors.Is(err, breaker.ErrOpen):
		return cause.BreakerOpen, err.Error()
	case errors.Is(err, breaker.ErrHalfOpenFull):
		return cause.BreakerOpen, err.Error()
	case errors.Is(err, limit.ErrOverflow):
		return cause.Overflow, err.Error()
	case errors.Is(err, errNoEndpoint):
		return cause.NoHealthyUpstream, "no replica available (none, unhealthy or ejected)"
	case errors.Is(err, errTotalTimeout):
		return cause.GatewayTimeout, "total timeout"
	case errors.Is(err, errHeaderTimeout):
		return cause.GatewayTimeout, "response_header timeout"
	case errors.Is(err, errPerTryTimeout):
		return cause.PerTryTimeout, "per_try timeout"
	case errors.Is(err, errIdleTimeout):
		return cause.GatewayTimeout, "idle timeout between body reads"
	case errors.Is(err, errClientGone):
		return cause.ClientGone, "client closed the connection"
	case errors.Is(err, errShutdown):
		return cause.Aborted, "gateway shutting down"
	case errors.Is(err, errMalformed):
		return cause.UpstreamMalformed, "upstream answered something that is not HTTP/1.x"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		if op.Timeout() {
			return cause.UpstreamConnectFailure, "connect timeout"
		}
		return cause.UpstreamConnectFailure, op.Err.Error()
	}
	if isReset(err) {
		return cause.UpstreamReset, err.Error()
	}
	var re resetError
	if errors.As(err, &re) {
		return cause.UpstreamReset, err.Error()
	}
	// Anything else came from a connection that was up.
	return cause.UpstreamReset, err.Error()
}

// isReset reports a connection the upstream reset or closed mid-exchange.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// Package cause names why a request ended the way it did, and which layer
// decided it. Envoy calls these response flags; cascade calls them
// termination causes. The gateway and the fake upstreams put the cause of
// every response they produce themselves into the Header, so the load
// generator can tell a 504 decided by the gateway from one passed through
// from an upstream, and a verdict can say which layer of the timeout cascade
// fired.
package cause

import (
	"net/http"
	"sort"
	"strconv"
)

// Header carries the termination cause on responses made by cascade's own
// gateway and fake upstreams.
const Header = "X-Cascade-Cause"

// Cause is a termination cause. It is a small integer so the load generator
// can count by cause without maps or allocation on its hot path.
type Cause uint8

// The causes, grouped by the layer that decides them.
const (
	OK Cause = iota // a 2xx/3xx answer from the upstream

	// Decided by the client (the load generator).
	ClientTimeout  // the client gave up at its own timeout
	ConnectFailure // the client could not connect to its target
	Reset          // the client's connection was reset or closed mid-request
	TransportError // any other client-side transport error
	RequestError   // not sent: its template rendered a path or header the client refuses (from a data file, say)
	Dropped        // never sent: the in-flight cap was reached at its send time
	Aborted        // cut short because the run was interrupted (not the target's fault)

	// Decided by the gateway.
	NoRoute                // 404: no route matches the path
	GatewayTimeout         // 504: response-header or total timeout
	PerTryTimeout          // 504: the per-try timeout on the last attempt
	UpstreamConnectFailure // 502: connect refused or timed out
	UpstreamReset          // 502: the upstream reset or closed the connection
	UpstreamMalformed      // 502: the upstream's answer was not valid HTTP
	NoHealthyUpstream      // 503: no replica to send to
	BreakerOpen            // 503: the circuit breaker is open
	Overflow               // 503: a concurrency limit was reached (shed)
	RateLimited            // 429: the route's rate limit
	ClientGone             // 499: the client went away first (seen at the gateway only)
	Fallback               // a fallback (cached or static) answered for a failure

	// Decided by the upstream.
	UpstreamError   // the upstream answered 4xx/5xx itself
	UpstreamTimeout // the upstream's own deadline fired
	DBTimeout       // the upstream's database statement or lock timed out
	DBError         // the upstream's database failed (pool exhausted, refused)

	// Inferred from the status alone, when the answer carries no cause header
	// (a third-party gateway such as nginx or Envoy).
	BadGateway         // 502 without a cause header
	ServiceUnavailable // 503 without a cause header
	HTTPError          // any other 4xx/5xx without a cause header

	// Decided by the scenario's own check of the answer.
	UnexpectedResponse // the answer failed its request's expect: (a status not listed, a body without the text)

	numCauses
)

// Count is the number of causes; arrays indexed by Cause have this length.
const Count = int(numCauses)

// Layer is the part of the cascade that decided an outcome.
type Layer string

// Layers, outermost first.
const (
	LayerClient   Layer = "client"
	LayerGateway  Layer = "gateway"
	LayerUpstream Layer = "upstream"
	LayerDB       Layer = "db"
	LayerUnknown  Layer = "unknown"
)

type info struct {
	name   string
	layer  Layer
	status int // the status the deciding layer answers with; 0 if none
}

var infos = [numCauses]info{
	OK:                     {"ok", LayerUpstream, 200},
	ClientTimeout:          {"client_timeout", LayerClient, 0},
	ConnectFailure:         {"connect_failure", LayerClient, 0},
	Reset:                  {"reset", LayerClient, 0},
	TransportError:         {"transport_error", LayerClient, 0},
	RequestError:           {"request_error", LayerClient, 0},
	Dropped:                {"dropped", LayerClient, 0},
	Aborted:                {"aborted", LayerClient, 0},
	NoRoute:                {"no_route", LayerGateway, http.StatusNotFound},
	GatewayTimeout:         {"gateway_timeout", LayerGateway, http.StatusGatewayTimeout},
	PerTryTimeout:          {"per_try_timeout", LayerGateway, http.StatusGatewayTimeout},
	UpstreamConnectFailure: {"upstream_connect_failure", LayerGateway, http.StatusBadGateway},
	UpstreamReset:          {"upstream_reset", LayerGateway, http.StatusBadGateway},
	UpstreamMalformed:      {"upstream_malformed", LayerGateway, http.StatusBadGateway},
	NoHealthyUpstream:      {"no_healthy_upstream", LayerGateway, http.StatusServiceUnavailable},
	BreakerOpen:            {"breaker_open", LayerGateway, http.StatusServiceUnavailable},
	Overflow:               {"overflow", LayerGateway, http.StatusServiceUnavailable},
	RateLimited:            {"rate_limited", LayerGateway, http.StatusTooManyRequests},
	ClientGone:             {"client_gone", LayerGateway, 499},
	Fallback:               {"fallback", LayerGateway, http.StatusOK},
	UpstreamError:          {"upstream_error", LayerUpstream, 0},
	UpstreamTimeout:        {"upstream_timeout", LayerUpstream, http.StatusGatewayTimeout},
	DBTimeout:              {"db_timeout", LayerDB, http.StatusServiceUnavailable},
	DBError:                {"db_error", LayerDB, http.StatusServiceUnavailable},
	BadGateway:             {"bad_gateway", LayerGateway, http.StatusBadGateway},
	ServiceUnavailable:     {"service_unavailable", LayerGateway, http.StatusServiceUnavailable},
	HTTPError:              {"http_error", LayerUnknown, 0},
	// Which layer wrote a wrong answer the client cannot tell: a fallback's
	// stale body and an upstream's are alike.
	UnexpectedResponse: {"unexpected_response", LayerUnknown, 0},
}

var byName = func() map[string]Cause {
	m := make(map[string]Cause, numCauses)
	for c := Cause(0); c < numCauses; c++ {
		m[infos[c].name] = c
	}
	return m
}()

func (c Cause) String() string {
	if c < numCauses {
		return infos[c].name
	}
	return "cause(" + strconv.Itoa(int(c)) + ")"
}

// Layer returns the layer that decides this cause.
func (c Cause) Layer() Layer {
	if c < numCauses {
		return infos[c].layer
	}
	return LayerUnknown
}

// Status is the HTTP status the deciding layer answers with (0 when the
// outcome has no status, such as a client timeout).
func (c Cause) Status() int {
	if c < numCauses {
		return infos[c].status
	}
	return 0
}

// IsError reports whether the outcome counts against an error rate. A
// fallback is a degraded success: counted on its own, not as an error. An
// aborted request (the run was interrupted) says nothing about the system and
// is not an error either.
func (c Cause) IsError() bool { return c != OK && c != Fallback && c != Aborted }

// MarshalText writes the name, so JSON maps keyed by Cause read well.
func (c Cause) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText reads a name.
func (c *Cause) UnmarshalText(b []byte) error {
	v, ok := Parse(string(b))
	if !ok {
		return &UnknownError{Name: string(b)}
	}
	*c = v
	return nil
}

// UnknownError reports a cause name that does not exist.
type UnknownError struct{ Name string }

func (e *UnknownError) Error() string { return "unknown termination cause " + strconv.Quote(e.Name) }

// Parse returns the cause with this name.
func Parse(name string) (Cause, bool) {
	c, ok := byName[name]
	return c, ok
}

// ParseBytes is Parse for a header value as read off the wire; it does not
// copy b.
func ParseBytes(b []byte) (Cause, bool) {
	c, ok := byName[string(b)]
	return c, ok
}

// Names lists every cause name, sorted, for error messages and schemas.
func Names() []string {
	out := make([]string, 0, numCauses)
	for c := Cause(0); c < numCauses; c++ {
		out = append(out, infos[c].name)
	}
	sort.Strings(out)
	return out
}

// All lists every cause in declaration order.
func All() []Cause {
	out := make([]Cause, numCauses)
	for i := range out {
		out[i] = Cause(i)
	}
	return out
}

// FromResponse classifies a response the client received. A cause header
// set by cascade's gateway or upstreams wins; otherwise the status decides,
// named for what a third-party gateway most likely meant.
func FromResponse(status int, header string) Cause {
	if header != "" {
		if c, ok := byName[header]; ok {
			return c
		}
	}
	switch {
	case status < 400:
		return OK
	case status == http.StatusGatewayTimeout:
		return GatewayTimeout
	case status == http.StatusBadGateway:
		return BadGateway
	case status == http.StatusServiceUnavailable:
		return ServiceUnavailable
	case status == http.StatusTooManyRequests:
		return RateLimited
	default:
		return HTTPError
	}
}

// Package upstreamheader names the headers cascade's own components put on
// the requests they send to an upstream. The fake upstreams read them to
// tell traffic from probes and one attempt from the next; they live here,
// below both, because faults must not import the gateway or the load
// generator, and two copies of a header name drift apart.
package upstreamheader

const (
	// Attempt numbers the attempts of one client request, from 1 (Envoy's
	// x-envoy-attempt-count). The gateway sets it on every attempt.
	Attempt = "X-Cascade-Attempt"
	// Deadline is the caller's remaining budget in milliseconds, so the
	// upstream can stop work nobody will wait for.
	Deadline = "X-Cascade-Deadline-Ms"
	// HealthCheck marks the gateway's active health checks. They are not
	// traffic: a replica records them apart from its arrivals, or a probe
	// sent to an ejected replica (which Envoy keeps probing) would count as
	// a request that reached it while ejected. A third-party gateway's
	// health checks count as arrivals unless its configuration adds the
	// header (HAProxy's http-check send hdr, Envoy's
	// request_headers_to_add).
	HealthCheck = "X-Cascade-Health-Check"
	// Direct marks the load generator's requests that bypass the gateway
	// (load.direct). They reach the upstream but are no attempt the gateway
	// made: a replica records them apart, or amplification would divide
	// them by the requests sent through the gateway only, and an ejected
	// replica would be blamed for the direct path's round robin.
	Direct = "X-Cascade-Direct"
)

// Package gateway is cascade's reverse proxy: the system whose resilience a
// scenario verifies. It routes by path prefix to upstreams and, per route
// and upstream, enforces timeouts, retries with a budget, a circuit
// breaker, a bulkhead, a rate limit, balancing over replicas with active
// health checks and outlier ejection, and fallbacks; every decision is an
// event on the run's clock.
//
//	client ─▶ route (longest prefix) ─▶ rate limit ─▶ [attempt: bulkhead ─▶ pick replica ─▶ breaker ─▶ replica]
//	                                                        │ failure            ▲ retry (budget, backoff)
//	                                                        ▼                    │
//	                                                   classify ─▶ retry? ───────┘ ─▶ fallback or status + X-Cascade-Cause
//
// Every response the gateway produces itself carries its termination cause
// (cause.Header), decided in one place (classify), so the load generator
// can tell a gateway 504 from an upstream's own 504, and a verdict can say
// which layer decided.
//
// # Statuses
//
//	404 no_route              no route matches the path
//	429 rate_limited          the route's token bucket is empty
//	503 breaker_open          the upstream's breaker is open (or half-open with every probe out)
//	503 overflow              the bulkhead is full (max_requests, max_pending, max_pending_wait, max_connections)
//	503 no_healthy_upstream   no replica: none, unhealthy or ejected
//	504 gateway_timeout       the total or response_header timeout
//	504 per_try_timeout       the per-try timeout of the last attempt
//	502 upstream_connect_failure, upstream_reset, upstream_malformed
//	499 client_gone           the client's connection closed or reset before its answer was out (logs and events only)
//	200 fallback              a cached or static answer for a failure, marked X-Cascade-Fallback
//
// client_gone says what the gateway saw, not why: a connection that closes
// or resets carries no reason, and the gateway does not know the client's
// timeout. The client knows, and counts its own cause for the same
// request: in a cascade run, client_timeout when the load generator's
// client_timeout fired (the usual case), aborted when the run stopped with
// the request in flight. So client_gone is not a renamed client_timeout:
// it also counts the aborted ones, and it misses a client_timeout that
// fired after the gateway had written the whole answer. In front of
// clients of your own (cascade gateway), it counts every client that hung
// up early, for whatever reason: a timeout, a user's cancel, a crash.
//
// An idle timeout between body reads (or the total timeout while the body
// streams) cuts the client connection: the status is already out. The
// access log and event say gateway_timeout.
//
// Shutdown drains: listeners closed, idle connections closed, requests in
// flight answered with Connection: close until its context ends. A request
// that Close cuts (at the end of a drain, or without one) is logged as
// aborted, and its client's connection closed without an answer.
//
// # Headers sent upstream
//
//	X-Cascade-Attempt       the attempt number, from 1
//	X-Cascade-Deadline-Ms   the attempt's budget: min(per-try timeout, time left of the total)
//	X-Request-Id            the client's, or one the gateway generated (also echoed to the client)
//	X-Forwarded-For         the client's address appended
//
// A route's propagate list keeps only some of them, or none (as nginx's
// plain proxy_pass); a client's own X-Request-Id and X-Forwarded-For then
// pass unchanged. Active health checks carry X-Cascade-Health-Check: 1
// instead (and User-Agent cascade-health-check), so cascade's fake
// upstreams count them apart from the traffic.
//
// # Events
//
// Every event has Source "gateway" and a time on the run's clock.
// Per-request events (marked ⧗) are thinned to one per second per route
// (or upstream) and kind, the first at once, with "count" the number of
// occurrences it stands for: the response's cause header already records
// each one.
//
//	type                     target          attrs
//	gateway.start            -               addr, admin, routes, upstreams
//	gateway.drain            -               in_flight (Shutdown began: listeners closed, idle connections closing)
//	gateway.stop             -               in_flight, ended, cut, elapsed_ms (Shutdown's end: ended finished
//	                                         during the drain, cut were in flight when it ended and Close cut them)
//	gateway.<cause> ⧗        upstream        cause, detail, route, path, status, elapsed_ms, attempts, replica, fallback, count
//	                                         (every non-ok outcome the gateway decided: gateway_timeout, per_try_timeout,
//	                                          upstream_connect_failure, upstream_reset, upstream_malformed, breaker_open,
//	                                          overflow, no_healthy_upstream, rate_limited, client_gone, no_route, fallback)
//	attempt.fail ⧗           upstream        route, attempt, replica, cause, detail, status, count
//	                                         (an attempt that failed and is retried; timeouts appear here with their cause)
//	retry.attempt            route path      attempt (the new one), reason (the condition), backoff_ms
//	retry.denied             route path      attempt, condition, reason (max_attempts, not_idempotent,
//	                                         body_not_replayable, deadline), method
//	retry.budget_exhausted   route path      attempt, condition, reason, retries_in_flight, active, limit
//	retry.hedge              route path      attempt (the new one), reason (per_try_timeout): a hedge started
//	                                         beside the attempt whose per-try timeout fired; a hedge refused is a
//	                                         retry.denied or retry.budget_exhausted with condition per_try_timeout
//	                                         and hedge true
//	breaker.open             upstream        reason (failure_rate, slow_call_rate, max_wait_in_half_open), generation,
//	                                         calls, failure_rate, slow_call_rate, in_flight (calls admitted, not yet over)
//	breaker.half_open        upstream        reason (wait_elapsed), generation, calls
//	breaker.close            upstream        reason (probes_passed, reset), generation, calls, failure_rate, slow_call_rate
//	breaker.forced_open, breaker.disabled    upstream, reason, generation (forced_open: in_flight)
//	limit.overflow ⧗         upstream        reason (max_requests, max_pending, max_pending_wait, max_connections),
//	                                         count, in_flight, pending, max_requests, max_pending (or connections, max_connections)
//	limit.rate_limited ⧗     route path      count, rate, burst
//	endpoint.add             upstream        addr, weight, endpoints
//	endpoint.remove          upstream        addr, endpoints
//	balance.panic            upstream        panic (true entering, false leaving), available, endpoints
//	health.up                upstream[addr]  addr, successes
//	health.down              upstream[addr]  addr, failures, reason
//	outlier.eject            upstream[addr]  addr, reason (consecutive_5xx, consecutive_gateway_failure), consecutive,
//	                                         times_ejected, ejection_ms, ejected, endpoints, in_flight
//	outlier.uneject          upstream[addr]  addr, times_ejected
//	outlier.eject_overflow   upstream[addr]  addr, reason, consecutive, ejected, endpoints (max_ejection_percent reached)
//	fallback.serve ⧗         route path      kind (cache, static), count, age_ms and stale (cache), status (static)
//
// # Speed
//
// Plain HTTP/1.1 requests take a purpose-built path (server.go, upconn.go,
// wire.go): parsed in place, forwarded as raw header bytes over pooled
// upstream connections, nothing allocated per request. Everything else is
// handed to net/http and runs the same exchange (slow.go). With
// Options.Loops (cascade gateway's default on Linux) that path runs on
// event loops, a thread each, as nginx's workers do (internal/evloop;
// server.go says why); cascade run keeps a goroutine per connection, as
// its gateway shares the process with the load and the upstreams.
package gateway

// Package tcpfault is a TCP proxy that injects connection-level faults
// ("toxics") between clients and one upstream: cascade's fake upstreams or a
// user's own service. It covers every Toxiproxy toxic (latency, bandwidth,
// slow_close, timeout, reset_peer, slicer, limit_data) with the same names
// and attributes, plus blackhole, and the subpackage toxiapi serves
// Toxiproxy's HTTP API so existing Toxiproxy clients can drive it.
//
// Using it:
//
//	p, _ := tcpfault.New(tcpfault.Config{Listen: "127.0.0.1:0", Upstream: "127.0.0.1:8080", Rand: rng})
//	_ = p.Start(ctx)
//	_, _ = p.AddToxic(tcpfault.NewSpec("slow", tcpfault.Downstream, &tcpfault.Latency{Latency: 100 * time.Millisecond}))
//	// clients connect to p.Addr()
//
// # Probabilities and messages
//
// Each toxic has a toxicity, the probability that it acts on a connection
// (drawn once per connection, Toxiproxy's meaning), and a request
// toxicity, the probability that it acts on a given message of a connection
// it was drawn for. A message is what one side sends before the other
// answers: for HTTP/1.x, a request (upstream) or a response (downstream).
// Bytes in one direction begin a new message when the other direction
// carried bytes since this direction last did. All draws derive from the
// proxy's seeded Rand, so a run repeats.
//
// # Differences from Toxiproxy, on purpose
//
//   - latency is drawn per message and counted from when each chunk's
//     bytes reached the socket (the kernel's receive timestamp), and ends
//     in a kernel nanosleep rather than on a Go timer: a 100 ms toxic adds
//     100 ms plus typically tens of µs, never less, where Toxiproxy adds
//     100 + 1–2 ms.
//     ToxicStats.Lag is the proxy's own record of how late each release
//     was.
//   - timeout and blackhole hold data instead of dropping it, and removing
//     them lets it through; Toxiproxy drops it and closes the connection.
//   - Changing or removing a toxic never waits for a connection, and a
//     stalled stage never wedges another (Toxiproxy #159, #412).
//   - Half-closes are kept: one side's FIN is passed on and the other
//     direction goes on. A peer's reset is passed on as a reset.
//   - Attributes are decoded strictly: an unknown toxic type or attribute
//     is an error that lists the valid ones.
//   - Listen addresses must be loopback.
//   - An idle connection holds no read buffer (Toxiproxy pins 32 KiB per
//     direction), and a direction without toxics is copied by its reader
//     with no hand-off.
//
// Counters (Proxy.Stats) and events (fault.start, fault.update,
// fault.apply, fault.stop) tell how often each toxic actually acted.
package tcpfault

package h1

import "sync/atomic"

// Stats are connection-level counters, for a run's report: a load
// generator that silently reconnects or waits for connections changes what
// it measures.
type Stats struct {
	Dials       int64 // connections opened
	DialErrors  int64 // connection attempts that failed
	Reuses      int64 // requests sent on a connection that had carried one before
	Closes      int64 // connections closed, for any reason
	PeerCloses  int64 // ... of which the server closed or asked to close (Connection: close, found closed while idle)
	ErrorCloses int64 // ... of which a failed request closed (timeout, reset, malformed response, cancel)
	Retries     int64 // requests re-sent on a new connection because the reused one was dead before any byte was sent
	Waits       int64 // Pool: callers that found every connection busy and waited
	Rejected    int64 // Pool: callers turned away by FailFast
}

func (s *Stats) add(o Stats) {
	s.Dials += o.Dials
	s.DialErrors += o.DialErrors
	s.Reuses += o.Reuses
	s.Closes += o.Closes
	s.PeerCloses += o.PeerCloses
	s.ErrorCloses += o.ErrorCloses
	s.Retries += o.Retries
	s.Waits += o.Waits
	s.Rejected += o.Rejected
}

// connStats is written by the goroutine using the connection and read by
// Stats from any goroutine. One per connection: a shared counter would
// bounce a cache line between cores on every request.
type connStats struct {
	dials, dialErrors, reuses, closes, peerCloses, errorCloses, retries atomic.Int64
}

func (c *connStats) snapshot() Stats {
	return Stats{
		Dials: c.dials.Load(), DialErrors: c.dialErrors.Load(), Reuses: c.reuses.Load(),
		Closes: c.closes.Load(), PeerCloses: c.peerCloses.Load(), ErrorCloses: c.errorCloses.Load(),
		Retries: c.retries.Load(),
	}
}

package tcpfault

import "time"

// Toxic is one kind of connection fault with its attributes set. A toxic is
// immutable once installed and shared by every connection of its proxy;
// per-connection data lives in the value NewState returns (see Stateful).
// Changing a toxic's attributes installs a new value.
//
// Guard implementations with `var _ Toxic = (*MyToxic)(nil)`.
type Toxic interface {
	// Pipe handles one chunk of one direction of one connection, in the
	// order the bytes were read. It lets bytes through with p.Pass (bytes
	// it does not pass before returning nil are passed for it, never
	// dropped), waits with p.Sleep or p.Hold, and ends the connection with
	// p.Close or p.Reset. An error from any method of p must be returned
	// as is: that is how a change to the toxic, or the connection closing,
	// interrupts a wait without losing the bytes held.
	Pipe(p *Pipe, c *Chunk) error
}

// Validator is implemented by toxics whose attributes constrain each other
// (slicer: size_variation < average_size). It runs after decoding.
type Validator interface {
	Validate() error
}

// Stateful is implemented by toxics that keep per-connection state. The
// state is created when the toxic first meets a connection and kept across
// updates of the toxic's attributes (limit_data keeps counting), as in
// Toxiproxy.
type Stateful interface {
	NewState() any
}

// Attacher is implemented by toxics that act on a connection before any
// data flows: timeout starts its clock when it takes hold of a connection,
// so an idle connection is still closed on time. Attach runs when the
// toxic takes hold (the connection starts, or the toxic is added or
// changed while it is open) and its per-connection draw selected it.
type Attacher interface {
	Attach(p *Pipe)
}

// EOFHandler is implemented by toxics that act when the sending side ends
// its half of the connection: slow_close delays passing the FIN on. at is
// when the proxy read the end of stream.
type EOFHandler interface {
	OnEOF(p *Pipe, at time.Time) error
}

// ConnHolder is implemented by toxics that can stop a new connection before
// the proxy dials the upstream for it (blackhole). An upstream-direction
// toxic that returns true parks each new connection its per-connection
// draw selects: accepted, never read, never answered, until the toxic is
// removed; then the connection proceeds with nothing lost.
type ConnHolder interface {
	HoldsNewConnections() bool
}

// AcceptStopper is implemented by toxics that act on the listener: while one
// that returns true is installed, the proxy stops accepting, so the
// kernel's accept queue fills and then further clients see connect
// timeouts (see Config.Backlog).
type AcceptStopper interface {
	StopsAccepting() bool
}

// Chunk is bytes the proxy read in one go from one side of a connection.
type Chunk struct {
	// Data is what is left to pass; Pass advances it.
	Data []byte
	// Arrival is when the proxy read the bytes from the socket. Delays
	// count from here, so time a chunk spent queued behind an earlier one
	// is not added again.
	Arrival time.Time
	// Msg numbers the message the bytes belong to, from 1, per direction.
	// A message is what one side sends before the other answers: for
	// HTTP/1.x, a request upstream and its response downstream. The rule:
	// bytes in one direction begin a new message when the other direction
	// carried bytes since this direction last did (or when they are the
	// first in this direction). Pipelined requests sent in one burst count
	// as one message.
	Msg uint64
	// Start reports that Data begins message Msg.
	Start bool

	passed []*slot // toxics this chunk already went through
	buf    *[]byte // pooled read buffer behind Data
	end    bool    // end-of-stream marker, not data
	err    error   // for end: the read error, nil on a clean EOF
}

func (c *Chunk) has(s *slot) bool {
	for _, p := range c.passed {
		if p == s {
			return true
		}
	}
	return false
}

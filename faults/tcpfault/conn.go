package tcpfault

import (
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// conn is one proxied connection: the client socket, the upstream socket
// once dialed, and what both directions share.
type conn struct {
	p      *Proxy
	seed   uint64 // drawn from the proxy's Rand in accept order
	client *net.TCPConn
	ctx    context.Context // done when the connection is being torn down
	cancel context.CancelFunc

	mu     sync.Mutex
	server *net.TCPConn
	closed bool
	once   sync.Once

	lastTalker atomic.Int32 // direction that carried the latest bytes, -1 before any
	ended      atomic.Int32 // directions whose end of stream was passed on
}

func (p *Proxy) newConn(cl *net.TCPConn) *conn {
	ctx, cancel := context.WithCancel(p.ctx)
	c := &conn{p: p, seed: p.nextSeed(), client: cl, ctx: ctx, cancel: cancel}
	c.lastTalker.Store(-1)
	return c
}

// serve runs the connection: park it while a blackhole holds new
// connections, dial the upstream, then pump both directions. It runs the
// upstream writer itself and returns when all four pumps have ended.
func (c *conn) serve() {
	defer c.p.wg.Done()
	defer c.p.untrack(c)
	defer c.close(false)
	if !c.park() {
		return
	}
	d := net.Dialer{Timeout: c.p.dialTimeout, Control: stampDial}
	up, err := d.DialContext(c.ctx, "tcp", c.p.Upstream())
	if err != nil {
		c.p.counters.dialFail.Add(1)
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		up.Close()
		return
	}
	c.server = up.(*net.TCPConn)
	c.mu.Unlock()

	upQ, downQ := newQueue(c.p.readAhead), newQueue(c.p.readAhead)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); c.read(Upstream, c.client, c.server, upQ, &c.p.counters.bytesUp) }()
	go func() { defer wg.Done(); c.read(Downstream, c.server, c.client, downQ, &c.p.counters.bytesDown) }()
	go func() { defer wg.Done(); c.newPipe(Downstream, c.client, downQ, &c.p.counters.bytesDown).run() }()
	c.newPipe(Upstream, c.server, upQ, &c.p.counters.bytesUp).run()
	wg.Wait()
}

// park holds a new connection while an upstream toxic that holds new
// connections (blackhole) selects it. Nothing is read, so whatever the
// client sent is still in the socket when the toxic goes away.
func (c *conn) park() bool {
	parked := false
	for {
		ch := c.p.chain.Load()
		var holder *entry
		for _, e := range ch.dirs[Upstream] {
			if h, ok := e.toxic.(ConnHolder); ok && h.HoldsNewConnections() && c.drawConn(e) {
				holder = e
				break
			}
		}
		if holder == nil {
			return true
		}
		if !parked {
			parked = true
			holder.slot.counters.conns.Add(1)
			holder.slot.counters.requests.Add(1)
			c.p.applied(holder.slot)
		}
		select {
		case <-ch.changed:
		case <-c.ctx.Done():
			return false
		}
	}
}

// Draws are hashes of (connection seed, toxic, version, message) rather than
// calls on a shared generator, so they do not depend on which of the
// connection's goroutines asks first: a seeded run repeats exactly.
func (c *conn) unit(e *entry, tag, msg uint64) float64 {
	src := rand.NewPCG(c.seed^tag, e.slot.id*0x9E3779B97F4A7C15+e.version*0xBF58476D1CE4E5B9+msg*0x94D049BB133111EB)
	return float64(src.Uint64()>>11) / (1 << 53)
}

func (c *conn) drawConn(e *entry) bool { return c.unit(e, 0x636f6e6e, 0) < e.toxicity }

func (c *conn) drawMsg(e *entry, msg uint64) bool {
	return c.unit(e, 0x6d736773, msg) < e.reqToxicity
}

// read copies one socket into its direction's queue, stamping each chunk
// with its arrival time and message number. While the direction has no
// toxics and its writer is idle with nothing queued, it writes the chunk to
// dst itself: a pass-through connection then costs no goroutine hand-off
// per chunk. Order is kept, since the writer holds nothing at that moment
// and the reader reads nothing more until the write is done.
func (c *conn) read(dir Direction, src, dst *net.TCPConn, q *queue, bytes *atomic.Uint64) {
	var msg uint64
	sr := newStampReader(src)
	for {
		var (
			bp  *[]byte
			n   int
			at  time.Time
			err error
		)
		if sr != nil {
			bp, n, at, err = sr.read(&c.p.bufs)
		} else {
			bp = c.p.bufs.Get().(*[]byte)
			n, err = src.Read(*bp)
			at = time.Now()
		}
		if n > 0 {
			start := false
			if c.lastTalker.Swap(int32(dir)) != int32(dir) {
				msg++
				start = true
			}
			if len(c.p.chain.Load().dirs[dir]) == 0 && q.idleAndEmpty() {
				w, werr := dst.Write((*bp)[:n])
				bytes.Add(uint64(w))
				c.p.bufs.Put(bp)
				if werr != nil {
					c.close(true)
					return
				}
			} else if !q.push(c.ctx, &Chunk{Data: (*bp)[:n], Arrival: at, Msg: msg, Start: start, buf: bp}) {
				c.p.bufs.Put(bp)
				return
			}
		} else if bp != nil {
			c.p.bufs.Put(bp)
		}
		if err != nil {
			q.end(err)
			return
		}
	}
}

// close tears the connection down once. A graceful close sends FIN both
// ways first; a reset sets SO_LINGER to 0 so the kernel sends RST, which
// the peers see as "connection reset by peer".
func (c *conn) close(reset bool) {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		server := c.server
		c.mu.Unlock()
		for _, s := range []*net.TCPConn{c.client, server} {
			if s == nil {
				continue
			}
			if reset {
				s.SetLinger(0)
			} else {
				s.CloseWrite()
			}
			s.Close()
		}
		c.cancel()
	})
}

// queue carries chunks from a reader to its writer. It is bounded by bytes:
// when the writer is held (a stalled toxic), the reader stops reading and
// TCP flow control reaches the sender, instead of memory growing.
type queue struct {
	mu    sync.Mutex
	items []*Chunk
	bytes int
	max   int
	idle  bool          // the writer holds no chunk and waits for one
	ready chan struct{} // a chunk was pushed
	space chan struct{} // a chunk was popped
}

func newQueue(max int) *queue {
	return &queue{max: max, ready: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (q *queue) push(ctx context.Context, c *Chunk) bool {
	for {
		q.mu.Lock()
		if q.bytes < q.max || len(q.items) == 0 {
			q.items = append(q.items, c)
			q.bytes += len(c.Data)
			q.mu.Unlock()
			signal(q.ready)
			return true
		}
		q.mu.Unlock()
		select {
		case <-q.space:
		case <-ctx.Done():
			return false
		}
	}
}

func (q *queue) end(err error) {
	q.mu.Lock()
	q.items = append(q.items, &Chunk{end: true, err: err, Arrival: time.Now()})
	q.mu.Unlock()
	signal(q.ready)
}

// popOrIdle returns the next chunk, or nil and marks the writer idle.
func (q *queue) popOrIdle() *Chunk {
	q.mu.Lock()
	if len(q.items) == 0 {
		q.idle = true
		q.mu.Unlock()
		return nil
	}
	q.idle = false
	c := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	q.bytes -= len(c.Data)
	q.mu.Unlock()
	signal(q.space)
	return c
}

func (q *queue) idleAndEmpty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.idle && len(q.items) == 0
}

func (q *queue) held() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

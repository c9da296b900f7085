package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cascadehq/cascade/internal/evloop"
	"github.com/cascadehq/cascade/internal/httpsyntax"
)

// The gateway's inbound side.
//
// The bench (bench/README.md) measured Go's net/http on both sides of a
// proxy at 95 µs of CPU per request against nginx's 20. Most of it is
// per-request allocation (Request, Header maps, contexts, ResponseWriter
// buffers) and the goroutine hand-offs of the client Transport. So plain
// HTTP/1.1 requests (the ones load generators and most clients send) are
// served by a purpose-built loop: one goroutine per client connection reads
// a request into a reused buffer, parses it in place, and runs the
// exchange, which forwards raw header bytes to an upstream connection it
// holds and streams the answer back. Nothing is allocated per request on
// the success path.
//
// Anything else (HTTP/1.0, chunked or large request bodies, Expect,
// Upgrade, absolute URIs, anything malformed) is handed, connection and
// buffered bytes included, to a net/http Server whose handler runs the same
// exchange: correctness and error answers stay exactly Go's.
//
//	accept ─▶ conn loop ─ plain HTTP/1.1 ─▶ exchange (fast responder)
//	              │ anything else
//	              ▼
//	        handoff listener ─▶ net/http Server ─▶ exchange (http responder)
//
// With Options.Loops the fast path runs on event loops (internal/evloop)
// instead: each loop has a listening socket of its own on the address
// (SO_REUSEPORT, as nginx's reuseport), an accepting task, and a task per
// client connection running the same serve and exchange code, with
// upstream connections from the loop's own pools. Why: on loopback at
// light load, a goroutine per connection left the gateway's added median
// latency above nginx's — not in its own hops, which were faster, but in
// the next process: after each write a Go thread whose goroutine parked
// searches for other work on the CPU the woken reader wants, where nginx's
// worker goes straight back to epoll_wait (bench/GATEWAY.md, runs 8 and
// 9). A loop thread does the same as nginx's. The price is a thread (and a
// P) per loop spent waiting, so it is for cascade gateway on its own, not
// for a gateway sharing its process with a load and upstreams.

const (
	cliBufSize       = 4 << 10
	cliIdleTimeout   = 90 * time.Second // keep-alive wait for the next request
	cliHeaderTimeout = 30 * time.Second // from a request's first byte to its whole head (net/http's ReadHeaderTimeout)
	cliBodyTimeout   = 30 * time.Second // from the head to the whole (buffered) body
	cliWriteTimeout  = 60 * time.Second // a client that stops reading
)

type server struct {
	g *Gateway
	// Client-side timeouts (the constants above; tests shorten them).
	idleTimeout, headerTimeout, bodyTimeout time.Duration
	ln                                      net.Listener
	lls                                     []*evloop.Listener // the loops' (Options.Loops)
	stopLn                                  sync.Once
	lnErr                                   error // from closing ln
	addr                                    net.Addr
	loops                                   []*evloop.Loop // Options.Loops
	started                                 atomic.Bool
	http                                    *http.Server
	hand                                    *handoffListener

	// Requests read whole whose answer is not written yet, on both paths,
	// and how many have ended: a drain reports them.
	inFlight atomic.Int64
	ended    atomic.Uint64
	draining atomic.Bool

	mu      sync.Mutex
	conns   map[*srvConn]struct{}
	closed  bool
	emptied chan struct{} // closed when conns empties during a drain
	wg      sync.WaitGroup
}

func newServer(g *Gateway) *server {
	s := &server{g: g, conns: map[*srvConn]struct{}{}, hand: &handoffListener{ch: make(chan net.Conn), done: make(chan struct{})},
		idleTimeout: cliIdleTimeout, headerTimeout: cliHeaderTimeout, bodyTimeout: cliBodyTimeout}
	s.http = &http.Server{Handler: slowHandler{g}, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: cliIdleTimeout,
		MaxHeaderBytes: maxHeadBytes, ErrorLog: log.New(io.Discard, "", 0), ConnContext: markBothFramings}
	return s
}

func (s *server) start(ln net.Listener) {
	s.ln, s.addr = ln, ln.Addr()
	s.hand.addr = ln.Addr()
	s.started.Store(true)
	s.wg.Go(s.accept)
	s.wg.Go(func() { _ = s.http.Serve(s.hand) })
}

func (s *server) accept() {
	delay := time.Duration(0)
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors: back off as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
					continue
				case <-s.g.ctx.Done():
					return
				}
			}
			return
		}
		delay = 0
		c := newSrvConn(s, nc)
		s.mu.Lock()
		if s.closed || s.draining.Load() {
			// Accepted as the drain began: its first request is a new one.
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(c.serve)
	}
}

// stopAccepting closes the listening sockets: new connections are refused
// from then on. (A loop's listener is closed by its accepting task.)
func (s *server) stopAccepting() error {
	s.stopLn.Do(func() {
		if s.ln != nil {
			s.lnErr = s.ln.Close()
		}
		for _, ln := range s.lls {
			ln.Stop()
		}
	})
	return s.lnErr
}

// drain is the graceful half of a shutdown, as nginx's on SIGQUIT or
// net/http's Server.Shutdown: stop accepting, close the connections that
// wait between requests, and let the requests in flight finish, each
// answer with Connection: close. It returns once every connection has
// ended, or with ctx's error when ctx ends first; close then cuts what is
// left.
func (s *server) drain(ctx context.Context) error {
	s.mu.Lock()
	if s.closed || s.draining.Swap(true) {
		s.mu.Unlock()
		return nil
	}
	emptied := make(chan struct{})
	if len(s.conns) == 0 {
		close(emptied)
	} else {
		s.emptied = emptied
	}
	s.mu.Unlock()
	_ = s.stopAccepting()
	// net/http's connections: idle ones close now, answers in flight say
	// Connection: close.
	s.http.SetKeepAlivesEnabled(false)
	// The fast path's: a connection waiting for its next request sees the
	// drain when its read wakes (fill); one in the middle of a request
	// takes the early wake-up as any deadline armed early, and goes on.
	// Under s.mu, so that a connection being handed to net/http (which
	// untracks it first) is not woken after net/http took it.
	s.mu.Lock()
	now := time.Now()
	for c := range s.conns {
		_ = c.nc.SetReadDeadline(now)
	}
	s.mu.Unlock()
	select {
	case <-emptied:
	case <-ctx.Done():
		return ctx.Err()
	}
	// Connections handed over before are net/http's now. (One the fast
	// path hands over during the drain, a request begun on a connection
	// in flight that net/http must read, may find the hand-over closed:
	// it is cut, as a request arriving at an idle connection is.)
	return s.http.Shutdown(ctx)
}

func (s *server) close() error {
	s.mu.Lock()
	s.closed = true
	conns := make([]*srvConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	err := s.stopAccepting()
	if s.loops != nil {
		// Every wait on a loop fails from now on: accepting tasks, idle
		// client connections and exchanges return, and each loop closes
		// its sockets as Run ends. (A loop's sockets are closed on it.)
		for _, l := range s.loops {
			l.Shutdown()
			l.Close()
		}
		conns = nil
	}
	for _, c := range conns {
		c.nc.Close()
	}
	_ = s.http.Close()
	s.hand.Close()
	s.wg.Wait()
	return err
}

// listenLoops binds n listening sockets to addr, one per loop; with port
// 0 the first one picks the port and the others share it.
func listenLoops(addr string, n int) ([]*evloop.Listener, error) {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, err
	}
	if ta.IP == nil {
		ta.IP = net.IPv4zero // ":8080": every interface, as net.Listen
	}
	at := ta.AddrPort().String()
	var lls []*evloop.Listener
	for range n {
		ln, err := evloop.Listen(at, n > 1)
		if err != nil {
			for _, l := range lls {
				l.Close()
			}
			return nil, err
		}
		lls = append(lls, ln)
		at = ln.Addr().String()
	}
	return lls, nil
}

// startLoops serves on one event loop per listener.
func (s *server) startLoops(lls []*evloop.Listener) error {
	for range lls {
		l, err := evloop.New()
		if err != nil {
			for _, l := range s.loops {
				l.Close()
				l.Run(context.Background()) // releases its descriptors
			}
			s.loops = nil
			return err
		}
		s.loops = append(s.loops, l)
	}
	s.lls = lls
	s.addr = lls[0].Addr()
	s.hand.addr = s.addr
	s.started.Store(true)
	for i, l := range s.loops {
		ln := lls[i]
		l.Go(func(t *evloop.Task) { s.acceptOnLoop(t, ln, i+1) })
		s.wg.Go(func() { l.Run(s.g.ctx) })
	}
	s.wg.Go(func() { _ = s.http.Serve(s.hand) })
	return nil
}

// acceptOnLoop accepts client connections on loop n (from 1) and serves
// each as a task of that loop.
func (s *server) acceptOnLoop(t *evloop.Task, ln *evloop.Listener, n int) {
	defer ln.Close()
	delay := time.Duration(0)
	for {
		lc, err := ln.Accept(t)
		if err != nil {
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors: back off as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				t.Sleep(s.g.ctx, delay)
				continue
			}
			return // shut down
		}
		delay = 0
		c := newSrvConn(s, lc)
		s.mu.Lock()
		if s.closed || s.draining.Load() {
			s.mu.Unlock()
			lc.Attach(t)
			lc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		t.Go(func(t *evloop.Task) {
			lc.Attach(t)
			c.lc, c.ex.task, c.ex.loop = lc, t, n
			c.serve()
		})
	}
}

// onLoop runs fn on loop n (from 1), or nowhere if that loop has ended
// (its sockets are closed then).
func (s *server) onLoop(n int, fn func()) {
	if n < 1 || n > len(s.loops) {
		return
	}
	s.loops[n-1].Go(func(*evloop.Task) { fn() })
}

func (s *server) untrack(c *srvConn) {
	s.mu.Lock()
	delete(s.conns, c)
	if s.emptied != nil && len(s.conns) == 0 {
		close(s.emptied)
		s.emptied = nil
	}
	s.mu.Unlock()
}

// srvConn is one client connection on the fast path.
type srvConn struct {
	sock
	s      *server
	nc     net.Conn
	lc     *evloop.Conn // nc, on a loop
	buf    []byte
	r, w   int
	rdl    time.Time // read deadline armed on nc
	wdl    time.Time // write deadline armed on nc
	out    []byte    // answer bytes not yet written
	fwd    []byte    // scratch: header lines to forward
	ip     []byte    // client address for X-Forwarded-For
	rh     reqHead
	now    time.Time // clock reading of the current request
	ex     exchange
	rw     rawWriter
	close  bool // close after the current answer
	peekFn func(fd uintptr) bool
	peekN  int
	peekE  error
	peekB  [1]byte
	idBuf  [40]byte
}

func newSrvConn(s *server, nc net.Conn) *srvConn {
	c := &srvConn{s: s, nc: nc, buf: make([]byte, cliBufSize)}
	c.sock.init(nc)
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.ip = []byte(ta.IP.String())
	}
	c.ex.g = s.g
	c.ex.resp = c
	c.rw.c = c
	c.peekFn = c.peek
	return c
}

// serve reads and answers requests until the client leaves, an answer
// must close the connection, or net/http takes the connection over.
func (c *srvConn) serve() {
	handed := false
	defer func() {
		c.s.untrack(c)
		if !handed {
			c.nc.Close()
		}
	}()
	g := c.s.g
	for {
		end := -1
		var headDL time.Time // a request started: its head must arrive by then (slowloris)
		for {
			if c.w > c.r {
				if end = headEnd(c.buf[c.r:c.w]); end >= 0 {
					break
				}
				if c.w-c.r >= maxHeadBytes {
					handed = c.handoff()
					return
				}
			}
			now := time.Now()
			want := now.Add(c.s.idleTimeout)
			if c.w > c.r {
				if headDL.IsZero() {
					headDL = now.Add(c.s.headerTimeout)
				}
				want = headDL
			}
			if err := c.fill(want, now, maxHeadBytes); err != nil {
				return
			}
		}
		var err error
		c.fwd, err = parseRequest(c.buf[c.r:c.r+end], &c.rh, c.fwd[:0])
		if err != nil {
			handed = c.handoff()
			return
		}
		h := &c.rh
		path := h.uri
		for i, b := range path {
			if b == '?' {
				path = path[:i]
				break
			}
		}
		rt := g.match(path)
		bodyLen := max(h.clen, 0)
		if bodyLen > 0 {
			bound := int64(defaultMaxBody)
			if rt != nil {
				bound = rt.maxBody
			}
			if bodyLen > bound {
				handed = c.handoff() // streamed once, by net/http
				return
			}
			now := time.Now()
			bodyDL := now.Add(c.s.bodyTimeout)
			for int64(c.w-c.r-end) < bodyLen {
				if err := c.fill(bodyDL, now, end+int(bodyLen)); err != nil {
					return
				}
			}
			// fill may have moved the buffer: parse again to point into it.
			if c.fwd, err = parseRequest(c.buf[c.r:c.r+end], &c.rh, c.fwd[:0]); err != nil {
				handed = c.handoff()
				return
			}
		}
		ex := &c.ex
		ex.reset()
		ex.rt = rt
		ex.method, ex.uri, ex.host = h.method, h.uri, h.host
		ex.sendLen = h.clen >= 0
		ex.body = c.buf[c.r+end : c.r+end+int(bodyLen)]
		c.close = h.close
		ex.reqID = h.reqID
		if ex.reqID == nil {
			ex.reqID = g.newID(c.idBuf[:0])
		}
		ex.head = buildHead(ex.head[:0], h.method, h.uri, h.host, c.fwd)
		ex.head = propagationOf(rt).appendHeaders(ex.head, h.xff, c.ip, h.reqID, ex.reqID)
		c.rw.reset()
		ex.start = time.Now()
		c.now = ex.start
		c.s.inFlight.Add(1)
		g.handle(ex)
		if len(c.out) > 0 {
			err := c.write(c.out)
			c.out = c.out[:0]
			if err != nil {
				c.s.requestEnded()
				return
			}
		}
		c.s.requestEnded()
		if ex.abort || c.close {
			return
		}
		c.r += end + int(bodyLen)
		if len(c.buf) > 4*maxHeadBytes && c.w-c.r < cliBufSize {
			// A large body grew the buffer: give it back.
			nb := make([]byte, cliBufSize)
			c.w = copy(nb, c.buf[c.r:c.w])
			c.buf, c.r = nb, 0
		}
	}
}

// buildHead writes the request line and the headers forwarded from the
// client; the gateway's own (appendHeaders, then buildAttempt's) and the
// blank line follow.
func buildHead(b []byte, method string, uri, host, fwd []byte) []byte {
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, uri...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	return append(b, fwd...)
}

// appendHeaders appends X-Forwarded-For and X-Request-Id: with the
// client's address appended and the request's ID (the client's or a
// generated one) where p asks for them, otherwise as the client sent
// them, if it did.
func (p propagation) appendHeaders(b, xff, ip, clientID, id []byte) []byte {
	if p&propForwardedFor == 0 {
		ip = nil
	}
	if len(xff) > 0 || len(ip) > 0 {
		b = append(b, "X-Forwarded-For: "...)
		if len(xff) > 0 {
			b = append(b, xff...)
			if len(ip) > 0 {
				b = append(b, ", "...)
			}
		}
		b = append(b, ip...)
		b = append(b, "\r\n"...)
	}
	if p&propRequestID == 0 {
		id = clientID
	}
	if len(id) > 0 {
		b = append(b, "X-Request-Id: "...)
		b = append(b, id...)
		b = append(b, "\r\n"...)
	}
	return b
}

// newID returns a fresh request ID, appended to dst: a per-gateway random
// prefix and a sequence number, unique and repeatable under the seed.
func (g *Gateway) newID(dst []byte) []byte {
	dst = append(dst, g.idPrefix...)
	return strconv.AppendUint(dst, g.idSeq.Add(1), 16)
}

// fill reads more of the request, waiting at most until want, growing the
// buffer up to limit bytes from c.r. A connection with no request under
// way ends when the gateway drains.
func (c *srvConn) fill(want, now time.Time, limit int) error {
	idle := c.r == c.w
	if idle {
		c.r, c.w = 0, 0
	}
	if c.w == len(c.buf) {
		if c.r > 0 {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		} else {
			nb := make([]byte, min(max(2*len(c.buf), limit), 2*limit))
			c.w = copy(nb, c.buf[c.r:c.w])
			c.buf, c.r = nb, 0
		}
	}
	for first := true; ; first = false {
		if !first {
			now = time.Now()
		}
		armRead(c.nc, &c.rdl, want, now, want.Sub(now)/2)
		// After arming: the drain wakes the read once it has set the flag,
		// so a wait armed after that check still ends (see drain).
		if idle && c.s.draining.Load() {
			return errDraining
		}
		n, err := c.sock.read(c.buf[c.w:])
		c.w += n
		if n > 0 {
			return nil
		}
		if err == nil {
			continue
		}
		if isTimeout(err) && time.Now().Before(want) {
			c.rdl = time.Time{} // armed early: re-arm and go on
			continue
		}
		return err
	}
}

// write sends b to the client. The deadline is armed from the clock
// reading of the request (c.now): with 30 s of slack a few milliseconds do
// not matter, and a clock read per write does.
func (c *srvConn) write(b []byte) error {
	now := c.now
	if c.ex.lastNow.After(now) {
		now = c.ex.lastNow // a long body: the clock read for its last upstream read
	}
	want := now.Add(cliWriteTimeout)
	for {
		armWrite(c.nc, &c.wdl, want, now, cliWriteTimeout/2)
		n, err := c.sock.write(b)
		if err == nil || !isTimeout(err) {
			return err
		}
		if now = time.Now(); !now.Before(want) {
			return err
		}
		b, c.wdl = b[n:], time.Time{} // armed early: re-arm, write the rest
	}
}

// armRead makes sure the read deadline armed on nc is no later than want,
// re-arming only when the armed one is too late, already past, or less than
// slack away. Setting a deadline costs a runtime timer update; at tens of
// thousands of requests a second that shows, so a deadline armed for an
// earlier request is kept while it still lies ahead: when it fires early,
// the caller sees a timeout before its own deadline, re-arms and goes on.
func armRead(nc net.Conn, armed *time.Time, want, now time.Time, slack time.Duration) {
	if a := *armed; a.IsZero() || a.After(want) || a.Sub(now) < slack {
		_ = nc.SetReadDeadline(want)
		*armed = want
	}
}

func armWrite(nc net.Conn, armed *time.Time, want, now time.Time, slack time.Duration) {
	if a := *armed; a.IsZero() || a.After(want) || a.Sub(now) < slack {
		_ = nc.SetWriteDeadline(want)
		*armed = want
	}
}

// requestEnded counts a request out: its answer is written, or can no
// longer be.
func (s *server) requestEnded() {
	s.inFlight.Add(-1)
	s.ended.Add(1)
}

// closing reports whether the answer being written is the connection's
// last: the request or the answer's framing says so, or the gateway is
// draining (the client then knows not to send another request on it).
func (c *srvConn) closing() bool {
	if !c.close && c.s.draining.Load() {
		c.close = true
	}
	return c.close
}

// errDraining ends a connection that waits for its next request while the
// gateway drains.
var errDraining = errors.New("gateway draining")

// handoff gives the connection, from the current request on, to net/http.
func (c *srvConn) handoff() bool {
	c.s.untrack(c) // before its deadline is cleared: see drain
	_ = c.nc.SetDeadline(time.Time{})
	pre := append([]byte(nil), c.buf[c.r:c.w]...)
	if c.lc == nil {
		return c.s.hand.give(&prefixConn{Conn: c.nc, pre: pre})
	}
	// Off the loop: net/http serves it on a goroutine, on Go's netpoller,
	// and the loop must not wait for net/http to take it.
	nc, err := c.lc.Release()
	if err != nil {
		return false
	}
	go func() {
		pc := &prefixConn{Conn: nc, pre: pre}
		if !c.s.hand.give(pc) {
			pc.Close()
		}
	}()
	return true
}

// gone peeks at the client socket without blocking: a closed or reset
// connection means the client left. Pipelined bytes mean it is there.
func (c *srvConn) gone() bool {
	if c.rc == nil {
		return false
	}
	for range 2 {
		err := c.rc.Read(c.peekFn)
		if err == nil {
			break
		}
		if !isTimeout(err) {
			return true
		}
		// The read deadline armed early has passed: re-arm, peek again.
		now := time.Now()
		c.rdl = time.Time{}
		armRead(c.nc, &c.rdl, now.Add(cliIdleTimeout), now, 0)
	}
	switch {
	case c.peekE == syscall.EAGAIN || c.peekE == syscall.EWOULDBLOCK:
		return false
	case c.peekE != nil:
		return true
	}
	return c.peekN == 0
}

func (c *srvConn) peek(fd uintptr) bool {
	c.peekN, _, c.peekE = syscall.Recvfrom(int(fd), c.peekB[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return true
}

func (c *srvConn) context() context.Context { return context.Background() }

func (c *srvConn) writer() http.ResponseWriter { return &c.rw }

// forward streams the upstream's answer to the client as it came: raw
// header lines (minus hop-by-hop ones) and raw body framing.
func (c *srvConn) forward(ex *exchange, u *upConn) (upErr, cliErr error) {
	h := &ex.rh
	b := append(c.out[:0], "HTTP/1.1 "...)
	b = append(b, h.statusLine...)
	b = append(b, "\r\n"...)
	b = append(b, h.hdr...)
	if h.status >= 400 && !h.hasCause {
		b = append(b, "X-Cascade-Cause: upstream_error\r\n"...)
	}
	switch {
	case h.chunked && !h.noBody:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case h.clen >= 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, h.clen, 10)
		b = append(b, "\r\n"...)
	case h.untilClose && !h.noBody:
		c.close = true
	}
	if c.closing() {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "X-Request-Id: "...)
	b = append(b, ex.reqID...)
	b = append(b, "\r\n\r\n"...)
	u.r += h.headEnd
	b, upErr, cliErr = c.body(ex, u, b)
	c.out = b[:0]
	if upErr != nil || cliErr != nil {
		u.close()
		return upErr, cliErr
	}
	if h.keep && u.unread() == 0 {
		u.pool.put(u, ex.start)
	} else {
		u.close()
	}
	return nil, nil
}

// flushAt is how many pending bytes make the body loop write.
const flushAt = 32 << 10

// body forwards the response body after the head in b.
func (c *srvConn) body(ex *exchange, u *upConn, b []byte) (_ []byte, upErr, cliErr error) {
	h := &ex.rh
	switch {
	case h.noBody:
		return b, nil, c.write(b)
	case h.clen >= 0:
		left := h.clen
		for {
			take := min(left, int64(u.unread()))
			p := u.buf[u.r : u.r+int(take)]
			ex.collect(p)
			ex.bytes += take
			u.r += int(take)
			left -= take
			if len(b)+len(p) <= flushAt {
				b = append(b, p...)
			} else {
				if err := c.write(b); err != nil {
					return b, nil, err
				}
				b = b[:0]
				if err := c.write(p); err != nil {
					return b, nil, err
				}
			}
			// Write what we have before waiting for more: the client must
			// not wait for the upstream's next read.
			if len(b) > 0 {
				if err := c.write(b); err != nil {
					return b, nil, err
				}
				b = b[:0]
			}
			if left == 0 {
				return b, nil, nil
			}
			if err := ex.fillBody(u); err != nil {
				return b, err, nil
			}
		}
	case h.chunked:
		var cs chunkScanner
		for {
			p := u.buf[u.r:u.w]
			n, ds, de, err := cs.scan(p)
			if err != nil {
				return b, err, nil
			}
			ex.collect(p[ds:de])
			ex.bytes += int64(de - ds)
			b = append(b, p[:n]...)
			u.r += n
			if cs.done() {
				return b, nil, c.write(b)
			}
			if u.unread() > 0 {
				continue
			}
			if len(b) > 0 {
				if err := c.write(b); err != nil {
					return b, nil, err
				}
				b = b[:0]
			}
			if err := ex.fillBody(u); err != nil {
				return b, err, nil
			}
		}
	default: // until the upstream closes
		for {
			p := u.buf[u.r:u.w]
			ex.collect(p)
			ex.bytes += int64(len(p))
			b = append(b, p...)
			u.r = u.w
			if err := c.write(b); err != nil {
				return b, nil, err
			}
			b = b[:0]
			err := ex.fillBody(u)
			if errors.Is(err, errBodyEOF) {
				return b, nil, nil
			}
			if err != nil {
				return b, err, nil
			}
		}
	}
}

// errBodyEOF ends a body delimited by the connection closing.
var errBodyEOF = errors.New("end of body")

// fillBody reads more of the response body, waiting at most the idle
// timeout and never past the total deadline.
func (ex *exchange) fillBody(u *upConn) error {
	now := time.Now()
	ex.lastNow = now
	// The idle window starts once, here: a read deadline armed earlier
	// (the head's poll for the client) that fires first must not open a
	// new window from the moment it fired.
	want := ex.deadline
	if ex.rt.idle > 0 {
		if t := now.Add(ex.rt.idle); t.Before(want) {
			want = t
		}
	}
	for {
		err := u.fill(want, now, upBufSize)
		switch {
		case err == nil:
			return nil
		case isTimeout(err):
			now = time.Now()
			if now.Before(want) {
				u.rdl = time.Time{} // armed early for an earlier wait: re-arm for want
				continue
			}
			if !now.Before(ex.deadline) {
				return errTotalTimeout
			}
			return errIdleTimeout
		case ex.rh.untilClose && (err == io.EOF || err == io.ErrNoProgress):
			return errBodyEOF
		default:
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return resetError{err}
		}
	}
}

// rawWriter is the fast path's http.ResponseWriter, for the answers the
// gateway writes itself (errors, fallbacks): rare, so a Header map is fine.
type rawWriter struct {
	c     *srvConn
	h     http.Header
	wrote bool
}

func (w *rawWriter) reset() {
	w.wrote = false
	if w.h != nil {
		clear(w.h)
	}
}

func (w *rawWriter) Header() http.Header {
	if w.h == nil {
		w.h = http.Header{}
	}
	return w.h
}

func (w *rawWriter) WriteHeader(status int) {
	if w.wrote {
		return
	}
	w.wrote = true
	c := w.c
	b := append(c.out[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\n"...)
	h := w.Header()
	if h.Get("Content-Length") == "" {
		c.close = true // no framing: the end of the connection ends the body
	}
	if c.closing() {
		h.Set("Connection", "close")
	}
	for k, vs := range h {
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "\r\n"...)
	c.out = b
}

func (w *rawWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	w.c.out = append(w.c.out, p...)
	return len(p), nil
}

// prefixConn replays the bytes the fast path read before handing over.
type prefixConn struct {
	net.Conn
	pre []byte
}

// bothFramingsKey marks, in a handed-over connection's context, a first
// request that carries both Content-Length and Transfer-Encoding.
type bothFramingsKey struct{}

// markBothFramings is the net/http server's ConnContext. A request with
// both framings is how requests are smuggled past a proxy that reads one
// and a server that reads the other. net/http takes the chunked framing and
// drops Content-Length, as RFC 9112 6.3 allows, but keeps the connection,
// where the RFC says to close it after answering: nothing after such a
// request on that connection can be trusted. The fast path hands these
// requests over with their head still buffered, so it is read here; the
// handler then answers with Connection: close.
func markBothFramings(ctx context.Context, c net.Conn) context.Context {
	if pc, ok := c.(*prefixConn); ok && bothFramings(pc.pre) {
		return context.WithValue(ctx, bothFramingsKey{}, true)
	}
	return ctx
}

// bothFramings reports whether the request head at the start of b has a
// Content-Length and a Transfer-Encoding field.
func bothFramings(b []byte) bool {
	var cl, te bool
	first := true
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil // a head cut short: what is there
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break // the end of the head
		}
		if first {
			first = false // the request line
			continue
		}
		name, _, _ := bytes.Cut(line, []byte(":"))
		cl = cl || httpsyntax.EqualFold(name, "content-length")
		te = te || httpsyntax.EqualFold(name, "transfer-encoding")
	}
	return cl && te
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// handoffListener feeds handed-over connections to the net/http Server.
type handoffListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

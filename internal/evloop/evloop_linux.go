package evloop

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Loop is one event loop: Run it on a goroutine of its own, give it tasks
// with Go.
type Loop struct {
	ep   int
	wake int // eventfd: new tasks, wake-ups, cancellations, Close
	base time.Time

	mu      sync.Mutex
	queue   []func(*Task) // from other goroutines
	woken   []*Task       // Task.Wake from other goroutines
	closing bool
	poked   atomic.Bool  // wake has been written since the loop last drained it
	kick    atomic.Bool  // resume every parked task (a deadline moved into the past, cancellation)
	shut    atomic.Bool  // Shutdown: every wait fails with net.ErrClosed
	now     atomic.Int64 // the loop's clock reading after its last wait (ns since base)

	// Owned by the loop's goroutine.
	spawn  []func(*Task) // Task.Go: started before the next wait
	tasks  []*Task       // by slot; nil: free
	free   []int
	conns  []*Conn // by registration index (epoll data); nil: free
	cfree  []int32
	gen    int32 // registration generation: tells a stale event from a reused index
	timers timerHeap
	live   int
	addrs  map[string]unix.Sockaddr

	noPwait2 bool // the kernel has no epoll_pwait2
}

// maxWait bounds one epoll wait even when no task has a deadline, so a
// loop never holds its P for long even if asynchronous preemption is off.
const maxWait = 10 * time.Millisecond

// loopEvents is how many ready sockets one wait returns at most.
const loopEvents = 256

// wakeIdx marks the eventfd's epoll registration.
const wakeIdx = -1

const noDeadline = int64(math.MaxInt64)

var errNotAttached = errors.New("evloop: the connection belongs to no task")

// New returns a loop, ready to Run.
func New() (*Loop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("evloop: epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("evloop: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: wakeIdx}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, fmt.Errorf("evloop: epoll_ctl: %w", err)
	}
	return &Loop{ep: ep, wake: wake, base: time.Now(), addrs: map[string]unix.Sockaddr{}}, nil
}

// Go starts fn as a task on the loop. It may be called from any goroutine,
// before or during Run; after Close it does nothing and reports false.
// From a task of the same loop, Task.Go is cheaper.
func (l *Loop) Go(fn func(*Task)) bool {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return false
	}
	l.queue = append(l.queue, fn)
	l.mu.Unlock()
	l.poke()
	return true
}

// Close tells Run to return once its tasks have ended. Tasks already given
// to Go still run.
func (l *Loop) Close() {
	l.mu.Lock()
	l.closing = true
	l.mu.Unlock()
	l.poke()
}

// Shutdown makes every wait of every Conn of the loop fail with
// net.ErrClosed, now and from then on, and ends Sleeps: tasks blocked on a
// socket (a server's idle client connections) return so that Run can end.
// It may be called from any goroutine.
func (l *Loop) Shutdown() {
	l.shut.Store(true)
	l.kick.Store(true)
	l.poke()
}

// poke wakes the loop's wait.
func (l *Loop) poke() {
	if l.poked.Swap(true) {
		return
	}
	one := uint64(1)
	unix.Write(l.wake, (*[8]byte)(unsafe.Pointer(&one))[:])
}

// Run runs the loop on the calling goroutine until Close was called and
// every task has returned. Cancelling ctx wakes every task (their Conns
// and Sleeps see it); it does not end the tasks by itself. When Run
// returns, the loop's descriptors and every Conn still open on it are
// closed: a loop's sockets do not outlive it. A Loop runs once.
func (l *Loop) Run(ctx context.Context) {
	defer l.release()
	stop := context.AfterFunc(ctx, func() {
		l.kick.Store(true)
		l.poke()
	})
	defer stop()
	evs := make([]unix.EpollEvent, loopEvents)
	// One clock reading per wait, taken after it: tasks and timers use it
	// (a wait computed from it may end late by the time the last batch
	// took, microseconds).
	l.now.Store(int64(time.Since(l.base)))
	for {
		if l.start() {
			return
		}
		wait := maxWait
		if len(l.timers) > 0 {
			wait = max(0, min(wait, time.Duration(l.timers[0].key-l.now.Load())))
		}
		n := l.wait(evs, wait)
		l.now.Store(int64(time.Since(l.base)))
		for _, ev := range evs[:n] {
			if ev.Fd == wakeIdx {
				var b [8]byte
				l.poked.Store(false)
				unix.Read(l.wake, b[:])
				l.resumeWoken()
				continue
			}
			// An event of a socket closed since, or of an index reused
			// since, would only wake a task spuriously (every wait
			// re-checks); the generation skips most of them.
			if c := l.conns[ev.Fd]; c != nil && c.gen == ev.Pad && c.owner != nil && c.owner.parked {
				l.resume(c.owner)
			}
		}
		if l.kick.Swap(false) {
			for _, t := range l.tasks {
				if t != nil && t.parked {
					l.resume(t)
				}
			}
		}
		// Every live task is parked here (a task gives the loop back only
		// by parking), and one resumed past its deadline does not park
		// again with it: its wait reports the deadline.
		for len(l.timers) > 0 && l.timers[0].key <= l.now.Load() {
			l.resume(l.timers[0])
		}
	}
}

func (l *Loop) release() {
	for _, c := range l.conns {
		if c != nil {
			c.Close()
		}
	}
	unix.Close(l.ep)
	unix.Close(l.wake)
}

// wait is one raw epoll wait of at most d. epoll_pwait2 takes a timespec:
// a think time or a timeout ends within the thread's timer slack (50 µs)
// instead of up to a millisecond late, as epoll_pwait's milliseconds would
// have it. Kernels before 5.11 lack it (ENOSYS): then milliseconds,
// rounded up.
func (l *Loop) wait(evs []unix.EpollEvent, d time.Duration) int {
	var n uintptr
	var e syscall.Errno
	if !l.noPwait2 {
		ts := unix.NsecToTimespec(int64(d))
		n, _, e = unix.RawSyscall6(unix.SYS_EPOLL_PWAIT2, uintptr(l.ep), uintptr(unsafe.Pointer(&evs[0])),
			uintptr(len(evs)), uintptr(unsafe.Pointer(&ts)), 0, 0)
		if e == unix.ENOSYS {
			l.noPwait2 = true
		}
	}
	if l.noPwait2 {
		ms := (d + time.Millisecond - 1) / time.Millisecond
		n, _, e = unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.ep), uintptr(unsafe.Pointer(&evs[0])),
			uintptr(len(evs)), uintptr(ms), 0, 0)
	}
	if e != 0 {
		return 0 // EINTR: a signal (preemption, for one); the caller looks at the timers and goes on
	}
	return int(n)
}

// start starts queued tasks; it reports whether the loop is done.
func (l *Loop) start() bool {
	l.mu.Lock()
	q, closing := l.queue, l.closing
	l.queue = nil
	l.mu.Unlock()
	for len(l.spawn) > 0 {
		s := l.spawn
		l.spawn = nil
		for _, fn := range s {
			l.startTask(fn)
		}
	}
	for _, fn := range q {
		l.startTask(fn)
	}
	return closing && l.live == 0 && len(q) == 0 && len(l.spawn) == 0
}

func (l *Loop) startTask(fn func(*Task)) {
	t := &Task{l: l, dl: noDeadline, key: noDeadline}
	if n := len(l.free); n > 0 {
		t.slot, l.free = l.free[n-1], l.free[:n-1]
		l.tasks[t.slot] = t
	} else {
		t.slot = len(l.tasks)
		l.tasks = append(l.tasks, t)
	}
	heap.Push(&l.timers, t)
	l.live++
	t.next, t.stop = iter.Pull(func(yield func(struct{}) bool) {
		t.yield = yield
		fn(t)
	})
	l.resume(t)
}

func (l *Loop) resumeWoken() {
	l.mu.Lock()
	w := l.woken
	l.woken = nil
	l.mu.Unlock()
	for _, t := range w {
		if t.parked {
			l.resume(t)
		}
	}
}

// resume switches to t until it waits again or returns.
func (l *Loop) resume(t *Task) {
	if t.ended {
		return
	}
	t.parked = false
	if _, ok := t.next(); ok {
		// A connection's deadline is armed once for many requests, so
		// most waits keep the key: no heap work.
		if t.dl != t.key {
			t.key = t.dl
			heap.Fix(&l.timers, t.hidx)
		}
		return
	}
	t.stop()
	t.ended = true
	// Sockets a task ended with would leak: close them for it. (A
	// connection handed to a pool was detached first.)
	for len(t.conns) > 0 {
		t.conns[len(t.conns)-1].Close()
	}
	heap.Remove(&l.timers, t.hidx)
	l.tasks[t.slot] = nil
	l.free = append(l.free, t.slot)
	l.live--
}

func (l *Loop) clock() int64 { return l.now.Load() }

func (l *Loop) loopTime(t time.Time) int64 {
	if t.IsZero() {
		return noDeadline
	}
	return int64(t.Sub(l.base))
}

// register adds fd to the loop's epoll set as a new Conn of no task.
func (l *Loop) register(fd int) (*Conn, error) {
	c := &Conn{l: l, fd: fd, oidx: -1}
	c.dl.Store(noDeadline)
	if n := len(l.cfree); n > 0 {
		c.idx, l.cfree = l.cfree[n-1], l.cfree[:n-1]
	} else {
		c.idx = int32(len(l.conns))
		l.conns = append(l.conns, nil)
	}
	l.gen++
	c.gen = l.gen
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: c.idx, Pad: c.gen}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.cfree = append(l.cfree, c.idx)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	l.conns[c.idx] = c
	return c, nil
}

func (l *Loop) unregister(c *Conn) {
	l.conns[c.idx] = nil
	l.cfree = append(l.cfree, c.idx)
}

// Task is one coroutine of a Loop.
type Task struct {
	l          *Loop
	slot, hidx int
	next       func() (struct{}, bool)
	stop       func()
	yield      func(struct{}) bool
	conns      []*Conn // attached: their events resume this task
	dl         int64   // wake at this loop time even without an event
	key        int64   // dl as the timer heap has it
	parked     bool
	ended      bool
}

// Loop returns the task's loop.
func (t *Task) Loop() *Loop { return t.l }

// Go starts fn as another task of the same loop, before the loop's next
// wait. Call it from t only.
func (t *Task) Go(fn func(*Task)) { t.l.spawn = append(t.l.spawn, fn) }

// park gives the loop back until an attached socket has an event, dl (loop
// time) passes, the task is woken or the loop kicked. Wake-ups may be
// spurious: callers re-check.
func (t *Task) park(dl int64) {
	t.dl, t.parked = dl, true
	t.yield(struct{}{})
}

// Park gives the loop back until Wake, until (zero: no bound), an event on
// one of the task's Conns, or the loop's context ending. It may return
// early for no reason: callers re-check what they wait for.
func (t *Task) Park(until time.Time) { t.park(t.l.loopTime(until)) }

// Wake resumes t if it is parked. It may be called from any goroutine:
// code that must wait for something other than a socket runs that wait on
// a goroutine, which calls Wake when done, and parks meanwhile.
func (t *Task) Wake() {
	l := t.l
	l.mu.Lock()
	l.woken = append(l.woken, t)
	l.mu.Unlock()
	if l.poked.Swap(true) {
		return
	}
	one := uint64(1)
	unix.Write(l.wake, (*[8]byte)(unsafe.Pointer(&one))[:])
}

// Sleep pauses the task for d, or until ctx is done or the loop shut down.
// It counts from a fresh reading of the clock, not the loop's, which is as
// old as the batch of tasks the loop is running: from that one a sleep
// ended up to a batch early (59.975 ms of 60 in CI), and a VU's think time
// or a retry's backoff with it.
func (t *Task) Sleep(ctx context.Context, d time.Duration) {
	end := int64(time.Since(t.l.base)) + int64(d)
	for ctx.Err() == nil && !t.l.shut.Load() && t.l.clock() < end {
		t.park(end)
	}
}

// Dial opens a TCP connection to addr (numeric host:port) in the loop,
// waiting for it there, and attaches it to t. It fails with
// os.ErrDeadlineExceeded at deadline (zero: none), with ctx's error when
// ctx ends first, and otherwise with a *net.OpError.
func (t *Task) Dial(ctx context.Context, addr string, deadline time.Time) (*Conn, error) {
	l := t.l
	sa, ok := l.addrs[addr]
	if !ok {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, err
		}
		// A copy per loop: Connect writes the Sockaddr's raw form, and
		// loops run in parallel.
		sa = sockaddr(ap)
		l.addrs[addr] = sa
	}
	fd, err := unix.Socket(family(sa), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) // as net.Dial does
	c, err := l.register(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	c.Attach(t)
	c.dl.Store(l.loopTime(deadline))
	fail := func(err error) (*Conn, error) {
		c.Close()
		return nil, err
	}
	err = unix.Connect(fd, sa)
	for err == unix.EINPROGRESS || err == unix.EINTR {
		// Connected when the socket turns writable; SO_ERROR says how.
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		if l.shut.Load() {
			return fail(net.ErrClosed)
		}
		if c.expired() {
			return fail(os.ErrDeadlineExceeded)
		}
		var pfd = [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if n, _ := unix.Poll(pfd[:], 0); n == 0 {
			t.park(c.dl.Load())
			continue
		}
		soErr, gerr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case gerr != nil:
			err = gerr
		case soErr != 0:
			err = syscall.Errno(soErr)
		default:
			err = nil
		}
	}
	if err != nil {
		return fail(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)})
	}
	c.dl.Store(noDeadline)
	return c, nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if a := ap.Addr().Unmap(); a.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

func family(sa unix.Sockaddr) int {
	if _, v6 := sa.(*unix.SockaddrInet6); v6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// Listener is a listening TCP socket whose Accept waits in a loop.
type Listener struct {
	fd   int
	addr *net.TCPAddr
	c    *Conn // the registration, made by the first Accept

	loop    atomic.Pointer[Loop] // the accepting loop, once Accept registered: Stop kicks it
	stopped atomic.Bool
}

// Listen binds addr (numeric host:port; port 0 picks one). With reusePort
// several Listeners may bind the same address, one per loop, and the
// kernel spreads connections over them (SO_REUSEPORT), as nginx's
// "reuseport" does.
func Listen(addr string, reusePort bool) (*Listener, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("evloop: listen %s: %w", addr, err)
	}
	sa := sockaddr(ap)
	fd, err := unix.Socket(family(sa), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	fail := func(op string, err error) (*Listener, error) {
		unix.Close(fd)
		return nil, &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError(op, err)}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("setsockopt", err)
	}
	if reusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fail("setsockopt", err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		return fail("listen", err)
	}
	ln := &Listener{fd: fd}
	if got, err := unix.Getsockname(fd); err == nil {
		ln.addr, _ = tcpAddr(got).(*net.TCPAddr)
	}
	return ln, nil
}

// Addr is the bound address.
func (ln *Listener) Addr() net.Addr { return ln.addr }

// Accept waits in t's loop for the next connection and returns it
// attached to no task (Attach it to the task that serves it). It fails
// with net.ErrClosed once the loop shut down or the listener was closed.
// All Accepts of a Listener must run on one loop.
func (ln *Listener) Accept(t *Task) (*Conn, error) {
	if ln.stopped.Load() {
		return nil, net.ErrClosed
	}
	if ln.c == nil {
		if ln.fd < 0 {
			return nil, net.ErrClosed
		}
		c, err := t.l.register(ln.fd)
		if err != nil {
			return nil, err
		}
		ln.c, ln.fd = c, -1
		ln.loop.Store(t.l)
	}
	l := ln.c.l
	ln.c.Attach(t)
	defer ln.c.Detach()
	for {
		var nfd int
		var aerr error
		stop := false
		err := ln.c.wait(func(fd uintptr) bool {
			if stop = ln.stopped.Load(); stop {
				return true // Stop kicked the loop
			}
			nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			return aerr != unix.EAGAIN && aerr != unix.EINTR
		})
		switch {
		case err != nil:
			return nil, err
		case stop:
			return nil, net.ErrClosed
		case aerr == unix.ECONNABORTED:
			continue
		case aerr != nil:
			return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", aerr)}
		}
		_ = unix.SetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) // as net's accept does
		c, err := l.register(nfd)
		if err != nil {
			unix.Close(nfd)
			return nil, err
		}
		return c, nil
	}
}

// Stop makes the pending Accept and every later one fail with
// net.ErrClosed, so that the accepting task returns and closes the socket.
// Unlike Close it may be called from any goroutine: a server draining its
// connections stops accepting while its loops go on serving.
func (ln *Listener) Stop() {
	ln.stopped.Store(true)
	// Accept stores the loop before it checks stopped: one of the two sees
	// the other.
	if l := ln.loop.Load(); l != nil {
		l.kick.Store(true)
		l.poke()
	}
}

// Close closes the listening socket. Call it from the task that accepts,
// or when its loop is not running.
func (ln *Listener) Close() error {
	if ln.c != nil {
		return ln.c.Close()
	}
	if ln.fd < 0 {
		return net.ErrClosed
	}
	err := unix.Close(ln.fd)
	ln.fd = -1
	return err
}

// Conn is a net.Conn over a socket a loop polls. Its methods, but
// SetDeadline and its siblings, must be called from the task it is
// attached to (or, for Close, when its loop is not running). Its deadline
// is a number on the loop's clock that the loop reads when the task waits;
// one set in the past from another goroutine (cancellation) kicks the
// loop so that a waiting task sees it.
type Conn struct {
	l     *Loop
	owner *Task
	oidx  int // index in owner.conns
	fd    int // -1 once closed
	idx   int32
	gen   int32
	dl    atomic.Int64
}

var (
	_ net.Conn        = (*Conn)(nil)
	_ syscall.Conn    = (*Conn)(nil)
	_ syscall.RawConn = rawConn{}
)

// Attach makes t the task whose waits this Conn's events resume (a pool
// hands a connection from one task to another). Call it from t.
func (c *Conn) Attach(t *Task) {
	if c.owner == t {
		return
	}
	c.Detach()
	c.owner, c.oidx = t, len(t.conns)
	t.conns = append(t.conns, c)
}

// Detach unbinds c from its task, so that the task's end does not close
// it (a connection returned to a pool).
func (c *Conn) Detach() {
	t := c.owner
	if t == nil {
		return
	}
	last := len(t.conns) - 1
	if c.oidx != last {
		t.conns[c.oidx] = t.conns[last]
		t.conns[c.oidx].oidx = c.oidx
	}
	t.conns[last] = nil
	t.conns = t.conns[:last]
	c.owner, c.oidx = nil, -1
}

// expired compares with the loop's reading of the clock after its last
// wait: a deadline that passes while the task runs is seen at its next wait.
func (c *Conn) expired() bool { return c.dl.Load() <= c.l.clock() }

// wait runs fn until it reports done, parking the task in between.
func (c *Conn) wait(fn func(fd uintptr) bool) error {
	for {
		switch {
		case c.fd < 0 || c.l.shut.Load():
			return net.ErrClosed
		case c.expired():
			return os.ErrDeadlineExceeded
		case fn(uintptr(c.fd)):
			return nil
		case c.owner == nil:
			return errNotAttached
		}
		c.owner.park(c.dl.Load())
	}
}

// rawConn is Conn's syscall.RawConn: callers that do their own raw I/O
// (the HTTP/1.1 client, the gateway) wait through it.
type rawConn struct{ c *Conn }

func (r rawConn) Read(fn func(fd uintptr) bool) error  { return r.c.wait(fn) }
func (r rawConn) Write(fn func(fd uintptr) bool) error { return r.c.wait(fn) }
func (r rawConn) Control(fn func(fd uintptr)) error {
	if r.c.fd < 0 {
		return net.ErrClosed
	}
	fn(uintptr(r.c.fd))
	return nil
}

// SyscallConn implements syscall.Conn.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return rawConn{c}, nil }

// rw moves bytes with one read or write syscall, parking on EAGAIN.
func (c *Conn) rw(write bool, b []byte) (int, error) {
	var n uintptr
	var e syscall.Errno
	err := c.wait(func(fd uintptr) bool {
		if write {
			n, _, e = unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MSG_NOSIGNAL, 0, 0)
		} else {
			n, _, e = unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		}
		return e != unix.EAGAIN && e != unix.EINTR
	})
	switch {
	case err != nil:
		return 0, err
	case e != 0 && write:
		return 0, os.NewSyscallError("sendto", e)
	case e != 0:
		return 0, os.NewSyscallError("read", e)
	}
	return int(n), nil
}

// Read implements net.Conn.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, err := c.rw(false, b)
	if err == nil && n == 0 {
		return 0, io.EOF
	}
	return n, err
}

// Write implements net.Conn.
func (c *Conn) Write(b []byte) (int, error) {
	total := 0
	for total < len(b) {
		n, err := c.rw(true, b[total:])
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Close closes the socket, which also takes it out of the epoll set.
func (c *Conn) Close() error {
	if c.fd < 0 {
		return net.ErrClosed
	}
	c.Detach()
	c.l.unregister(c)
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// Release takes the socket out of the loop and returns it as an ordinary
// net.Conn on Go's netpoller (a server hands a connection it does not
// serve itself to net/http); c is closed.
func (c *Conn) Release() (net.Conn, error) {
	if c.fd < 0 || c.l.shut.Load() {
		return nil, net.ErrClosed
	}
	fd := c.fd
	_ = unix.EpollCtl(c.l.ep, unix.EPOLL_CTL_DEL, fd, nil)
	c.Detach()
	c.l.unregister(c)
	c.fd = -1
	f := os.NewFile(uintptr(fd), "")
	defer f.Close()
	return net.FileConn(f) // a dup of fd, on Go's netpoller
}

func (c *Conn) LocalAddr() net.Addr  { return c.sockAddr(unix.Getsockname) }
func (c *Conn) RemoteAddr() net.Addr { return c.sockAddr(unix.Getpeername) }

func (c *Conn) sockAddr(get func(int) (unix.Sockaddr, error)) net.Addr {
	if c.fd < 0 {
		return nil
	}
	sa, err := get(c.fd)
	if err != nil {
		return nil
	}
	return tcpAddr(sa)
}

func tcpAddr(sa unix.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: a.Addr[:], Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: a.Addr[:], Port: a.Port}
	}
	return nil
}

// SetDeadline implements net.Conn. It may be called from any goroutine.
func (c *Conn) SetDeadline(t time.Time) error {
	l := c.l
	dl := l.loopTime(t)
	c.dl.Store(dl)
	if dl <= int64(time.Since(l.base)) {
		l.kick.Store(true)
		l.poke()
	}
	return nil
}

func (c *Conn) SetReadDeadline(t time.Time) error  { return c.SetDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.SetDeadline(t) }

// timerHeap orders a loop's tasks by deadline; every task has one entry.
type timerHeap []*Task

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].key < h[j].key }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *timerHeap) Push(x any) {
	t := x.(*Task)
	t.hidx = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return t
}

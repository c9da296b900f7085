package h1

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
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

// Loop runs tasks — ordinary blocking-style code that sends requests on
// Conns — as coroutines on one event loop: a single goroutine waits in
// epoll for every socket of its tasks and switches straight to the task
// whose socket became ready.
//
// Why not goroutines and Go's netpoller, as Conn uses by itself: at full
// speed a closed loop is bound by what each response costs the generator,
// and a parked goroutine costs a trip through the scheduler for every
// response (netpoll, ready, a thread woken or kept spinning to run it).
// wrk runs one epoll loop per thread and pays none of that. Measured on the
// 2-vCPU machine against the same upstream, unpinned: the same Conn code on
// goroutines reached 0.83-0.94× wrk's rate at 1.05-1.16× its CPU per
// request; a prototype loop 1.12× at 0.81× (bench/LOADGEN.md).
//
// The loop's wait is a raw epoll_pwait: the goroutine keeps its P while it
// waits, so a ready socket costs no P hand-off or thread wake-up. The price
// is that the P is not available to other goroutines while the loop waits
// (for at most maxWait; Go's preemption interrupts the wait for a GC). Run
// loops in a process whose other work is light, with GOMAXPROCS above the
// number of loops (cascade load does both), never beside a latency-
// sensitive server in the same process.
//
// Task code must only block through its Task (Conns from Task.NewConn,
// Task.Sleep). Anything else that blocks — a channel, a lock held long —
// stalls every task of the loop, though it stays correct.
type Loop struct {
	ep   int
	wake int // eventfd: new tasks, cancellations, Close
	base time.Time

	mu      sync.Mutex
	queue   []func(*Task)
	closing bool
	poked   atomic.Bool  // wake has been written since the loop last drained it
	kick    atomic.Bool  // a deadline was moved into the past from outside: resume every task
	now     atomic.Int64 // the loop's clock reading after its last wait (ns since base)

	slots  []*Task // by slot; nil: free
	free   []int
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

// wakeSlot marks the eventfd's epoll registration.
const wakeSlot = -1

// NewLoop returns a loop, ready to Run.
func NewLoop() (*Loop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("h1: epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("h1: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: wakeSlot}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, fmt.Errorf("h1: epoll_ctl: %w", err)
	}
	return &Loop{ep: ep, wake: wake, base: time.Now(), addrs: map[string]unix.Sockaddr{}}, nil
}

// Go starts fn as a task on the loop. It may be called from any goroutine,
// before or during Run, but not after Close.
func (l *Loop) Go(fn func(*Task)) {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		panic("h1: Loop.Go after Close")
	}
	l.queue = append(l.queue, fn)
	l.mu.Unlock()
	l.poke()
}

// Close tells Run to return once its tasks have ended. Tasks already given
// to Go still run.
func (l *Loop) Close() {
	l.mu.Lock()
	l.closing = true
	l.mu.Unlock()
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
// and Sleeps see it); it does not end the tasks by itself. Run releases
// the loop's file descriptors when it returns; a Loop runs once.
func (l *Loop) Run(ctx context.Context) {
	defer func() {
		unix.Close(l.ep)
		unix.Close(l.wake)
	}()
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
			if ev.Fd == wakeSlot {
				var b [8]byte
				l.poked.Store(false)
				unix.Read(l.wake, b[:])
				continue
			}
			// An event of a socket closed since (or whose slot was reused)
			// only wakes a task spuriously: every wait re-checks.
			if t := l.slots[ev.Fd]; t != nil && t.fd == int(ev.Pad) {
				l.resume(t)
			}
		}
		if l.kick.Swap(false) {
			for _, t := range l.slots {
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

// wait is one raw epoll wait of at most d. epoll_pwait2 takes a timespec:
// a think time or a client timeout ends within the thread's timer slack
// (50 µs) instead of up to a millisecond late, as epoll_pwait's
// milliseconds would have it. Kernels before 5.11 lack it (ENOSYS): then
// milliseconds, rounded up.
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
	for _, fn := range q {
		t := &Task{l: l, fd: -1, dl: noDeadlineNs, key: noDeadlineNs}
		if n := len(l.free); n > 0 {
			t.slot, l.free = l.free[n-1], l.free[:n-1]
			l.slots[t.slot] = t
		} else {
			t.slot = len(l.slots)
			l.slots = append(l.slots, t)
		}
		heap.Push(&l.timers, t)
		l.live++
		t.next, t.stop = iter.Pull(func(yield func(struct{}) bool) {
			t.yield = yield
			fn(t)
		})
		l.resume(t)
	}
	return closing && l.live == 0 && len(q) == 0
}

// resume switches to t until it waits again or returns.
func (l *Loop) resume(t *Task) {
	if t.ended {
		return
	}
	t.parked = false
	if _, ok := t.next(); ok {
		// A connection's deadline is armed once for many requests (Conn's
		// arm), so most waits keep the key: no heap work.
		if t.dl != t.key {
			t.key = t.dl
			heap.Fix(&l.timers, t.hidx)
		}
		return
	}
	t.stop()
	t.ended = true
	if t.fd >= 0 { // a task that ended with a socket open: close it for it
		unix.Close(t.fd)
		t.fd = -1
	}
	heap.Remove(&l.timers, t.hidx)
	l.slots[t.slot] = nil
	l.free = append(l.free, t.slot)
	l.live--
}

func (l *Loop) clock() int64 { return l.now.Load() }

// Task is one coroutine of a Loop.
type Task struct {
	l          *Loop
	slot, hidx int
	next       func() (struct{}, bool)
	stop       func()
	yield      func(struct{}) bool
	fd         int   // the socket it owns (-1: none); one at a time
	dl         int64 // wake at this loop time even without an event
	key        int64 // dl as the timer heap has it
	parked     bool
	ended      bool
}

const noDeadlineNs = int64(noDeadline)

// park gives the loop back until t's socket has an event, dl (loop time)
// passes or the loop is kicked. Wake-ups may be spurious: callers re-check.
func (t *Task) park(dl int64) {
	t.dl, t.parked = dl, true
	t.yield(struct{}{})
}

// Sleep pauses the task for d, or until ctx is done.
func (t *Task) Sleep(ctx context.Context, d time.Duration) {
	end := t.l.clock() + int64(d)
	for ctx.Err() == nil && t.l.clock() < end {
		t.park(end)
	}
}

// NewConn returns a Conn whose sockets this task's loop drives. Use it
// from this task only.
func (t *Task) NewConn(addr string, opts Options) (*Conn, error) {
	c, err := NewConn(addr, opts)
	if err != nil {
		return nil, err
	}
	c.dialer = t.dial
	return c, nil
}

// dial opens a non-blocking connection in the loop, waiting for it there.
// Its errors are unwrapped: Conn.dial classifies them as for net.Dialer.
func (t *Task) dial(ctx context.Context, addr string, dl time.Duration, base time.Time) (net.Conn, error) {
	if t.fd >= 0 {
		return nil, errors.New("h1: a loop task owns one connection at a time")
	}
	l := t.l
	sa, ok := l.addrs[addr]
	if !ok {
		ap, err := netip.ParseAddrPort(addr) // dialAddr made it numeric
		if err != nil {
			return nil, err
		}
		if ap.Addr().Unmap().Is4() {
			sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
		} else {
			sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
		}
		l.addrs[addr] = sa
	}
	family := unix.AF_INET
	if _, v6 := sa.(*unix.SockaddrInet6); v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) // as net.Dial does
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(t.slot), Pad: int32(fd)}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	t.fd = fd
	c := &loopConn{t: t, fd: fd}
	if dl == noDeadline {
		c.dl.Store(noDeadlineNs)
	} else {
		c.dl.Store(int64(base.Add(dl).Sub(l.base)))
	}
	fail := func(err error) (net.Conn, error) {
		c.Close()
		return nil, err
	}
	err = unix.Connect(fd, sa)
	for err == unix.EINPROGRESS || err == unix.EINTR {
		// Connected when the socket turns writable; SO_ERROR says how.
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		if c.expired() {
			return fail(ErrTimeout)
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
	return c, nil
}

// loopConn is a net.Conn over a socket its task's loop polls. Its deadline
// is a number on the loop's clock that the loop reads when the task waits;
// one set in the past from another goroutine (Conn's cancellation) kicks
// the loop so that a waiting task sees it.
type loopConn struct {
	t  *Task
	fd int // -1 once closed
	dl atomic.Int64
}

var (
	_ net.Conn        = (*loopConn)(nil)
	_ syscall.Conn    = (*loopConn)(nil)
	_ syscall.RawConn = loopRaw{}
)

// expired compares with the loop's reading of the clock after its last
// wait: a deadline that passes while the task runs is seen at its next wait.
func (c *loopConn) expired() bool { return c.dl.Load() <= c.t.l.clock() }

// wait runs fn until it reports done, parking the task in between.
func (c *loopConn) wait(fn func(fd uintptr) bool) error {
	for {
		if c.fd < 0 {
			return net.ErrClosed
		}
		if c.expired() {
			return os.ErrDeadlineExceeded
		}
		if fn(uintptr(c.fd)) {
			return nil
		}
		c.t.park(c.dl.Load())
	}
}

// loopRaw is loopConn's syscall.RawConn, through which Conn's callbacks
// read, write and peek (io_linux.go).
type loopRaw struct{ c *loopConn }

func (r loopRaw) Read(fn func(fd uintptr) bool) error  { return r.c.wait(fn) }
func (r loopRaw) Write(fn func(fd uintptr) bool) error { return r.c.wait(fn) }
func (r loopRaw) Control(fn func(fd uintptr)) error {
	if r.c.fd < 0 {
		return net.ErrClosed
	}
	fn(uintptr(r.c.fd))
	return nil
}

// SyscallConn implements syscall.Conn.
func (c *loopConn) SyscallConn() (syscall.RawConn, error) { return loopRaw{c}, nil }

// rw moves bytes with one read or write syscall, parking on EAGAIN.
func (c *loopConn) rw(write bool, b []byte) (int, error) {
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
func (c *loopConn) Read(b []byte) (int, error) {
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
func (c *loopConn) Write(b []byte) (int, error) {
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
func (c *loopConn) Close() error {
	if c.fd < 0 {
		return net.ErrClosed
	}
	err := unix.Close(c.fd)
	if c.t.fd == c.fd {
		c.t.fd = -1
	}
	c.fd = -1
	return err
}

func (c *loopConn) LocalAddr() net.Addr  { return c.sockAddr(unix.Getsockname) }
func (c *loopConn) RemoteAddr() net.Addr { return c.sockAddr(unix.Getpeername) }

func (c *loopConn) sockAddr(get func(int) (unix.Sockaddr, error)) net.Addr {
	if c.fd < 0 {
		return nil
	}
	sa, err := get(c.fd)
	if err != nil {
		return nil
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: a.Addr[:], Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: a.Addr[:], Port: a.Port}
	}
	return nil
}

// SetDeadline implements net.Conn.
func (c *loopConn) SetDeadline(t time.Time) error {
	l := c.t.l
	dl := noDeadlineNs
	if !t.IsZero() {
		dl = int64(t.Sub(l.base))
	}
	c.dl.Store(dl)
	if dl <= int64(time.Since(l.base)) {
		l.kick.Store(true)
		l.poke()
	}
	return nil
}

func (c *loopConn) SetReadDeadline(t time.Time) error  { return c.SetDeadline(t) }
func (c *loopConn) SetWriteDeadline(t time.Time) error { return c.SetDeadline(t) }

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

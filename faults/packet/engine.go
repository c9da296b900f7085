package packet

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// monoClock reads CLOCK_MONOTONIC through Go's monotonic clock (the same
// clock on Linux, read through the vDSO), so packet times can arm timerfds
// directly without a system call per reading.
type monoClock struct {
	base time.Time
	mono int64
}

func newMonoClock() monoClock {
	t0 := time.Now()
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	t1 := time.Now()
	return monoClock{base: t0.Add(t1.Sub(t0) / 2), mono: ts.Nano()}
}

// now is the current CLOCK_MONOTONIC time in ns.
func (c monoClock) now() int64 { return c.mono + int64(time.Since(c.base)) }

// waker is a CLOCK_MONOTONIC timerfd read through Go's netpoller.
//
// Go timers sleep in epoll_pwait with millisecond resolution, which is where
// the 0.5–0.8 ms overshoot per hop comes from. A timerfd is an hrtimer: the
// kernel makes the fd readable at the armed instant and the netpoller wakes
// at once. What remains is the wake-up latency of an idle CPU (tens of
// microseconds, more in a VM); the waker learns it and fires that much
// early, and the sender spins out the rest. So the spinning is bounded by
// how far the latency varies, not by a fixed margin, and a busy engine,
// whose CPU does not go idle, hardly spins at all.
type waker struct {
	f    *os.File
	rc   syscall.RawConn
	mono func() int64

	armedAt atomic.Int64 // the instant last asked for, for measuring lateness
	lead    atomic.Int64 // how early to fire: EWMA of the lateness, ns
}

// maxLead caps the learnt lateness so a stall (the machine busy elsewhere)
// does not turn into long spins.
const maxLead = int64(300 * time.Microsecond)

func newWaker(mono func() int64) (*waker, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &waker{f: f, rc: rc, mono: mono}, nil
}

// arm makes wait return shortly before the CLOCK_MONOTONIC instant due (at
// once if that has passed). Through RawConn.Control so it cannot race with
// Close.
func (w *waker) arm(due int64) {
	at := max(due-w.lead.Load(), 1) // 0 would disarm
	// An instant already past fires at once: lateness counts from now.
	w.armedAt.Store(max(at, w.mono()))
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(at)}
	_ = w.rc.Control(func(fd uintptr) {
		_ = unix.TimerfdSettime(int(fd), unix.TFD_TIMER_ABSTIME, &spec, nil)
	})
}

// wait blocks until the timer fires or the waker is closed.
func (w *waker) wait() error {
	var b [8]byte
	_, err := w.f.Read(b[:])
	return err
}

// woke records how late a wake-up came (now is when wait returned).
func (w *waker) woke(now int64) {
	late := now - w.armedAt.Load()
	if late < 0 || late > 10*maxLead {
		return // a stale arm, or a stall that says nothing about wake-ups
	}
	l := w.lead.Load()
	w.lead.Store(min(l+(late-l)/8, maxLead))
}

// spinUntil busy-waits for the last stretch before due.
func spinUntil(mono func() int64, due int64) {
	for {
		left := due - mono()
		if left <= 0 {
			return
		}
		if left > int64(20*time.Microsecond) {
			runtime.Gosched() // let other goroutines on this P run
		}
	}
}

func (w *waker) close() error { return w.f.Close() }

// counters are one direction's statistics, updated on the hot path.
type counters struct {
	packets, bytes, sent, lost, blackholed, overflow             atomic.Uint64
	duplicated, reordered, corrupted, delayed, retrans, writeErr atomic.Uint64
	// How late scheduled packets left against their due time: the engine's
	// own error, measured like a load generator measures its lag.
	lateSum, lateN, lateMax atomic.Int64
}

func (c *counters) late(d int64) {
	c.lateSum.Add(d)
	c.lateN.Add(1)
	for {
		m := c.lateMax.Load()
		if d <= m || c.lateMax.CompareAndSwap(m, d) {
			return
		}
	}
}

func (c *counters) snapshot() DirStats {
	s := DirStats{
		Packets: c.packets.Load(), Bytes: c.bytes.Load(), Sent: c.sent.Load(),
		Lost: c.lost.Load(), Blackholed: c.blackholed.Load(), Overflow: c.overflow.Load(),
		Duplicated: c.duplicated.Load(), Reordered: c.reordered.Load(), Corrupted: c.corrupted.Load(),
		Delayed: c.delayed.Load(), Retransmits: c.retrans.Load(), WriteErrors: c.writeErr.Load(),
	}
	s.Dropped = s.Lost + s.Blackholed + s.Overflow
	if n := c.lateN.Load(); n > 0 {
		s.MeanLateness = time.Duration(c.lateSum.Load() / n)
	}
	s.MaxLateness = time.Duration(c.lateMax.Load())
	return s
}

// pipe moves one direction's packets from src to dst:
//
//	src TUN ──read──▶ parse ─▶ retransmit count ─▶ policy.decide
//	                                                 │ drop
//	                                                 │ straight out ────────────▶ dst TUN
//	                                                 └ schedule (heap by due) ─▶ timerfd ─▶ dst TUN
//
// One goroutine reads and decides (it owns the impairer, parser and
// retransmit tracker), one sends what the schedule releases.
type pipe struct {
	l        *Link
	dir      Direction
	src, dst *os.File
	pol      atomic.Pointer[policy]
	st       counters

	mu    sync.Mutex // guards sched and the arming of wake
	sched schedule
	wake  *waker

	// Owned by the reading goroutine.
	imp     impairer
	parser  *parser
	retrans *retransTracker
	info    pktInfo
	seq     uint64
}

func (p *pipe) readLoop() {
	for {
		it := p.l.getItem()
		n, err := p.src.Read(it.buf)
		if err != nil {
			p.l.putItem(it)
			if !errors.Is(err, os.ErrClosed) {
				p.l.fail(err)
			}
			return
		}
		it.n = n
		p.handle(p.l.mono(), it)
	}
}

// handle decides the fate of one packet that arrived at now.
func (p *pipe) handle(now int64, it *item) {
	info := &p.info
	p.parser.parse(it.data(), info)
	p.st.packets.Add(1)
	p.st.bytes.Add(uint64(it.n))
	if info.proto == uint8(layers.IPProtocolTCP) && p.retrans.observe(info) {
		p.st.retrans.Add(1)
	}
	pol := p.pol.Load()
	if pol != p.imp.pol {
		p.imp.reset(pol, p.l.cfg.Seed, p.dir, now)
	}
	it.seq = p.seq
	p.seq++
	if pol.zero || !pol.applies(info) {
		p.sendNow(it)
		return
	}
	v := p.imp.decide(now, info, it.n)
	switch v.drop {
	case lost:
		p.st.lost.Add(1)
		p.l.putItem(it)
		return
	case blackholed:
		p.st.blackholed.Add(1)
		p.l.putItem(it)
		return
	case overflow:
		p.st.overflow.Add(1)
		p.l.putItem(it)
		return
	}
	copies := [2]*item{it}
	if v.copies == 2 {
		d := p.l.getItem()
		d.n = copy(d.buf, it.data())
		d.seq = it.seq
		copies[1] = d
		p.st.duplicated.Add(1)
	}
	// The duplicate is copied first, so only one copy is corrupted, as in
	// netem (which corrupts after cloning).
	if v.corrupt && corruptPacket(it.data(), info, p.imp.rng) {
		p.st.corrupted.Add(1)
	}
	if !pol.scheduled {
		p.sendNow(copies[0])
		if copies[1] != nil {
			p.sendNow(copies[1])
		}
		return
	}
	p.mu.Lock()
	before, had := p.sched.next()
	for i, c := range copies {
		if c == nil {
			continue
		}
		if p.sched.bytes+c.n > p.l.queueLimit {
			p.st.overflow.Add(1)
			p.l.putItem(c)
			continue
		}
		c.due = v.due[i]
		if c.due > now || v.held[i] {
			p.st.delayed.Add(1)
		}
		if v.held[i] {
			c.due += pol.reorderTimeout
			p.sched.pushHeld(c, pol.gap)
		} else {
			p.sched.push(c)
			p.sched.passed(c.due, c.seq)
		}
	}
	if after, ok := p.sched.next(); ok && (!had || after < before) {
		p.wake.arm(after)
	}
	p.mu.Unlock()
}

// sendNow writes a packet that needs no scheduling.
func (p *pipe) sendNow(it *item) {
	p.mu.Lock()
	re := p.sched.sent(it.seq)
	p.mu.Unlock()
	if re {
		p.st.reordered.Add(1)
	}
	p.write(it)
}

func (p *pipe) write(it *item) {
	if _, err := p.dst.Write(it.data()); err != nil {
		if !errors.Is(err, os.ErrClosed) {
			p.st.writeErr.Add(1)
		}
	} else {
		p.st.sent.Add(1)
	}
	p.l.putItem(it)
}

// sendLoop sends scheduled packets when they fall due.
func (p *pipe) sendLoop() {
	batch := make([]*item, 0, 64)
	for {
		if err := p.wake.wait(); err != nil {
			if !errors.Is(err, os.ErrClosed) {
				p.l.fail(err)
			}
			p.mu.Lock()
			left := p.sched.drain()
			p.mu.Unlock()
			for _, it := range left {
				p.l.putItem(it)
			}
			return
		}
		p.wake.woke(p.l.mono())
		for {
			now := p.l.mono()
			p.mu.Lock()
			for {
				it, re := p.sched.pop(now)
				if it == nil {
					break
				}
				if re {
					p.st.reordered.Add(1)
				}
				p.st.late(now - it.due)
				batch = append(batch, it)
			}
			due, ok := p.sched.next()
			spin := ok && due-now <= p.wake.lead.Load()
			if ok && !spin {
				p.wake.arm(due)
			}
			p.mu.Unlock()
			for i, it := range batch {
				p.write(it)
				batch[i] = nil
			}
			batch = batch[:0]
			if !spin {
				break
			}
			spinUntil(p.l.mono, due)
		}
	}
}

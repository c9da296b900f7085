package tcpfault

import (
	"runtime"
	"time"
)

// Precise waits. Go timers on Linux fire late: by ~0.1–0.3 ms for waits of
// a millisecond or more on an idle machine (more when it is busy), and
// never before ~1 ms for shorter ones. An injected 100 ms delay therefore
// sleeps on a timer only until a margin before the deadline and spins
// (yielding the processor) for the rest. The margin tracks a high quantile
// of the timer's recent overshoot, so the spin is as short as the machine
// allows: the CPU cost is the margin per delayed message, not per byte.
const (
	initialMargin = 400 * time.Microsecond
	minMargin     = 60 * time.Microsecond
	maxMargin     = 1500 * time.Microsecond
	timerFloor    = time.Millisecond // shorter timers fire after ~1 ms anyway
	// The margin steps up by marginUp when a timer overshoots it and down by
	// marginDown otherwise: it settles where overshoots beyond it are
	// marginDown/(marginUp+marginDown) ≈ 2 % of wakes (the frugal-streaming
	// quantile estimate), and a single outlier moves it by only marginUp.
	marginUp   = 49 * time.Microsecond
	marginDown = time.Microsecond
)

func (p *Proxy) observe(overshoot time.Duration) {
	m := time.Duration(p.margin.Load())
	if overshoot > m {
		m += marginUp
	} else {
		m -= marginDown
	}
	p.margin.Store(int64(min(max(m, minMargin), maxMargin)))
}

// Sleep waits until t, precisely (see above), unless the running toxic is
// changed or removed, or the connection closes: then it returns an error
// that Pipe must return.
func (p *Pipe) Sleep(t time.Time) error { return p.sleep(t, true) }

// SleepCoarse waits until t on a plain timer (late by a timer's overshoot)
// at no CPU cost; for waits whose exact end does not matter (bandwidth
// pacing, which catches up).
func (p *Pipe) SleepCoarse(t time.Time) error { return p.sleep(t, false) }

// Hold waits until the running toxic is changed or removed, or the
// connection closes; the chunk in hand then goes on under the new chain.
func (p *Pipe) Hold() error { return p.sleep(time.Time{}, false) }

func (p *Pipe) staleC() <-chan struct{} {
	if p.cur.e == nil {
		return nil
	}
	return p.cur.e.stale
}

func (p *Pipe) resetTimer(d time.Duration) <-chan time.Time {
	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		p.timer.Reset(d)
	}
	return p.timer.C
}

func (p *Pipe) interrupted() error {
	if p.cur.c != nil {
		p.intrPassed = p.cur.c.passed
	}
	return errInterrupted
}

func (p *Pipe) sleep(until time.Time, precise bool) error {
	stale, done := p.staleC(), p.c.ctx.Done()
	forever := until.IsZero()
	for {
		var tc <-chan time.Time
		var target time.Time
		if !forever {
			rem := time.Until(until)
			if rem <= 0 {
				break
			}
			d := rem
			if precise {
				m := time.Duration(p.c.p.margin.Load())
				if rem < m+timerFloor {
					return p.spin(until, stale)
				}
				d = rem - m
			}
			target = time.Now().Add(d)
			tc = p.resetTimer(d)
		}
		select {
		case <-tc:
			if precise {
				p.c.p.observe(time.Since(target))
			}
		case <-stale:
			if tc != nil {
				p.timer.Stop()
			}
			return p.interrupted()
		case <-p.alarmC():
			return p.alarmFired()
		case <-done:
			return errClosing
		}
	}
	if precise && p.cur.e != nil {
		p.cur.e.slot.counters.lag(time.Since(until))
	}
	return nil
}

func (p *Pipe) spin(until time.Time, stale <-chan struct{}) error {
	done, alarm := p.c.ctx.Done(), p.alarmC()
	for {
		now := time.Now()
		if !now.Before(until) {
			if p.cur.e != nil {
				p.cur.e.slot.counters.lag(now.Sub(until))
			}
			return nil
		}
		select {
		case <-stale:
			return p.interrupted()
		case <-alarm:
			return p.alarmFired()
		case <-done:
			return errClosing
		default:
		}
		runtime.Gosched()
	}
}

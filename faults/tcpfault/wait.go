package tcpfault

import (
	"time"

	"github.com/cascadehq/cascade/internal/precise"
)

// Precise waits. Go's timers are only as fine as the runtime's network
// poller sleeps, which on Linux is whole milliseconds: measured here, a
// timer fires 0.15–0.75 ms late (more on a busy machine) and never sooner
// than ~0.7 ms, which is where Toxiproxy's +1–2 ms comes from. Spinning the
// last stretch fixes the mean but not the tail: a spinning goroutine keeps
// its processor from polling the network and gets descheduled by the
// kernel on a shared machine (tried: p99 went from +2 to +60 ms under
// load). So a precise wait sleeps on a Go timer (cheap, interruptible)
// until handoff before the deadline, then blocks its thread in the
// kernel's nanosleep for the rest, with the thread's timer slack set to
// 1 ns: that lands ~20–50 µs after the deadline and costs no CPU.
//
// The handoff (precise.Handoff) must absorb a Go timer firing late
// (measured under load, releases within 0.5 ms: 87 % with 2 ms, 89 % with
// 5 ms, 93 % with 10 ms), but each wait in its last stretch blocks a
// thread that keeps its processor until sysmon takes it back, and a
// processor held so does not poll the network: at 500 req/s with 100 ms
// delays, a 10 ms handoff kept ~5 threads asleep and put the p99 at +4 to
// +7 ms (Toxiproxy: +2 to +4 in the same runs), 2 ms at +2 to +3
// (bench/faults.sh, interleaved). So 2 ms, and at most 64 waits per proxy
// take it (precise.Sleepers); the others stay on Go timers (coarser, never
// early). The last handoff is not interruptible by a toxic change.
//
// Tried since: a timerfd read through the netpoller for the last stretch,
// which holds no processor. At 500 req/s (`cascade faultproxy --latency
// 100ms`, vegeta 15 s, interleaved with this nanosleep, 10 pairs over
// three runs), p99 over the direct path moved by a median of −0.24 ms
// with pairs from −1.6 to +1.4 ms, a tie at 50/s, and the proxy used
// ~25 % more CPU (a netpoller wake-up and a hand-off to a processor per
// release, where the sleeping thread just goes on). Not kept.

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

func (p *Pipe) sleep(until time.Time, exact bool) error {
	stale, done := p.staleC(), p.c.ctx.Done()
	forever := until.IsZero()
	for {
		var tc <-chan time.Time
		if !forever {
			d := time.Until(until)
			if exact {
				d -= precise.Handoff
			}
			if d <= 0 {
				break
			}
			tc = p.resetTimer(d)
		}
		select {
		case <-tc:
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
	if !exact {
		return nil
	}
	if !p.c.p.sleepers.SleepUntil(until) {
		if err := p.sleep(until, false); err != nil {
			return err
		}
	}
	if p.cur.e != nil {
		p.cur.e.slot.counters.lag.Record(time.Since(until))
	}
	return nil
}

package run

import "time"

// dispatchFrontier is what a load driver can tell about its scheduling:
// the intended time before which every request has been handed over.
type dispatchFrontier interface {
	DispatchedThrough() time.Duration
}

// scheduleCounter is what an open-model load driver can tell besides: how
// many requests its schedule intends before a time (ok false when it
// cannot say: a closed model), and where its load ends.
type scheduleCounter interface {
	ArrivalsBefore(t time.Duration) (n int64, ok bool)
	End() time.Duration
}

// inFlightBound is what a closed-model load driver can tell: a time at or
// before the intended send of every request not yet recorded (ok false
// when it cannot say: an open model, which scheduleCounter covers).
type inFlightBound interface {
	OldestInFlight() (t time.Duration, ok bool)
}

// recordedCounter counts the samples an interval not yet written holds.
type recordedCounter interface {
	Recorded(idx int64) int64
}

// recordedSum counts over several collectors: the gateway path's and the
// direct path's (load.direct) share one schedule.
type recordedSum []recordedCounter

func (s recordedSum) Recorded(idx int64) int64 {
	var n int64
	for _, c := range s {
		n += c.Recorded(idx)
	}
	return n
}

// watermark decides which intervals can be written: those no request can
// still land in. A request intended at t is handed over at t + lag and ends
// by then plus the client timeout; the lag is what the clock alone cannot
// know. So the flusher samples the driver's dispatch frontier every tick
// and, for the instant one client timeout (plus an interval of margin for a
// timeout that fires a little late) ago, takes the frontier it had then:
// everything intended before it has ended by now.
//
// Without the frontier (a driver that cannot say) it falls back to the
// clock, which is exact while the scheduler keeps time.
//
// That waits a whole client timeout (30 s by default) for every interval,
// though most are whole within a second: a run killed (SIGKILL, a crash)
// lost all of it. So with an open-model driver, which records every
// request of its schedule exactly once (sent, dropped or cut short), an
// interval is also written as soon as its samples number the requests
// its schedule intends in it: none can still land in it. Such intervals
// are taken in order, from the first not yet written, and only once they
// ended an interval ago and before the load's end: the interval a stop or
// the load's end falls in is written last, as wide as the part of it the
// load ran (WriteIntervalsUntil).
type watermark struct {
	timeout  time.Duration
	frontier dispatchFrontier
	sched    scheduleCounter // nil: the timeout alone
	recorded recordedCounter
	inflight inFlightBound // nil: the timeout alone

	scan      int64 // the first interval not known whole...
	scanCount int64 // ...and the arrivals its schedule intends before it
	scanning  bool  // scan and scanCount are set
	closed    bool  // the driver cannot count its schedule

	snaps []snapshot    // taken within the last timeout, oldest first
	ref   *snapshot     // the newest snapshot older than the timeout
	last  time.Duration // never move backwards
}

type snapshot struct{ at, through time.Duration }

// before returns the intended time before which intervals are complete at now.
func (m *watermark) before(now time.Duration) time.Duration {
	safe := now - m.timeout - IntervalWidth
	b := safe
	if m.frontier != nil {
		m.snaps = append(m.snaps, snapshot{at: now, through: m.frontier.DispatchedThrough()})
		for len(m.snaps) > 0 && m.snaps[0].at <= safe {
			s := m.snaps[0]
			m.ref = &s
			m.snaps = m.snaps[1:]
		}
		if m.ref == nil {
			b = m.last // no snapshot a timeout old yet: nothing by this rule
		} else {
			b = min(b, m.ref.through)
		}
	}
	m.last = max(m.last, b)
	m.last = max(m.last, m.whole(now))
	return m.last
}

// whole is the end of the intervals, from the first not yet written, that
// hold every request their schedule intends; m.last when it cannot tell.
func (m *watermark) whole(now time.Duration) time.Duration {
	if m.inflight != nil && m.sched != nil {
		// A closed model (VUs): a request's intended send is when it
		// went out, so an interval that ends by the oldest still in
		// flight can receive no more. The interval the load's end falls
		// in is left for the final write.
		if t, ok := m.inflight.OldestInFlight(); ok {
			t = min(t, m.sched.End())
			return max(m.last, t.Truncate(IntervalWidth))
		}
	}
	if m.sched == nil || m.recorded == nil || m.closed {
		return m.last
	}
	const w = IntervalWidth
	first := int64(m.last / w) // intervals below it are written (TakeIntervals)
	if !m.scanning || m.scan < first {
		n, ok := m.sched.ArrivalsBefore(time.Duration(first) * w)
		if !ok {
			m.closed = true
			return m.last
		}
		m.scan, m.scanCount, m.scanning = first, n, true
	}
	end := m.sched.End()
	for {
		to := time.Duration(m.scan+1) * w
		if to > now-w || to > end {
			break
		}
		n, _ := m.sched.ArrivalsBefore(to)
		if m.recorded.Recorded(m.scan) != n-m.scanCount {
			break // requests intended in it are still out (or were never sent: a stop)
		}
		m.scan, m.scanCount = m.scan+1, n
	}
	return max(m.last, time.Duration(m.scan)*w)
}

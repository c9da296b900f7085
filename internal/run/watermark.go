package run

import (
	"math"
	"time"
)

// dispatchFrontier is what a load driver can tell about its scheduling:
// the intended time before which every request has been handed over.
type dispatchFrontier interface {
	DispatchedThrough() time.Duration
}

// scheduleCounter is what a load driver with open-model executors can
// tell besides: how many requests their schedules intend before a time (ok
// false when it has none: a closed model), and where its load ends.
type scheduleCounter interface {
	ArrivalsBefore(t time.Duration) (n int64, ok bool)
	End() time.Duration
}

// inFlightBound is what a load driver with closed-model executors can
// tell: a time at or before the intended send of every request of theirs
// not yet recorded (ok false when it has none: an open model, which
// scheduleCounter covers). A load that mixes models answers both.
type inFlightBound interface {
	OldestInFlight() (t time.Duration, ok bool)
}

// recordedCounter counts the samples an interval not yet written holds,
// those of closed-model executors left out when the load mixes models.
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
// lost all of it. So an interval is also written as soon as no request can
// still land in it by what the load's executors tell, each model by its
// own rule:
//
//   - open model (arrival rate): every request of its schedule is recorded
//     exactly once (sent, dropped or cut short), so once the interval's
//     samples from these executors number the requests their schedules
//     intend in it, none of theirs can still land in it (each executor's
//     count is at most its own arrivals there, so the sum equal means each
//     is);
//   - closed model (VUs): a request's intended send is when it went out,
//     so an interval that ends by the oldest send still in flight (or to
//     come) can receive none of theirs.
//
// A load that mixes both writes an interval once both rules hold for it;
// a load of one model, once its own does. Intervals are taken in order,
// from the first not yet written; by the open rule only once they ended an
// interval ago; and only before the load's end: the interval a stop or the
// load's end falls in is written last, as wide as the part of it the load
// ran (WriteIntervalsUntil). A stop (Ctrl-C, an abort, a failure) ends
// these early writes: once VUs retire, the closed rule would follow the
// clock past the stop and write the interval it falls in at full width, a
// second whose rate would read low; the open rule never passes a stop (the
// arrivals after it are never recorded) but has nothing left to write.
//
// A game day's session tells the same when its plan has no gates: its
// load is then one generator, as a plain run's, which a stop only ends
// early (gameday.Script.OldestInFlight). With gates it tells neither: the
// load is segments started live on clocks shifted by the holds, and holds
// whose schedules a gate's opening cuts, so no schedule counted ahead is
// the load as it runs; such a game day keeps the timeout rule.
type watermark struct {
	timeout  time.Duration
	frontier dispatchFrontier
	sched    scheduleCounter // nil: the timeout alone
	recorded recordedCounter
	inflight inFlightBound   // nil: the timeout alone
	stopped  <-chan struct{} // closed when the load was stopped; nil: never

	scan      int64 // the first interval not known whole for the open model...
	scanCount int64 // ...and the arrivals its schedules intend before it
	scanning  bool  // scan and scanCount are set
	noOpen    bool  // the driver has no open-model executor to count

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
// no request can still land in by the executors' own rules; m.last when
// the driver cannot tell.
func (m *watermark) whole(now time.Duration) time.Duration {
	if m.sched == nil || m.isStopped() {
		return m.last
	}
	bound, known := time.Duration(math.MaxInt64), false
	if m.inflight != nil {
		// Closed-model executors: an interval that ends by the oldest
		// send still in flight can receive no more of theirs. The
		// interval the load's end falls in is left for the final write.
		if t, ok := m.inflight.OldestInFlight(); ok {
			bound, known = min(t, m.sched.End()).Truncate(IntervalWidth), true
		}
	}
	if end, ok := m.counted(now); ok {
		bound, known = min(bound, end), true
	}
	// Again, after the reading: a stop between the first check and
	// OldestInFlight could have let the VUs retire and the clock pass the
	// stop's interval. A VU retires for a stop only after the stop closed
	// m.stopped, so one missed here came after the reading.
	if !known || m.isStopped() {
		return m.last
	}
	return max(m.last, bound)
}

// counted is the end of the intervals, from the first not yet written,
// that hold every request the open-model executors' schedules intend in
// them; ok false when the driver has none (or nothing records them).
func (m *watermark) counted(now time.Duration) (time.Duration, bool) {
	if m.recorded == nil || m.noOpen {
		return 0, false
	}
	const w = IntervalWidth
	first := int64(m.last / w) // intervals below it are written (TakeIntervals)
	if !m.scanning || m.scan < first {
		n, ok := m.sched.ArrivalsBefore(time.Duration(first) * w)
		if !ok {
			m.noOpen = true
			return 0, false
		}
		m.scan, m.scanCount, m.scanning = first, n, true
	}
	// In a mixed load the scan may run ahead of what the closed model
	// lets through: the intervals it passed stay whole for the open
	// model (their count cannot grow past their arrivals).
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
	return time.Duration(m.scan) * w, true
}

func (m *watermark) isStopped() bool {
	select {
	case <-m.stopped:
		return true
	default:
		return false
	}
}

package run

import "time"

// dispatchFrontier is what a load driver can tell about its scheduling:
// the intended time before which every request has been handed over.
type dispatchFrontier interface {
	DispatchedThrough() time.Duration
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
type watermark struct {
	timeout  time.Duration
	frontier dispatchFrontier

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
			return m.last
		}
		b = min(b, m.ref.through)
	}
	m.last = max(m.last, b)
	return m.last
}

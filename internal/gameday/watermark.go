package gameday

import (
	"time"

	"github.com/cascadehq/cascade/loadgen"
)

// The run writes an interval as soon as no request can still land in it,
// by what its load driver tells (internal/run's watermark): an open
// model's arrivals counted ahead (ArrivalsBefore), a closed model's oldest
// send in flight (OldestInFlight), where the load ends (End). A script
// tells them only when its plan has no gates. Its load is then one
// generator, segment 0, over the whole profile on the run's clock (offset
// 0), as a plain run's; the only live change to it is a stop, which ends
// its schedule early: the arrivals counted after it are never recorded and
// hold the open model's intervals back (the run then writes them by the
// timeout rule, and the rest at its end), and End moves to the stop, so
// the interval it falls in is left for the final write. With gates the
// load is segments started when each gate opens, on clocks shifted by the
// time held, and holds whose schedules end when their gate opens: what a
// schedule counts ahead is not the load as it runs, and a segment not yet
// started says nothing of the requests it will send. Such a script says it
// cannot tell, and the run keeps the timeout rule. (A plan with gates or
// safety checks has a single open-model load anyway: a closed model
// reaches a game day only without them, and a list of executors never:
// the run refuses it, see internal/run's LiveExecutorsError.)

// plain reports whether the script's load is one generator as a plain
// run's, and which models it has.
func (s *Script) plain() (open, closed, ok bool) {
	if len(s.p.Gates) > 0 {
		return false, false, false
	}
	execs, err := loadgen.Executors(s.cfg)
	if err != nil {
		return false, false, false
	}
	for _, e := range execs {
		open = open || e.Kind == loadgen.ArrivalRate
		closed = closed || e.Kind == loadgen.VUs
	}
	return open, closed, true
}

// gen is segment 0's generator once it started (nil before, or with gates).
func (s *Script) gen() *loadgen.Generator {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.gens) == 0 {
		return nil
	}
	return s.gens[0]
}

// OldestInFlight is the generator's (loadgen.Generator.OldestInFlight),
// for a script without gates whose load has VU executors; ok false
// otherwise. Before the generator starts, nothing was sent: the clock,
// read before looking, bounds what it will send (it reads the same clock
// later).
func (s *Script) OldestInFlight() (time.Duration, bool) {
	_, closed, ok := s.plain()
	if !ok || !closed {
		return 0, false
	}
	now := s.clock.Now()
	if g := s.gen(); g != nil {
		return g.OldestInFlight()
	}
	return now, true
}

// ArrivalsBefore counts the arrivals segment 0's arrival-rate executors
// intend before t (loadgen.Generator.ArrivalsBefore), for a script without
// gates; ok false otherwise. A copy of the generator, made from the same
// config and never run, counts them: the same schedule, seeded alike,
// whether or not segment 0 has started yet.
func (s *Script) ArrivalsBefore(t time.Duration) (int64, bool) {
	open, _, ok := s.plain()
	if !ok || !open {
		return 0, false
	}
	s.mu.Lock()
	if s.counter == nil {
		g, err := loadgen.New(s.segmentConfig(0), nil, s.clock, s.tr)
		if err != nil {
			s.mu.Unlock()
			return 0, false
		}
		s.counter = g
	}
	c := s.counter
	s.mu.Unlock()
	return c.ArrivalsBefore(t)
}

// End is where the load ends on the run's clock: segment 0's end (a VU
// executor's max_requests included), or the stop if one came first. With
// gates it is the plan's duration, unused: the script tells nothing else.
func (s *Script) End() time.Duration {
	end := s.p.Duration
	if g := s.gen(); g != nil && len(s.p.Gates) == 0 {
		end = g.End()
	}
	if at := s.StoppedAt(); at > 0 {
		end = min(end, at)
	}
	return end
}

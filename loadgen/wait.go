package loadgen

import (
	"context"
	"time"

	"github.com/cascadehq/cascade/internal/event"
)

// coarse is the wait above which the scheduler sleeps on a Go timer first:
// Go's timers wake up to ~1 ms late on Linux (the netpoller waits in whole
// milliseconds), far too coarse for 5 000 requests/s, so the last stretch
// of every wait is a fine sleep (fineSleeper).
const (
	coarse      = 3 * time.Millisecond
	coarseEarly = 2 * time.Millisecond // wake this much before the due time
)

// waiter waits for intended send times with sub-millisecond precision and
// without spinning: a Go timer (cancellable) for the long part, a fine
// sleeper for the rest.
type waiter struct {
	timer *time.Timer
	fine  fineSleeper
}

func newWaiter() *waiter {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &waiter{timer: t, fine: newFineSleeper()}
}

// until blocks until clock reads at least at; false if ctx ended first.
func (w *waiter) until(ctx context.Context, clock *event.Clock, at time.Duration) bool {
	for {
		d := at - clock.Now()
		if d <= 0 {
			return ctx.Err() == nil
		}
		if d > coarse {
			w.timer.Reset(d - coarseEarly)
			select {
			case <-ctx.Done():
				w.timer.Stop()
				return false
			case <-w.timer.C:
			}
			continue
		}
		w.fine.sleep(d)
	}
}

func (w *waiter) close() {
	w.timer.Stop()
	w.fine.close()
}

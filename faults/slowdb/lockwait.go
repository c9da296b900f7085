package slowdb

import (
	"sync"
	"sync/atomic"
	"time"
)

// lockSettle bounds how long a lock_contention fault, having released its
// lock, waits for the lock waits that began while it held the lock to end
// before it reports its effects. SQLite polls a busy lock, every 100ms once
// a wait is 228ms old, so a waiter sees the release at its next poll; a
// timeout that fires before that poll ends the wait after the release.
// PostgreSQL wakes a waiter at once. The margin is for a loaded machine.
const lockSettle = 150 * time.Millisecond

// lockHold is one lock_contention fault's hold on the database, and the
// requests whose wait for the lock began while it held it. Such a wait is
// the fault's effect if a timeout ends it, whenever that is: on SQLite a
// waiter sees the release only at its next poll, so a deadline can end the
// wait after the fault stopped. Judged by the fault's state at the wait's
// end alone, those waits were not counted.
type lockHold struct {
	inj      *Injection // the fault whose lock it is
	mu       sync.Mutex
	waits    int           // waits in flight that joined
	released bool          // the lock is released: no more waits join
	settled  chan struct{} // closed once released and waits == 0
}

func newLockHold(inj *Injection) *lockHold {
	return &lockHold{inj: inj, settled: make(chan struct{})}
}

// join adds a wait that begins now; false once the lock is released.
func (h *lockHold) join() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return false
	}
	h.waits++
	return true
}

// leave ends a wait that joined.
func (h *lockHold) leave() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.waits--
	if h.released && h.waits == 0 {
		close(h.settled)
	}
}

// release marks the lock released and waits, at most max, for the waits
// that joined to end (and be counted).
func (h *lockHold) release(max time.Duration) {
	h.mu.Lock()
	h.released = true
	if h.waits == 0 {
		close(h.settled)
	}
	h.mu.Unlock()
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-h.settled:
	case <-t.C:
	}
}

// lockWait is a request's part in the lock_contention bookkeeping: the
// backend calls begin just before the step that takes the update's lock,
// and end once it has the lock; when the step fails, the upstream calls end
// after it has judged whether the failure was the fault's effect.
type lockWait struct {
	holds  *atomic.Pointer[lockHold] // the upstream's; nil: no bookkeeping
	joined *lockHold                 // the hold this wait began under, until end
}

func (w *lockWait) begin() {
	if w.holds == nil || w.joined != nil {
		return
	}
	if h := w.holds.Load(); h != nil && h.join() {
		w.joined = h
	}
}

func (w *lockWait) end() {
	if h := w.joined; h != nil {
		w.joined = nil
		h.leave()
	}
}

// hold is the hold the wait began under, if it began while a
// lock_contention fault held the lock (and has not ended yet).
func (w *lockWait) hold() *lockHold { return w.joined }

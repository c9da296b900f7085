package breaker

import "time"

// totals are the aggregates a window keeps so that a rate costs nothing to
// read: Resilience4j's "partial aggregation".
type totals struct {
	calls, failed, slow int64
}

func (t *totals) add(failed, slow bool, sign int64) {
	t.calls += sign
	if failed {
		t.failed += sign
	}
	if slow {
		t.slow += sign
	}
}

// rates returns the failure and slow-call rates as fractions.
func (t totals) rates() (failure, slow float64) {
	if t.calls == 0 {
		return 0, 0
	}
	return float64(t.failed) / float64(t.calls), float64(t.slow) / float64(t.calls)
}

// window is a sliding window of call outcomes. Both kinds preallocate at
// construction, so recording never allocates.
type window interface {
	record(at time.Duration, failed, slow bool)
	totals(at time.Duration) totals
	reset()
}

const (
	outFailed = 1 << iota
	outSlow
)

// countWindow keeps the last len(ring) outcomes in a ring.
type countWindow struct {
	ring []uint8
	next int
	full bool
	sum  totals
}

func newCountWindow(n int) *countWindow { return &countWindow{ring: make([]uint8, n)} }

func (w *countWindow) record(_ time.Duration, failed, slow bool) {
	if w.full {
		old := w.ring[w.next]
		w.sum.add(old&outFailed != 0, old&outSlow != 0, -1)
	}
	var o uint8
	if failed {
		o |= outFailed
	}
	if slow {
		o |= outSlow
	}
	w.ring[w.next] = o
	w.sum.add(failed, slow, 1)
	w.next++
	if w.next == len(w.ring) {
		w.next, w.full = 0, true
	}
}

func (w *countWindow) totals(time.Duration) totals { return w.sum }

func (w *countWindow) reset() {
	clear(w.ring)
	w.next, w.full, w.sum = 0, false, totals{}
}

// timeWindow splits its span into buckets and forgets a bucket as a whole
// when the window slides past it. Resilience4j uses one-second buckets; a
// cascade scenario often uses windows of a few seconds, where one-second
// steps would be coarse, so the span is cut into at least ten buckets (and
// at most maxTimeBuckets, to bound memory for long windows).
type timeWindow struct {
	width   time.Duration
	buckets []bucket
	head    int64 // epoch of the newest bucket touched
	sum     totals
}

type bucket struct {
	epoch int64
	totals
}

func newTimeWindow(span time.Duration) *timeWindow {
	n := int(span / time.Second)
	n = max(n, 10)
	n = min(n, maxTimeBuckets)
	w := &timeWindow{width: span / time.Duration(n), buckets: make([]bucket, n)}
	w.reset()
	return w
}

// advance moves the window to the epoch of at, evicting every bucket that
// fell out of the span since the last call.
func (w *timeWindow) advance(at time.Duration) int64 {
	epoch := int64(at / w.width)
	if epoch <= w.head {
		return epoch
	}
	n := int64(len(w.buckets))
	from := max(w.head+1, epoch-n+1)
	for e := from; e <= epoch; e++ {
		b := &w.buckets[e%n]
		w.sum.calls -= b.calls
		w.sum.failed -= b.failed
		w.sum.slow -= b.slow
		*b = bucket{epoch: e}
	}
	w.head = epoch
	return epoch
}

func (w *timeWindow) record(at time.Duration, failed, slow bool) {
	epoch := w.advance(at)
	b := &w.buckets[epoch%int64(len(w.buckets))]
	b.add(failed, slow, 1)
	w.sum.add(failed, slow, 1)
}

func (w *timeWindow) totals(at time.Duration) totals {
	w.advance(at)
	return w.sum
}

func (w *timeWindow) reset() {
	for i := range w.buckets {
		w.buckets[i] = bucket{epoch: -1}
	}
	w.head, w.sum = -1, totals{}
}

package packet

import "container/heap"

// item is one packet on its way through the engine. Items and their buffers
// are pooled, so the steady state allocates nothing.
type item struct {
	buf   []byte // full capacity; data is buf[:n]
	n     int
	seq   uint64 // arrival order in its direction; a duplicate shares its original's
	due   int64  // CLOCK_MONOTONIC ns at which it may leave
	ord   uint64 // tie-break among equal due times: seq<<1, |1 for a released hold
	index int    // position in the heap, -1 once popped
}

func (it *item) data() []byte { return it.buf[:it.n] }

type itemHeap []*item

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	if h[i].due != h[j].due {
		return h[i].due < h[j].due
	}
	return h[i].ord < h[j].ord
}
func (h itemHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *itemHeap) Push(x any) {
	it := x.(*item)
	it.index = len(*h)
	*h = append(*h, it)
}
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.index = -1
	return it
}

// hold is a packet kept back for reordering: it leaves right after the
// packet that brings its countdown to zero, or at its own due time (the
// timeout) if fewer packets come.
type hold struct {
	it   *item
	left int
}

// schedule orders delayed packets by the time they may leave. It is plain
// data: the engine guards it with a mutex, and tests drive it with fixed
// instants.
type schedule struct {
	h     itemHeap
	holds []hold
	bytes int    // bytes waiting
	maxed bool   // whether maxOut is set
	max   uint64 // highest seq sent so far
}

// push schedules it at it.due.
func (s *schedule) push(it *item) {
	it.ord = it.seq << 1
	heap.Push(&s.h, it)
	s.bytes += it.n
}

// pushHeld schedules it at it.due (its timeout) and keeps it back until gap
// later packets have been scheduled.
func (s *schedule) pushHeld(it *item, gap int) {
	s.push(it)
	s.holds = append(s.holds, hold{it: it, left: gap})
}

// passed tells the holds that a packet scheduled at due has gone ahead of
// them; those whose countdown ends move to right behind it.
func (s *schedule) passed(due int64, seq uint64) {
	kept := s.holds[:0]
	for _, h := range s.holds {
		h.left--
		if h.left > 0 {
			kept = append(kept, h)
			continue
		}
		if due <= h.it.due { // else its timeout comes first anyway
			h.it.due = due
			h.it.ord = seq<<1 | 1
			heap.Fix(&s.h, h.it.index)
		}
	}
	clear(s.holds[len(kept):])
	s.holds = kept
}

// next returns the earliest due time.
func (s *schedule) next() (int64, bool) {
	if len(s.h) == 0 {
		return 0, false
	}
	return s.h[0].due, true
}

// pop removes the earliest packet if it is due at now. reordered reports
// whether a packet that arrived later has already been sent.
func (s *schedule) pop(now int64) (it *item, reordered bool) {
	if len(s.h) == 0 || s.h[0].due > now {
		return nil, false
	}
	it = heap.Pop(&s.h).(*item)
	s.bytes -= it.n
	s.forget(it)
	return it, s.sent(it.seq)
}

// forget drops the hold on an item that leaves the schedule (at its
// timeout). Items are pooled and shared by both directions: a hold left
// behind would point at whatever packet reuses the item next, possibly in
// the other direction's goroutine, and move that packet's due time.
func (s *schedule) forget(it *item) {
	for i, h := range s.holds {
		if h.it == it {
			n := len(s.holds)
			copy(s.holds[i:], s.holds[i+1:])
			s.holds[n-1] = hold{} // no stale pointer to a pooled item
			s.holds = s.holds[:n-1]
			return
		}
	}
}

// sent records that the packet with arrival number seq left (also used for
// packets that bypass the schedule) and reports whether it was overtaken.
func (s *schedule) sent(seq uint64) bool {
	if !s.maxed || seq > s.max {
		s.max, s.maxed = seq, true
		return false
	}
	return seq < s.max
}

// drain removes every packet, for shutdown.
func (s *schedule) drain() []*item {
	out := []*item(s.h)
	for _, it := range out {
		it.index = -1
	}
	s.h, s.holds, s.bytes = nil, nil, 0
	return out
}

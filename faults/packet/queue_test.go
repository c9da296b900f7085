package packet

import (
	"slices"
	"testing"
)

func newItem(seq uint64, due int64) *item {
	return &item{buf: make([]byte, 1), n: 1, seq: seq, due: due}
}

// drainAt pops everything due at now, returning the seqs and how many were
// counted as reordered.
func drainAt(s *schedule, now int64) (seqs []uint64, reordered int) {
	for {
		it, re := s.pop(now)
		if it == nil {
			return seqs, reordered
		}
		seqs = append(seqs, it.seq)
		if re {
			reordered++
		}
	}
}

func TestScheduleOrdersByDueTime(t *testing.T) {
	var s schedule
	// Jitter gave packet 1 a later due time than packet 2.
	s.push(newItem(0, 100))
	s.push(newItem(1, 300))
	s.push(newItem(2, 200))
	if due, _ := s.next(); due != 100 {
		t.Fatalf("next due %d, want 100", due)
	}
	if seqs, _ := drainAt(&s, 99); len(seqs) != 0 {
		t.Fatalf("nothing is due before 100, got %v", seqs)
	}
	seqs, re := drainAt(&s, 1000)
	if !slices.Equal(seqs, []uint64{0, 2, 1}) || re != 1 {
		t.Fatalf("sent %v with %d reordered, want [0 2 1] with 1 (packet 1 overtaken)", seqs, re)
	}
	if s.bytes != 0 {
		t.Fatalf("bytes %d after draining", s.bytes)
	}
}

func TestScheduleHoldReleasedAfterGap(t *testing.T) {
	var s schedule
	// Packet 0 is held with gap 2 and a timeout at 1000; packets 1..3 follow.
	s.pushHeld(newItem(0, 1000), 2)
	for seq := uint64(1); seq <= 3; seq++ {
		it := newItem(seq, int64(seq)*10)
		s.push(it)
		s.passed(it.due, it.seq)
	}
	seqs, re := drainAt(&s, 1000)
	if !slices.Equal(seqs, []uint64{1, 2, 0, 3}) {
		t.Fatalf("sent %v, want [1 2 0 3]: the held packet leaves right after the second later one", seqs)
	}
	if re != 1 {
		t.Fatalf("%d counted as reordered, want 1", re)
	}
	if len(s.holds) != 0 {
		t.Fatalf("holds not released: %v", s.holds)
	}
}

func TestScheduleHoldTimesOut(t *testing.T) {
	var s schedule
	s.pushHeld(newItem(0, 500), 3)
	it := newItem(1, 10)
	s.push(it)
	s.passed(it.due, it.seq)
	// Only one packet followed: the held one leaves at its timeout.
	seqs, _ := drainAt(&s, 499)
	if !slices.Equal(seqs, []uint64{1}) {
		t.Fatalf("sent %v before the timeout, want [1]", seqs)
	}
	seqs, _ = drainAt(&s, 500)
	if !slices.Equal(seqs, []uint64{0}) {
		t.Fatalf("sent %v at the timeout, want [0]", seqs)
	}
	// A later packet must not touch the hold that already left.
	it = newItem(2, 600)
	s.push(it)
	s.passed(it.due, it.seq)
	if len(s.holds) != 0 || s.h.Len() != 1 {
		t.Fatalf("stale hold kept: holds %d, heap %d", len(s.holds), s.h.Len())
	}
}

func TestScheduleDuplicatesAreNotReordered(t *testing.T) {
	var s schedule
	s.push(newItem(0, 10))
	s.push(newItem(0, 10)) // the duplicate shares its original's seq
	s.push(newItem(1, 20))
	if _, re := drainAt(&s, 100); re != 0 {
		t.Fatalf("%d reordered, want 0", re)
	}
	// Packets that bypass the schedule are counted the same way.
	if s.sent(1) {
		t.Fatalf("seq 1 again (a duplicate) counted as reordered")
	}
	if !s.sent(0) {
		t.Fatalf("seq 0 sent after seq 1 not counted as reordered")
	}
}

func TestScheduleDrain(t *testing.T) {
	var s schedule
	s.pushHeld(newItem(0, 5), 1)
	s.push(newItem(1, 7))
	if got := len(s.drain()); got != 2 || s.h.Len() != 0 || s.bytes != 0 || len(s.holds) != 0 {
		t.Fatalf("drain returned %d, left heap %d bytes %d holds %d", got, s.h.Len(), s.bytes, len(s.holds))
	}
}

// A held packet that left at its timeout goes back to the item pool, which
// both directions share. Its hold must go with it: otherwise the next
// packet that reuses the item (here, in another schedule, as the other
// direction's goroutine would) has its due time moved by a stranger.
func TestScheduleTimedOutHoldDoesNotFollowTheRecycledItem(t *testing.T) {
	var a, b schedule
	held := newItem(0, 500)
	a.pushHeld(held, 3)
	seqs, _ := drainAt(&a, 500) // leaves at its timeout
	if !slices.Equal(seqs, []uint64{0}) {
		t.Fatalf("sent %v, want [0]", seqs)
	}
	if len(a.holds) != 0 {
		t.Fatalf("the hold outlived its packet: %v", a.holds)
	}
	// The pool hands the same item to the other direction, due much later.
	held.seq, held.due = 7, 900
	b.push(held)
	for i := uint64(1); i <= 3; i++ { // three packets pass in the first direction
		it := newItem(i, 600)
		a.push(it)
		a.passed(it.due, it.seq)
	}
	if held.due != 900 || held.index < 0 {
		t.Fatalf("the other direction's packet was moved: due %d, index %d", held.due, held.index)
	}
}

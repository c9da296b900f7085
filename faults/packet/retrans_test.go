package packet

import "testing"

func TestRetransTracker(t *testing.T) {
	tr := newRetransTracker()
	p := newParser()
	var info pktInfo
	step := func(seq uint32, flags string, n int) bool {
		p.parse(tcpPacket(t, seq, flags, make([]byte, n)), &info)
		return tr.observe(&info)
	}
	steps := []struct {
		seq   uint32
		flags string
		n     int
		want  bool
		why   string
	}{
		{100, "S", 0, false, "first SYN"},
		{100, "S", 0, true, "SYN again: retransmitted"},
		{101, "A", 0, false, "pure ACK"},
		{101, "A", 1000, false, "new data"},
		{1101, "A", 1000, false, "new data"},
		{101, "A", 1000, true, "old data again"},
		{2101, "A", 500, false, "new data after a retransmit"},
		{1601, "A", 1000, true, "overlapping old data"},
		{2600, "A", 1, false, "keep-alive with one garbage byte at next-1"},
		{2601, "A", 0, false, "keep-alive without data"},
		{2601, "FA", 0, false, "FIN"},
		{2601, "FA", 0, true, "FIN again"},
		{5000, "S", 0, false, "SYN with a new ISN: the 4-tuple was reused"},
		{5001, "A", 10, false, "new connection's data"},
		{0, "R", 0, false, "reset"},
		{5001, "A", 10, false, "after a reset the flow starts afresh"},
	}
	for i, s := range steps {
		if got := step(s.seq, s.flags, s.n); got != s.want {
			t.Fatalf("step %d (%s): retransmission %v, want %v", i, s.why, got, s.want)
		}
	}
}

func TestRetransTrackerWraps(t *testing.T) {
	tr := newRetransTracker()
	p := newParser()
	var info pktInfo
	base := uint32(0xFFFFFF00) // 256 bytes before the wrap; a variable, so the sums wrap
	for _, s := range []struct {
		seq  uint32
		want bool
	}{{base, false}, {base + 1000, false}, {base, true}, {base + 2000, false}} {
		p.parse(tcpPacket(t, s.seq, "A", make([]byte, 1000)), &info)
		if got := tr.observe(&info); got != s.want {
			t.Fatalf("seq %#x: %v, want %v", s.seq, got, s.want)
		}
	}
}

func TestRetransTrackerBounded(t *testing.T) {
	tr := newRetransTracker()
	tr.maxFlows = 10
	for port := range 100 {
		info := pktInfo{proto: 6, sport: uint16(port), seq: 1, payloadLen: 10}
		tr.observe(&info)
	}
	if len(tr.flows) > 10 {
		t.Fatalf("%d flows kept, want at most 10", len(tr.flows))
	}
}

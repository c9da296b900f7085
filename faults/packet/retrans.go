package packet

// flowKey names one direction of a TCP connection.
type flowKey struct {
	src, dst     [4]byte
	sport, dport uint16
}

// retransTracker recognises TCP retransmissions the way Wireshark's
// tcp.analysis.retransmission does: a segment that carries sequence space
// (data, SYN or FIN) starting below the highest sequence number already seen
// in that direction. Keep-alives (one byte at next-1, or none) are not
// retransmissions. Fed with the packets a host sends, it counts what the
// host's kernel counts in TcpRetransSegs.
type retransTracker struct {
	flows    map[flowKey]uint32 // next expected sequence number
	maxFlows int
}

func newRetransTracker() *retransTracker {
	return &retransTracker{flows: make(map[flowKey]uint32), maxFlows: 1 << 16}
}

// seqLess compares sequence numbers modulo 2³² (RFC 1982).
func seqLess(a, b uint32) bool { return int32(a-b) < 0 }

// observe records a TCP packet and reports whether it is a retransmission.
func (t *retransTracker) observe(p *pktInfo) bool {
	k := flowKey{src: p.src, dst: p.dst, sport: p.sport, dport: p.dport}
	if p.rst {
		delete(t.flows, k)
		return false
	}
	segLen := uint32(p.payloadLen)
	if p.syn {
		segLen++
	}
	if p.fin {
		segLen++
	}
	next, seen := t.flows[k]
	if segLen == 0 {
		return false // a pure ACK, window update or zero-window probe
	}
	end := p.seq + segLen
	// A flow not seen yet (or joined mid-stream after the table was reset),
	// or a SYN with a new initial sequence number (the 4-tuple was reused),
	// starts here.
	if !seen || (p.syn && p.seq+1 != next) {
		if !seen && len(t.flows) >= t.maxFlows {
			clear(t.flows) // bounded memory; a few retransmits may go uncounted
		}
		t.flows[k] = end
		return false
	}
	if !seqLess(p.seq, next) {
		t.flows[k] = end
		return false
	}
	if segLen == 1 && !p.syn && !p.fin && p.seq == next-1 {
		return false // keep-alive with one garbage byte
	}
	if seqLess(next, end) {
		t.flows[k] = end
	}
	return true
}

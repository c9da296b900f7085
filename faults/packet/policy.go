package packet

import (
	"math/rand/v2"
	"time"

	"github.com/gopacket/gopacket/layers"
)

const (
	defaultReorderGap     = 1
	defaultReorderTimeout = 10 * time.Millisecond
	minQueue              = 64 << 10
)

// policy is an Impairment compiled for the hot path. It is immutable; the
// engine swaps the whole policy when Set is called.
type policy struct {
	imp  Impairment
	gen  uint64 // bumps on every Set; readers reset their state when it changes
	zero bool

	port    uint16
	syn     bool
	loss    float64
	ge      bool
	corrupt float64
	dup     float64

	reorder        float64
	gap            int
	reorderTimeout int64

	delay  int64
	jitter float64
	normal bool
	rho    float64

	shaped              bool
	rate, burst, queueB float64

	// scheduled says packets go through the schedule rather than straight
	// out: anything that can hold a packet back.
	scheduled bool
}

func compile(imp Impairment, gen uint64, mtu int) *policy {
	p := &policy{imp: imp, gen: gen, zero: imp.IsZero()}
	p.port = uint16(imp.Filter.Port)
	p.syn = imp.SYNBlackhole
	p.loss = imp.Loss.Percent.F()
	p.ge = !imp.Loss.GEModel.IsZero()
	p.corrupt = imp.Corrupt.F()
	p.dup = imp.Duplicate.F()
	p.reorder = imp.Reorder.Percent.F()
	p.gap = imp.Reorder.Gap
	if p.gap == 0 {
		p.gap = defaultReorderGap
	}
	p.reorderTimeout = int64(imp.Reorder.Timeout)
	if p.reorderTimeout == 0 {
		p.reorderTimeout = int64(defaultReorderTimeout)
	}
	p.delay = int64(imp.Delay)
	p.jitter = float64(imp.Jitter)
	p.normal = imp.Distribution == "normal"
	p.rho = imp.Correlation.F()
	if b := imp.Bandwidth; !b.IsZero() {
		p.shaped = true
		p.rate = b.Rate.BytesPerSecond()
		p.burst = float64(b.Burst)
		if p.burst == 0 {
			p.burst = p.rate / 1000
		}
		p.burst = max(p.burst, float64(mtu))
		p.queueB = float64(b.Queue)
		if p.queueB == 0 {
			p.queueB = max(p.rate/10, minQueue)
		}
	}
	p.scheduled = p.delay > 0 || p.jitter > 0 || p.shaped || p.reorder > 0
	return p
}

// applies reports whether the policy's filter selects the packet.
func (p *policy) applies(info *pktInfo) bool {
	if p.port == 0 {
		return true
	}
	l4 := info.proto == uint8(layers.IPProtocolTCP) || info.proto == uint8(layers.IPProtocolUDP)
	return l4 && (info.sport == p.port || info.dport == p.port)
}

// dropReason says why a packet did not get through.
type dropReason uint8

const (
	keep       dropReason = iota
	lost                  // random loss
	blackholed            // a SYN under syn_blackhole
	overflow              // bandwidth queue or engine queue full
)

// verdict is what happens to one packet (and its duplicate, if any).
type verdict struct {
	drop    dropReason
	corrupt bool
	copies  int
	due     [2]int64
	held    [2]bool
}

// impairer holds the per-direction state a policy needs: the random source
// and the loss, jitter and bandwidth models. One goroutine owns it.
type impairer struct {
	pol *policy
	rng *rand.Rand
	ge  geState
	jit jitterSource
	tb  tokenBucket
}

// reset starts the models afresh for pol. The random stream is seeded from
// (seed, direction, generation), so what an impairment does to the n-th
// packet after it was set does not depend on how much traffic came before.
func (m *impairer) reset(pol *policy, seed uint64, dir Direction, now int64) {
	*m = impairer{pol: pol}
	m.rng = rand.New(rand.NewPCG(seed, pol.gen<<2|uint64(dir)))
	if pol.ge {
		m.ge = newGEState(pol.imp.Loss.GEModel)
	}
	m.jit = jitterSource{jitter: pol.jitter, normal: pol.normal, rho: pol.rho}
	if pol.shaped {
		m.tb = newTokenBucket(pol.rate, pol.burst, pol.queueB, now)
	}
}

// decide applies the policy to a packet of size bytes that arrived at now.
func (m *impairer) decide(now int64, info *pktInfo, size int) verdict {
	p := m.pol
	v := verdict{copies: 1, due: [2]int64{now, now}}
	if p.syn && info.proto == uint8(layers.IPProtocolTCP) && info.syn && !info.ack {
		v.drop = blackholed
		return v
	}
	switch {
	case p.ge:
		if m.ge.lose(m.rng) {
			v.drop = lost
			return v
		}
	case p.loss > 0:
		if m.rng.Float64() < p.loss {
			v.drop = lost
			return v
		}
	}
	if p.corrupt > 0 && m.rng.Float64() < p.corrupt {
		v.corrupt = true
	}
	if p.dup > 0 && m.rng.Float64() < p.dup {
		v.copies = 2
	}
	for i := range v.copies {
		due := now
		if p.shaped {
			d, ok := m.tb.reserve(now, size)
			if !ok {
				if i == 0 {
					v.drop = overflow
					return v
				}
				v.copies = 1 // the duplicate found the queue full
				break
			}
			due = d
		}
		due += p.delay
		if p.jitter > 0 {
			due += int64(m.jit.sample(m.rng))
		}
		// Never before it arrived, nor before the bandwidth lets it go.
		v.due[i] = max(due, now)
		if p.reorder > 0 && m.rng.Float64() < p.reorder {
			v.held[i] = true
		}
	}
	return v
}

// corruptPacket flips one random bit in the TCP or UDP payload, or in the
// checksum field of a segment without payload, and leaves the checksum as
// it is. The receiving kernel then discards the segment (TcpInCsumErrors)
// and TCP recovers by retransmission, as after corruption on a real wire;
// recomputing the checksum instead would hand corrupted bytes to the
// application, which no real link with a checksumming transport does.
// Packets that are neither TCP nor UDP are not touched.
func corruptPacket(data []byte, info *pktInfo, rng *rand.Rand) bool {
	var at int
	switch {
	case info.proto == 0:
		return false
	case info.payloadLen > 0 && info.payloadOff+info.payloadLen <= len(data):
		at = info.payloadOff + rng.IntN(info.payloadLen)
	case info.proto == uint8(layers.IPProtocolTCP):
		at = info.l4Off + 16 + rng.IntN(2) // TCP checksum
	default:
		at = info.l4Off + 6 + rng.IntN(2) // UDP checksum
	}
	if at >= len(data) {
		return false
	}
	data[at] ^= 1 << rng.IntN(8)
	return true
}

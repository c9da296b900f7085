package packet

import (
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// pktInfo is what the decision path needs to know about a packet.
type pktInfo struct {
	proto      uint8 // layers.IPProtocolTCP, ...UDP, or 0 when neither was decoded
	src, dst   [4]byte
	sport      uint16
	dport      uint16
	seq        uint32
	syn, ack   bool
	fin, rst   bool
	l4Off      int // offset of the TCP/UDP header in the packet
	payloadOff int // offset of the TCP/UDP payload
	payloadLen int
}

// parser decodes packets read from a TUN device (raw IP, no link header)
// with gopacket's zero-allocation DecodingLayerParser. Checksums are not
// verified: a corrupted packet must reach the receiving kernel, which is what
// drops and counts it. It is not safe for concurrent use: each reader owns one.
type parser struct {
	ip4     layers.IPv4
	ip6     layers.IPv6
	tcp     layers.TCP
	udp     layers.UDP
	payload gopacket.Payload
	p4, p6  *gopacket.DecodingLayerParser
	decoded []gopacket.LayerType
}

func newParser() *parser {
	p := &parser{decoded: make([]gopacket.LayerType, 0, 4)}
	p.p4 = gopacket.NewDecodingLayerParser(layers.LayerTypeIPv4, &p.ip4, &p.tcp, &p.udp, &p.payload)
	p.p6 = gopacket.NewDecodingLayerParser(layers.LayerTypeIPv6, &p.ip6, &p.tcp, &p.udp, &p.payload)
	p.p4.IgnoreUnsupported = true
	p.p6.IgnoreUnsupported = true
	return p
}

// parse fills info from data. Packets that are not IPv4 TCP/UDP come back
// with proto 0; the engine passes them untouched (the link disables IPv6, so
// only stray ICMP falls there).
func (p *parser) parse(data []byte, info *pktInfo) {
	*info = pktInfo{}
	if len(data) == 0 {
		return
	}
	dp := p.p4
	if data[0]>>4 == 6 {
		dp = p.p6
	}
	// Errors (truncated or unsupported layers) leave info partly filled;
	// what was decoded is still described by p.decoded.
	_ = dp.DecodeLayers(data, &p.decoded)
	v4 := false
	for _, lt := range p.decoded {
		switch lt {
		case layers.LayerTypeIPv4:
			v4 = true
			copy(info.src[:], p.ip4.SrcIP.To4())
			copy(info.dst[:], p.ip4.DstIP.To4())
			info.l4Off = int(p.ip4.IHL) * 4
		case layers.LayerTypeTCP:
			if !v4 {
				continue
			}
			t := &p.tcp
			info.proto = uint8(layers.IPProtocolTCP)
			info.sport, info.dport = uint16(t.SrcPort), uint16(t.DstPort)
			info.seq = t.Seq
			info.syn, info.ack, info.fin, info.rst = t.SYN, t.ACK, t.FIN, t.RST
			info.payloadOff = info.l4Off + int(t.DataOffset)*4
			info.payloadLen = int(p.ip4.Length) - info.payloadOff
		case layers.LayerTypeUDP:
			if !v4 {
				continue
			}
			info.proto = uint8(layers.IPProtocolUDP)
			info.sport, info.dport = uint16(p.udp.SrcPort), uint16(p.udp.DstPort)
			info.payloadOff = info.l4Off + 8
			info.payloadLen = int(p.ip4.Length) - info.payloadOff
		}
	}
	// payloadLen comes from the IP header, not from len(data): a capture
	// keeps only the headers, and retransmit tracking needs the real length.
	info.payloadLen = max(0, info.payloadLen)
}

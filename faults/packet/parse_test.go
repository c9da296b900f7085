package packet

import (
	"math/rand/v2"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// tcpPacket builds a valid IPv4/TCP packet as a TUN device would deliver it.
func tcpPacket(t testing.TB, seq uint32, flags string, payload []byte) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: net.IPv4(198, 18, 0, 1), DstIP: net.IPv4(198, 18, 0, 2)}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 8080, Seq: seq, Window: 65535}
	for _, f := range flags {
		switch f {
		case 'S':
			tcp.SYN = true
		case 'A':
			tcp.ACK = true
		case 'F':
			tcp.FIN = true
		case 'R':
			tcp.RST = true
		}
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, tcp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func udpPacket(t testing.TB, payload []byte) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: net.IPv4(198, 18, 0, 1), DstIP: net.IPv4(198, 18, 0, 2)}
	udp := &layers.UDP{SrcPort: 5000, DstPort: 53}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestParseTCP(t *testing.T) {
	p := newParser()
	var info pktInfo
	p.parse(tcpPacket(t, 1000, "A", []byte("hello")), &info)
	if info.proto != 6 || info.sport != 40000 || info.dport != 8080 || info.seq != 1000 || !info.ack || info.syn ||
		info.payloadLen != 5 || info.payloadOff != 40 || info.l4Off != 20 || info.src != [4]byte{198, 18, 0, 1} {
		t.Fatalf("parsed %+v", info)
	}
	// A capture keeps only the headers; the payload length still comes from the IP header.
	p.parse(tcpPacket(t, 1000, "A", make([]byte, 1000))[:60], &info)
	if info.proto != 6 || info.payloadLen != 1000 {
		t.Fatalf("truncated packet parsed as %+v", info)
	}
	p.parse(udpPacket(t, []byte("dns?")), &info)
	if info.proto != 17 || info.dport != 53 || info.payloadLen != 4 {
		t.Fatalf("udp parsed as %+v", info)
	}
	for _, junk := range [][]byte{nil, {0x45}, {0x60, 0, 0}, make([]byte, 20)} {
		p.parse(junk, &info) // must not panic
		if info.proto != 0 {
			t.Fatalf("junk %x parsed as %+v", junk, info)
		}
	}
}

// validChecksum recomputes the TCP or UDP checksum of a packet and compares.
func validChecksum(t *testing.T, pkt []byte) bool {
	t.Helper()
	p := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	var got uint16
	var l gopacket.SerializableLayer
	var payload []byte
	if tl, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		got, payload = tl.Checksum, tl.Payload
		c := *tl
		_ = c.SetNetworkLayerForChecksum(ip)
		l = &c
	} else {
		ul := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		got, payload = ul.Checksum, ul.Payload
		c := *ul
		_ = c.SetNetworkLayerForChecksum(ip)
		l = &c
	}
	buf := gopacket.NewSerializeBuffer()
	_ = gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, l, gopacket.Payload(payload))
	re := gopacket.NewPacket(buf.Bytes(), ip.NextLayerType(), gopacket.Default)
	switch x := re.Layers()[0].(type) {
	case *layers.TCP:
		return x.Checksum == got
	case *layers.UDP:
		return x.Checksum == got
	}
	return false
}

func TestCorruptPacketBreaksTheChecksumOnly(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	p := newParser()
	var info pktInfo
	for i, orig := range [][]byte{
		tcpPacket(t, 5, "A", []byte("some payload bytes")),
		tcpPacket(t, 5, "A", nil), // pure ACK: the checksum field itself is hit
		udpPacket(t, []byte("datagram")),
	} {
		if !validChecksum(t, orig) {
			t.Fatalf("case %d: test packet has a bad checksum to begin with", i)
		}
		pkt := append([]byte(nil), orig...)
		p.parse(pkt, &info)
		if !corruptPacket(pkt, &info, rng) {
			t.Fatalf("case %d: not corrupted", i)
		}
		diff := 0
		for j := range pkt {
			if pkt[j] != orig[j] {
				diff++
				if j < info.l4Off {
					t.Fatalf("case %d: IP header byte %d changed", i, j)
				}
			}
		}
		if diff != 1 {
			t.Fatalf("case %d: %d bytes changed, want exactly one bit", i, diff)
		}
		if validChecksum(t, pkt) {
			t.Fatalf("case %d: checksum still valid: the receiver would accept corrupted data", i)
		}
	}
	icmp := []byte{0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2, 8, 0, 0, 0, 0, 0, 0, 0}
	p.parse(icmp, &info)
	if corruptPacket(icmp, &info, rng) {
		t.Fatalf("ICMP must be left alone")
	}
}

//go:build linux

// Command hopcap splits the time a proxy on loopback takes per request into
// its hops, as seen on the wire.
//
// A load generator's latency through a proxy includes its own scheduling,
// both ends' wake-ups and the upstream, all of which move by tens of
// microseconds between runs on a shared VM; "added latency" from the client
// (bench/gateway.sh B2 and part 3) cannot say which side a small difference
// is on. hopcap captures the loopback traffic (AF_PACKET, gopacket/afpacket;
// needs CAP_NET_RAW) for a while and, for each request, takes four kernel
// timestamps: the client's request reaching the proxy's port, the proxy's
// request to the upstream, the upstream's answer, the proxy's answer to the
// client. Requests are matched across the two sides by their request line,
// so the load must send distinct URIs (bench/gateway.sh's hops part sends
// /?h<round>-<n>), and by HTTP/1.1's one-request-at-a-time order on each
// connection.
//
//	in-hop    client's request seen → proxy's request to the upstream
//	upstream  proxy's request → first segment of the upstream's answer
//	out-hop   upstream's answer → first segment of the proxy's answer
//	total     client's request → proxy's answer (what the proxy and upstream took)
//
// With -up 0 (no proxy: -front is the upstream) only total is measured.
// Output: one tab-separated line per hop (name, n, p50, p90, p99, p99.9, in µs).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/afpacket"
	"github.com/gopacket/gopacket/layers"
)

func main() {
	front := flag.Int("front", 0, "the proxy's listening port (the upstream's, with -up 0)")
	up := flag.Int("up", 0, "the upstream's port (0: no proxy, measure total only)")
	dur := flag.Duration("dur", 3*time.Second, "how long to capture (bounded: at most 2m)")
	iface := flag.String("iface", "lo", "interface to capture on")
	flag.Parse()
	if *front <= 0 || *front > 65535 || *up < 0 || *up > 65535 || *dur <= 0 || *dur > 2*time.Minute {
		fmt.Fprintln(os.Stderr, "hopcap: need -front PORT, -up PORT (or 0) and 0 < -dur ≤ 2m")
		os.Exit(2)
	}
	tp, err := afpacket.NewTPacket(afpacket.OptInterface(*iface), afpacket.TPacketVersion3,
		afpacket.OptFrameSize(4096), afpacket.OptBlockSize(1<<20), afpacket.OptNumBlocks(64),
		afpacket.OptBlockTimeout(5*time.Millisecond), afpacket.OptPollTimeout(50*time.Millisecond))
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			err = fmt.Errorf("%w (an AF_PACKET socket needs CAP_NET_RAW: run as root)", err)
		}
		fmt.Fprintln(os.Stderr, "hopcap:", err)
		os.Exit(1)
	}
	defer tp.Close()
	m := newMatcher(uint16(*front), uint16(*up))
	var (
		eth     layers.Ethernet
		ip      layers.IPv4
		tcp     layers.TCP
		pl      gopacket.Payload
		decoded []gopacket.LayerType
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip, &tcp, &pl)
	for end := time.Now().Add(*dur); time.Now().Before(end); {
		data, ci, err := tp.ZeroCopyReadPacketData()
		if err != nil {
			continue // poll timeout
		}
		if parser.DecodeLayers(data, &decoded); len(decoded) < 3 || len(tcp.Payload) == 0 {
			continue
		}
		m.packet(uint16(tcp.SrcPort), uint16(tcp.DstPort), tcp.Seq, tcp.Payload, ci.Timestamp)
	}
	for _, h := range m.hops() {
		fmt.Println(h)
	}
}

// segment identifies a TCP segment. On loopback AF_PACKET sees each one
// twice (leaving and arriving); the first sighting is the send.
type segment struct {
	sport, dport uint16
	seq          uint32
}

type stamps struct{ reqIn, reqOut, respIn, respOut time.Time }

type matcher struct {
	front, up uint16
	seen      map[segment]bool
	byURI     map[string]*stamps
	cliConn   map[uint16]*stamps // client port → its request awaiting an answer
	upConn    map[uint16]*stamps // proxy's upstream-side port → the same
}

func newMatcher(front, up uint16) *matcher {
	return &matcher{front: front, up: up, seen: map[segment]bool{}, byURI: map[string]*stamps{},
		cliConn: map[uint16]*stamps{}, upConn: map[uint16]*stamps{}}
}

var (
	get  = []byte("GET ")
	resp = []byte("HTTP/1.")
)

func (m *matcher) packet(sport, dport uint16, seq uint32, p []byte, ts time.Time) {
	k := segment{sport, dport, seq}
	if m.seen[k] {
		return
	}
	m.seen[k] = true
	switch {
	case dport == m.front && bytes.HasPrefix(p, get):
		s := &stamps{reqIn: ts}
		m.byURI[requestURI(p)] = s
		m.cliConn[sport] = s
	case m.up != 0 && dport == m.up && bytes.HasPrefix(p, get):
		if s := m.byURI[requestURI(p)]; s != nil {
			s.reqOut = ts
			m.upConn[sport] = s
		}
	case m.up != 0 && sport == m.up && bytes.HasPrefix(p, resp):
		if s := m.upConn[dport]; s != nil {
			s.respIn = ts
			delete(m.upConn, dport)
		}
	case sport == m.front && bytes.HasPrefix(p, resp):
		if s := m.cliConn[dport]; s != nil {
			s.respOut = ts
			delete(m.cliConn, dport)
		}
	}
}

func requestURI(p []byte) string {
	p = p[len(get):]
	if i := bytes.IndexByte(p, ' '); i >= 0 {
		p = p[:i]
	}
	return string(p)
}

func (m *matcher) hops() []string {
	var in, ups, out, total []time.Duration
	for _, s := range m.byURI {
		if s.respOut.IsZero() {
			continue // the capture ended mid-request
		}
		if m.up != 0 {
			if s.reqOut.IsZero() || s.respIn.IsZero() {
				continue
			}
			in = append(in, s.reqOut.Sub(s.reqIn))
			ups = append(ups, s.respIn.Sub(s.reqOut))
			out = append(out, s.respOut.Sub(s.respIn))
		}
		total = append(total, s.respOut.Sub(s.reqIn))
	}
	var lines []string
	for _, h := range []struct {
		name string
		d    []time.Duration
	}{{"in-hop", in}, {"upstream", ups}, {"out-hop", out}, {"total", total}} {
		if m.up == 0 && h.name != "total" {
			continue
		}
		lines = append(lines, quantiles(h.name, h.d))
	}
	return lines
}

func quantiles(name string, d []time.Duration) string {
	slices.Sort(d)
	q := func(f float64) string {
		if len(d) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", float64(d[min(len(d)-1, int(f*float64(len(d))))])/1e3)
	}
	return fmt.Sprintf("%s\t%d\t%s\t%s\t%s\t%s", name, len(d), q(.50), q(.90), q(.99), q(.999))
}

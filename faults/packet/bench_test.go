package packet

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkDecisionPath is what the engine does per packet apart from the
// two system calls: decode, retransmit tracking, and the impairment decision.
func BenchmarkDecisionPath(b *testing.B) {
	for _, bc := range []struct {
		name string
		imp  Impairment
	}{
		{"none", Impairment{}},
		{"loss", Impairment{Loss: Loss{Percent: 0.01}}},
		{"gemodel+delay+jitter", Impairment{Loss: Loss{GEModel: GilbertElliott{P: 0.01, R: 0.3}}, Delay: ms(50), Jitter: ms(5), Correlation: 0.25}},
		{"everything", Impairment{Loss: Loss{Percent: 0.01}, Delay: ms(50), Jitter: ms(5), Duplicate: 0.01,
			Corrupt: 0.01, Reorder: Reorder{Percent: 0.01}, Bandwidth: Bandwidth{Rate: 1e9}, Filter: Filter{Port: 8080}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			pkts := make([][]byte, 64)
			for i := range pkts {
				pkts[i] = tcpPacket(b, uint32(i*1448), "A", make([]byte, 1448))
			}
			p := newParser()
			tr := newRetransTracker()
			var m impairer
			pol := compile(bc.imp, 1, 1500)
			m.reset(pol, 1, ToUpstream, 0)
			var info pktInfo
			var kept int
			b.ReportAllocs()
			b.SetBytes(int64(len(pkts[0])))
			for i := 0; b.Loop(); i++ {
				pkt := pkts[i%len(pkts)]
				p.parse(pkt, &info)
				tr.observe(&info)
				if pol.zero || !pol.applies(&info) {
					kept++
					continue
				}
				if v := m.decide(int64(i)*1000, &info, len(pkt)); v.drop == keep {
					kept++
				}
			}
			_ = kept
		})
	}
}

// BenchmarkLinkThroughput pushes bulk TCP through an unimpaired link at
// several MTUs, next to the same transfer over loopback in this namespace
// (the peer: what the kernel alone does on this machine).
func BenchmarkLinkThroughput(b *testing.B) {
	requireRoot(b)
	const chunk = 1 << 20
	run := func(b *testing.B, ln net.Listener, dial func(context.Context, string, string) (net.Conn, error)) {
		done := make(chan int64, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				done <- 0
				return
			}
			n, _ := io.Copy(io.Discard, c)
			c.Close()
			done <- n
		}()
		c, err := dial(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, chunk)
		b.SetBytes(chunk)
		start := time.Now()
		for b.Loop() {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		c.Close()
		n := <-done
		el := time.Since(start)
		b.ReportMetric(float64(n)*8/el.Seconds()/1e9, "Gbit/s")
	}
	b.Run("peer=loopback", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		var d net.Dialer
		run(b, ln, d.DialContext)
	})
	for _, mtu := range []int{1500, 9000, 65535} {
		b.Run(fmt.Sprintf("mtu=%d", mtu), func(b *testing.B) {
			prefix := testPrefix()
			l, err := NewLink(context.Background(), Config{Prefix: prefix, MTU: mtu})
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				if err := l.Close(); err != nil {
					b.Error(err)
				}
			}()
			ln, err := l.Listen("tcp", ":0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			start := time.Now()
			run(b, ln, l.DialContext)
			s := l.Stats()
			b.ReportMetric(float64(s.ToUpstream.Packets+s.FromUpstream.Packets)/time.Since(start).Seconds(), "pkt/s")
		})
	}
}

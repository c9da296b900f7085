package tcpfault

import (
	"encoding/json"
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkRoundTrip: one small request and its answer over a kept-open
// connection, directly and through the proxy (no toxic, and a toxic on the
// other direction, which forces the queued path), so the proxy's cost is a
// ratio against the direct path in the same run.
func BenchmarkRoundTrip(b *testing.B) {
	addr, _ := tcpUpstream(b, echo)
	run := func(b *testing.B, target string) {
		c, err := net.Dial("tcp", target)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		msg, buf := []byte("ping"), make([]byte, 4)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			c.Write(msg)
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, addr) })
	b.Run("proxy", func(b *testing.B) {
		p := benchProxy(b, addr)
		run(b, p.Addr())
	})
	b.Run("proxy+idle-toxic", func(b *testing.B) {
		p := benchProxy(b, addr)
		p.AddToxic(NewSpec("", Upstream, &Bandwidth{})) // rate 0: passes everything, but queued
		p.AddToxic(NewSpec("", Downstream, &Latency{}))
		run(b, p.Addr())
	})
}

// BenchmarkThroughput: bulk bytes one way through the proxy.
func BenchmarkThroughput(b *testing.B) {
	addr, _ := tcpUpstream(b, func(c net.Conn) { io.Copy(io.Discard, c) })
	for _, tc := range []struct {
		name  string
		toxic Toxic
	}{{"none", nil}, {"latency", &Latency{Latency: time.Millisecond}}} {
		b.Run(tc.name, func(b *testing.B) {
			p := benchProxy(b, addr)
			if tc.toxic != nil {
				p.AddToxic(NewSpec("", Upstream, tc.toxic))
			}
			c, err := net.Dial("tcp", p.Addr())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNewToxic(b *testing.B) {
	raw := json.RawMessage(`{"average_size": 10, "size_variation": 5, "delay": 100}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := NewToxic("slicer", raw); err != nil {
			b.Fatal(err)
		}
	}
}

func benchProxy(b *testing.B, upstream string) *Proxy {
	b.Helper()
	return startProxy(b, upstream)
}

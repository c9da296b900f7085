package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// rawHello is an upstream that answers every request with a fixed 6-byte
// body, parsing as little as it can: the benchmark measures the gateway.
func rawHello(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n")
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 16<<10)
				n := 0
				for {
					m, err := c.Read(buf[n:])
					if err != nil {
						return
					}
					n += m
					for {
						i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						if _, err := c.Write(resp); err != nil {
							return
						}
						n = copy(buf, buf[i+4:n])
					}
				}
			})
		}
	}()
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	return "http://" + ln.Addr().String()
}

// BenchmarkProxy sends keep-alive GETs through the gateway from parallel
// raw clients: ns/op and allocs/op are per proxied request.
func BenchmarkProxy(b *testing.B) {
	for _, tc := range []struct {
		name     string
		features []string
		loops    int // Options.Loops: 0, goroutines
	}{
		{"plain", nil, 0},
		{"breaker", []string{"breaker"}, 0},
		{"retries", []string{"retries"}, 0},
		{"limits", []string{"limits"}, 0},
		{"p2c", []string{"p2c"}, 0},
		{"all", []string{"breaker", "retries", "limits", "p2c"}, 0},
		{"all+outlier", []string{"breaker", "retries", "limits", "p2c", "outlier"}, 0},
		{"hedging", []string{"retries", "hedging"}, 0},
		// On a loop, as cascade gateway serves by default: each attempt is
		// a task of the client's loop, and evloop allocates for every task
		// it starts.
		{"hedging-loop", []string{"retries", "hedging"}, 1},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := Single("127.0.0.1:0", rawHello(b))
			for _, f := range tc.features {
				if f == "hedging" {
					// Envoy's hedge_on_per_try_timeout: a per-try timeout no
					// answer here reaches, so no hedge is sent; what a
					// hedging route costs every request.
					cfg.Routes[0].Retries.HedgeOnPerTryTimeout = true
					cfg.Routes[0].Timeouts.PerTry = du(time.Second)
					continue
				}
				if err := cfg.Enable(f); err != nil {
					b.Fatal(err)
				}
			}
			g, err := New(cfg, Options{Loops: tc.loops})
			if err != nil {
				b.Fatal(err)
			}
			if err := g.Start(); err != nil {
				b.Fatal(err)
			}
			defer g.Close()
			req := []byte("GET /hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n")
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", g.Addr())
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				br := bufio.NewReaderSize(c, 4096)
				for pb.Next() {
					if _, err := c.Write(req); err != nil {
						b.Error(err)
						return
					}
					if err := readHello(br); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// readHello reads one response with a Content-Length body.
func readHello(br *bufio.Reader) error {
	clen := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if bytes.HasPrefix(line, []byte("Content-Length: ")) {
			clen = 0
			for _, c := range line[16 : len(line)-2] {
				clen = clen*10 + int(c-'0')
			}
		}
	}
	if clen < 0 {
		return io.ErrUnexpectedEOF
	}
	_, err := br.Discard(clen)
	return err
}

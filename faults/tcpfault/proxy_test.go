package tcpfault

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

func TestPassThroughKeepsEveryByte(t *testing.T) {
	addr, _ := tcpUpstream(t, echo)
	p := startProxy(t, addr)
	c := dial(t, p.Addr())
	want := make([]byte, 3<<20)
	rand.Read(want)
	go func() { c.Write(want); c.CloseWrite() }()
	got, err := readAllTimeout(c, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("echo through the proxy returned %d bytes, want %d identical", len(got), len(want))
	}
	if s := p.Stats(); s.BytesUp != uint64(len(want)) || s.BytesDown != uint64(len(want)) || s.Accepted != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestListenMustBeLoopback(t *testing.T) {
	for _, a := range []string{"0.0.0.0:0", ":0", "192.0.2.1:80", "example.com:80", "127.0.0.1"} {
		if _, err := New(Config{Listen: a, Upstream: "127.0.0.1:1", Rand: nil}); err == nil {
			t.Errorf("New(Listen=%q) accepted", a)
		}
	}
	_, err := New(Config{Listen: "0.0.0.0:0", Upstream: "127.0.0.1:1"})
	if !errors.Is(err, ErrNotLoopback) {
		t.Errorf("err = %v, want ErrNotLoopback", err)
	}
	if a, err := LoopbackAddr("localhost:0"); err != nil || a != "127.0.0.1:0" {
		t.Errorf("LoopbackAddr(localhost:0) = %q, %v", a, err)
	}
}

// The upstream is on loopback too, unless allowed: a proxy is where cascade
// sends traffic. Nothing is dialed here.
func TestUpstreamMustBeLoopback(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 1))
	for _, up := range []string{"203.0.113.9:80", "example.com:80", "http://198.51.100.1/", "[2001:db8::1]:80"} {
		if _, err := New(Config{Listen: "127.0.0.1:0", Upstream: up, Rand: rng}); !errors.Is(err, ErrRemoteUpstream) {
			t.Errorf("upstream %s: %v, want ErrRemoteUpstream", up, err)
		}
	}
	for _, up := range []string{"127.0.0.1:80", "localhost:6379", "[::1]:80", "http://127.0.0.2:8080"} {
		if _, err := New(Config{Listen: "127.0.0.1:0", Upstream: up, Rand: rng}); err != nil {
			t.Errorf("upstream %s: %v", up, err)
		}
	}
	p, err := New(Config{Listen: "127.0.0.1:0", Upstream: "203.0.113.9:80", Rand: rng, AllowRemote: true})
	if err != nil {
		t.Fatalf("AllowRemote: %v", err)
	}
	if err := p.SetAddrs("127.0.0.1:0", "198.51.100.1:80"); err != nil {
		t.Fatalf("AllowRemote, SetAddrs: %v", err)
	}
	p, _ = New(Config{Listen: "127.0.0.1:0", Upstream: "127.0.0.1:80", Rand: rng})
	if err := p.SetAddrs("127.0.0.1:0", "198.51.100.1:80"); !errors.Is(err, ErrRemoteUpstream) || p.Upstream() != "127.0.0.1:80" {
		t.Fatalf("SetAddrs to a remote upstream: %v, upstream now %s", err, p.Upstream())
	}
}

func TestLatencyBothDirections(t *testing.T) {
	up := httpUpstream(t, nil)
	for _, dir := range []Direction{Upstream, Downstream} {
		t.Run(dir.String(), func(t *testing.T) {
			p := startProxy(t, up.Listener.Addr().String())
			add(t, p, NewSpec("lat", dir, &Latency{Latency: 100 * time.Millisecond}))
			c := keepAliveClient()
			for i := 0; i < 5; i++ {
				d, body := timedGet(t, c, p.Addr())
				if body != "hello\n" {
					t.Fatalf("body %q", body)
				}
				if d < 100*time.Millisecond || d > 600*time.Millisecond {
					t.Errorf("request %d took %v, want 100ms (+ slack for a busy machine)", i, d)
				}
			}
			st, _ := p.Toxic("lat")
			if st.Stats.Conns != 1 || st.Stats.Requests != 5 || st.Stats.BytesDelayed == 0 {
				t.Errorf("stats = %+v, want 1 conn, 5 requests", st.Stats)
			}
			if st.Stats.Lag.Releases() < 5 || st.Stats.Lag.Max <= 0 {
				t.Errorf("lag histogram %+v: want every timed release counted", st.Stats.Lag)
			}
		})
	}
}

func TestLatencyJitterBounds(t *testing.T) {
	up := httpUpstream(t, nil)
	p := startProxy(t, up.Listener.Addr().String())
	add(t, p, NewSpec("lat", Downstream, &Latency{Latency: 60 * time.Millisecond, Jitter: 30 * time.Millisecond}))
	c := keepAliveClient()
	lo, hi := time.Hour, time.Duration(0)
	for i := 0; i < 30; i++ {
		d, _ := timedGet(t, c, p.Addr())
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 30*time.Millisecond || hi > 90*time.Millisecond+time.Second {
		t.Errorf("latencies in [%v, %v], want within [30ms, 90ms + slack]", lo, hi)
	}
	if hi-lo < 10*time.Millisecond {
		t.Errorf("latencies in [%v, %v]: jitter of ±30ms had no visible spread", lo, hi)
	}
}

// A response written in three pieces 20 ms apart is shifted as a whole: the
// delay is not paid once per chunk (that would take 600+ ms).
func TestLatencyIsPerMessageNotPerChunk(t *testing.T) {
	addr, _ := tcpUpstream(t, func(c net.Conn) {
		buf := make([]byte, 64)
		if _, err := c.Read(buf); err != nil {
			return
		}
		for i := 0; i < 3; i++ {
			c.Write([]byte("part"))
			time.Sleep(20 * time.Millisecond)
		}
	})
	p := startProxy(t, addr)
	add(t, p, NewSpec("lat", Downstream, &Latency{Latency: 200 * time.Millisecond}))
	c := dial(t, p.Addr())
	start := time.Now()
	c.Write([]byte("go"))
	got, err := readAllTimeout(c, 5*time.Second)
	d := time.Since(start)
	if err != nil || string(got) != "partpartpart" {
		t.Fatalf("got %q, %v", got, err)
	}
	if d < 240*time.Millisecond || d > 500*time.Millisecond {
		t.Errorf("3 chunks 20ms apart + 200ms latency took %v, want ~240ms (not 600+)", d)
	}
	if st, _ := p.Toxic("lat"); st.Stats.Requests != 1 {
		t.Errorf("requests = %d, want 1 (one response)", st.Stats.Requests)
	}
}

// A change of listen address to a port already taken fails, and the proxy
// keeps serving where it was: it used to report itself enabled at the
// taken address while listening nowhere.
func TestSetAddrsToTakenPortKeepsOldListener(t *testing.T) {
	up, _ := tcpUpstream(t, echo)
	p := startProxy(t, up)
	before := p.Addr()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if err := p.SetAddrs(taken.Addr().String(), up); err == nil {
		t.Fatal("SetAddrs to a taken port succeeded")
	}
	if got := p.Addr(); got != before || !p.Enabled() {
		t.Fatalf("after the failed change: addr %s enabled %v, want %s enabled", got, p.Enabled(), before)
	}
	c := dial(t, before)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("echo through the old address: %v", err)
	}
}

// A rate too large to limit anything (rate=9223372036854775807, "no
// limit" written as the largest integer) must not slow the data: the
// slice size overflowed int and fell to 1 byte, so 2 MB took seconds.
func TestBandwidthHugeRateDoesNotThrottle(t *testing.T) {
	const size = 2 << 20
	for _, rate := range []int64{1_000_000_000_000_000, math.MaxInt64} {
		addr, _ := tcpUpstream(t, func(c net.Conn) { c.Write(make([]byte, size)) })
		p := startProxy(t, addr)
		add(t, p, NewSpec("bw", Downstream, &Bandwidth{Rate: rate}))
		c := dial(t, p.Addr())
		start := time.Now()
		b, _ := readAllTimeout(c, 10*time.Second)
		if d := time.Since(start); len(b) != size || d > 2*time.Second {
			t.Errorf("rate=%d: moved %d of %d bytes in %v, want all of them at once", rate, len(b), size, d)
		}
	}
}

func TestBandwidthBothDirections(t *testing.T) {
	const size = 400_000 // at 400 KB/s: ~1s
	for _, dir := range []Direction{Upstream, Downstream} {
		t.Run(dir.String(), func(t *testing.T) {
			addr, _ := tcpUpstream(t, func(c net.Conn) {
				if dir == Upstream {
					io.Copy(io.Discard, c)
					c.Write([]byte("done"))
				} else {
					c.Write(make([]byte, size))
				}
			})
			p := startProxy(t, addr)
			add(t, p, NewSpec("bw", dir, &Bandwidth{Rate: 400}))
			c := dial(t, p.Addr())
			start := time.Now()
			var n int
			if dir == Upstream {
				c.Write(make([]byte, size))
				c.CloseWrite()
				b, _ := readAllTimeout(c, 10*time.Second)
				if string(b) != "done" {
					t.Fatalf("got %q", b)
				}
				n = size
			} else {
				b, _ := readAllTimeout(c, 10*time.Second)
				n = len(b)
			}
			d := time.Since(start)
			if n != size {
				t.Fatalf("moved %d bytes, want %d", n, size)
			}
			rate := float64(n) / d.Seconds() / 1000
			if rate < 150 || rate > 440 {
				t.Errorf("throughput %.0f KB/s over %v, want ~400", rate, d)
			}
		})
	}
}

func TestSlowCloseDelaysFIN(t *testing.T) {
	addr, _ := tcpUpstream(t, func(c net.Conn) { c.Write([]byte("bye")) })
	p := startProxy(t, addr)
	add(t, p, NewSpec("sc", Downstream, &SlowClose{Delay: 300 * time.Millisecond}))
	c := dial(t, p.Addr())
	start := time.Now()
	buf := make([]byte, 3)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "bye" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("data took %v: slow_close must not delay data", d)
	}
	gotData := time.Now()
	rest, err := readAllTimeout(c, 5*time.Second)
	// The proxy read "bye" and the end of stream together; the FIN is held
	// 300 ms from then (a few ms of slack for the two reads' order).
	d := time.Since(gotData)
	if err != nil || len(rest) != 0 {
		t.Fatalf("after data: %q, %v; want clean EOF", rest, err)
	}
	if d < 290*time.Millisecond || d > 800*time.Millisecond {
		t.Errorf("EOF %v after the data, want ~300ms", d)
	}
}

func TestTimeoutStallsThenCloses(t *testing.T) {
	up := httpUpstream(t, nil)
	for _, dir := range []Direction{Upstream, Downstream} {
		t.Run(dir.String(), func(t *testing.T) {
			p := startProxy(t, up.Listener.Addr().String())
			add(t, p, NewSpec("to", dir, &Timeout{Timeout: 200 * time.Millisecond}))
			start := time.Now() // the clock starts when the proxy takes the connection
			c := dial(t, p.Addr())
			c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
			got, err := readAllTimeout(c, 5*time.Second)
			d := time.Since(start)
			if len(got) != 0 {
				t.Errorf("received %q through a timeout toxic", got)
			}
			if isTimeout(err) {
				t.Fatalf("connection was not closed within 5s")
			}
			if d < 200*time.Millisecond || d > 800*time.Millisecond {
				t.Errorf("closed after %v, want ~200ms", d)
			}
			st, _ := p.Toxic("to")
			if st.Stats.Closes != 1 || st.Stats.Conns != 1 {
				t.Errorf("stats = %+v", st.Stats)
			}
		})
	}
}

// An idle connection is closed on time too (Toxiproxy's clock starts when
// the toxic takes hold, not at the first byte).
func TestTimeoutClosesIdleConnection(t *testing.T) {
	addr, _ := tcpUpstream(t, echo)
	p := startProxy(t, addr)
	add(t, p, NewSpec("to", Upstream, &Timeout{Timeout: 150 * time.Millisecond}))
	start := time.Now()
	c := dial(t, p.Addr())
	_, err := readAllTimeout(c, 5*time.Second)
	if isTimeout(err) {
		t.Fatal("idle connection not closed")
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 700*time.Millisecond {
		t.Errorf("closed after %v, want ~150ms", d)
	}
}

func TestTimeoutZeroHoldsThenReleasesOnRemoval(t *testing.T) {
	up := httpUpstream(t, nil)
	p := startProxy(t, up.Listener.Addr().String())
	add(t, p, NewSpec("stall", Downstream, &Timeout{}))
	c := dial(t, p.Addr())
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 10)); !isTimeout(err) {
		t.Fatalf("read %d bytes, %v during a stall; want a read timeout", n, err)
	}
	if err := p.RemoveToxic("stall"); err != nil {
		t.Fatal(err)
	}
	got, err := readAllTimeout(c, 5*time.Second)
	if err != nil || !bytes.HasPrefix(got, []byte("HTTP/1.1 200 OK")) || !bytes.HasSuffix(got, []byte("hello\n")) {
		t.Fatalf("after removal got %q, %v; want the whole held response", got, err)
	}
}

func TestResetPeer(t *testing.T) {
	addr, _ := tcpUpstream(t, echo)
	for _, dir := range []Direction{Upstream, Downstream} {
		t.Run(dir.String(), func(t *testing.T) {
			p := startProxy(t, addr)
			add(t, p, NewSpec("rst", dir, &ResetPeer{Timeout: 100 * time.Millisecond}))
			c := dial(t, p.Addr())
			start := time.Now()
			c.Write([]byte("hello"))
			_, err := readAllTimeout(c, 5*time.Second)
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("err = %v, want ECONNRESET", err)
			}
			if d := time.Since(start); d < 100*time.Millisecond || d > 600*time.Millisecond {
				t.Errorf("reset after %v, want ~100ms", d)
			}
		})
	}
}

func TestSlicerDeliversEverythingInSmallWrites(t *testing.T) {
	payload := make([]byte, 4000)
	rand.Read(payload)
	addr, _ := tcpUpstream(t, func(c net.Conn) { c.Write(payload) })
	p := startProxy(t, addr)
	add(t, p, NewSpec("sl", Downstream, &Slicer{AverageSize: 100, SizeVariation: 40, Delay: 5 * time.Millisecond}))
	c := dial(t, p.Addr())
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []byte
	reads := 0
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			reads++
			got = append(got, buf[:n]...)
		}
		if err != nil {
			break
		}
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("got %d bytes, want the %d sent, intact", len(got), len(payload))
	}
	// 40 slices 5 ms apart; a busy reader may merge a few, not most.
	if reads < 10 {
		t.Errorf("%d reads for 4000 bytes in ~100-byte slices", reads)
	}
}

func TestLimitData(t *testing.T) {
	for _, dir := range []Direction{Upstream, Downstream} {
		t.Run(dir.String(), func(t *testing.T) {
			got := make(chan int, 1)
			addr, _ := tcpUpstream(t, func(c net.Conn) {
				if dir == Upstream {
					b, _ := io.ReadAll(c)
					got <- len(b)
					return
				}
				c.Write(make([]byte, 5000))
				io.Copy(io.Discard, c)
			})
			p := startProxy(t, addr)
			add(t, p, NewSpec("lim", dir, &LimitData{Bytes: 1000}))
			c := dial(t, p.Addr())
			if dir == Upstream {
				c.Write(make([]byte, 5000))
				select {
				case n := <-got:
					if n != 1000 {
						t.Errorf("upstream received %d bytes, want 1000", n)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("upstream connection not closed")
				}
				return
			}
			b, err := readAllTimeout(c, 5*time.Second)
			if len(b) != 1000 || isTimeout(err) {
				t.Errorf("client received %d bytes (%v), want 1000 then close", len(b), err)
			}
		})
	}
}

func TestDownRefusesAndCuts(t *testing.T) {
	addr, _ := tcpUpstream(t, echo)
	p := startProxy(t, addr)
	c := dial(t, p.Addr())
	c.Write([]byte("x"))
	buf := make([]byte, 1)
	io.ReadFull(c, buf)
	listen := p.Addr()
	if err := p.SetEnabled(false); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", listen, time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial while down: %v, want connection refused", err)
	}
	if _, err := readAllTimeout(c, 2*time.Second); isTimeout(err) {
		t.Fatal("open connection was not cut when the proxy went down")
	}
	if err := p.SetEnabled(true); err != nil {
		t.Fatal(err)
	}
	if p.Addr() != listen {
		t.Fatalf("address changed from %s to %s", listen, p.Addr())
	}
	c2 := dial(t, listen)
	c2.Write([]byte("y"))
	if _, err := io.ReadFull(c2, buf); err != nil || buf[0] != 'y' {
		t.Fatalf("after enabling: %q, %v", buf, err)
	}
}

func TestBlackholeAcceptsButNeverAnswers(t *testing.T) {
	up := httpUpstream(t, nil)
	p := startProxy(t, up.Listener.Addr().String())
	add(t, p, NewSpec("bh", Upstream, &Blackhole{}))
	c := dial(t, p.Addr())
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("read through a blackhole: %v, want a timeout", err)
	}
	if s := p.Stats(); s.Accepted != 1 || s.BytesUp != 0 {
		t.Fatalf("stats = %+v: want the connection accepted and nothing sent upstream", s)
	}
	if err := p.RemoveToxic("bh"); err != nil {
		t.Fatal(err)
	}
	got, err := readAllTimeout(c, 5*time.Second)
	if err != nil || !bytes.HasSuffix(got, []byte("hello\n")) {
		t.Fatalf("after removal: %q, %v; want the answer to the held request", got, err)
	}
}

func TestBlackholeNoAcceptFillsBacklog(t *testing.T) {
	up := httpUpstream(t, nil)
	p := startProxy(t, up.Listener.Addr().String(), func(c *Config) { c.Backlog = 1 })
	add(t, p, NewSpec("bh", Upstream, &Blackhole{NoAccept: true}))
	var held []net.Conn
	timedOut := false
	for i := 0; i < 8 && !timedOut; i++ {
		c, err := net.DialTimeout("tcp", p.Addr(), 300*time.Millisecond)
		if err != nil {
			if !isTimeout(err) {
				t.Fatalf("dial %d: %v, want a connect timeout", i, err)
			}
			timedOut = true
			break
		}
		held = append(held, c)
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	if !timedOut {
		t.Fatalf("%d connections completed; want a connect timeout once the backlog of 1 is full", len(held))
	}
	if s := p.Stats(); s.Accepted != 0 {
		t.Fatalf("accepted %d connections while not accepting", s.Accepted)
	}
	if err := p.RemoveToxic("bh"); err != nil {
		t.Fatal(err)
	}
	for i, c := range held {
		got, err := readAllTimeout(c, 5*time.Second)
		if err != nil || !bytes.HasSuffix(got, []byte("hello\n")) {
			t.Errorf("queued connection %d after removal: %q, %v", i, got, err)
		}
	}
}

// The client half-closes; the upstream sees the end of stream only after
// the delay, while its answer still flows back.
func TestSlowCloseUpstream(t *testing.T) {
	eofAfter := make(chan time.Duration, 1)
	addr, _ := tcpUpstream(t, func(c net.Conn) {
		buf := make([]byte, 2)
		io.ReadFull(c, buf)
		start := time.Now()
		c.Write([]byte("ok"))
		io.Copy(io.Discard, c)
		eofAfter <- time.Since(start)
	})
	p := startProxy(t, addr)
	add(t, p, NewSpec("sc", Upstream, &SlowClose{Delay: 250 * time.Millisecond}))
	c := dial(t, p.Addr())
	c.Write([]byte("hi"))
	c.CloseWrite()
	buf := make([]byte, 2)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ok" {
		t.Fatalf("answer after half-close: %q, %v", buf, err)
	}
	select {
	case d := <-eofAfter:
		if d < 240*time.Millisecond || d > 900*time.Millisecond {
			t.Errorf("upstream saw EOF %v after answering, want ~250ms", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("upstream never saw the end of stream")
	}
}

func TestSlicerUpstream(t *testing.T) {
	payload := make([]byte, 3000)
	rand.Read(payload)
	type result struct {
		data  []byte
		reads int
	}
	got := make(chan result, 1)
	addr, _ := tcpUpstream(t, func(c net.Conn) {
		var r result
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				r.reads++
				r.data = append(r.data, buf[:n]...)
			}
			if err != nil {
				break
			}
		}
		got <- r
	})
	p := startProxy(t, addr)
	add(t, p, NewSpec("sl", Upstream, &Slicer{AverageSize: 50, SizeVariation: 10, Delay: 4 * time.Millisecond}))
	c := dial(t, p.Addr())
	c.Write(payload)
	c.CloseWrite()
	select {
	case r := <-got:
		if !bytes.Equal(r.data, payload) || r.reads < 10 {
			t.Errorf("upstream got %d bytes in %d reads; want all %d in many small ones", len(r.data), r.reads, len(payload))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("upstream did not finish")
	}
}

// Downstream, a blackhole lets the request through but no answer back.
func TestBlackholeDownstream(t *testing.T) {
	up := httpUpstream(t, nil)
	p := startProxy(t, up.Listener.Addr().String())
	add(t, p, NewSpec("bh", Downstream, &Blackhole{}))
	c := dial(t, p.Addr())
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("read through a downstream blackhole: %v, want a timeout", err)
	}
	if s := p.Stats(); s.BytesUp == 0 || s.BytesDown != 0 {
		t.Errorf("stats %+v: want the request sent upstream, nothing back", s)
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:8080": "127.0.0.1:8080", "http://127.0.0.1:18080": "127.0.0.1:18080",
		"http://localhost/x": "localhost:80", "https://[::1]/": "[::1]:443",
	} {
		if got, err := HostPort(in); err != nil || got != want {
			t.Errorf("HostPort(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "127.0.0.1", "ftp://h", "http://"} {
		if got, err := HostPort(bad); err == nil {
			t.Errorf("HostPort(%q) = %q, want an error", bad, got)
		}
	}
}

// A jitter or a size variation past 2^62 (which the API and a scenario
// accept) doubled past int64 when drawn, and rand.Int64N panicked on the
// wrapped bound: the proxy, and the run with it, went down at the first
// response. Now half the draws are cut at no delay and the rest wait.
func TestHugeSpreadsDoNotWrap(t *testing.T) {
	up := httpUpstream(t, nil)
	p := startProxy(t, up.Listener.Addr().String())
	add(t, p, NewSpec("lat", Downstream, &Latency{Latency: math.MaxInt64 / 2, Jitter: math.MaxInt64}))
	answered := 0
	for range 16 {
		c := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
		if resp, err := c.Get("http://" + p.Addr() + "/"); err == nil {
			resp.Body.Close()
			answered++
		}
	}
	if answered == 0 || answered == 16 {
		t.Errorf("%d of 16 answered at once, want about half (delays from 0 to the largest)", answered)
	}

	payload := make([]byte, 4000)
	rand.Read(payload)
	addr, _ := tcpUpstream(t, func(c net.Conn) { c.Write(payload) })
	ps := startProxy(t, addr)
	add(t, ps, NewSpec("sl", Downstream, &Slicer{AverageSize: math.MaxInt64, SizeVariation: math.MaxInt64 - 1}))
	c := dial(t, ps.Addr())
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(c)
	if !bytes.Equal(got, payload) {
		t.Fatalf("got %d bytes, want the %d sent, intact", len(got), len(payload))
	}
}

//go:build linux

// Command loadfloor is a measurement floor, not a product: the least a
// closed-loop HTTP/1.1 load generator can do, to answer one question with a
// number — against this upstream on this machine, how many requests per
// second would any generator get, however little it spent per request?
//
// Issue 3 asks cascade load for at least wrk's rate at 50 keep-alive
// connections. On a 2-vCPU machine the upstream takes most of the CPU
// whoever drives it, and the rate moves by ±15 % from one run to the next
// with the host. loadfloor runs beside wrk and cascade load in
// bench/loadgen.sh's duel (DUEL_FLOOR=1): when it, doing nothing a
// generator could skip, gets no more req/s than wrk, a generator's rate gap
// to wrk is not its own CPU.
//
// Per connection it writes one fixed GET, reads until the response is whole
// (Content-Length framing only), records the latency in an HDR histogram
// and writes again. One goroutine per thread waits in a raw epoll_pwait2 and
// keeps its P, as wrk's threads and cascade's internal/evloop do. No
// templates, no timeouts, no reconnects, no error causes: a connection that
// fails is closed and counted. Loopback only; the run ends by itself.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"github.com/cascadehq/cascade/bench/internal/floor"
)

func main() {
	target := flag.String("url", "http://127.0.0.1:18095/", "target (loopback)")
	conns := flag.Int("c", 50, "connections")
	loops := flag.Int("t", 2, "event loops (threads), as wrk's -t")
	dur := flag.Duration("d", 10*time.Second, "duration, at most an hour")
	flag.Parse()
	res, err := run(*target, *conns, *loops, *dur)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadfloor:", err)
		os.Exit(2)
	}
	fmt.Println(res)
}

type result struct {
	requests, errors int64
	elapsed          time.Duration
	latency          *hdrhistogram.Histogram // µs
}

func (r result) String() string {
	return fmt.Sprintf("loadfloor: %d requests in %.3fs = %.1f req/s · p50 %dµs p99 %dµs · %d connection errors",
		r.requests, r.elapsed.Seconds(), float64(r.requests)/r.elapsed.Seconds(),
		r.latency.ValueAtQuantile(50), r.latency.ValueAtQuantile(99), r.errors)
}

func run(target string, conns, loops int, dur time.Duration) (result, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" {
		return result{}, fmt.Errorf("%q: want an http:// URL", target)
	}
	ap, err := floor.Loopback(u.Host)
	if err != nil {
		return result{}, err
	}
	switch {
	case conns < 1 || loops < 1:
		return result{}, errors.New("-c and -t must be at least 1")
	case dur <= 0 || dur > time.Hour:
		return result{}, errors.New("-d must be in (0, 1h]")
	}
	loops = min(loops, conns)
	path := u.RequestURI()
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\n\r\n")
	// A loop keeps its P while it waits: leave one for the rest.
	runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), loops+1))

	start := time.Now()
	end := start.Add(dur)
	out := make([]result, loops)
	errs := make([]error, loops)
	var wg sync.WaitGroup
	for i := range loops {
		n := conns/loops + btoi(i < conns%loops)
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = loop(ap.Addr().As4(), int(ap.Port()), req, n, end)
		}()
	}
	wg.Wait()
	total := result{elapsed: time.Since(start), latency: newHistogram()}
	for i, r := range out {
		if errs[i] != nil {
			return result{}, errs[i]
		}
		total.requests += r.requests
		total.errors += r.errors
		total.latency.Merge(r.latency)
	}
	return total, nil
}

func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) }

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// conn is one connection of a loop: its unread bytes are buf[:w].
type conn struct {
	fd   int
	buf  []byte
	w    int
	sent time.Time
}

// loop runs n connections until end and closes them.
func loop(addr [4]byte, port int, req []byte, n int, end time.Time) (result, error) {
	res := result{latency: newHistogram()}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return res, err
	}
	defer unix.Close(ep)
	cs := make([]*conn, 0, n)
	defer func() {
		for _, c := range cs {
			if c.fd >= 0 {
				unix.Close(c.fd)
			}
		}
	}()
	for range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return res, err
		}
		// Blocking connect, once per connection: loopback answers at once,
		// and the floor measured is the steady state.
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: addr}); err != nil {
			unix.Close(fd)
			return res, fmt.Errorf("connect: %w", err)
		}
		unix.SetNonblock(fd, true)
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		c := &conn{fd: fd, buf: make([]byte, 16<<10)}
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(len(cs))}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			unix.Close(fd)
			return res, err
		}
		cs = append(cs, c)
	}
	for _, c := range cs {
		if !c.send(req, time.Now()) {
			c.fail(&res)
		}
	}
	evs := make([]unix.EpollEvent, 256)
	ts := unix.NsecToTimespec(int64(10 * time.Millisecond))
	for {
		// Raw: no entersyscall, so no hand-off of the P while waiting; 10 ms
		// bounds a wait, so the run's end and a GC never wait longer.
		k, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT2, uintptr(ep), uintptr(unsafe.Pointer(&evs[0])),
			uintptr(len(evs)), uintptr(unsafe.Pointer(&ts)), 0, 0)
		if e != 0 {
			k = 0
		}
		now := time.Now()
		if !now.Before(end) {
			return res, nil
		}
		for _, ev := range evs[:k] {
			c := cs[ev.Fd]
			if c.fd >= 0 && !c.readable(req, now, &res) {
				c.fail(&res)
			}
		}
	}
}

// readable reads what the socket has and, once the response is whole,
// records it and sends the next request; false: the connection failed.
//
// One read per event: a read that leaves room in the buffer took all the
// socket had, and edge-triggered epoll reports every later arrival anew
// (wrk reads so too). One clock reading per wait stamps every response of
// that wait; wrk reads the clock once per response.
func (c *conn) readable(req []byte, now time.Time, res *result) bool {
	if c.w == len(c.buf) {
		return false // a response larger than the buffer: out of scope
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(c.fd), uintptr(unsafe.Pointer(&c.buf[c.w])), uintptr(len(c.buf)-c.w))
	switch {
	case e == syscall.EAGAIN:
		return true
	case e != 0 || n == 0:
		return false
	}
	c.w += int(n)
	end, err := floor.MessageEnd(c.buf[:c.w], true)
	switch {
	case err != nil || (end > 0 && end != c.w):
		return false // unsupported framing, or bytes beyond the one response asked for
	case end == 0:
		return true
	}
	c.w = 0
	res.requests++
	res.latency.RecordValue(max(1, now.Sub(c.sent).Microseconds()))
	return c.send(req, now)
}

// send writes the whole request; false: the connection failed (a full send
// buffer included, which a GET to a server that reads cannot meet).
func (c *conn) send(req []byte, now time.Time) bool {
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(c.fd), uintptr(unsafe.Pointer(&req[0])), uintptr(len(req)), syscall.MSG_NOSIGNAL, 0, 0)
	c.sent = now
	return e == 0 && int(n) == len(req)
}

func (c *conn) fail(res *result) {
	unix.Close(c.fd)
	c.fd = -1
	res.errors++
}

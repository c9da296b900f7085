//go:build linux

// Command loopproxy is a measurement floor, not a product: the smallest
// HTTP/1.1 reverse proxy on raw epoll loops, to answer one question with a
// number — how much latency would cascade's gateway add at light load if
// its I/O ran on event loops outside Go's scheduler, as nginx's does?
//
// bench/gateway.sh part 3 found the gateway's added p50 at 5,000 req/s a
// few microseconds above nginx's, and bench/hopcap put the difference on
// the upstream's side: after each write, a Go thread whose goroutine
// parked runs the scheduler's search for work on the CPU the woken peer
// wants. loopproxy has no goroutine per connection: one goroutine per
// thread waits in a raw epoll_pwait (keeping its P, as cascade's load
// generator's internal/evloop does) and relays bytes. It has none of the gateway's
// features — no timeouts, retries, breaker, limits, balancing or header
// rewriting — so it is the floor a loop-based gateway could reach, not a
// gateway. Run it in part 3 in place of the gateway with
//
//	go build -o /tmp/loopproxy ./bench/loopproxy
//	PARTS=latency LAT_ROUNDS=15 LAT_DUR=3 LAT_OURS_CMD='/tmp/loopproxy -listen {LISTEN} -upstream {UPSTREAM}' bench/gateway.sh
//
// What it handles: requests without a body (a head ending in a blank
// line), responses framed by Content-Length, keep-alive on both sides, one
// dedicated upstream connection per client connection, dialed at accept.
// Loopback only.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cascadehq/cascade/bench/internal/floor"
	"golang.org/x/sys/unix"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18592", "listen address (loopback)")
	upstream := flag.String("upstream", "127.0.0.1:18590", "upstream address or http:// URL (loopback)")
	loops := flag.Int("loops", runtime.NumCPU(), "event loops (threads)")
	flag.Parse()
	p, err := start(*listen, strings.TrimPrefix(*upstream, "http://"), *loops)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loopproxy:", err)
		os.Exit(2)
	}
	fmt.Printf("loopproxy: %d loops on %s -> %s\n", *loops, *listen, *upstream)
	<-p.done
}

type proxy struct {
	up      *unix.SockaddrInet4
	done    chan struct{}
	stop    atomic.Bool // the loops end at their next wake-up (10 ms at most)
	stopped sync.WaitGroup
}

// close ends the loops and closes every socket they opened.
func (p *proxy) close() {
	p.stop.Store(true)
	p.stopped.Wait()
}

// start binds one SO_REUSEPORT listener per loop (the kernel spreads the
// connections) and runs the loops.
func start(listen, upstream string, loops int) (*proxy, error) {
	la, err := loopback(listen)
	if err != nil {
		return nil, err
	}
	ua, err := loopback(upstream)
	if err != nil {
		return nil, err
	}
	// A loop keeps its P while it waits: leave one for the rest.
	runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), loops+1))
	p := &proxy{up: ua, done: make(chan struct{})}
	for range loops {
		lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if err := unix.Bind(lfd, la); err != nil {
			unix.Close(lfd)
			return nil, fmt.Errorf("bind %s: %w", listen, err)
		}
		if err := unix.Listen(lfd, 1024); err != nil {
			unix.Close(lfd)
			return nil, err
		}
		p.stopped.Add(1)
		go func() { defer p.stopped.Done(); p.loop(lfd) }()
	}
	return p, nil
}

func loopback(hostport string) (*unix.SockaddrInet4, error) {
	ap, err := floor.Loopback(hostport)
	if err != nil {
		return nil, err
	}
	return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, nil
}

// pair is a client connection and its upstream connection.
type pair struct {
	cfd, ufd int
	cin, uin []byte // unread bytes from each side: cin[:cw], uin[:uw]
	cw, uw   int
}

func (p *proxy) loop(lfd int) {
	// unix.Connect writes the raw form into the Sockaddr it is given: each
	// loop needs its own.
	up := *p.up
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		panic(err)
	}
	unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, lfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(lfd)})
	byFD := map[int]*pair{}
	defer func() {
		for fd := range byFD {
			unix.Close(fd)
		}
		unix.Close(lfd)
		unix.Close(ep)
	}()
	evs := make([]unix.EpollEvent, 256)
	for !p.stop.Load() {
		// Raw: no entersyscall, so no hand-off of the P while waiting; 10 ms
		// bounds a wait so that a GC never waits longer for this thread.
		n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 10, 0, 0)
		if e != 0 {
			continue
		}
		for _, ev := range evs[:n] {
			fd := int(ev.Fd)
			if fd == lfd {
				accept(ep, lfd, &up, byFD)
				continue
			}
			pr := byFD[fd]
			if pr == nil {
				continue
			}
			var ok bool
			if fd == pr.cfd {
				ok = relay(pr.cfd, pr.ufd, pr.cin, &pr.cw, false)
			} else {
				ok = relay(pr.ufd, pr.cfd, pr.uin, &pr.uw, true)
			}
			if !ok {
				delete(byFD, pr.cfd)
				delete(byFD, pr.ufd)
				unix.Close(pr.cfd)
				unix.Close(pr.ufd)
			}
		}
	}
}

func accept(ep, lfd int, up *unix.SockaddrInet4, byFD map[int]*pair) {
	for {
		cfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return
		}
		ufd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			// Blocking connect, once per client connection: loopback answers
			// at once, and the floor measured is the steady state.
			if err = unix.Connect(ufd, up); err != nil {
				unix.Close(ufd)
			}
		}
		if err != nil {
			unix.Close(cfd)
			continue
		}
		unix.SetNonblock(ufd, true)
		for _, fd := range []int{cfd, ufd} {
			unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
		pr := &pair{cfd: cfd, ufd: ufd, cin: make([]byte, 16<<10), uin: make([]byte, 64<<10)}
		byFD[cfd], byFD[ufd] = pr, pr
		for _, fd := range []int{cfd, ufd} {
			unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)})
		}
	}
}

// relay reads what src has (until EAGAIN: edge-triggered) and forwards each
// complete message to dst; false ends the pair.
func relay(src, dst int, buf []byte, w *int, response bool) bool {
	for {
		if *w == len(buf) {
			return false // a message larger than the buffer: out of scope
		}
		r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(src), uintptr(unsafe.Pointer(&buf[*w])), uintptr(len(buf)-*w))
		if e == unix.EAGAIN {
			return true
		}
		if e != 0 || r == 0 {
			return false
		}
		*w += int(r)
		for {
			end, err := floor.MessageEnd(buf[:*w], response)
			if err != nil {
				return false
			}
			if end == 0 {
				break
			}
			for sent := 0; sent < end; {
				n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(dst), uintptr(unsafe.Pointer(&buf[sent])), uintptr(end-sent), unix.MSG_NOSIGNAL, 0, 0)
				if e != 0 {
					return false // a full send buffer is out of scope too
				}
				sent += int(n)
			}
			*w = copy(buf, buf[end:*w])
		}
	}
}

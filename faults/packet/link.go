package packet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
)

// The two ends of every Link. Each Link has its own pair of namespaces, so
// every Link uses the same addresses. They are in 198.18.0.0/15, the range
// RFC 2544 sets aside for benchmarking, so they can never be a real host.
var (
	GatewayAddr  = netip.MustParseAddr("198.18.0.1")
	UpstreamAddr = netip.MustParseAddr("198.18.0.2")
	benchRange   = netip.MustParsePrefix("198.18.0.0/15")
)

const linkPrefixLen = 30

// Config describes a Link. The zero value of every field but Prefix is a
// usable default.
type Config struct {
	// Prefix names everything the Link creates: namespaces and TUN devices
	// "<Prefix>-g" (the gateway's side) and "<Prefix>-u" (the upstream's).
	// 1–13 characters of [a-z0-9], starting with a letter; unique per Link
	// among live Links on the machine.
	Prefix string
	// Name is the Target of emitted events (an upstream's name); default Prefix.
	Name string
	// Seed seeds every random decision, so a run repeats.
	Seed uint64
	// Sink receives packet.* events; default event.Discard.
	Sink event.Sink
	// Clock stamps events; default a clock started by NewLink.
	Clock *event.Clock
	// MTU of both TUN devices; default 1500, at most 65535.
	MTU int
	// QueueLimit caps the bytes one direction holds for delay, jitter,
	// bandwidth and reordering; packets beyond it are dropped (Overflow).
	// Default 64MiB.
	QueueLimit units.Size
	// StatsInterval is how often packet.stats events are emitted (only for
	// intervals with traffic); default 1s, negative disables them.
	StatsInterval time.Duration
	// Capture also counts TCP retransmissions from an AF_PACKET capture on
	// both TUN devices (Stats' CapturedRetransmits), a cross-check of the
	// engine's own count at the cost of a second look at every TCP header.
	Capture bool
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,12}$`)

// ErrClosed is returned by a Link's methods after Close.
var ErrClosed = errors.New("packet link closed")

// Link is a pair of network namespaces joined by two TUN devices with the
// impairment engine between them:
//
//	namespace <p>-g                        this process              namespace <p>-u
//	gateway's dialer ─▶ TUN <p>-g ══▶ engine: ToUpstream   ══▶ TUN <p>-u ─▶ upstream's listener
//	198.18.0.1          ◀══ engine: FromUpstream ◀══              198.18.0.2
//
// The gateway and the upstream stay in this process: Listen and DialContext
// create their sockets inside the namespaces.
type Link struct {
	cfg        Config
	sink       event.Sink
	clock      *event.Clock
	queueLimit int
	bufSize    int

	names      [2]string    // gateway side, upstream side
	made       [2]bool      // which namespaces this Link created (and may delete)
	nsMu       sync.RWMutex // guards closing gwNS and upNS
	gwNS, upNS netns.NsHandle
	tuns       [2]*os.File
	pipes      [2]*pipe // ToUpstream, FromUpstream
	caps       [2]*capture

	// Netlink handles in the two namespaces, for the TUN devices' own
	// counters (see DirStats.KernelDropped); nil once closed, when
	// kernelDropped holds the last reading.
	nlMu          sync.Mutex
	nl            [2]*netlink.Handle
	kernelDropped [2]uint64

	clk   monoClock
	items sync.Pool

	setMu sync.Mutex
	gen   uint64

	wg        sync.WaitGroup
	stop      chan struct{}
	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool
	errMu     sync.Mutex
	runErr    error

	statsMu     sync.Mutex
	lastStats   [2]DirStats
	lastStatsAt time.Duration
}

// NewLink builds the namespaces, devices and engine, or undoes whatever it
// made and returns an error. The Link lives until Close or until ctx is
// done, whichever comes first; either way it removes everything it created.
func NewLink(ctx context.Context, cfg Config) (l *Link, err error) {
	if !prefixRE.MatchString(cfg.Prefix) {
		return nil, fmt.Errorf("packet: prefix %q: want 1–13 characters of [a-z0-9] starting with a letter (interface names are at most 15)", cfg.Prefix)
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.MTU < 576 || cfg.MTU > 65535 {
		return nil, fmt.Errorf("packet: MTU %d is outside 576..65535", cfg.MTU)
	}
	if cfg.QueueLimit == 0 {
		cfg.QueueLimit = 64 << 20
	}
	if cfg.QueueLimit < units.Size(cfg.MTU) {
		return nil, fmt.Errorf("packet: queue limit %s is below the MTU", cfg.QueueLimit)
	}
	if cfg.StatsInterval == 0 {
		cfg.StatsInterval = time.Second
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Prefix
	}
	if cfg.Sink == nil {
		cfg.Sink = event.Discard
	}
	if cfg.Clock == nil {
		cfg.Clock = event.NewClock()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	l = &Link{
		cfg: cfg, sink: cfg.Sink, clock: cfg.Clock,
		queueLimit: int(cfg.QueueLimit), bufSize: cfg.MTU + 256,
		names: [2]string{cfg.Prefix + "-g", cfg.Prefix + "-u"},
		gwNS:  netns.None(), upNS: netns.None(),
		stop: make(chan struct{}),
	}
	l.items.New = func() any { return &item{buf: make([]byte, l.bufSize)} }
	l.clk = newMonoClock()
	defer func() {
		if err != nil {
			_ = l.teardown()
			l = nil
		}
	}()

	if l.gwNS, l.tuns[0], l.nl[0], err = l.makeSide(l.names[0], GatewayAddr); err != nil {
		return l, err
	}
	l.made[0] = true
	if l.upNS, l.tuns[1], l.nl[1], err = l.makeSide(l.names[1], UpstreamAddr); err != nil {
		return l, err
	}
	l.made[1] = true
	if cfg.Capture {
		if l.caps[0], err = startCapture(l.gwNS, l.names[0], GatewayAddr.As4()); err != nil {
			return l, err
		}
		if l.caps[1], err = startCapture(l.upNS, l.names[1], UpstreamAddr.As4()); err != nil {
			return l, err
		}
	}
	zero := compile(Impairment{}, 0, cfg.MTU)
	for i, d := range []Direction{ToUpstream, FromUpstream} {
		w, werr := newWaker(l.mono)
		if werr != nil {
			return l, fmt.Errorf("packet: timerfd: %w", werr)
		}
		p := &pipe{l: l, dir: d, src: l.tuns[i], dst: l.tuns[1-i], wake: w,
			parser: newParser(), retrans: newRetransTracker()}
		p.pol.Store(zero)
		l.pipes[i] = p
	}
	for _, p := range l.pipes {
		l.wg.Add(2)
		go func() { defer l.wg.Done(); p.readLoop() }()
		go func() { defer l.wg.Done(); p.sendLoop() }()
	}
	if cfg.StatsInterval > 0 {
		l.wg.Add(1)
		go func() { defer l.wg.Done(); l.statsLoop() }()
	}
	go func() {
		select {
		case <-ctx.Done():
			_ = l.Close()
		case <-l.stop:
		}
	}()
	return l, nil
}

// makeSide creates one namespace with its TUN device, addressed and up,
// and returns a netlink handle in it (kept to read the device's counters).
func (l *Link) makeSide(name string, addr netip.Addr) (netns.NsHandle, *os.File, *netlink.Handle, error) {
	var tun *os.File
	ns, err := newNamedNetns(name, func() error {
		// No IPv6: nothing here may use an address outside 198.18.0.0/15,
		// and router solicitations would only be noise in the counts.
		for _, k := range []string{"all", "default"} {
			_ = writeSysctl("net/ipv6/conf/"+k+"/disable_ipv6", "1")
		}
		var err error
		tun, err = openTUN(name)
		return err
	})
	if err != nil {
		return netns.None(), nil, nil, fmt.Errorf("packet: %w", err)
	}
	var h *netlink.Handle
	fail := func(err error) (netns.NsHandle, *os.File, *netlink.Handle, error) {
		if h != nil {
			h.Close()
		}
		tun.Close()
		ns.Close()
		_ = deleteNamedNetns(name)
		return netns.None(), nil, nil, fmt.Errorf("packet: configure %s: %w", name, err)
	}
	h, err = netlink.NewHandleAt(ns)
	if err != nil {
		h = nil
		return fail(err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fail(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fail(err)
	}
	dev, err := h.LinkByName(name)
	if err != nil {
		return fail(err)
	}
	if err := h.LinkSetMTU(dev, l.cfg.MTU); err != nil {
		return fail(err)
	}
	if err := h.LinkSetTxQLen(dev, 1000); err != nil {
		return fail(err)
	}
	ipn := &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(linkPrefixLen, 32)}
	if err := h.AddrAdd(dev, &netlink.Addr{IPNet: ipn}); err != nil {
		return fail(err)
	}
	if err := h.LinkSetUp(dev); err != nil {
		return fail(err)
	}
	return ns, tun, h, nil
}

// mono is now on CLOCK_MONOTONIC, in ns.
func (l *Link) mono() int64 { return l.clk.now() }

func (l *Link) getItem() *item   { return l.items.Get().(*item) }
func (l *Link) putItem(it *item) { it.n = 0; l.items.Put(it) }

// fail records an unexpected engine error (a direction has stopped moving
// packets): it becomes an event now and Close's error later.
func (l *Link) fail(err error) {
	l.errMu.Lock()
	l.runErr = errors.Join(l.runErr, err)
	l.errMu.Unlock()
	l.emit("packet.engine.error", map[string]any{"error": err.Error()})
}

// GatewayNetns and UpstreamNetns name the namespaces, for `ip netns exec`.
func (l *Link) GatewayNetns() string  { return l.names[0] }
func (l *Link) UpstreamNetns() string { return l.names[1] }

// Listen listens inside the upstream's namespace. addr is ":port" or
// "198.18.0.2:port"; ":0" picks a free port, and the listener's Addr is
// dialable from the gateway's side. network is "tcp" or "tcp4".
func (l *Link) Listen(network, addr string) (net.Listener, error) {
	if network != "tcp" && network != "tcp4" {
		return nil, fmt.Errorf("packet: listen on %q: only tcp and tcp4 (the link has no IPv6)", network)
	}
	a, err := l.upstreamAddr(addr)
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	err = l.in(&l.upNS, func() error {
		var err error
		ln, err = net.Listen("tcp4", a)
		return err
	})
	return ln, err
}

// ListenPacket is Listen for "udp" and "udp4".
func (l *Link) ListenPacket(network, addr string) (net.PacketConn, error) {
	if network != "udp" && network != "udp4" {
		return nil, fmt.Errorf("packet: listen on %q: only udp and udp4", network)
	}
	a, err := l.upstreamAddr(addr)
	if err != nil {
		return nil, err
	}
	var pc net.PacketConn
	err = l.in(&l.upNS, func() error {
		var err error
		pc, err = net.ListenPacket("udp4", a)
		return err
	})
	return pc, err
}

func (l *Link) upstreamAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("packet: listen address %q: %w", addr, err)
	}
	if host != "" && host != UpstreamAddr.String() {
		return "", fmt.Errorf("packet: listen address %q: the upstream side has only %s", addr, UpstreamAddr)
	}
	return net.JoinHostPort(UpstreamAddr.String(), port), nil
}

// DialContext dials from the gateway's namespace; it fits
// http.Transport.DialContext. addr must be an IP address in 198.18.0.0/15
// (no name lookups happen inside the namespace), in practice the address of
// a listener from Listen.
func (l *Link) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "udp", "udp4":
	default:
		return nil, fmt.Errorf("packet: dial %q: only tcp and udp over IPv4", network)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("packet: dial %q: %w", addr, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !benchRange.Contains(ip) {
		return nil, fmt.Errorf("packet: dial %q: only addresses in %s are reachable through a link", addr, benchRange)
	}
	var c net.Conn
	err = l.in(&l.gwNS, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// in runs fn inside one of the link's namespaces. It works on a duplicate of
// the namespace handle, taken under nsMu, so a concurrent Close can neither
// pull the descriptor away mid-call nor have its number reused under us;
// and Close does not wait for a slow dial to finish.
func (l *Link) in(ns *netns.NsHandle, fn func() error) error {
	l.nsMu.RLock()
	if l.closed.Load() {
		l.nsMu.RUnlock()
		return ErrClosed
	}
	fd, err := unix.FcntlInt(uintptr(*ns), unix.F_DUPFD_CLOEXEC, 0)
	l.nsMu.RUnlock()
	if err != nil {
		return fmt.Errorf("packet: duplicate namespace handle: %w", err)
	}
	h := netns.NsHandle(fd)
	defer h.Close()
	return inNetns(h, fn)
}

// Set replaces the impairment of one direction (or both) at once; packets
// already held keep their schedule. The zero Impairment clears it.
func (l *Link) Set(dir Direction, imp Impairment) error {
	if err := imp.Validate(); err != nil {
		return fmt.Errorf("packet: %w", err)
	}
	if dir > FromUpstream {
		return fmt.Errorf("packet: unknown direction %d", dir)
	}
	if l.closed.Load() {
		return ErrClosed
	}
	l.setMu.Lock()
	l.gen++
	pol := compile(imp, l.gen, l.cfg.MTU)
	for i, d := range []Direction{ToUpstream, FromUpstream} {
		if dir == Both || dir == d {
			l.pipes[i].pol.Store(pol)
		}
	}
	l.setMu.Unlock()
	typ, attrs := "packet.impair.set", imp.attrs()
	if imp.IsZero() {
		typ = "packet.impair.clear"
	}
	attrs["direction"] = dir.String()
	l.emit(typ, attrs)
	return nil
}

func (l *Link) emit(typ string, attrs map[string]any) {
	l.sink.Emit(event.Event{T: l.clock.Now(), Source: "packet", Type: typ, Target: l.cfg.Name, Attrs: attrs})
}

// DirStats counts what one direction did, since the Link was made.
type DirStats struct {
	Packets uint64 // read from the sending side
	Bytes   uint64
	Sent    uint64 // written to the receiving side, duplicates included
	Dropped uint64 // Lost + Blackholed + Overflow
	// Why packets were dropped.
	Lost       uint64 // random loss
	Blackholed uint64 // SYNs dropped by syn_blackhole
	Overflow   uint64 // bandwidth queue or QueueLimit full
	Duplicated uint64
	// Reordered counts packets sent after a packet that arrived later,
	// whatever the cause (reorder, or jitter larger than the packet gap).
	Reordered uint64
	Corrupted uint64
	Delayed   uint64 // held back by delay, jitter, bandwidth or reordering
	// Retransmits counts TCP retransmissions the sending side made, seen by
	// the engine as they arrive (before any impairment).
	Retransmits uint64
	// CapturedRetransmits counts the same from the AF_PACKET capture on the
	// sending side's TUN device (only with Config.Capture).
	CapturedRetransmits uint64
	WriteErrors         uint64
	// KernelDropped counts packets the sending side's kernel dropped at its
	// TUN device because the engine had not read them in time (the
	// device's queue, txqueuelen 1000 packets, was full): they never reach
	// the engine, so they are not in Packets nor in Dropped. Not part of
	// the impairment but the engine's ceiling (near 1 Gbit/s on one core
	// at MTU 1500), and TCP retransmits every one of them.
	KernelDropped uint64
	// MeanLateness and MaxLateness say how much later than due the engine
	// sent scheduled packets: its own timing error, on top of the delay.
	MeanLateness time.Duration
	MaxLateness  time.Duration
}

// Stats is a Link's counters per direction.
type Stats struct {
	ToUpstream   DirStats
	FromUpstream DirStats
}

// Stats returns the counters so far; after Close they are final.
func (l *Link) Stats() Stats {
	var s Stats
	kd := l.readKernelDropped()
	for i, p := range l.pipes {
		if p == nil {
			continue
		}
		d := p.st.snapshot()
		if c := l.caps[i]; c != nil {
			d.CapturedRetransmits = c.retrans.Load()
		}
		d.KernelDropped = kd[i]
		if i == 0 {
			s.ToUpstream = d
		} else {
			s.FromUpstream = d
		}
	}
	return s
}

// readKernelDropped reads the TUN devices' TX drops (the sending kernel's
// drops before the engine read the packet), gateway side first; after
// Close, the last reading.
func (l *Link) readKernelDropped() [2]uint64 {
	l.nlMu.Lock()
	defer l.nlMu.Unlock()
	for i, h := range l.nl {
		if h == nil {
			continue
		}
		lk, err := h.LinkByName(l.names[i])
		if err != nil || lk.Attrs().Statistics == nil {
			continue // keep the last reading
		}
		l.kernelDropped[i] = lk.Attrs().Statistics.TxDropped
	}
	return l.kernelDropped
}

// closeNetlink takes the final reading of the devices' counters and closes
// the handles; it runs before the devices go.
func (l *Link) closeNetlink() {
	l.readKernelDropped()
	l.nlMu.Lock()
	defer l.nlMu.Unlock()
	for i, h := range l.nl {
		if h != nil {
			h.Close()
			l.nl[i] = nil
		}
	}
}

// KernelTCP is a namespace's TCP counters from /proc/net/snmp.
type KernelTCP struct {
	ActiveOpens, AttemptFails, InSegs, OutSegs, RetransSegs, InErrs, OutRsts, InCsumErrors uint64
}

// KernelCounters reads the TCP counters of both namespaces, the kernel's
// view against which the engine's and the capture's counts can be checked.
// ToUpstream.Retransmits corresponds to gateway.RetransSegs.
func (l *Link) KernelCounters() (gateway, upstream KernelTCP, err error) {
	if err := l.in(&l.gwNS, func() (err error) { gateway, err = readSNMP(); return }); err != nil {
		return gateway, upstream, err
	}
	err = l.in(&l.upNS, func() (err error) { upstream, err = readSNMP(); return })
	return gateway, upstream, err
}

// Close stops the engine and removes both namespaces and devices. Sockets
// made with Listen and DialContext belong to the caller; they stop working.
// Close is idempotent and safe to call concurrently.
func (l *Link) Close() error {
	l.closeOnce.Do(func() {
		l.nsMu.Lock()
		l.closed.Store(true)
		l.nsMu.Unlock()
		close(l.stop)
		l.closeErr = l.teardown()
		l.emitStats(true)
	})
	return l.closeErr
}

// teardown undoes NewLink, whatever part of it ran.
func (l *Link) teardown() error {
	var errs []error
	for _, c := range l.caps {
		if c != nil {
			c.close()
		}
	}
	for _, p := range l.pipes {
		if p != nil {
			p.wake.close()
		}
	}
	l.closeNetlink()
	for _, f := range l.tuns {
		if f != nil {
			f.Close() // also destroys the (non-persistent) device
		}
	}
	l.wg.Wait()
	l.nsMu.Lock()
	for _, h := range []*netns.NsHandle{&l.gwNS, &l.upNS} {
		if h.IsOpen() {
			h.Close()
		}
	}
	l.nsMu.Unlock()
	for i, n := range l.names {
		if !l.made[i] {
			continue // never delete a namespace of the same name that is not ours
		}
		if err := deleteNamedNetns(n); err != nil {
			errs = append(errs, err)
		}
	}
	l.errMu.Lock()
	errs = append(errs, l.runErr)
	l.errMu.Unlock()
	return errors.Join(errs...)
}

// Cleanup removes what Links with names starting with prefix left behind
// when their process was killed: namespaces "<prefix…>-g" and "<prefix…>-u"
// under /run/netns (their TUN devices went with the process) and any device
// of that name in this namespace. It must not be called while such a Link
// is live: it would pull the namespaces from under it.
func Cleanup(prefix string) error {
	if prefix == "" || strings.ContainsAny(prefix, "/.") {
		return fmt.Errorf("packet: cleanup needs a non-empty prefix without / or .")
	}
	ours := func(name string) bool {
		return strings.HasPrefix(name, prefix) && (strings.HasSuffix(name, "-g") || strings.HasSuffix(name, "-u")) &&
			prefixRE.MatchString(name[:len(name)-2])
	}
	var errs []error
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		if ours(e.Name()) {
			if err := deleteNamedNetns(e.Name()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		errs = append(errs, fmt.Errorf("list devices: %w", err))
	}
	for _, lk := range links {
		if ours(lk.Attrs().Name) {
			if err := netlink.LinkDel(lk); err != nil {
				errs = append(errs, fmt.Errorf("delete device %s: %w", lk.Attrs().Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

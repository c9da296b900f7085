package faults

import (
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/cascadehq/cascade/faults/packet"
	"github.com/cascadehq/cascade/internal/units"
)

// Packet faults: an impairment (faults/packet) on the link that carries one
// upstream's traffic. The run makes the link (two network namespaces joined
// by the userspace packet engine) for every upstream whose timeline has
// packet faults; its replicas listen in the upstream's namespace and the
// built-in gateway dials them from the other one.
//
//	gateway ──dial──▶ [ns <p>-g] ══ engine: loss, delay, … ══ [ns <p>-u] ──▶ replicas of the upstream
//
// The link is the upstream's, shared by its replicas, and holds one
// impairment per direction: a packet fault targets the whole upstream
// (or narrows itself with filter.port), and one is active at a time.

func init() {
	RegisterKind(Kind{Name: "packet", Layer: LayerPacket, InProcess: true, Ramp: "loss, delay and the other rates",
		Doc: "impairs the upstream's packets in a userspace engine: loss, delay, jitter, duplication, reordering, corruption, bandwidth, SYN blackhole (root only)",
		New: func() Spec { return &PacketSpec{} }})
}

var (
	_ ReplicaFault   = (*packetFault)(nil)
	_ EffectReporter = (*packetFault)(nil)
	_ Explainer      = (*packetFault)(nil)
)

// PacketSpec is a packet fault's params: the direction, and the impairment
// (packet.Impairment, every field optional but at least one set).
//
//	params: {loss: 5%, delay: 20ms, jitter: 5ms, direction: both}
type PacketSpec struct {
	// Direction is both (default), to_upstream (requests and the gateway's
	// ACKs) or from_upstream (answers).
	Direction         packet.Direction `yaml:"direction,omitempty" json:"direction,omitempty"`
	packet.Impairment `yaml:",inline"`
}

var fieldPrefix = regexp.MustCompile(`^([a-z_]+(?:\.[a-z_]+)*): `)

// Validate implements Spec.
func (s *PacketSpec) Validate() error {
	imp := s.Impairment
	imp.Filter = packet.Filter{} // a filter narrows an impairment; alone it does nothing
	if imp.IsZero() {
		return errors.New("give at least one impairment: loss, delay, jitter, duplicate, reorder, corrupt, bandwidth or syn_blackhole")
	}
	err := s.Impairment.Validate()
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range unjoin(err) {
		if m := fieldPrefix.FindStringSubmatch(e.Error()); m != nil {
			out = append(out, &ParamError{Field: m[1], Msg: e.Error()[len(m[0]):]})
		} else {
			out = append(out, e)
		}
	}
	return errors.Join(out...)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// New implements Spec.
func (s *PacketSpec) New() Fault { return &packetFault{spec: *s} }

// ErrNoLink reports a packet fault on an upstream without a link.
var ErrNoLink = errors.New("the upstream's traffic does not cross a packet link")

// packetFault is one packet fault's occurrence on its upstream's link. The
// timeline applies it to each replica of the upstream; the first Apply sets
// the impairment and the last Revert clears it.
type packetFault struct {
	spec PacketSpec

	mu       sync.Mutex
	up       *Upstream
	link     *packet.Link
	n        int // replicas it is applied to
	base     packet.Stats
	baseK    [2]packet.KernelTCP
	kernelOK bool
	final    *PacketEffects
	stop     chan struct{}
	done     chan struct{}
}

func (*packetFault) Kind() string { return "packet" }

// Apply sets the impairment on the upstream's link (once per occurrence).
func (f *packetFault) Apply(r *Replica, fx *Effect) error {
	u := r.up
	l := u.cfg.Link
	if l == nil {
		return fmt.Errorf("packet fault on %s: %w", r.name, ErrNoLink)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if f.n > 1 {
		return nil
	}
	name := r.faultID(f)
	u.mu.Lock()
	busy := u.packetOn
	if busy == "" {
		u.packetOn = name
	}
	u.mu.Unlock()
	if busy != "" && busy != name {
		f.n--
		return fmt.Errorf("packet fault %s is already active on upstream %s's link: one packet fault at a time per upstream", busy, u.cfg.Name)
	}
	f.up, f.link = u, l
	f.base = l.Stats()
	g, up, err := l.KernelCounters()
	f.baseK, f.kernelOK = [2]packet.KernelTCP{g, up}, err == nil
	x := 1.0
	ramping := fx.intensity != nil
	if ramping {
		x = fx.Intensity()
	}
	if err := l.Set(f.spec.Direction, scaleImpairment(f.spec.Impairment, x)); err != nil {
		f.n--
		f.release()
		return err
	}
	fx.AddCounter(func() int64 { return int64(f.effects(false).impaired()) })
	f.stop, f.done = make(chan struct{}), make(chan struct{})
	if !ramping {
		close(f.done)
		return nil
	}
	go func() {
		defer close(f.done)
		rampLoop(f.stop, r.ctx.Done(), fx, func(x float64) error {
			return l.Set(f.spec.Direction, scaleImpairment(f.spec.Impairment, x))
		})
	}()
	return nil
}

func (f *packetFault) release() {
	f.up.mu.Lock()
	f.up.packetOn = ""
	f.up.mu.Unlock()
}

// Revert clears the impairment when the last replica is reverted, and
// keeps what it did.
func (f *packetFault) Revert(*Replica) error {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return nil
	}
	f.n--
	if f.n > 0 || f.link == nil {
		f.mu.Unlock()
		return nil
	}
	stop, done := f.stop, f.done
	f.mu.Unlock()
	close(stop)
	<-done
	err := f.link.Set(f.spec.Direction, packet.Impairment{})
	if errors.Is(err, packet.ErrClosed) {
		err = nil
	}
	fin := f.effects(true)
	f.mu.Lock()
	f.final = &fin
	f.mu.Unlock()
	f.release()
	return err
}

// effects is what the impairment did since onset (final once reverted);
// kernel reads the namespaces' TCP counters too (a few syscalls: not for
// every Count).
func (f *packetFault) effects(kernel bool) PacketEffects {
	f.mu.Lock()
	l, final, base, baseK, kok := f.link, f.final, f.base, f.baseK, f.kernelOK
	f.mu.Unlock()
	if final != nil {
		return *final
	}
	e := PacketEffects{Direction: f.spec.Direction.String()}
	if l == nil {
		return e
	}
	st := l.Stats()
	e.ToUpstream = dirEffects(st.ToUpstream, base.ToUpstream)
	e.FromUpstream = dirEffects(st.FromUpstream, base.FromUpstream)
	if kernel && kok {
		if g, u, err := l.KernelCounters(); err == nil {
			e.KernelRetransmits = (g.RetransSegs - baseK[0].RetransSegs) + (u.RetransSegs - baseK[1].RetransSegs)
			e.KernelCounted = true
		}
	}
	return e
}

// Effects implements EffectReporter.
func (f *packetFault) Effects() Effects {
	e := f.effects(true)
	return Effects{Packet: &e}
}

// NoEffect implements Explainer.
func (f *packetFault) NoEffect(EffectStats) string {
	e := f.effects(false)
	if e.ToUpstream.Packets+e.FromUpstream.Packets == 0 {
		return "no packet crossed the upstream's link while the fault was active"
	}
	if f.spec.Filter.Port != 0 {
		return fmt.Sprintf("%d packets crossed the link, but the impairment is filtered to port %d", e.ToUpstream.Packets+e.FromUpstream.Packets, f.spec.Filter.Port)
	}
	rest := f.spec.Impairment
	rest.SYNBlackhole, rest.Filter = false, packet.Filter{}
	if f.spec.SYNBlackhole && rest.IsZero() {
		return fmt.Sprintf("%d packets crossed the link, but no new connection was opened while it was active (it drops SYNs only; connections opened before it go on)",
			e.ToUpstream.Packets+e.FromUpstream.Packets)
	}
	return fmt.Sprintf("%d packets crossed the link and the random draws spared every one", e.ToUpstream.Packets+e.FromUpstream.Packets)
}

// scaleImpairment is imp at a ramp's intensity x: rates and delays scaled,
// the rest (bandwidth, SYN blackhole, filter) as given.
func scaleImpairment(imp packet.Impairment, x float64) packet.Impairment {
	if x >= 1 {
		return imp
	}
	x = max(x, 0)
	pct := func(p packet.Percent) packet.Percent { return packet.Percent(float64(p) * x) }
	out := imp
	out.Loss.Percent = pct(imp.Loss.Percent)
	if g := imp.Loss.GEModel; !g.IsZero() {
		out.Loss.GEModel.P, out.Loss.GEModel.GoodLoss = pct(g.P), pct(g.GoodLoss)
		if out.Loss.GEModel.P == 0 && out.Loss.GEModel.GoodLoss == 0 {
			out.Loss.GEModel = packet.GilbertElliott{}
		}
	}
	out.Delay = units.Duration(time.Duration(float64(imp.Delay) * x))
	out.Jitter = units.Duration(time.Duration(float64(imp.Jitter) * x))
	if out.Jitter == 0 {
		out.Correlation, out.Distribution = 0, ""
	}
	out.Duplicate = pct(imp.Duplicate)
	out.Corrupt = pct(imp.Corrupt)
	if !imp.Reorder.IsZero() {
		out.Reorder.Percent = pct(imp.Reorder.Percent)
		if out.Reorder.Percent == 0 {
			out.Reorder = packet.Reorder{}
		}
	}
	return out
}

// PacketEffects is what a packet fault did to its upstream's traffic while
// it was active, per direction, and the TCP retransmissions that followed
// (counted by the engine as the senders retransmitted, by the capture on
// the TUN devices, and by the namespaces' kernels).
type PacketEffects struct {
	Direction    string           `json:"direction"`
	ToUpstream   PacketDirEffects `json:"to_upstream"`
	FromUpstream PacketDirEffects `json:"from_upstream"`
	// KernelRetransmits is RetransSegs of both namespaces (both senders).
	KernelRetransmits uint64 `json:"kernel_retransmits"`
	KernelCounted     bool   `json:"kernel_counted"`
}

// PacketDirEffects counts one direction (packet.DirStats, over the fault).
type PacketDirEffects struct {
	Packets             uint64 `json:"packets"`
	Dropped             uint64 `json:"dropped"` // lost + blackholed + overflow
	Lost                uint64 `json:"lost"`
	Blackholed          uint64 `json:"blackholed"`
	Overflow            uint64 `json:"overflow"`
	Delayed             uint64 `json:"delayed"`
	Duplicated          uint64 `json:"duplicated"`
	Reordered           uint64 `json:"reordered"`
	Corrupted           uint64 `json:"corrupted"`
	Retransmits         uint64 `json:"retransmits"`          // seen by the engine
	CapturedRetransmits uint64 `json:"captured_retransmits"` // seen by the capture
	// KernelDropped: dropped by the sending kernel before the engine read
	// them (packet.DirStats.KernelDropped): the engine's ceiling, not the
	// impairment, so not in Packets, Dropped or the fault's count.
	KernelDropped uint64 `json:"kernel_dropped"`
}

func dirEffects(s, b packet.DirStats) PacketDirEffects {
	return PacketDirEffects{
		Packets: s.Packets - b.Packets, Dropped: s.Dropped - b.Dropped, Lost: s.Lost - b.Lost,
		Blackholed: s.Blackholed - b.Blackholed, Overflow: s.Overflow - b.Overflow, Delayed: s.Delayed - b.Delayed,
		Duplicated: s.Duplicated - b.Duplicated, Reordered: s.Reordered - b.Reordered, Corrupted: s.Corrupted - b.Corrupted,
		Retransmits: s.Retransmits - b.Retransmits, CapturedRetransmits: s.CapturedRetransmits - b.CapturedRetransmits,
		KernelDropped: s.KernelDropped - b.KernelDropped,
	}
}

func (d *PacketDirEffects) add(o PacketDirEffects) {
	d.Packets += o.Packets
	d.Dropped += o.Dropped
	d.Lost += o.Lost
	d.Blackholed += o.Blackholed
	d.Overflow += o.Overflow
	d.Delayed += o.Delayed
	d.Duplicated += o.Duplicated
	d.Reordered += o.Reordered
	d.Corrupted += o.Corrupted
	d.Retransmits += o.Retransmits
	d.CapturedRetransmits += o.CapturedRetransmits
	d.KernelDropped += o.KernelDropped
}

func (e *PacketEffects) add(o PacketEffects) {
	e.ToUpstream.add(o.ToUpstream)
	e.FromUpstream.add(o.FromUpstream)
	e.KernelRetransmits += o.KernelRetransmits
	e.KernelCounted = e.KernelCounted || o.KernelCounted
}

// impaired is how many packets the impairment acted on: the fault's count.
func (e PacketEffects) impaired() uint64 {
	n := uint64(0)
	for _, d := range []PacketDirEffects{e.ToUpstream, e.FromUpstream} {
		n += d.Dropped + d.Delayed + d.Duplicated + d.Corrupted
	}
	return n
}

// Retransmits is the engine's count of TCP retransmissions, both ways.
func (e PacketEffects) Retransmits() uint64 {
	return e.ToUpstream.Retransmits + e.FromUpstream.Retransmits
}

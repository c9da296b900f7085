package faults

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/invopop/jsonschema"

	"github.com/cascadehq/cascade/faults/packet"
	"github.com/cascadehq/cascade/faults/tcpfault"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/precise"
	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

// Connection faults: Toxiproxy's toxics, one kind per toxic (tcp_latency,
// tcp_bandwidth, ...), acting in a tcpfault proxy that the run puts in
// front of every replica of an upstream whose timeline has any
// (UpstreamConfig.FaultProxy). The proxy stays for the whole run; a fault
// adds its toxic at onset and removes it at the end, so the connections
// the gateway keeps alive across the onset are affected too.
//
//	gateway ──▶ fault proxy (api[0]'s address) ──▶ replica api[0] (kernel-chosen port)
//	              └ toxics: the active tcp_* faults
//
// One kind per toxic rather than `kind: tcp` with a `toxic:` parameter:
// each kind's parameters are then a plain struct, decoded strictly with
// positions and described by the JSON Schema like every other kind.

func init() {
	tcp := func(name, ramp, doc string, f func() Spec) {
		RegisterKind(Kind{Name: name, Layer: LayerConnection, Ramp: ramp, Doc: doc, New: f})
	}
	common := func() TCPToxic {
		return TCPToxic{Stream: TCPStream(tcpfault.Downstream), Toxicity: 1, RequestToxicity: 1}
	}
	tcp("tcp_latency", "delay", "delays the bytes of each response (or request) by latency ± jitter in the fault proxy",
		func() Spec { return &TCPLatencySpec{TCPToxic: common()} })
	tcp("tcp_bandwidth", "toxicity", "limits a direction's throughput, like a slow link",
		func() Spec { return &TCPBandwidthSpec{TCPToxic: common()} })
	tcp("tcp_slow_close", "toxicity", "delays passing on a connection's close (FIN)",
		func() Spec { return &TCPSlowCloseSpec{TCPToxic: common()} })
	tcp("tcp_timeout", "toxicity", "stops the data and closes the connection after timeout (0: holds it forever)",
		func() Spec { return &TCPTimeoutSpec{TCPToxic: common()} })
	tcp("tcp_reset_peer", "toxicity", "resets the connection (RST both ways) timeout after its first bytes",
		func() Spec { return &TCPResetPeerSpec{TCPToxic: common()} })
	tcp("tcp_slicer", "toxicity", "writes the data in small slices with a delay between them",
		func() Spec { return &TCPSlicerSpec{TCPToxic: common()} })
	tcp("tcp_limit_data", "toxicity", "closes the connection once bytes have passed (per message with request_toxicity)",
		func() Spec { return &TCPLimitDataSpec{TCPToxic: common()} })
	tcp("tcp_blackhole", "", "lets nothing through and never closes; no_accept: stops accepting (connect timeouts)",
		func() Spec { return &TCPBlackholeSpec{TCPToxic: common()} })
	tcp("tcp_down", "", "takes the fault proxy down: connections refused, open ones cut (Toxiproxy's enabled: false)",
		func() Spec { return &TCPDownSpec{} })
}

var (
	_ ReplicaFault   = (*tcpFault)(nil)
	_ Explainer      = (*tcpFault)(nil)
	_ EffectReporter = (*tcpFault)(nil)
	_ ReplicaFault   = (*tcpDownFault)(nil)
)

// ParamError is a fault parameter error that names the parameter, so the
// scenario compiler can point at its line.
type ParamError struct {
	Field string // the parameter's name in the file, e.g. "latency"
	Msg   string
}

func (e *ParamError) Error() string { return e.Field + ": " + e.Msg }

// TCPStream is the direction a connection fault acts on: downstream (the
// replica's answers, Toxiproxy's default) or upstream (the requests).
type TCPStream tcpfault.Direction

// UnmarshalYAML implements yaml.NodeUnmarshaler so a bad value keeps its position.
func (s *TCPStream) UnmarshalYAML(node ast.Node) error {
	str, ok := node.(*ast.StringNode)
	if !ok {
		return yamlfile.NodeError(node, "expected a stream: downstream (answers) or upstream (requests)")
	}
	d, err := tcpfault.ParseDirection(str.Value)
	if err != nil {
		return yamlfile.NodeError(node, "unknown stream %q: expected downstream (the replica's answers) or upstream (the requests)", str.Value)
	}
	*s = TCPStream(d)
	return nil
}

func (s TCPStream) String() string { return tcpfault.Direction(s).String() }

// MarshalText writes the name.
func (s TCPStream) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// JSONSchema lists the names.
func (TCPStream) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Enum: []any{"downstream", "upstream"}}
}

// TCPToxic holds what every connection fault takes: the direction and its
// two probabilities (Toxiproxy's toxicity, and cascade's per-message one).
type TCPToxic struct {
	// Stream is downstream (default: the replica's answers) or upstream
	// (the requests).
	Stream TCPStream `yaml:"stream,omitempty" json:"stream,omitempty"`
	// Toxicity is the share of connections the fault acts on, drawn once
	// per connection (Toxiproxy's meaning; default 100%). With keep-alive
	// there are few connections: use request_toxicity for a share of
	// requests.
	Toxicity units.Percent `yaml:"toxicity,omitempty" json:"toxicity,omitempty"`
	// RequestToxicity is the share of messages (requests or responses) it
	// acts on, on the connections drawn (default 100%).
	RequestToxicity units.Percent `yaml:"request_toxicity,omitempty" json:"request_toxicity,omitempty"`
}

func (c TCPToxic) validate() error {
	var errs []error
	if c.Toxicity <= 0 || c.Toxicity > 1 {
		errs = append(errs, &ParamError{"toxicity", fmt.Sprintf("%s is outside (0%%, 100%%]: a fault that acts on no connection does nothing", c.Toxicity)})
	}
	if c.RequestToxicity <= 0 || c.RequestToxicity > 1 {
		errs = append(errs, &ParamError{"request_toxicity", fmt.Sprintf("%s is outside (0%%, 100%%]", c.RequestToxicity)})
	}
	return errors.Join(errs...)
}

// TCPLatencySpec is Toxiproxy's latency toxic: every message in the stream
// is delayed by latency ± jitter (uniform), counted from when its bytes
// reached the proxy. A ramp scales the delay.
type TCPLatencySpec struct {
	// Latency added to each message. Required.
	Latency units.Duration `yaml:"latency" json:"latency"`
	// Jitter spreads it uniformly by up to ± this much.
	Jitter   units.Duration `yaml:"jitter,omitempty" json:"jitter,omitempty"`
	TCPToxic `yaml:",inline"`
}

// Validate implements Spec.
func (s *TCPLatencySpec) Validate() error {
	var errs []error
	if s.Latency <= 0 {
		errs = append(errs, &ParamError{"latency", "latency is required (e.g. latency: 100ms)"})
	}
	if s.Jitter > s.Latency && s.Latency > 0 {
		errs = append(errs, &ParamError{"jitter", fmt.Sprintf("jitter %s is larger than latency %s: delays would be cut at zero and the mean would shift", s.Jitter, s.Latency)})
	}
	return errors.Join(append(errs, s.TCPToxic.validate())...)
}

// New implements Spec.
func (s *TCPLatencySpec) New() Fault {
	l, j := s.Latency.D(), s.Jitter.D()
	return newTCPFault("tcp_latency", s.TCPToxic, rampDelay, func(x float64) tcpfault.Toxic {
		return &tcpfault.Latency{Latency: scaleDur(l, x), Jitter: scaleDur(j, x)}
	})
}

// TCPBandwidthSpec is Toxiproxy's bandwidth toxic: the stream's throughput
// is limited to rate.
type TCPBandwidthSpec struct {
	// Rate of the stream, as tc writes it: 800kbit, 10mbit. Required; the
	// proxy counts in kilobytes per second (at least 8kbit).
	Rate     packet.BitRate `yaml:"rate" json:"rate"`
	TCPToxic `yaml:",inline"`
}

// Validate implements Spec.
func (s *TCPBandwidthSpec) Validate() error {
	var err error
	if kb := s.Rate.BytesPerSecond() / 1000; kb < 1 {
		err = &ParamError{"rate", fmt.Sprintf("rate %s is below the proxy's resolution of 1 kB/s (8kbit)", s.Rate)}
	}
	return errors.Join(err, s.TCPToxic.validate())
}

// New implements Spec.
func (s *TCPBandwidthSpec) New() Fault {
	kb := int64(math.Round(s.Rate.BytesPerSecond() / 1000))
	return newTCPFault("tcp_bandwidth", s.TCPToxic, rampToxicity, func(float64) tcpfault.Toxic { return &tcpfault.Bandwidth{Rate: kb} })
}

// TCPSlowCloseSpec is Toxiproxy's slow_close: the end of the stream (FIN)
// is passed on delay late.
type TCPSlowCloseSpec struct {
	// Delay before the close is passed on. Required.
	Delay    units.Duration `yaml:"delay" json:"delay"`
	TCPToxic `yaml:",inline"`
}

// Validate implements Spec.
func (s *TCPSlowCloseSpec) Validate() error {
	var err error
	if s.Delay <= 0 {
		err = &ParamError{"delay", "delay is required (e.g. delay: 2s)"}
	}
	return errors.Join(err, s.TCPToxic.validate())
}

// New implements Spec.
func (s *TCPSlowCloseSpec) New() Fault {
	d := s.Delay.D()
	return newTCPFault("tcp_slow_close", s.TCPToxic, rampToxicity, func(float64) tcpfault.Toxic { return &tcpfault.SlowClose{Delay: d} })
}

// TCPTimeoutSpec is Toxiproxy's timeout toxic: the stream stops, and the
// connection is closed timeout after the fault took hold of it (of a
// selected message, with request_toxicity); 0 holds it forever.
type TCPTimeoutSpec struct {
	// Timeout before the connection is closed; 0 (default) never closes it.
	Timeout  units.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	TCPToxic `yaml:",inline"`
}

// Validate implements Spec.
func (s *TCPTimeoutSpec) Validate() error { return s.TCPToxic.validate() }

// New implements Spec.
func (s *TCPTimeoutSpec) New() Fault {
	d := s.Timeout.D()
	return newTCPFault("tcp_timeout", s.TCPToxic, rampToxicity, func(float64) tcpfault.Toxic { return &tcpfault.Timeout{Timeout: d} })
}

// TCPResetPeerSpec is Toxiproxy's reset_peer: the connection is reset (RST
// both ways) timeout after the first bytes the fault sees; the caller gets
// "connection reset by peer".
type TCPResetPeerSpec struct {
	// Timeout after the first bytes; 0 (default) resets at once.
	Timeout  units.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	TCPToxic `yaml:",inline"`
}

// Validate implements Spec.
func (s *TCPResetPeerSpec) Validate() error { return s.TCPToxic.validate() }

// New implements Spec.
func (s *TCPResetPeerSpec) New() Fault {
	d := s.Timeout.D()
	return newTCPFault("tcp_reset_peer", s.TCPToxic, rampToxicity, func(float64) tcpfault.Toxic { return &tcpfault.ResetPeer{Timeout: d} })
}

// TCPSlicerSpec is Toxiproxy's slicer: data is written in slices of
// average_size ± size_variation bytes with delay between them.
type TCPSlicerSpec struct {
	// AverageSize of a slice. Required.
	AverageSize units.Size `yaml:"average_size" json:"average_size"`
	// SizeVariation spreads it (smaller than average_size).
	SizeVariation units.Size `yaml:"size_variation,omitempty" json:"size_variation,omitempty"`
	// Delay between slices.
	Delay    units.Duration `yaml:"delay,omitempty" json:"delay,omitempty"`
	TCPToxic `yaml:",inline"`
}

// Validate implements Spec.
func (s *TCPSlicerSpec) Validate() error {
	var errs []error
	if s.AverageSize < 1 {
		errs = append(errs, &ParamError{"average_size", "average_size is required, at least 1 byte"})
	} else if s.SizeVariation >= s.AverageSize {
		errs = append(errs, &ParamError{"size_variation", "size_variation must be smaller than average_size"})
	}
	return errors.Join(append(errs, s.TCPToxic.validate())...)
}

// New implements Spec.
func (s *TCPSlicerSpec) New() Fault {
	t := &tcpfault.Slicer{AverageSize: s.AverageSize.Bytes(), SizeVariation: s.SizeVariation.Bytes(), Delay: s.Delay.D()}
	return newTCPFault("tcp_slicer", s.TCPToxic, rampToxicity, func(float64) tcpfault.Toxic { cp := *t; return &cp })
}

// TCPLimitDataSpec is Toxiproxy's limit_data: the connection is closed once
// bytes have passed in the stream (per message with request_toxicity: a
// truncated response).
type TCPLimitDataSpec struct {
	// Bytes let through before the close. Required.
	Bytes    units.Size `yaml:"bytes" json:"bytes"`
	TCPToxic `yaml:",inline"`
}

// Validate implements Spec.
func (s *TCPLimitDataSpec) Validate() error {
	var err error
	if s.Bytes < 1 {
		err = &ParamError{"bytes", "bytes is required, at least 1 (e.g. bytes: 1KiB)"}
	}
	return errors.Join(err, s.TCPToxic.validate())
}

// New implements Spec.
func (s *TCPLimitDataSpec) New() Fault {
	n := s.Bytes.Bytes()
	return newTCPFault("tcp_limit_data", s.TCPToxic, rampToxicity, func(float64) tcpfault.Toxic { return &tcpfault.LimitData{Bytes: n} })
}

// TCPBlackholeSpec lets nothing through in its stream and never closes;
// upstream, it also parks new connections before the proxy dials the
// replica. With no_accept the proxy stops accepting: the kernel's backlog
// fills and then connects time out.
type TCPBlackholeSpec struct {
	// NoAccept stops accepting connections instead (toxicity and
	// request_toxicity must then be 100%).
	NoAccept bool `yaml:"no_accept,omitempty" json:"no_accept,omitempty"`
	TCPToxic `yaml:",inline"`
}

// Validate implements Spec.
func (s *TCPBlackholeSpec) Validate() error {
	err := s.TCPToxic.validate()
	if err == nil && s.NoAccept && (s.Toxicity != 1 || s.RequestToxicity != 1) {
		err = &ParamError{"no_accept", "no_accept acts on the listener, not on connections: toxicity and request_toxicity must be 100%"}
	}
	return err
}

// New implements Spec.
func (s *TCPBlackholeSpec) New() Fault {
	na := s.NoAccept
	f := newTCPFault("tcp_blackhole", s.TCPToxic, rampNone, func(float64) tcpfault.Toxic { return &tcpfault.Blackhole{NoAccept: na} })
	f.listener = na
	return f
}

// TCPDownSpec takes the fault proxy down for the fault's window (Toxiproxy's
// enabled: false): new connections are refused and open ones are cut,
// while the replica behind it goes on serving.
type TCPDownSpec struct{}

// Validate implements Spec.
func (s *TCPDownSpec) Validate() error { return nil }

// New implements Spec.
func (s *TCPDownSpec) New() Fault { return &tcpDownFault{} }

type rampMode int

const (
	rampNone rampMode = iota
	rampDelay
	rampToxicity
)

func scaleDur(d time.Duration, x float64) time.Duration {
	return time.Duration(math.Round(float64(d) * x))
}

// tcpFault is one connection fault's occurrence: a toxic on the proxy of
// every replica it targets.
type tcpFault struct {
	kind     string
	common   TCPToxic
	ramp     rampMode
	build    func(intensity float64) tcpfault.Toxic
	listener bool // acts on the listener (blackhole no_accept): fires once per proxy

	mu sync.Mutex
	on map[*Replica]*tcpOn
}

// tcpOn is the fault on one replica's proxy.
type tcpOn struct {
	p     *tcpfault.Proxy
	name  string
	stop  chan struct{} // ends the ramp
	done  chan struct{}
	final *tcpfault.ToxicStats // set at Revert
}

func newTCPFault(kind string, c TCPToxic, ramp rampMode, build func(float64) tcpfault.Toxic) *tcpFault {
	return &tcpFault{kind: kind, common: c, ramp: ramp, build: build, on: map[*Replica]*tcpOn{}}
}

func (f *tcpFault) Kind() string { return f.kind }

func (f *tcpFault) spec(name string, x float64) tcpfault.ToxicSpec {
	s := tcpfault.ToxicSpec{Name: name, Stream: tcpfault.Direction(f.common.Stream), Toxicity: f.common.Toxicity.F(),
		RequestToxicity: f.common.RequestToxicity.F(), Toxic: f.build(x)}
	if f.ramp == rampToxicity {
		s.Toxicity *= x
	}
	return s
}

// Apply adds the fault's toxic to the replica's proxy, named after the
// timeline entry, and ramps it when the entry ramps.
func (f *tcpFault) Apply(r *Replica, fx *Effect) error {
	p := r.proxy.Load()
	if p == nil {
		return fmt.Errorf("%s on %s: %w", f.kind, r.name, ErrNoFaultProxy)
	}
	name := r.faultID(f)
	ramping := fx.intensity != nil && f.ramp != rampNone
	x := 1.0
	if ramping {
		x = fx.Intensity()
	}
	if _, err := p.AddToxic(f.spec(name, x)); err != nil {
		return err
	}
	on := &tcpOn{p: p, name: name, stop: make(chan struct{}), done: make(chan struct{})}
	f.mu.Lock()
	f.on[r] = on
	f.mu.Unlock()
	if f.listener {
		fx.Fired() // the listener stopped accepting: that is the whole effect
	} else {
		fx.AddCounter(func() int64 { return int64(f.stats(on).Requests) })
	}
	if !ramping {
		close(on.done)
		return nil
	}
	go func() {
		defer close(on.done)
		rampLoop(on.stop, r.ctx.Done(), fx, func(x float64) error {
			_, err := p.UpdateToxic(f.spec(name, x))
			return err
		})
	}()
	return nil
}

// Revert removes the toxic; what it held goes on at once.
func (f *tcpFault) Revert(r *Replica) error {
	f.mu.Lock()
	on := f.on[r]
	f.mu.Unlock()
	if on == nil {
		return nil
	}
	close(on.stop)
	<-on.done
	st, _ := on.p.Toxic(on.name)
	err := on.p.RemoveToxic(on.name)
	if errors.Is(err, tcpfault.ErrClosed) || errors.Is(err, tcpfault.ErrToxicNotFound) {
		err = nil // the proxy closed with the replica; nothing is left to undo
	}
	f.mu.Lock()
	on.final = &st.Stats
	f.mu.Unlock()
	return err
}

// stats is the toxic's counters on one proxy: live while it is installed,
// final once removed.
func (f *tcpFault) stats(on *tcpOn) tcpfault.ToxicStats {
	f.mu.Lock()
	final := on.final
	f.mu.Unlock()
	if final != nil {
		return *final
	}
	if info, ok := on.p.Toxic(on.name); ok {
		return info.Stats
	}
	return tcpfault.ToxicStats{}
}

func (f *tcpFault) total() (ConnectionEffects, precise.Lateness, []string) {
	f.mu.Lock()
	ons := make(map[*Replica]*tcpOn, len(f.on))
	for r, on := range f.on {
		ons[r] = on
	}
	f.mu.Unlock()
	var c ConnectionEffects
	var late precise.Lateness
	var names []string
	for r, on := range ons {
		st := f.stats(on)
		c.ConnsSeen += st.ConnsSeen
		c.ConnsDrawn += st.ConnsDrawn
		c.Conns += st.Conns
		c.Messages += st.Requests
		c.BytesDelayed += st.BytesDelayed
		c.BytesDropped += st.BytesDropped
		c.Closes += st.Closes
		late.Add(st.Lag)
		names = append(names, r.name)
	}
	return c, late, names
}

// Effects implements EffectReporter; Lateness only for toxics that time
// their releases.
func (f *tcpFault) Effects() Effects {
	c, late, _ := f.total()
	e := Effects{Connection: &c}
	if late.Releases() > 0 {
		e.Lateness = &late
	}
	return e
}

// NoEffect implements Explainer: the toxic's own counters say which draw
// or which condition left it nothing to do.
func (f *tcpFault) NoEffect(EffectStats) string {
	c, _, names := f.total()
	where := strings.Join(names, ", ")
	tox, req := f.common.Toxicity, f.common.RequestToxicity
	switch {
	case f.listener:
		return ""
	case c.ConnsSeen == 0:
		return fmt.Sprintf("no connection carried bytes through the fault proxy of %s while the fault was active", where)
	case c.ConnsDrawn == 0:
		return fmt.Sprintf("toxicity %s is drawn once per connection, and none of the %d connections that carried traffic while it was active was drawn "+
			"(keep-alive connections opened before onset are few and long-lived; request_toxicity picks a share of requests instead)", tox, c.ConnsSeen)
	case f.kind == "tcp_slow_close":
		return fmt.Sprintf("a per-connection fault on keep-alive connections opened before onset: slow_close acts when a connection closes, "+
			"and none of the %d connections it was drawn for closed while it was active", c.ConnsDrawn)
	case req < 1:
		return fmt.Sprintf("request_toxicity %s selected none of the messages on the %d connections drawn", req, c.ConnsDrawn)
	}
	return fmt.Sprintf("drawn for %d connections, but the %s stream carried nothing it could act on", c.ConnsDrawn, tcpfault.Direction(f.common.Stream))
}

// tcpDownFault disables the replica's proxy for its window.
type tcpDownFault struct{}

func (*tcpDownFault) Kind() string { return "tcp_down" }

func (*tcpDownFault) Apply(r *Replica, fx *Effect) error {
	if r.proxy.Load() == nil {
		return fmt.Errorf("tcp_down on %s: %w", r.name, ErrNoFaultProxy)
	}
	r.mu.Lock()
	r.proxyDown++
	r.mu.Unlock()
	fx.Fired()
	r.syncProxy()
	return nil
}

func (*tcpDownFault) Revert(r *Replica) error {
	r.mu.Lock()
	r.proxyDown--
	r.mu.Unlock()
	r.syncProxy()
	return nil
}

// ErrNoFaultProxy reports a connection fault on a replica without a fault
// proxy: the run puts proxies only in front of upstreams whose timeline has
// connection faults.
var ErrNoFaultProxy = errors.New("the replica has no fault proxy in front (connection faults must be on the scenario's timeline for the run to put one there)")

// ConnectionEffects is what a connection fault did, summed over its
// replicas' proxies (tcpfault.ToxicStats).
type ConnectionEffects struct {
	ConnsSeen    uint64 `json:"conns_seen"`    // connections that carried bytes while it was on
	ConnsDrawn   uint64 `json:"conns_drawn"`   // of those, connections its toxicity drew
	Conns        uint64 `json:"conns"`         // connections it acted on
	Messages     uint64 `json:"messages"`      // requests/responses it acted on
	BytesDelayed uint64 `json:"bytes_delayed"` // bytes passed late
	BytesDropped uint64 `json:"bytes_dropped"` // bytes discarded
	Closes       uint64 `json:"closes"`        // connections it closed or reset
}

func (c *ConnectionEffects) add(o ConnectionEffects) {
	c.ConnsSeen += o.ConnsSeen
	c.ConnsDrawn += o.ConnsDrawn
	c.Conns += o.Conns
	c.Messages += o.Messages
	c.BytesDelayed += o.BytesDelayed
	c.BytesDropped += o.BytesDropped
	c.Closes += o.Closes
}

// replicaAddrs returns where a replica listens and where its fault proxy
// listens ("" without one), given its configured address: with a proxy,
// the configured address is the proxy's (an external gateway's config
// names it) and the replica moves to a kernel-chosen port behind it; on a
// packet link, the replica listens inside the link's upstream namespace.
func (u *Upstream) replicaAddrs(addr string) (listen, front string) {
	switch {
	case u.cfg.Link != nil:
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			port = "0"
		}
		return net.JoinHostPort(packet.UpstreamAddr.String(), port), ""
	case u.cfg.FaultProxy && u.cfg.Spawn == nil:
		return "127.0.0.1:0", addr
	case u.cfg.FaultProxy:
		return addr, "127.0.0.1:0" // a container listens where it says; the proxy takes any port
	}
	return addr, ""
}

// listen binds the replica's listener: on loopback, or inside the packet
// link's upstream namespace.
func (r *Replica) listen(addr string) (net.Listener, error) {
	if l := r.up.cfg.Link; l != nil {
		return l.Listen("tcp", addr)
	}
	return net.Listen("tcp", addr)
}

// startProxy puts the replica's fault proxy in front of it on front.
func (r *Replica) startProxy(front string) error {
	o := r.up.opts
	p, err := tcpfault.New(tcpfault.Config{Name: r.name, Listen: front, Upstream: r.Addr(),
		Rand: seedFor(o.Seed, "tcpfault", r.name), Events: proxyEvents(o.Sink), Clock: o.Clock})
	if err != nil {
		return fmt.Errorf("fault proxy: %w", err)
	}
	if err := p.Start(r.ctx); err != nil {
		return fmt.Errorf("fault proxy: %w", err)
	}
	r.proxy.Store(p)
	r.emit("replica.proxy", map[string]any{"addr": p.Addr(), "upstream": p.Upstream()})
	return nil
}

// Proxy is the replica's fault proxy, or nil.
func (r *Replica) Proxy() *tcpfault.Proxy { return r.proxy.Load() }

// syncProxy keeps the proxy down while the replica is down (so a killed
// replica still refuses connections, as without a proxy) or a tcp_down
// fault is on.
func (r *Replica) syncProxy() {
	p := r.proxy.Load()
	if p == nil {
		return
	}
	r.mu.Lock()
	up := !r.down && r.proxyDown == 0
	r.mu.Unlock()
	if err := p.SetEnabled(up); err != nil && !errors.Is(err, tcpfault.ErrClosed) {
		r.emit("replica.error", map[string]any{"error": err.Error()})
	}
}

// faultID is the id f was activated under on r (its timeline entry's name).
func (r *Replica) faultID(f Fault) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.active {
		if a.fault == f {
			return a.id
		}
	}
	return f.Kind()
}

// proxyEvents renames the proxy's own fault.* events to tcpfault.*: the
// timeline's fault.start and fault.stop mark the fault windows of a run,
// and a toxic going in or out is a detail of one of them.
func proxyEvents(next event.Sink) event.Sink {
	return event.SinkFunc(func(e event.Event) {
		if rest, ok := strings.CutPrefix(e.Type, "fault."); ok {
			e.Type = "tcpfault." + rest
		}
		next.Emit(e)
	})
}

// rampTick is how often a ramping connection or packet fault is updated.
const rampTick = 100 * time.Millisecond

// rampLoop calls set with the ramp's intensity every rampTick until it
// reaches 1, or stop or done closes. The fault was installed at the
// intensity of its onset.
func rampLoop(stop, done <-chan struct{}, fx *Effect, set func(float64) error) {
	t := time.NewTicker(rampTick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-done:
			return
		case <-t.C:
		}
		x := fx.Intensity()
		if err := set(x); err != nil || x >= 1 {
			return
		}
	}
}

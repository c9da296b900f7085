// Package faults runs cascade's fake upstreams and the faults they inject.
//
// A fault is one small type built from its parameters by a factory that
// registers itself under a name, so a scenario file can name it (the
// Toxiproxy pattern). Every kind declares the layer it acts at:
//
//   - http: HTTPFault wraps a replica's handler while it is active (latency,
//     error, hang, reset, slow_body, truncated_body, malformed,
//     close_mid_response, fail_first, spike): func(http.Handler) http.Handler
//     in spirit;
//   - instance: ReplicaFault acts on the replica itself (down, kill,
//     restart, pause), in this process or through a container's API;
//   - database: ReplicaFault on the database behind a database upstream
//     (slow_query, lock_contention, pool_exhaustion, statement_timeout,
//     connection_refused);
//   - connection: the tcp_* kinds (connection.go), Toxiproxy's toxics in a
//     fault proxy (faults/tcpfault) that the run keeps in front of each
//     replica (UpstreamConfig.FaultProxy);
//   - packet: the packet kind (packetfault.go), an impairment on the packet
//     link (faults/packet) that carries the upstream's traffic
//     (UpstreamConfig.Link).
//
// A Timeline activates and deactivates faults on replicas at their offsets on
// the run's clock (with ramps and repeats, and live Start/Stop for game days),
// and every start, stop and firing is an event.
//
//	timeline ──start/stop──▶ Replica.active ──▶ handler chain ──▶ base behaviour
//	                                        └──▶ ReplicaFault.Apply (listener, process, database)
package faults

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Fault is one kind of failure, built from its parameters.
type Fault interface {
	Kind() string
}

// HTTPFault acts on each request a replica receives while the fault is
// active. Wrap returns a handler that either answers itself (having called
// fx.Fired) or passes the request on to next. Wrap is called again whenever
// the set of active faults on the replica changes, so state that must
// outlive that (a counter) lives in the fault, not in the handler.
type HTTPFault interface {
	Fault
	Wrap(next http.Handler, fx *Effect) http.Handler
}

// ReplicaFault acts on a whole replica while active. One fault value is
// applied to every replica the timeline entry targets.
type ReplicaFault interface {
	Fault
	Apply(r *Replica, fx *Effect) error
	Revert(r *Replica) error
}

// Explainer is implemented by faults that can say better than the timeline
// why they never took effect (a per-connection fault whose connections were
// all opened before its onset, a database fault on an idle pool). It is
// asked only when the fault was active and fired zero times; "" means no
// better idea.
type Explainer interface {
	NoEffect(st EffectStats) string
}

// Spec holds the decoded parameters of one fault kind. Implementations use
// yaml tags and are decoded strictly, so a misspelt parameter is an error.
type Spec interface {
	Validate() error
	New() Fault
}

// Layer is where a fault acts.
type Layer string

// Layers, from the request down.
const (
	LayerHTTP       Layer = "http"
	LayerInstance   Layer = "instance"
	LayerDatabase   Layer = "database"
	LayerConnection Layer = "connection"
	LayerPacket     Layer = "packet"
)

// Upstream kinds a fault kind can be limited to (Kind.Upstreams).
const (
	UpstreamHTTP     = "http"     // a fake HTTP service (the default)
	UpstreamDatabase = "database" // a service backed by a real database (faults/slowdb)
)

// Kind describes a registered fault kind.
type Kind struct {
	// Name is what a scenario's `kind:` says.
	Name string
	// Layer is where the fault acts.
	Layer Layer
	// Upstreams limits the kind to these upstream kinds (UpstreamHTTP,
	// UpstreamDatabase); empty means every kind.
	Upstreams []string
	// InProcess marks kinds that act inside cascade's process (HTTP handler
	// wrappers, the embedded database): they cannot reach a replica that runs
	// in a container.
	InProcess bool
	// Ramp names what a timeline ramp scales from zero to the full value
	// ("delay", "probability"); empty means the kind does not ramp.
	Ramp string
	// Doc is one line for listings.
	Doc string
	// New returns empty parameters with their defaults, ready to decode into.
	New func() Spec
}

// registry is written by RegisterKind from init functions (like database/sql
// drivers) and read afterwards; the lock makes a late registration safe.
var (
	registryMu sync.RWMutex
	registry   = map[string]Kind{}
)

// RegisterKind makes a fault kind available by name. It panics on a
// duplicate or incomplete kind: both are programming errors found at start.
func RegisterKind(k Kind) {
	if k.Name == "" || k.New == nil || k.Layer == "" {
		panic("faults: RegisterKind needs Name, Layer and New")
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[k.Name]; dup {
		panic("faults: kind registered twice: " + k.Name)
	}
	registry[k.Name] = k
}

// Register makes an HTTP-layer fault kind that applies to every in-process
// upstream available by name. Other layers use RegisterKind.
func Register(kind string, newSpec func() Spec) {
	RegisterKind(Kind{Name: kind, Layer: LayerHTTP, InProcess: true, New: newSpec})
}

// LookupKind returns the registered kind, or an error listing the valid ones.
func LookupKind(name string) (Kind, error) {
	registryMu.RLock()
	k, ok := registry[name]
	registryMu.RUnlock()
	if !ok {
		return Kind{}, fmt.Errorf("unknown fault kind %q (valid: %s)", name, strings.Join(Kinds(), ", "))
	}
	return k, nil
}

// NewSpec returns empty parameters for kind, ready to be decoded into.
func NewSpec(kind string) (Spec, error) {
	k, err := LookupKind(kind)
	if err != nil {
		return nil, err
	}
	return k.New(), nil
}

// Kinds lists the registered fault kinds, sorted.
func Kinds() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]string, 0, len(registry))
	for k := range registry {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// AllKinds lists the registered kinds, sorted by layer then name.
func AllKinds() []Kind {
	registryMu.RLock()
	out := make([]Kind, 0, len(registry))
	for _, k := range registry {
		out = append(out, k)
	}
	registryMu.RUnlock()
	order := map[Layer]int{LayerHTTP: 0, LayerInstance: 1, LayerDatabase: 2, LayerConnection: 3, LayerPacket: 4}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Layer != out[j].Layer {
			return order[out[i].Layer] < order[out[j].Layer]
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Applies says why the kind cannot act on an upstream of upstreamKind
// (containerised: its replicas run in containers), or nil if it can.
func (k Kind) Applies(upstreamKind string, containerised bool) error {
	if upstreamKind == "" {
		upstreamKind = UpstreamHTTP
	}
	if len(k.Upstreams) > 0 && !contains(k.Upstreams, upstreamKind) {
		return fmt.Errorf("fault kind %s (%s layer) applies only to upstreams of kind %s, not to %s upstreams",
			k.Name, k.Layer, strings.Join(k.Upstreams, ", "), upstreamKind)
	}
	if k.InProcess && containerised {
		return fmt.Errorf("fault kind %s (%s layer) acts inside cascade's process and cannot reach a replica in a container; "+
			"containerised replicas take instance faults (kill, restart, pause, down)", k.Name, k.Layer)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

type randT = rand.Rand

// Effect is what an active fault instance gets from its replica: a seeded
// random source, a way to report that it fired, the ramp's intensity, and
// counters the timeline uses to explain a fault that never took effect.
type Effect struct {
	mu      sync.Mutex
	rng     *rand.Rand
	fired   atomic.Int64
	seen    atomic.Int64
	matched atomic.Int64
	first   atomic.Bool
	extra   []func() int64

	onFire    func()
	onFirst   func()
	intensity func() float64
	// over says the occurrence's planned end has passed (nil: no planned
	// end, a fault that lasts until stopped).
	over func() bool
}

// Over reports whether the fault's planned end has passed. The timeline
// stops a fault on a timer that fires a little late (0.5 ms on an idle
// machine, more on a busy one); a request that arrives in between is not
// the fault's, as the phases that judge the run count it.
func (e *Effect) Over() bool { return e != nil && e.over != nil && e.over() }

// NewEffect returns an Effect drawing from rng; onFire (may be nil) is called
// each time the fault takes effect.
func NewEffect(rng *rand.Rand, onFire func()) *Effect {
	return &Effect{rng: rng, onFire: onFire}
}

// Chance reports true with probability p, from the seeded source.
func (e *Effect) Chance(p float64) bool {
	if p >= 1 {
		return true
	}
	if p <= 0 {
		return false
	}
	e.mu.Lock()
	v := e.rng.Float64()
	e.mu.Unlock()
	return v < p
}

// Rand runs f with exclusive use of the random source (for distributions).
func (e *Effect) Rand(f func(*rand.Rand)) {
	e.mu.Lock()
	f(e.rng)
	e.mu.Unlock()
}

// Intensity is the ramp's progress in [0, 1]: 1 without a ramp. Faults that
// ramp scale their delay or probability by it.
func (e *Effect) Intensity() float64 {
	if e.intensity == nil {
		return 1
	}
	return e.intensity()
}

// Seen records that a request (or connection) reached the fault while it was
// active; Matched that it also passed the fault's match filter. Both only
// explain a fault that never fired.
func (e *Effect) Seen() { e.seen.Add(1) }

// Matched records a request that passed the match filter (see Seen).
func (e *Effect) Matched() { e.matched.Add(1) }

// Fired records that the fault took effect once.
func (e *Effect) Fired() {
	e.fired.Add(1)
	if e.onFirst != nil && !e.first.Load() && e.first.CompareAndSwap(false, true) {
		e.onFirst()
	}
	if e.onFire != nil {
		e.onFire()
	}
}

// AddCounter adds an effect count kept elsewhere (a database's own counter of
// statements it slowed) to Count. Call it from Apply, before the fault runs.
func (e *Effect) AddCounter(f func() int64) {
	e.mu.Lock()
	e.extra = append(e.extra, f)
	e.mu.Unlock()
}

// Count is how many times the fault took effect.
func (e *Effect) Count() int64 {
	n := e.fired.Load()
	e.mu.Lock()
	extra := e.extra
	e.mu.Unlock()
	for _, f := range extra {
		n += f()
	}
	return n
}

// Stats is a snapshot of the effect's counters.
func (e *Effect) Stats() EffectStats {
	return EffectStats{Fired: e.Count(), Seen: e.seen.Load(), Matched: e.matched.Load()}
}

// EffectStats are an effect's counters.
type EffectStats struct {
	Fired   int64 // the fault took effect
	Seen    int64 // requests that reached it while active (faults that count them)
	Matched int64 // of those, requests that passed its match filter
	// Received is how many requests the targeted replicas received while
	// the fault was active (filled in by the timeline).
	Received int64
}

func (s *EffectStats) add(o EffectStats) {
	s.Fired += o.Fired
	s.Seen += o.Seen
	s.Matched += o.Matched
	s.Received += o.Received
}

// Package balance picks the endpoint (replica) of an upstream that a request
// goes to. Endpoints come and go at run time (autoscaling): the set is
// copy-on-write, so Pick reads a snapshot with one atomic load and never
// takes the writers' lock. Policies are small types registered by name, as
// Caddy's selection policies are:
//
//	round_robin           each available endpoint in turn
//	weighted_round_robin  nginx's smooth weighted round robin
//	least_request         fewest requests in flight (per unit of weight)
//	p2c_ewma              power of two choices over peak-EWMA latency × load
//	random                weighted random
//
// Every policy skips unhealthy and ejected endpoints, and the endpoint to
// avoid (the one a retry just failed on) unless it is the only one left.
// Below the panic threshold (Config.PanicThreshold, Envoy's
// healthy_panic_threshold) health and ejection are ignored.
package balance

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cascadehq/cascade/gateway/internal/emit"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

// Policy chooses among endpoints. Pick must be safe for concurrent use, must
// return nil or an endpoint for which f.OK is true, and should not allocate.
type Policy interface {
	Pick(eps []*Endpoint, f Filter) *Endpoint
}

// Filter tells a Policy which endpoints it may pick: healthy, not ejected,
// and not the one to avoid. It reads the clock at most once, and only when
// some endpoint is ejected.
type Filter struct {
	avoid *Endpoint
	clk   clock
	// panic: too few endpoints are available, so every endpoint but avoid
	// may be picked (Config.PanicThreshold).
	panic bool
}

// OK reports whether e may be picked.
func (f *Filter) OK(e *Endpoint) bool {
	if f.panic {
		return e != f.avoid
	}
	return e.eligible(&f.clk, f.avoid)
}

// Factory makes a policy; rng is the run's seeded source, shared by every
// policy the run makes and guarded by the policy that uses it.
type Factory func(rng *LockedRand) Policy

// registry maps policy names to factories. It is written by init functions
// only (Register), so scenarios can name any policy linked in.
var registry = struct {
	sync.RWMutex
	m map[string]Factory
}{m: map[string]Factory{}}

// Register makes a policy available by name. It panics on a duplicate name,
// which is a programming error found at init.
func Register(name string, f Factory) {
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.m[name]; dup {
		panic("balance: policy " + name + " registered twice")
	}
	registry.m[name] = f
}

// Names lists the registered policies, sorted.
func Names() []string {
	registry.RLock()
	defer registry.RUnlock()
	out := make([]string, 0, len(registry.m))
	for n := range registry.m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ErrUnknownPolicy is returned (wrapped) for a name nobody registered.
var ErrUnknownPolicy = errors.New("unknown balancing policy")

// NewPolicy makes the policy registered as name.
func NewPolicy(name string, rng *LockedRand) (Policy, error) {
	f, err := lookup(name)
	if err != nil {
		return nil, err
	}
	return f(rng), nil
}

func lookup(name string) (Factory, error) {
	registry.RLock()
	f, ok := registry.m[name]
	registry.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q: expected one of %s", ErrUnknownPolicy, name, strings.Join(Names(), ", "))
	}
	return f, nil
}

// LockedRand is a *rand.Rand that is safe for concurrent use.
type LockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

// NewLockedRand wraps r; the caller must not use r afterwards.
func NewLockedRand(r *rand.Rand) *LockedRand { return &LockedRand{r: r} }

// IntN returns a uniform int in [0, n).
func (l *LockedRand) IntN(n int) int {
	l.mu.Lock()
	v := l.r.IntN(n)
	l.mu.Unlock()
	return v
}

// Int64N returns a uniform int64 in [0, n).
func (l *LockedRand) Int64N(n int64) int64 {
	l.mu.Lock()
	v := l.r.Int64N(n)
	l.mu.Unlock()
	return v
}

// distinct2 draws two distinct ints in [0, m), m ≥ 2, under one lock.
func (l *LockedRand) distinct2(m int) (int, int) {
	l.mu.Lock()
	i, j := l.r.IntN(m), l.r.IntN(m-1)
	l.mu.Unlock()
	if j >= i {
		j++
	}
	return i, j
}

// Config is an upstream's balancing as a scenario writes it.
type Config struct {
	// Policy names a registered policy. Default "round_robin".
	Policy string `yaml:"policy"`
	// PanicThreshold is Envoy's healthy_panic_threshold: when fewer than
	// this share of the endpoints are available (healthy and not ejected),
	// the balancer stops trusting health checks and outlier ejection and
	// spreads requests over every endpoint, so that the few left standing
	// are not crushed by the whole load while the rest may well be able
	// to serve. Default 0: off, so that health checks and ejection do what
	// they say unless a scenario asks for panic; Envoy's default is 50%.
	PanicThreshold units.Percent `yaml:"panic_threshold"`
}

// DefaultPolicy is used when Config.Policy is empty.
const DefaultPolicy = "round_robin"

// Validate checks that the policy exists.
func (c Config) Validate() error {
	if c.Policy == "" {
		return nil
	}
	if _, err := lookup(c.Policy); err != nil {
		return yamlfile.Errors{{Path: "policy", Msg: err.Error()}}
	}
	return nil
}

// EvPanic is the event a balancer emits when it enters or leaves panic:
// attrs.panic true or false, with the available and total endpoints.
const EvPanic = "balance.panic"

// Balancer is an upstream's set of endpoints and the policy that picks among
// them. It is safe for concurrent use.
type Balancer struct {
	policy  Policy
	name    string
	em      emit.Emitter
	panicAt float64 // Config.PanicThreshold; 0: never
	// panicking is the last panic decision, so that only a change is an
	// event; panics counts the changes into panic.
	panicMu   sync.Mutex
	panicking atomic.Bool
	panics    atomic.Uint64

	mu  sync.Mutex // serialises writers; readers use eps alone
	eps atomic.Pointer[[]*Endpoint]
}

type options struct {
	sink   event.Sink
	clock  *event.Clock
	target string
}

// Option configures a Balancer beyond its Config.
type Option func(*options)

// WithEvents sends endpoint changes to sink, stamped on clock.
func WithEvents(sink event.Sink, clock *event.Clock) Option {
	return func(o *options) { o.sink, o.clock = sink, clock }
}

// WithTarget names the upstream in events.
func WithTarget(name string) Option { return func(o *options) { o.target = name } }

// New returns an empty balancer. rng seeds the randomised policies.
func New(cfg Config, rng *rand.Rand, opts ...Option) (*Balancer, error) {
	if rng == nil {
		return nil, errors.New("balance: New needs a seeded *rand.Rand (the run's seed keeps picks repeatable)")
	}
	name := cfg.Policy
	if name == "" {
		name = DefaultPolicy
	}
	p, err := NewPolicy(name, NewLockedRand(rng))
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	b := &Balancer{policy: p, name: name, em: emit.New(o.sink, o.clock, o.target), panicAt: cfg.PanicThreshold.F()}
	b.eps.Store(new([]*Endpoint))
	return b, nil
}

// Policy is the name of the balancer's policy.
func (b *Balancer) Policy() string { return b.name }

// Pick chooses an available endpoint, other than avoid if any other is
// available; nil when none is.
func (b *Balancer) Pick(avoid *Endpoint) *Endpoint {
	eps := *b.eps.Load()
	f := Filter{avoid: avoid}
	if b.panicAt > 0 {
		f.panic = b.inPanic(eps, &f.clk)
	}
	if e := b.policy.Pick(eps, f); e != nil {
		return e
	}
	if avoid != nil {
		f.avoid = nil
		if f.OK(avoid) && b.contains(eps, avoid) {
			return avoid
		}
	}
	return nil
}

// inPanic decides panic for one pick: fewer than panicAt of eps are
// available. As in Envoy, it is decided per pick from the endpoints'
// current state, so it ends as soon as enough come back; the count is over
// a handful of endpoints and reads the clock once, and only with a
// threshold set.
func (b *Balancer) inPanic(eps []*Endpoint, c *clock) bool {
	p, _ := b.panicOver(eps, c)
	if b.panicking.Load() != p {
		// A change is rare: decided again under a lock, from the endpoints
		// as they are now, so that a pick that decided from an older state
		// cannot store it over a newer one, and the events come in the
		// order of the states they report.
		b.panicMu.Lock()
		now := *b.eps.Load()
		q, avail := b.panicOver(now, &clock{})
		if b.panicking.Load() != q {
			b.panicking.Store(q)
			if q {
				b.panics.Add(1)
			}
			b.em.Emit(EvPanic, map[string]any{"panic": q, "available": avail, "endpoints": len(now)})
		}
		b.panicMu.Unlock()
	}
	return p
}

// panicOver says whether fewer than panicAt of eps are available, and how
// many are.
func (b *Balancer) panicOver(eps []*Endpoint, c *clock) (bool, int) {
	avail := 0
	for _, e := range eps {
		if e.eligible(c, nil) {
			avail++
		}
	}
	return len(eps) > 0 && float64(avail) < b.panicAt*float64(len(eps)), avail
}

// Panicking reports whether the last pick was made in panic.
func (b *Balancer) Panicking() bool { return b.panicking.Load() }

// Panics counts the times the balancer entered panic.
func (b *Balancer) Panics() uint64 { return b.panics.Load() }

func (b *Balancer) contains(eps []*Endpoint, e *Endpoint) bool {
	for _, x := range eps {
		if x == e {
			return true
		}
	}
	return false
}

// Endpoints returns the current endpoints. The slice is a snapshot shared
// with Pick: do not modify it.
func (b *Balancer) Endpoints() []*Endpoint { return *b.eps.Load() }

// Get returns the endpoint at addr, or nil.
func (b *Balancer) Get(addr string) *Endpoint {
	for _, e := range *b.eps.Load() {
		if e.addr == addr {
			return e
		}
	}
	return nil
}

// MaxWeight bounds an endpoint's weight. The weighted policies add the
// weights up (random draws from their sum): two weights near 2^63 wrapped
// it negative and the random policy panicked the gateway mid-run. Weights
// are relative, so a million covers any split.
const MaxWeight = 1_000_000

// Add adds endpoints. It refuses (and adds none of) a nil endpoint, an
// empty address, a weight outside 1..MaxWeight, or an address already
// present.
func (b *Balancer) Add(eps ...*Endpoint) error {
	b.mu.Lock()
	cur := *b.eps.Load()
	seen := make(map[string]bool, len(cur)+len(eps))
	for _, e := range cur {
		seen[e.addr] = true
	}
	for _, e := range eps {
		var err error
		switch {
		case e == nil:
			err = errors.New("balance: nil endpoint")
		case e.addr == "":
			err = errors.New("balance: endpoint without an address")
		case e.weight < 1 || e.weight > MaxWeight:
			err = fmt.Errorf("balance: endpoint %s: weight must be 1..%d, got %d", e.addr, MaxWeight, e.weight)
		case seen[e.addr]:
			err = fmt.Errorf("balance: endpoint %s is already in the set", e.addr)
		}
		if err != nil {
			b.mu.Unlock()
			return err
		}
		seen[e.addr] = true
	}
	next := make([]*Endpoint, 0, len(cur)+len(eps))
	next = append(append(next, cur...), eps...)
	b.eps.Store(&next)
	evs := make([]event.Event, len(eps))
	for i, e := range eps {
		evs[i] = b.em.Event("endpoint.add", map[string]any{"addr": e.addr, "weight": e.weight, "endpoints": len(next)})
	}
	b.mu.Unlock()
	for _, ev := range evs {
		b.em.Send(ev)
	}
	return nil
}

// Remove takes the endpoint at addr out of the set and returns it (nil if
// absent). Requests already sent to it finish normally.
func (b *Balancer) Remove(addr string) *Endpoint {
	b.mu.Lock()
	cur := *b.eps.Load()
	for i, e := range cur {
		if e.addr != addr {
			continue
		}
		next := make([]*Endpoint, 0, len(cur)-1)
		next = append(append(next, cur[:i]...), cur[i+1:]...)
		b.eps.Store(&next)
		ev := b.em.Event("endpoint.remove", map[string]any{"addr": addr, "endpoints": len(next)})
		b.mu.Unlock()
		b.em.Send(ev)
		return e
	}
	b.mu.Unlock()
	return nil
}

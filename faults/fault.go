// Package faults runs cascade's fake upstreams and the faults they inject.
//
// A fault is one small type built from its parameters by a factory that
// registers itself under a name, so a scenario file can name it (the
// Toxiproxy pattern). A fault acts at one layer:
//
//   - HTTPFault wraps a replica's handler while it is active (latency, error,
//     hang, reset): func(http.Handler) http.Handler in spirit;
//   - ReplicaFault acts on the replica itself (down: its listener closes).
//
// A Timeline activates and deactivates faults on replicas at their offsets on
// the run's clock, and every start, stop and firing is an event.
//
//	timeline ──start/stop──▶ Replica.active ──▶ handler chain ──▶ base behaviour
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
// fx.Fired) or passes the request on to next.
type HTTPFault interface {
	Fault
	Wrap(next http.Handler, fx *Effect) http.Handler
}

// ReplicaFault acts on a whole replica while active.
type ReplicaFault interface {
	Fault
	Apply(r *Replica, fx *Effect) error
	Revert(r *Replica) error
}

// Spec holds the decoded parameters of one fault kind. Implementations use
// yaml tags and are decoded strictly, so a misspelt parameter is an error.
type Spec interface {
	Validate() error
	New() Fault
}

var (
	registryMu sync.RWMutex
	registry   = map[string]func() Spec{}
)

// Register makes a fault kind available by name; fault files call it from init.
func Register(kind string, newSpec func() Spec) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[kind]; dup {
		panic("faults: kind registered twice: " + kind)
	}
	registry[kind] = newSpec
}

// NewSpec returns empty parameters for kind, ready to be decoded into.
func NewSpec(kind string) (Spec, error) {
	registryMu.RLock()
	f, ok := registry[kind]
	registryMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("unknown fault kind %q (valid: %s)", kind, strings.Join(Kinds(), ", "))
	}
	return f(), nil
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

type randT = rand.Rand

// Effect is what an active fault instance gets from its replica: a seeded
// random source and a way to report that it fired.
type Effect struct {
	mu     sync.Mutex
	rng    *rand.Rand
	fired  atomic.Int64
	onFire func()
}

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

// Fired records that the fault took effect once.
func (e *Effect) Fired() {
	e.fired.Add(1)
	if e.onFire != nil {
		e.onFire()
	}
}

// Count is how many times the fault took effect.
func (e *Effect) Count() int64 { return e.fired.Load() }

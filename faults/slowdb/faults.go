package slowdb

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/units"
)

// Fault kinds, as a scenario's fault timeline names them.
const (
	KindSlowQuery         = "slow_query"
	KindLockContention    = "lock_contention"
	KindPoolExhaustion    = "pool_exhaustion"
	KindStatementTimeout  = "statement_timeout"
	KindConnectionRefused = "connection_refused"
)

// Fault is the parameters of one database fault. The types below are plain
// structs with yaml tags: the scenario decoder gets an empty one from
// NewFault, decodes the fault's params into it, and hands it to
// Upstream.Inject.
type Fault interface {
	// Kind is the name a scenario uses.
	Kind() string
	// Validate checks the parameters.
	Validate() error
}

var (
	_ Fault = (*SlowQuery)(nil)
	_ Fault = (*LockContention)(nil)
	_ Fault = (*PoolExhaustion)(nil)
	_ Fault = (*StatementTimeout)(nil)
	_ Fault = (*ConnectionRefused)(nil)
)

// factories is read-only after package initialisation.
var factories = map[string]func() Fault{
	KindSlowQuery:         func() Fault { return &SlowQuery{} },
	KindLockContention:    func() Fault { return &LockContention{} },
	KindPoolExhaustion:    func() Fault { return &PoolExhaustion{} },
	KindStatementTimeout:  func() Fault { return &StatementTimeout{} },
	KindConnectionRefused: func() Fault { return &ConnectionRefused{} },
}

// ErrUnknownFault is wrapped by NewFault for a kind that does not exist.
var ErrUnknownFault = errors.New("unknown database fault")

// NewFault returns empty parameters of the named kind, ready to decode into.
func NewFault(kind string) (Fault, error) {
	f, ok := factories[kind]
	if !ok {
		return nil, fmt.Errorf("%w %q: expected one of %v", ErrUnknownFault, kind, Kinds())
	}
	return f(), nil
}

// Kinds lists the fault kinds, sorted.
func Kinds() []string {
	out := make([]string, 0, len(factories))
	for k := range factories {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// SlowQuery adds latency to the order-history read, on the database itself:
// a pg_sleep statement in the request's transaction (postgres) or a sleeping
// SQL function on the request's connection (sqlite). Either way the
// connection, and on postgres the row lock the request already took, stay
// held for the delay, which is what starves the pool.
type SlowQuery struct {
	// Latency is the added delay: a fixed duration (200ms) or a
	// distribution ({dist: lognormal, p50: 50ms, p99: 800ms}). Required.
	Latency dist.Latency `yaml:"latency" json:"latency"`
	// Probability is the share of requests slowed, drawn from the run's
	// seeded generator. Zero or omitted means every request.
	Probability units.Percent `yaml:"probability,omitempty" json:"probability,omitempty"`
}

// Kind implements Fault.
func (*SlowQuery) Kind() string { return KindSlowQuery }

// Validate implements Fault.
func (f *SlowQuery) Validate() error {
	if f.Latency.IsZero() {
		return &FieldError{Field: "latency", Msg: "slow_query needs a latency such as 200ms"}
	}
	if err := f.Latency.Validate(); err != nil {
		return &FieldError{Field: "latency", Msg: err.Error()}
	}
	return nil
}

// LockContention runs a transaction beside the service, on its own
// connection outside the pool, that locks rows the requests update and holds
// them. Requests then wait for the lock until lock_timeout (55P03) or
// busy_timeout (SQLITE_BUSY).
type LockContention struct {
	// Hold is how long the locking transaction holds its locks; left out,
	// until the fault stops. A written 0 is refused, as everywhere a
	// default stands for it.
	Hold units.Duration `yaml:"hold,omitempty" json:"hold,omitempty" zero:"default"`
	// Share is the share of customers whose row is locked (postgres locks
	// rows); left out, all of them. A written 0 % would read as "no row"
	// yet mean all, so it is refused. SQLite has one write lock for the
	// whole file, so there every request waits whatever the share.
	Share units.Percent `yaml:"share,omitempty" json:"share,omitempty" zero:"default"`
}

// Kind implements Fault.
func (*LockContention) Kind() string { return KindLockContention }

// Validate implements Fault.
func (f *LockContention) Validate() error { return nil }

// PoolExhaustion leaks connections: it takes Hold connections from the
// service's own pool and keeps them until it stops, as a code path that
// forgets to release them would. Requests then queue for what is left, and
// fail at the upstream deadline (504 upstream_timeout) when nothing is.
// Connections busy with requests are taken as they come free.
type PoolExhaustion struct {
	// Hold is how many connections to take, 1 up to the pool's size: a
	// pool lends no more than it has, so a larger hold is refused, not
	// cut to the pool. Left out, the whole pool.
	Hold int `yaml:"hold,omitempty" json:"hold,omitempty" zero:"default"`
}

// Kind implements Fault.
func (*PoolExhaustion) Kind() string { return KindPoolExhaustion }

// Validate implements Fault.
func (f *PoolExhaustion) Validate() error {
	if f.Hold < 0 || f.Hold > maxPoolSize {
		return &FieldError{Field: "hold", Msg: fmt.Sprintf("%d is outside 0..%d", f.Hold, maxPoolSize)}
	}
	return nil
}

// ValidateFor implements TargetValidator: the hold fits the pool.
func (f *PoolExhaustion) ValidateFor(upstream string, cfg Config) error {
	pool := cfg.WithDefaults().PoolSize
	if f.Hold <= pool {
		return nil
	}
	def := ""
	if cfg.PoolSize == 0 {
		def = ", the default"
	}
	return &FieldError{Field: "hold", Msg: fmt.Sprintf(
		"hold %d is more than the pool of %s (pool_size %d%s): take 1..%d connections, or leave hold out for the whole pool",
		f.Hold, upstream, pool, def, pool)}
}

// TargetValidator is a fault whose parameters must fit the upstream it
// acts on. The scenario compiler calls ValidateFor with the upstream's
// database block as written (zero fields take their defaults), so the
// error points at the parameter; Inject calls it too.
type TargetValidator interface {
	ValidateFor(upstream string, cfg Config) error
}

var _ TargetValidator = (*PoolExhaustion)(nil)

// StatementTimeout replaces the statement timeout while it is active, as a
// misguided configuration push would.
type StatementTimeout struct {
	// Timeout is the new statement timeout. Required, at least 1ms.
	Timeout units.Duration `yaml:"timeout" json:"timeout"`
}

// Kind implements Fault.
func (*StatementTimeout) Kind() string { return KindStatementTimeout }

// Validate implements Fault.
func (f *StatementTimeout) Validate() error {
	if f.Timeout.D() < time.Millisecond {
		return &FieldError{Field: "timeout", Msg: "statement_timeout needs a timeout of at least 1ms"}
	}
	return nil
}

// ConnectionRefused makes the database unreachable: open connections are
// closed as they come back to the pool and new ones are refused.
//
// postgres: real. New connections are sent to a loopback port that is bound
// but not listening, so the kernel refuses them (ECONNREFUSED).
// sqlite: simulated. An embedded database has no connection to refuse, so
// the connector fails with ECONNREFUSED without opening the file.
type ConnectionRefused struct{}

// Kind implements Fault.
func (*ConnectionRefused) Kind() string { return KindConnectionRefused }

// Validate implements Fault.
func (*ConnectionRefused) Validate() error { return nil }

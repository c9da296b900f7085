package faults

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/cascadehq/cascade/faults/slowdb"
)

// Database upstreams: each replica is an order-history service on a real
// database with its own connection pool (faults/slowdb), served through the
// same replica machinery as every fake upstream (its own listener; down,
// kill, pause and the HTTP faults work as for any replica). The database
// fault kinds below act on the replica's database and apply only to
// upstreams of kind database.

// DatabaseConfig is the `database:` block of an upstream of kind database.
type DatabaseConfig struct {
	slowdb.Config `yaml:",inline"`
	// Container starts a PostgreSQL server in a container for the run
	// (driver postgres; needs Docker); the run fills in the DSN.
	Container bool `yaml:"container,omitempty" json:"container,omitempty"`
}

// ErrNeedsDSN reports a database upstream whose container has not been
// started: the run starts it and fills in the DSN before the upstream.
var ErrNeedsDSN = errors.New("the database container must be started first (the run does this)")

// Validate checks the block; errors are *slowdb.FieldError where a field is
// at fault, so the scenario decoder can point at it.
func (c DatabaseConfig) Validate(replicas int) error {
	cfg := c.Config
	var errs []error
	if c.Container {
		if cfg.Driver != slowdb.Postgres {
			errs = append(errs, &slowdb.FieldError{Field: "container",
				Msg: "container: true starts PostgreSQL; set driver: postgres (SQLite is embedded and needs no container)"})
		}
		if cfg.DSN != "" {
			errs = append(errs, &slowdb.FieldError{Field: "dsn", Msg: "give a dsn or container: true, not both"})
		}
		cfg.DSN = "postgres://container" // filled in at run time; keeps Validate from asking for it
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if cfg.Driver != slowdb.Postgres && cfg.DSN != "" && replicas > 1 {
		errs = append(errs, &slowdb.FieldError{Field: "dsn",
			Msg: fmt.Sprintf("one SQLite file cannot back %d replicas (each reseeds it): omit dsn to give each replica its own temporary database", replicas)})
	}
	return errors.Join(errs...)
}

func openDatabase(ctx context.Context, r *Replica, c DatabaseConfig) (Backend, error) {
	if c.Container && c.DSN == "" {
		return nil, ErrNeedsDSN
	}
	o := r.up.opts
	return slowdb.New(ctx, r.name, c.Config, slowdb.WithSink(o.Sink), slowdb.WithClock(o.Clock),
		slowdb.WithRand(seedFor(o.Seed, "database", r.name)))
}

func init() {
	db := func(name, doc string, f func() Spec) {
		RegisterKind(Kind{Name: name, Layer: LayerDatabase, Upstreams: []string{UpstreamDatabase}, InProcess: true, Doc: doc, New: f})
	}
	db(slowdb.KindSlowQuery, "adds latency to the request's query, on the database, holding its connection",
		func() Spec { return &SlowQuerySpec{} })
	db(slowdb.KindLockContention, "a transaction beside the service locks the rows requests update",
		func() Spec { return &LockContentionSpec{} })
	db(slowdb.KindPoolExhaustion, "leaks connections from the service's pool until the fault ends",
		func() Spec { return &PoolExhaustionSpec{} })
	db(slowdb.KindStatementTimeout, "replaces the database statement timeout while active",
		func() Spec { return &StatementTimeoutSpec{} })
	db(slowdb.KindConnectionRefused, "the database refuses connections (real on PostgreSQL, simulated on SQLite)",
		func() Spec { return &ConnectionRefusedSpec{} })
}

// SlowQuerySpec is slowdb's slow_query: {latency, probability}.
type SlowQuerySpec struct {
	slowdb.SlowQuery `yaml:",inline"`
}

// LockContentionSpec is slowdb's lock_contention: {hold, share}.
type LockContentionSpec struct {
	slowdb.LockContention `yaml:",inline"`
}

// PoolExhaustionSpec is slowdb's pool_exhaustion: {hold}.
type PoolExhaustionSpec struct {
	slowdb.PoolExhaustion `yaml:",inline"`
}

// StatementTimeoutSpec is slowdb's statement_timeout: {timeout}.
type StatementTimeoutSpec struct {
	slowdb.StatementTimeout `yaml:",inline"`
}

// ConnectionRefusedSpec is slowdb's connection_refused (no parameters).
type ConnectionRefusedSpec struct {
	slowdb.ConnectionRefused `yaml:",inline"`
}

// New implements Spec.
func (s *SlowQuerySpec) New() Fault { c := s.SlowQuery; return newDBFault(&c) }

// New implements Spec.
func (s *LockContentionSpec) New() Fault { c := s.LockContention; return newDBFault(&c) }

// New implements Spec.
func (s *PoolExhaustionSpec) New() Fault { c := s.PoolExhaustion; return newDBFault(&c) }

// New implements Spec.
func (s *StatementTimeoutSpec) New() Fault { c := s.StatementTimeout; return newDBFault(&c) }

// New implements Spec.
func (s *ConnectionRefusedSpec) New() Fault { c := s.ConnectionRefused; return newDBFault(&c) }

var (
	_ Spec         = (*SlowQuerySpec)(nil)
	_ Spec         = (*LockContentionSpec)(nil)
	_ Spec         = (*PoolExhaustionSpec)(nil)
	_ Spec         = (*StatementTimeoutSpec)(nil)
	_ Spec         = (*ConnectionRefusedSpec)(nil)
	_ ReplicaFault = (*dbFault)(nil)
	_ Explainer    = (*dbFault)(nil)
)

// dbFault injects one slowdb fault into each targeted replica's database.
type dbFault struct {
	f   slowdb.Fault
	mu  sync.Mutex
	inj map[*Replica]*slowdb.Injection
}

func newDBFault(f slowdb.Fault) *dbFault {
	return &dbFault{f: f, inj: map[*Replica]*slowdb.Injection{}}
}

func (d *dbFault) Kind() string { return d.f.Kind() }

func (d *dbFault) Apply(r *Replica, fx *Effect) error {
	u, ok := r.Backend().(*slowdb.Upstream)
	if !ok {
		return fmt.Errorf("%s acts on a database upstream; %s is not one", d.f.Kind(), r.Name())
	}
	ctx, cancel := r.opContext()
	defer cancel()
	inj, err := u.Inject(ctx, d.f)
	if err != nil {
		return err
	}
	fx.AddCounter(func() int64 { return int64(inj.Effects()) })
	d.mu.Lock()
	d.inj[r] = inj
	d.mu.Unlock()
	return nil
}

func (d *dbFault) Revert(r *Replica) error {
	d.mu.Lock()
	inj := d.inj[r]
	delete(d.inj, r)
	d.mu.Unlock()
	if inj != nil {
		inj.Stop()
	}
	return nil
}

// NoEffect names what each database fault needed and did not get.
func (d *dbFault) NoEffect(st EffectStats) string {
	if st.Received == 0 {
		return ""
	}
	switch d.f.(type) {
	case *slowdb.LockContention:
		return fmt.Sprintf("%d requests arrived while the rows were locked, but none waited on the lock until a timeout (the lock's own or an outer one)", st.Received)
	case *slowdb.PoolExhaustion:
		return fmt.Sprintf("%d requests arrived while connections were held, but none had to wait for one (the pool had room)", st.Received)
	case *slowdb.StatementTimeout:
		return fmt.Sprintf("%d requests arrived, but no statement ran past the new timeout", st.Received)
	}
	return ""
}

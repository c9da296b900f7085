package slowdb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cascadehq/cascade/internal/units"
)

// Drivers.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Config is the `database:` block of an upstream of kind database:
//
//	upstreams:
//	  - name: orders
//	    kind: database
//	    database: {driver: postgres, dsn: "postgres://...", pool_size: 10,
//	               statement_timeout: 500ms, upstream_timeout: 2s}
//
// Every field has a usable zero value; WithDefaults fills them in. The
// timeouts are meant to nest, DB < upstream < gateway, which is what makes
// each layer's failure visible as its own cause; Validate does not enforce
// the order, because a scenario may get it wrong on purpose (the plan's
// cascade lint warns about it).
type Config struct {
	// Driver is "sqlite" (default: an embedded pure-Go SQLite, nothing to
	// install) or "postgres".
	Driver string `yaml:"driver,omitempty" json:"driver,omitempty" jsonschema:"enum=sqlite,enum=postgres"`
	// DSN locates the database. postgres: a libpq URL or key=value string,
	// required; the upstream creates the schema "cascade_<name>" there and
	// drops and reseeds its two tables, and on Close drops the schema (only
	// its tables if the schema was there before and cascade did not make
	// it). sqlite: a file path; empty means a
	// new temporary file, removed on Close.
	DSN string `yaml:"dsn,omitempty" json:"dsn,omitempty"`
	// PoolSize bounds the connection pool. Default 10.
	PoolSize int `yaml:"pool_size,omitempty" json:"pool_size,omitempty" zero:"default"`
	// StatementTimeout bounds each statement. postgres: the server's
	// statement_timeout (SQLSTATE 57014). sqlite has none, so the upstream
	// interrupts the statement at this deadline (sqlite3_interrupt).
	// Default 500ms.
	StatementTimeout units.Duration `yaml:"statement_timeout,omitempty" json:"statement_timeout,omitempty" zero:"default"`
	// LockTimeout bounds a wait for a lock. postgres: lock_timeout (55P03);
	// sqlite: busy_timeout (SQLITE_BUSY). Default half the statement
	// timeout, so a lock wait fails as a lock wait.
	LockTimeout units.Duration `yaml:"lock_timeout,omitempty" json:"lock_timeout,omitempty" zero:"default"`
	// UpstreamTimeout is the service's own deadline for a request, pool wait
	// included; past it the answer is 504 upstream_timeout. Default 2s.
	UpstreamTimeout units.Duration `yaml:"upstream_timeout,omitempty" json:"upstream_timeout,omitempty" zero:"default"`
	// PropagateCancel cancels the database work when the client disconnects.
	// Default false: like many real services, the work runs on to its own
	// deadline after the caller gave up, which is the orphaned work the
	// cascade wastes. An X-Cascade-Deadline-Ms header caps the work either
	// way.
	PropagateCancel bool `yaml:"propagate_cancel,omitempty" json:"propagate_cancel,omitempty"`
	// Customers is how many customers are seeded. Default 500.
	Customers int `yaml:"customers,omitempty" json:"customers,omitempty" zero:"default"`
	// OrdersPerCustomer is how many orders each customer has. Default 10.
	OrdersPerCustomer int `yaml:"orders_per_customer,omitempty" json:"orders_per_customer,omitempty" zero:"default"`
	// HistoryLimit is how many orders one request reads. Default 20.
	HistoryLimit int `yaml:"history_limit,omitempty" json:"history_limit,omitempty" zero:"default"`
	// SampleInterval is how often the pool is sampled. Default 100ms.
	SampleInterval units.Duration `yaml:"sample_interval,omitempty" json:"sample_interval,omitempty" zero:"default"`
	// AllowRemote lets a postgres DSN name a host off loopback (the
	// user's --allow-remote; never from the file).
	AllowRemote bool `yaml:"-" json:"-"`
}

// Defaults for zero fields.
const (
	DefaultPoolSize          = 10
	DefaultStatementTimeout  = 500 * time.Millisecond
	DefaultUpstreamTimeout   = 2 * time.Second
	DefaultCustomers         = 500
	DefaultOrdersPerCustomer = 10
	DefaultHistoryLimit      = 20
	DefaultSampleInterval    = 100 * time.Millisecond
)

// Limits that keep a typo from seeding a billion rows or opening a
// thousand connections.
const (
	maxPoolSize = 1000
	maxRows     = 10_000_000
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Driver == "" {
		c.Driver = SQLite
	}
	if c.PoolSize == 0 {
		c.PoolSize = DefaultPoolSize
	}
	if c.StatementTimeout == 0 {
		c.StatementTimeout = units.Duration(DefaultStatementTimeout)
	}
	if c.LockTimeout == 0 {
		c.LockTimeout = c.StatementTimeout / 2
	}
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = units.Duration(DefaultUpstreamTimeout)
	}
	if c.Customers == 0 {
		c.Customers = DefaultCustomers
	}
	if c.OrdersPerCustomer == 0 {
		c.OrdersPerCustomer = DefaultOrdersPerCustomer
	}
	if c.HistoryLimit == 0 {
		c.HistoryLimit = DefaultHistoryLimit
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = units.Duration(DefaultSampleInterval)
	}
	return c
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// FieldError is a problem with one field; Field is its YAML name, so the
// scenario decoder can point at the line.
type FieldError struct {
	Field string
	Msg   string
}

// Error says which field and what is wrong with it.
func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate checks c as written (zero fields are fine: they take defaults).
// It returns every problem at once, each a *FieldError.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	switch c.Driver {
	case "", SQLite:
		if c.DSN != "" {
			// Caught here, so `cascade validate` points at the line,
			// not the run's setup.
			if strings.ContainsAny(c.DSN, "?#") {
				bad("dsn", "for sqlite the dsn is a file path; %q contains ? or #", c.DSN)
			} else if dir := filepath.Dir(c.DSN); !isDir(dir) {
				bad("dsn", "directory %s does not exist: the sqlite file %s is created in it", dir, c.DSN)
			}
		}
	case Postgres:
		if c.DSN == "" {
			bad("dsn", "driver postgres needs a dsn such as postgres://user@127.0.0.1:5432/db")
		}
	default:
		bad("driver", "unknown driver %q: expected sqlite or postgres", c.Driver)
	}
	if c.PoolSize < 0 || c.PoolSize > maxPoolSize {
		bad("pool_size", "%d is outside 1..%d", c.PoolSize, maxPoolSize)
	}
	if c.Customers < 0 || c.OrdersPerCustomer < 0 || int64(c.Customers)*int64(c.OrdersPerCustomer) > maxRows {
		bad("customers", "customers (%d) × orders_per_customer (%d) must be positive and at most %d rows",
			c.Customers, c.OrdersPerCustomer, maxRows)
	}
	if c.HistoryLimit < 0 {
		bad("history_limit", "%d is negative", c.HistoryLimit)
	}
	if c.SampleInterval != 0 && c.SampleInterval.D() < time.Millisecond {
		bad("sample_interval", "%s is below 1ms", c.SampleInterval)
	}
	d := c.WithDefaults()
	switch {
	case d.LockTimeout.D() >= time.Millisecond:
	case c.LockTimeout == 0 && d.StatementTimeout.D() >= time.Millisecond:
		bad("lock_timeout", "not given, so half the statement_timeout %s: %s, below 1ms (both databases count it in milliseconds); give lock_timeout",
			d.StatementTimeout, d.LockTimeout)
	case c.LockTimeout != 0:
		bad("lock_timeout", "%s is below 1ms (both databases count it in milliseconds)", d.LockTimeout)
	}
	if d.StatementTimeout.D() < time.Millisecond {
		bad("statement_timeout", "%s is below 1ms (both databases count it in milliseconds)", d.StatementTimeout)
	}
	return errors.Join(errs...)
}

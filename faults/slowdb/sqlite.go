package slowdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/cascadehq/cascade/internal/owner"
)

// sqliteBackend runs the service on an embedded SQLite file through
// database/sql, whose pool is bounded like any service's.
type sqliteBackend struct {
	cfg     Config
	dsn     string
	drv     *sqlite.Driver
	db      *sql.DB
	tmpDir  string // removed on close; empty when the user named the file
	g       gauge
	refused atomic.Bool

	// sleeps maps a token passed to cascade_sleep to the statement it
	// belongs to, so the Go function can stop sleeping when that
	// statement's context ends (SQLite itself only checks for an interrupt
	// between VM steps, never inside a function call).
	sleeps  sync.Map // int64 -> *sleepReq
	nextTok atomic.Int64
}

type sleepReq struct {
	ctx context.Context
	d   time.Duration
}

var _ backend = (*sqliteBackend)(nil)

// sqliteConnector opens connections through the upstream's own driver (so
// its cascade_sleep function reaches only its connections) and refuses them
// while connection_refused is active.
type sqliteConnector struct {
	drv     *sqlite.Driver
	dsn     string
	refused *atomic.Bool // nil: never refuse
}

// errSimulatedRefusal is what connection_refused makes the SQLite connector
// return. It wraps ECONNREFUSED so the error map treats it like the real
// thing on postgres, and says that it is not.
var errSimulatedRefusal = fmt.Errorf("connect: %w (simulated: an embedded database has no connection to refuse)", syscall.ECONNREFUSED)

func (c *sqliteConnector) Connect(ctx context.Context) (driver.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.refused != nil && c.refused.Load() {
		return nil, errSimulatedRefusal
	}
	// database/sql opens a connection with the context of the request that
	// needs it: opening it (the file, the pragmas) is not a pool wait.
	s := setupOf(ctx)
	s.begin()
	defer s.end()
	return c.drv.Open(c.dsn)
}

func (c *sqliteConnector) Driver() driver.Driver { return c.drv }

const (
	sqliteHistory = `SELECT id, created_at, total_cents, status FROM orders
WHERE customer_id = ? ORDER BY created_at DESC LIMIT ?`
	sqliteUpdate = `UPDATE customers SET visits = visits + 1, last_seen = ? WHERE id = ?`
	sqliteSleep  = `SELECT cascade_sleep(?)`
)

// seedEpoch anchors the seeded order dates, so the data is the same on
// every run.
var seedEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func openSQLite(ctx context.Context, cfg Config, onWait func(time.Time)) (*sqliteBackend, error) {
	b := &sqliteBackend{cfg: cfg, drv: &sqlite.Driver{}}
	b.g.onWait = onWait
	path := cfg.DSN
	if path == "" {
		// Named after this process, so `cascade cleanup` can remove it
		// when the process was killed before it could.
		dir, err := owner.MkdirTemp("slowdb")
		if err != nil {
			return nil, err
		}
		b.tmpDir = dir
		path = filepath.Join(dir, "orders.db")
	} // a dsn with ? or # is refused by Validate
	// WAL lets readers run beside the one writer; busy_timeout is SQLite's
	// lock timeout; _txlock=immediate takes the write lock at BEGIN, so a
	// request waits for it there, under busy_timeout, instead of failing
	// at once when it upgrades a read transaction.
	b.dsn = "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)" +
		"&_pragma=busy_timeout(" + strconv.FormatInt(cfg.LockTimeout.D().Milliseconds(), 10) + ")" +
		"&_txlock=immediate"
	if err := b.drv.RegisterScalarFunction("cascade_sleep", 1, b.sleepFunc); err != nil {
		return nil, b.cleanup(err)
	}
	b.db = sql.OpenDB(&sqliteConnector{drv: b.drv, dsn: b.dsn, refused: &b.refused})
	b.db.SetMaxOpenConns(cfg.PoolSize)
	b.db.SetMaxIdleConns(cfg.PoolSize)
	if err := b.seed(ctx); err != nil {
		_ = b.db.Close()
		return nil, b.cleanup(fmt.Errorf("seed sqlite %s: %w", path, err))
	}
	return b, nil
}

func (b *sqliteBackend) cleanup(err error) error {
	if b.tmpDir != "" {
		err = errors.Join(err, os.RemoveAll(b.tmpDir))
	}
	return err
}

func (b *sqliteBackend) seed(ctx context.Context) error {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	stmts := []struct {
		q    string
		args []any
	}{
		{q: `DROP TABLE IF EXISTS orders`},
		{q: `DROP TABLE IF EXISTS customers`},
		{q: `CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
			visits INTEGER NOT NULL DEFAULT 0, last_seen INTEGER)`},
		{q: `CREATE TABLE orders (id INTEGER PRIMARY KEY,
			customer_id INTEGER NOT NULL REFERENCES customers(id),
			created_at INTEGER NOT NULL, total_cents INTEGER NOT NULL, status TEXT NOT NULL)`},
		{q: `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?)
			INSERT INTO customers (id, name) SELECT i, 'customer-' || i FROM c`,
			args: []any{b.cfg.Customers}},
		{q: `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?),
			o(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM o WHERE j < ?)
			INSERT INTO orders (customer_id, created_at, total_cents, status)
			SELECT i, ? - j * 86400, (i * 7919 + j * 104729) % 50000 + 100,
			CASE (i + j) % 4 WHEN 0 THEN 'placed' WHEN 1 THEN 'shipped' WHEN 2 THEN 'delivered' ELSE 'returned' END
			FROM c, o`,
			args: []any{b.cfg.Customers, b.cfg.OrdersPerCustomer, seedEpoch.Unix()}},
		{q: `CREATE INDEX orders_by_customer ON orders (customer_id, created_at DESC)`},
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s.q, s.args...); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	_, err = b.db.ExecContext(ctx, `ANALYZE`)
	return err
}

// sleepFunc is cascade_sleep(token): it holds the connection, inside the
// statement, for the delay drawn for the request, and gives up when the
// statement's context ends; the driver has then already interrupted the
// statement, and reports the context's error.
func (b *sqliteBackend) sleepFunc(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	tok, _ := args[0].(int64)
	v, ok := b.sleeps.Load(tok)
	if !ok {
		return nil, errors.New("cascade_sleep: unknown token")
	}
	r := v.(*sleepReq)
	t := time.NewTimer(r.d)
	defer t.Stop()
	select {
	case <-t.C:
		return int64(1), nil
	case <-r.ctx.Done():
		return nil, r.ctx.Err()
	}
}

func (b *sqliteBackend) history(ctx context.Context, w *work) ([]Order, error) {
	conn, st, err := acquire(ctx, &b.g, b.db.Conn)
	if err != nil {
		return nil, b.classify(ctx, nil, st, err)
	}
	w.held = time.Now()
	defer conn.Close()

	if w.slow > 0 {
		sctx, cancel := context.WithTimeout(ctx, w.stmtTimeout)
		tok := b.nextTok.Add(1)
		b.sleeps.Store(tok, &sleepReq{ctx: sctx, d: w.slow})
		_, err := conn.ExecContext(sctx, sqliteSleep, tok)
		b.sleeps.Delete(tok)
		if err != nil {
			err = b.classify(ctx, sctx, stageQuery, err)
		}
		cancel()
		if err != nil {
			return nil, err
		}
	}

	orders, err := b.read(ctx, conn, w)
	if err != nil {
		return nil, err
	}

	// The write is its own short transaction: SQLite has one write lock for
	// the whole file, so a service that read inside it would serialise
	// every request behind the slowest.
	w.lockWait.begin()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return nil, b.classify(ctx, nil, stageLock, err) // _txlock=immediate: BEGIN waits for the write lock
	}
	w.lockWait.end()
	defer func() { _ = tx.Rollback() }()
	sctx, cancel := context.WithTimeout(ctx, w.stmtTimeout)
	defer cancel()
	if _, err := tx.ExecContext(sctx, sqliteUpdate, time.Now().Unix(), w.customer); err != nil {
		return nil, b.classify(ctx, sctx, stageQuery, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, b.classify(ctx, sctx, stageQuery, err)
	}
	return orders, nil
}

func (b *sqliteBackend) read(ctx context.Context, conn *sql.Conn, w *work) ([]Order, error) {
	sctx, cancel := context.WithTimeout(ctx, w.stmtTimeout)
	defer cancel()
	rows, err := conn.QueryContext(sctx, sqliteHistory, w.customer, w.limit)
	if err != nil {
		return nil, b.classify(ctx, sctx, stageQuery, err)
	}
	defer rows.Close()
	orders := make([]Order, 0, w.limit)
	for rows.Next() {
		var o Order
		var created int64
		if err := rows.Scan(&o.ID, &created, &o.TotalCents, &o.Status); err != nil {
			return nil, b.classify(ctx, sctx, stageQuery, err)
		}
		o.CreatedAt = time.Unix(created, 0).UTC()
		orders = append(orders, o)
	}
	if err := rows.Err(); err != nil {
		return nil, b.classify(ctx, sctx, stageQuery, err)
	}
	return orders, nil
}

// classify turns a failure into a *dbError. ctx is the work's context, sctx
// the statement's (nil where there is none).
func (b *sqliteBackend) classify(ctx, sctx context.Context, st stage, err error) error {
	de := &dbError{kind: errOther, stage: st, err: err}
	var se *sqlite.Error
	switch {
	case errors.As(err, &se):
		de.code = sqliteCodeName(se.Code())
		if se.Code()&0xff == sqlite3.SQLITE_BUSY {
			de.kind = errLockTimeout
		}
	default:
		if code, refused := refusedCode(err); code != "" {
			de.code = code
			if refused {
				de.kind = errRefused
			}
		}
	}
	switch {
	case ctx.Err() != nil && st == stagePool:
		de.kind = errPoolTimeout
	case ctx.Err() == nil && sctx != nil && sctx.Err() != nil:
		// The driver interrupted the statement at our statement deadline
		// (sqlite3_interrupt) and reports only the context's error; the
		// code says what SQLite did.
		de.kind = errStatementTimeout
		de.code = "SQLITE_INTERRUPT"
	}
	return de
}

// sqliteCodeName names a result code, extended codes falling back to their
// primary code: "SQLITE_BUSY".
func sqliteCodeName(code int) string {
	for _, c := range []int{code, code & 0xff} {
		s := sqlite.ErrorCodeString[c]
		if i := strings.LastIndex(s, "(SQLITE_"); i >= 0 && strings.HasSuffix(s, ")") {
			return s[i+1 : len(s)-1]
		}
	}
	return "SQLITE_" + strconv.Itoa(code)
}

func (b *sqliteBackend) hold(ctx context.Context) (func(), error) {
	conn, err := b.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	b.g.held.Add(1)
	return func() {
		_ = conn.Close()
		b.g.held.Add(-1)
	}, nil
}

// lock takes SQLite's write lock on a connection of its own and keeps it.
// SQLite locks the whole file for writing, so rows is ignored.
func (b *sqliteBackend) lock(ctx context.Context, _ int64) (func(), error) {
	db := sql.OpenDB(&sqliteConnector{drv: b.drv, dsn: b.dsn})
	db.SetMaxOpenConns(1)
	// The transaction must outlive ctx, which bounds only the setup:
	// database/sql rolls a transaction back when its context ends.
	txCtx, cancel := context.WithCancel(context.Background())
	fail := func(err error) (func(), error) {
		cancel()
		return nil, errors.Join(err, db.Close())
	}
	for {
		tx, err := db.BeginTx(txCtx, nil)
		if err == nil {
			// A write makes the lock visible to anyone inspecting the file,
			// as a real batch job's would be.
			if _, err := tx.ExecContext(ctx, `UPDATE customers SET visits = visits WHERE id = 1`); err != nil {
				_ = tx.Rollback()
				return fail(err)
			}
			return func() {
				_ = tx.Rollback()
				cancel()
				_ = db.Close()
			}, nil
		}
		var se *sqlite.Error
		if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY {
			return fail(err)
		}
		// A request holds the write lock for a moment; try again.
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		default:
		}
	}
}

func (b *sqliteBackend) setRefused(on bool) {
	b.refused.Store(on)
	if on {
		// Close idle connections now and busy ones as they come back, so
		// every later request has to connect, and is refused.
		b.db.SetMaxIdleConns(0)
	} else {
		b.db.SetMaxIdleConns(b.cfg.PoolSize)
	}
}

func (b *sqliteBackend) pool() PoolStats {
	s := b.db.Stats()
	return PoolStats{
		Size:      b.cfg.PoolSize,
		Open:      s.OpenConnections,
		InUse:     s.InUse,
		Idle:      s.Idle,
		Waiting:   int(b.g.waiting.Load()),
		Held:      int(b.g.held.Load()),
		WaitCount: s.WaitCount,
		WaitTime:  s.WaitDuration,
	}
}

func (b *sqliteBackend) close() error {
	return b.cleanup(b.db.Close())
}

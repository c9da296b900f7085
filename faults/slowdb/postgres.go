package slowdb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"
)

// pgBackend runs the service on PostgreSQL through pgx's pool.
type pgBackend struct {
	cfg     Config
	pgpool  *pgxpool.Pool
	lockCfg *pgx.ConnConfig // for the lock_contention client, outside the pool
	g       gauge
	refused atomic.Bool
	closed  *refusingPort

	qHistory, qUpdate, qLock string
	// schema is the upstream's schema, quoted; created says that the
	// upstream created it (it was not there before), so close drops it
	// whole rather than only the tables.
	schema  string
	created bool
	// held is the lock_contention fault's locking transaction while it
	// holds its rows; a new one per lock, so a wait that spans a release
	// and a relock is not taken for one wait.
	held atomic.Pointer[heldRows]
	// beforeRollback, when set (tests), runs as the fault releases its
	// rows, before its transaction rolls back.
	beforeRollback func()
}

// heldRows are the customers the fault's transaction has locked: ids up to
// through, until freed.
type heldRows struct {
	through int64
	freed   atomic.Int64 // Unix ns when the transaction had rolled back; 0 until then
}

// lockedAt reports whether the rows were still locked at t: the fault is
// marked off before its transaction rolls back, and the rows stay locked
// until it has.
func (h *heldRows) lockedAt(t time.Time) bool {
	f := h.freed.Load()
	return f == 0 || t.UnixNano() < f
}

// endedAt is when ctx ended: its deadline if that is what ended it, or
// now, an upper bound, when it was cancelled.
func endedAt(ctx context.Context) time.Time {
	if dl, ok := ctx.Deadline(); ok && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return dl
	}
	return time.Now()
}

var _ backend = (*pgBackend)(nil)

// The SQLSTATEs the error map knows.
const (
	sqlstateLockNotAvailable = "55P03" // lock_timeout
	sqlstateQueryCanceled    = "57014" // statement_timeout (or a cancel request)
)

func openPostgres(ctx context.Context, name string, cfg Config, onWait func(time.Time)) (*pgBackend, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, &FieldError{Field: "dsn", Msg: err.Error()}
	}
	if !cfg.AllowRemote {
		if err := CheckLocal(cfg.DSN); err != nil {
			return nil, err
		}
		pcfg.ConnConfig.DialFunc = loopbackDial
	}
	b := &pgBackend{cfg: cfg}
	b.g.onWait = onWait
	pcfg.MaxConns = int32(cfg.PoolSize)
	pcfg.MinConns = 0
	if pcfg.ConnConfig.RuntimeParams == nil {
		pcfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = "cascade-" + name
	b.lockCfg = pcfg.ConnConfig.Copy()
	b.lockCfg.RuntimeParams["application_name"] = "cascade-" + name + "-lock-contention"

	b.closed, err = newRefusingPort()
	if err != nil {
		return nil, fmt.Errorf("reserve a refusing port: %w", err)
	}
	pcfg.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
		if b.refused.Load() {
			// connection_refused: dial a loopback port that is bound but
			// not listening, so the kernel itself refuses.
			cc.Host, cc.Port, cc.Fallbacks = "127.0.0.1", uint16(b.closed.port), nil
		}
		// The connection is set up for the request acquiring it (the pool
		// passes its context's values on): from here to AfterConnect is
		// not a pool wait. A connect that fails ends when the acquisition
		// returns its error.
		setupOf(ctx).begin()
		return nil
	}
	pcfg.AfterConnect = func(ctx context.Context, _ *pgx.Conn) error {
		setupOf(ctx).end()
		return nil
	}
	b.pgpool, err = pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		_ = b.closed.close()
		return nil, fmt.Errorf("postgres pool: %w", err)
	}
	schema := pgx.Identifier{schemaName(name)}.Sanitize()
	b.schema = schema
	b.qHistory = `SELECT id, created_at, total_cents, status FROM ` + schema + `.orders
WHERE customer_id = $1 ORDER BY created_at DESC LIMIT $2`
	b.qUpdate = `UPDATE ` + schema + `.customers SET visits = visits + 1, last_seen = now() WHERE id = $1`
	b.qLock = `SELECT id FROM ` + schema + `.customers WHERE id <= $1 ORDER BY id FOR UPDATE`
	if err := b.seed(ctx, schemaName(name)); err != nil {
		b.pgpool.Close()
		_ = b.closed.close()
		return nil, fmt.Errorf("seed postgres schema %s: %w", schema, err)
	}
	return b, nil
}

// schemaName makes "cascade_<name>" a plain lower-case identifier, so two
// upstreams on one database keep to their own tables.
func schemaName(name string) string {
	var sb strings.Builder
	sb.WriteString("cascade_")
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			sb.WriteRune(r)
		} else {
			sb.WriteByte('_')
		}
	}
	return sb.String()
}

// schemaMark is the comment on a schema cascade created, and drops when the
// upstream closes.
const schemaMark = "created by cascade for a database upstream; dropped when the run ends"

func (b *pgBackend) seed(ctx context.Context, name string) error {
	schema := b.schema
	return pgx.BeginFunc(ctx, b.pgpool, func(tx pgx.Tx) error {
		// A schema cascade made carries its mark, so one that a killed
		// run left is still cascade's to drop; one the user made (for a
		// role without CREATE on the database, say) is not.
		var existed bool
		var comment *string
		err := tx.QueryRow(ctx, `SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1`, name).Scan(&comment)
		switch {
		case err == nil:
			existed = true
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		b.created = !existed || (comment != nil && *comment == schemaMark)
		stmts := []struct {
			q    string
			args []any
			skip bool
		}{
			{q: `CREATE SCHEMA IF NOT EXISTS ` + schema},
			{q: `COMMENT ON SCHEMA ` + schema + ` IS '` + schemaMark + `'`, skip: !b.created},
			{q: `DROP TABLE IF EXISTS ` + schema + `.orders, ` + schema + `.customers`},
			{q: `CREATE TABLE ` + schema + `.customers (id bigint PRIMARY KEY, name text NOT NULL,
				visits bigint NOT NULL DEFAULT 0, last_seen timestamptz)`},
			{q: `CREATE TABLE ` + schema + `.orders (id bigserial PRIMARY KEY,
				customer_id bigint NOT NULL REFERENCES ` + schema + `.customers (id),
				created_at timestamptz NOT NULL, total_cents bigint NOT NULL, status text NOT NULL)`},
			{q: `INSERT INTO ` + schema + `.customers (id, name)
				SELECT i, 'customer-' || i FROM generate_series(1, $1::bigint) i`,
				args: []any{b.cfg.Customers}},
			{q: `INSERT INTO ` + schema + `.orders (customer_id, created_at, total_cents, status)
				SELECT i, $3::timestamptz - j * interval '1 day', (i * 7919 + j * 104729) % 50000 + 100,
				(ARRAY['placed', 'shipped', 'delivered', 'returned'])[1 + (i + j) % 4]
				FROM generate_series(1, $1::bigint) i, generate_series(1, $2::bigint) j`,
				args: []any{b.cfg.Customers, b.cfg.OrdersPerCustomer, seedEpoch}},
			{q: `CREATE INDEX ON ` + schema + `.orders (customer_id, created_at DESC)`},
			{q: `ANALYZE ` + schema + `.customers`},
			{q: `ANALYZE ` + schema + `.orders`},
		}
		for _, s := range stmts {
			if s.skip {
				continue
			}
			if _, err := tx.Exec(ctx, s.q, s.args...); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *pgBackend) history(ctx context.Context, w *work) ([]Order, error) {
	conn, st, err := acquire(ctx, &b.g, b.pgpool.Acquire)
	if err != nil {
		return nil, b.classify(ctx, st, err)
	}
	w.held = time.Now()
	defer conn.Release()

	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, b.classify(ctx, stageQuery, err)
	}
	defer func() {
		// A rollback after a failure must not wait on the expired ctx, nor
		// for long: pgx closes the connection if it cannot roll back.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = tx.Rollback(rctx)
		cancel()
	}()

	// One round trip: the timeouts for this transaction, the row update
	// that takes the customer's row lock, the added latency, the read.
	batch := &pgx.Batch{}
	batch.Queue(`SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $2, true)`,
		strconv.FormatInt(w.stmtTimeout.Milliseconds(), 10), strconv.FormatInt(w.lockTimeout.Milliseconds(), 10))
	batch.Queue(b.qUpdate, w.customer)
	if w.slow > 0 {
		batch.Queue(`SELECT pg_sleep($1)`, w.slow.Seconds())
	}
	batch.Queue(b.qHistory, w.customer, w.limit)
	locked := b.held.Load()
	if locked != nil && w.customer <= locked.through {
		// The server sends the batch's results together, so the wait
		// ends, as far as this side can tell, with the whole batch.
		w.lockWait.begin()
	}
	br := tx.SendBatch(ctx, batch)
	orders, st, err := b.runBatch(br, w)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		// The server sends a batch's results together, so a deadline that
		// ends the wait shows as the first step's error. When the fault
		// held this customer's row from before the batch was sent until
		// then, the update (which comes before the sleep and the read)
		// was still waiting for that lock. Until then means until its
		// transaction had rolled back, even if the fault was already
		// marked off: the row was still locked.
		if ctx.Err() != nil && locked != nil && w.customer <= locked.through && locked.lockedAt(endedAt(ctx)) {
			st = stageLock
		}
		return nil, b.classify(ctx, st, err)
	}
	w.lockWait.end()
	if err := tx.Commit(ctx); err != nil {
		return nil, b.classify(ctx, stageQuery, err)
	}
	return orders, nil
}

// runBatch reads the batch's results; the stage says which step failed.
func (b *pgBackend) runBatch(br pgx.BatchResults, w *work) ([]Order, stage, error) {
	if _, err := br.Exec(); err != nil { // set_config
		return nil, stageQuery, err
	}
	if _, err := br.Exec(); err != nil { // update: waits for the row lock
		return nil, stageLock, err
	}
	if w.slow > 0 {
		if _, err := br.Exec(); err != nil {
			return nil, stageQuery, err
		}
	}
	rows, err := br.Query()
	if err != nil {
		return nil, stageQuery, err
	}
	orders := make([]Order, 0, w.limit)
	for rows.Next() {
		var o Order
		if err := rows.Scan(&o.ID, &o.CreatedAt, &o.TotalCents, &o.Status); err != nil {
			rows.Close()
			return nil, stageQuery, err
		}
		o.CreatedAt = o.CreatedAt.UTC()
		orders = append(orders, o)
	}
	rows.Close()
	return orders, stageQuery, rows.Err()
}

func (b *pgBackend) classify(ctx context.Context, st stage, err error) error {
	de := &dbError{kind: errOther, stage: st, err: err}
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe):
		de.code = pe.Code
		switch pe.Code {
		case sqlstateLockNotAvailable:
			de.kind = errLockTimeout
		case sqlstateQueryCanceled:
			de.kind = errStatementTimeout
		}
	case errors.Is(err, puddle.ErrClosedPool):
		de.kind, de.code = errClosed, "pool_closed"
	default:
		if code, refused := refusedCode(err); code != "" {
			de.code = code
			if refused {
				de.kind = errRefused
			}
		}
	}
	if st == stagePool && ctx.Err() != nil {
		de.kind = errPoolTimeout
	}
	return de
}

func (b *pgBackend) hold(ctx context.Context) (func(), error) {
	c, err := b.pgpool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	b.g.held.Add(1)
	return func() {
		c.Release()
		b.g.held.Add(-1)
	}, nil
}

// lock connects as another client would (a batch job, a migration) and
// locks the rows of customers 1..rows FOR UPDATE.
func (b *pgBackend) lock(ctx context.Context, rows int64) (func(), error) {
	conn, err := pgx.ConnectConfig(ctx, b.lockCfg)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (func(), error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return nil, errors.Join(err, conn.Close(cctx))
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fail(err)
	}
	if _, err := tx.Exec(ctx, b.qLock, rows); err != nil {
		return fail(err)
	}
	h := &heldRows{through: rows}
	b.held.Store(h)
	return func() {
		b.held.Store(nil)
		if b.beforeRollback != nil {
			b.beforeRollback()
		}
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tx.Rollback(cctx)
		h.freed.Store(time.Now().UnixNano())
		_ = conn.Close(cctx)
	}, nil
}

func (b *pgBackend) setRefused(on bool) {
	b.refused.Store(on)
	if on {
		// Close idle connections now and busy ones when released, so every
		// later request has to connect, and is refused.
		b.pgpool.Reset()
	}
}

func (b *pgBackend) pool() PoolStats {
	s := b.pgpool.Stat()
	return PoolStats{
		Size:      int(s.MaxConns()),
		Open:      int(s.TotalConns()),
		InUse:     int(s.AcquiredConns()),
		Idle:      int(s.IdleConns()),
		Waiting:   int(b.g.waiting.Load()),
		Held:      int(b.g.held.Load()),
		WaitCount: s.EmptyAcquireCount(),
		WaitTime:  s.EmptyAcquireWaitTime(),
	}
}

// close drops what the upstream made on the server (its schema, or its
// tables when the schema was there before), then closes the pool.
func (b *pgBackend) close() error {
	err := b.unseed()
	b.pgpool.Close()
	return errors.Join(err, b.closed.close())
}

// unseedTimeout bounds the drop at close: it waits for the transactions of
// requests still in flight (each bounded by the upstream's deadline).
const unseedTimeout = 10 * time.Second

func (b *pgBackend) unseed() error {
	ctx, cancel := context.WithTimeout(context.Background(), unseedTimeout)
	defer cancel()
	q := `DROP TABLE IF EXISTS ` + b.schema + `.orders, ` + b.schema + `.customers`
	if b.created {
		q = `DROP SCHEMA IF EXISTS ` + b.schema + ` CASCADE`
	}
	if _, err := b.pgpool.Exec(ctx, q); err != nil {
		return fmt.Errorf("remove schema %s from the server: %w", b.schema, err)
	}
	return nil
}

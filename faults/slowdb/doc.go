// Package slowdb is a fake upstream backed by a real database: an
// order-history service whose requests run real queries through a bounded
// connection pool, with database faults that can be switched on and off
// while it serves. It exists to make the timeout cascade visible: the
// database's own timeouts, the service's deadline and the gateway's timeout
// each fail in their own way, and every answer says which one decided it.
//
//	HTTP request ──► Upstream.ServeHTTP
//	                  │ work deadline = min(upstream_timeout, X-Cascade-Deadline-Ms)
//	                  ▼
//	             pool acquire ────── wait past the deadline ──► 504 upstream_timeout
//	                  │                                          (pool_exhaustion)
//	                  ▼
//	   postgres: BEGIN; SET LOCAL statement_timeout, lock_timeout
//	             UPDATE customers … (row lock) ── lock_timeout ─► 503 db_timeout 55P03
//	             [pg_sleep: slow_query]     ── statement_timeout ► 503 db_timeout 57014
//	             SELECT order history; COMMIT
//	   sqlite:   [cascade_sleep: slow_query] ─ statement deadline ► 503 db_timeout SQLITE_INTERRUPT
//	             SELECT order history
//	             BEGIN IMMEDIATE (write lock) ── busy_timeout ──► 503 db_timeout SQLITE_BUSY
//	             UPDATE customers …; COMMIT
//	                  │
//	                  ▼
//	             200 JSON; refused / closed pool ──────────────► 503 db_error
//	             client left, propagate_cancel set ────────────► 499 client_gone
//
// Faults (see Kinds): slow_query, lock_contention, pool_exhaustion,
// statement_timeout, connection_refused. Each is a parameter struct that a
// scenario decodes; Upstream.Inject starts it and Injection.Stop ends it.
//
// The embedded default, SQLite through modernc.org/sqlite (no cgo), needs
// nothing installed: a temporary file is created, seeded and put in WAL
// mode. PostgreSQL is used through pgx's pool when a DSN is given.
//
// What the upstream observes goes out three ways: Stats (counters, fault
// effects, the pool now), Samples (the pool sampled every sample_interval on
// the run's clock) and events into the event.Sink it was given:
// db.fault.start and db.fault.stop (the database's side of a fault: rows
// locked, connections held; the run's timeline emits fault.start and
// fault.stop itself), and, aggregated once per second rather than per request,
// db.timeout (count, codes, and max_wait_ms: the longest a timed-out
// request waited for its connection, after which the database's timer
// started), db.pool_exhausted and work.orphaned.
package slowdb

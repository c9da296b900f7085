package pgtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestStartQueryStop(t *testing.T) {
	s := Start(t)
	if s.Port <= 0 || s.Port >= 32768 {
		t.Fatalf("port %d is not below 32768", s.Port)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, err := s.CreateDatabase(ctx, "pgtest_db")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var db string
	var one int
	if err := conn.QueryRow(ctx, "SELECT current_database(), 1").Scan(&db, &one); err != nil {
		t.Fatal(err)
	}
	if db != "pgtest_db" || one != 1 {
		t.Fatalf("got %q %d", db, one)
	}
	// Dropped with a session still on it, the name can be created again:
	// what a test run twice on one cluster needs.
	if err := s.DropDatabase(ctx, "pgtest_db"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateDatabase(ctx, "pgtest_db"); err != nil {
		t.Fatal(err)
	}
	if err := s.DropDatabase(ctx, "pgtest_db"); err != nil {
		t.Fatal(err)
	}
	if err := s.DropDatabase(ctx, "pgtest_db"); err != nil {
		t.Fatalf("a database that is not there: %v", err)
	}
	_ = conn.Close(ctx) // its session was ended by the drop
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Fatalf("directory %s still exists after Stop: %v", s.Dir, err)
	}
	// The server is gone: connecting now must fail.
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	if c, err := pgx.Connect(cctx, s.DSN); err == nil {
		_ = c.Close(cctx)
		t.Fatal("server still answers after Stop")
	}
}

func TestShellQuote(t *testing.T) {
	got := shellQuote([]string{"/bin/pg_ctl", "-o", "-c a=b", "it's"})
	want := `'/bin/pg_ctl' '-o' '-c a=b' 'it'\''s'`
	if got != want {
		t.Fatalf("got %s want %s", got, want)
	}
}

// Package pgtest starts a throwaway PostgreSQL cluster on loopback for tests:
// initdb into a temporary directory, pg_ctl start on 127.0.0.1 with a free
// port below 32768 and the unix socket inside that directory, and on Stop a
// fast shutdown and removal of the directory. Nothing is shared with a system
// cluster, and nothing is left behind.
//
// The server binaries come from PATH or from Debian's
// /usr/lib/postgresql/<version>/bin. PostgreSQL refuses to run as root, so
// when the test runs as root the server runs as the "postgres" user through
// runuser (or su).
//
// A test that needs PostgreSQL calls Start (one cluster per test) or shares
// one cluster from TestMain with Launch. Where the binaries are missing the
// test skips with a message saying what to install, unless
// CASCADE_REQUIRE_POSTGRES=1 is set (CI sets it), in which case it fails: an
// all-skipped run must not look green.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// RequireEnv names the environment variable that turns a skip into a failure.
const RequireEnv = "CASCADE_REQUIRE_POSTGRES"

// ErrUnavailable reports that no PostgreSQL server binaries (or no user to run
// them as) were found on this machine.
var ErrUnavailable = errors.New("pgtest: PostgreSQL server binaries not found (apt-get install postgresql)")

// Server is a running throwaway cluster.
type Server struct {
	// DSN connects to the "postgres" database as the superuser "postgres"
	// over TCP on 127.0.0.1, without a password (trust authentication).
	DSN string
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Dir holds the data directory, the socket and the server log.
	Dir string

	bin    string   // directory with initdb and pg_ctl
	asUser []string // command prefix that runs a program as the postgres user; empty when not root
	data   string

	stopOnce sync.Once
	stopErr  error
}

// Required reports whether a missing PostgreSQL must fail the test instead of
// skipping it.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Start launches a cluster for one test and stops it at the test's cleanup.
// It skips the test when PostgreSQL is not installed, or fails it when
// CASCADE_REQUIRE_POSTGRES=1.
func Start(t testing.TB) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := Launch(ctx)
	if errors.Is(err, ErrUnavailable) && !Required() {
		t.Skipf("%v; set %s=1 to make this a failure", err, RequireEnv)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return s
}

// Launch initialises and starts a cluster. The caller must call Stop. It
// returns an error wrapping ErrUnavailable when the binaries are missing.
func Launch(ctx context.Context) (*Server, error) {
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	asUser, owner, err := runAs()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "cascade-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if owner != nil {
		if err := os.Chown(dir, owner.uid, owner.gid); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: give %s to the postgres user: %w", dir, err)
		}
	}
	s := &Server{Dir: dir, bin: bin, asUser: asUser, data: filepath.Join(dir, "data")}
	if err := s.run(ctx, "initdb", "-D", s.data, "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	// A port chosen by probing can be taken between the probe and the
	// server's bind; try a few before giving up.
	var lastErr error
	for attempt := range 5 {
		port, err := freePort(attempt)
		if err != nil {
			lastErr = err
			continue
		}
		if lastErr = s.start(ctx, port); lastErr == nil {
			return s, nil
		}
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

func (s *Server) start(ctx context.Context, port int) error {
	opts := strings.Join([]string{
		"-c listen_addresses=127.0.0.1",
		"-p " + strconv.Itoa(port),
		"-k " + s.Dir,
		// Durability is worthless for a throwaway cluster and costs the
		// shared machine disk flushes.
		"-c fsync=off",
		"-c synchronous_commit=off",
		"-c full_page_writes=off",
		"-c max_connections=200",
	}, " ")
	err := s.run(ctx, "pg_ctl", "start", "-D", s.data, "-w", "-t", "60",
		"-l", filepath.Join(s.Dir, "server.log"), "-o", opts)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
		return fmt.Errorf("%w\nserver log:\n%s", err, tail(log, 2000))
	}
	s.Port = port
	s.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	// pg_ctl -w has already waited for the server to accept connections;
	// one query proves it answers on the TCP address we hand out.
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(pctx, s.DSN)
	if err != nil {
		_ = s.run(context.Background(), "pg_ctl", "stop", "-D", s.data, "-m", "immediate", "-w")
		return fmt.Errorf("pgtest: server started but does not answer on %s: %w", s.DSN, err)
	}
	return conn.Close(pctx)
}

// CreateDatabase creates a fresh database and returns a DSN for it, so tests
// sharing one cluster do not see each other's tables.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database %q: %w", name, err)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, name), nil
}

// DropDatabase removes a database CreateDatabase made, ending the sessions
// still connected to it, so a test that creates a database under a fixed
// name can run again (go test -count=2) on a cluster that outlives it.
// A database that is not there is no error.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgtest: drop database %q: %w", name, err)
	}
	return nil
}

// Stop shuts the server down and removes its directory. Calling it again
// returns the first call's result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Server) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// "fast" rolls back open transactions and disconnects clients: a test
	// that leaked a connection must not hang its cleanup.
	err := s.run(ctx, "pg_ctl", "stop", "-D", s.data, "-m", "fast", "-w", "-t", "30")
	if err != nil {
		err = errors.Join(err, s.run(ctx, "pg_ctl", "stop", "-D", s.data, "-m", "immediate", "-w", "-t", "30"))
	}
	if rmErr := os.RemoveAll(s.Dir); rmErr != nil {
		err = errors.Join(err, rmErr)
	}
	return err
}

// run executes one of the server's programs as the postgres user.
func (s *Server) run(ctx context.Context, prog string, args ...string) error {
	argv := append([]string{filepath.Join(s.bin, prog)}, args...)
	switch {
	case len(s.asUser) > 0 && filepath.Base(s.asUser[0]) == "su":
		argv = append(append([]string(nil), s.asUser...), shellQuote(argv))
	case len(s.asUser) > 0:
		argv = append(append([]string(nil), s.asUser...), argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = s.Dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// pg_ctl start leaves the postmaster running with these pipes as its
	// stdout/stderr unless -l redirects them (it does); WaitDelay stops a
	// stray inherited pipe from blocking us forever regardless.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgtest: %s %s: %w\n%s", prog, strings.Join(args, " "), err, tail(out.Bytes(), 2000))
	}
	return nil
}

// findBinDir returns the directory holding initdb and pg_ctl: PATH first,
// then the newest /usr/lib/postgresql/<version>/bin (Debian keeps the server
// binaries off PATH).
func findBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	return "", ErrUnavailable
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

type ids struct{ uid, gid int }

// runAs returns the command prefix that runs a program as the postgres user
// when we are root (PostgreSQL refuses to run as root), and that user's ids.
func runAs() ([]string, *ids, error) {
	if os.Geteuid() != 0 {
		return nil, nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, nil, fmt.Errorf("%w: running as root and there is no postgres user to run the server as", ErrUnavailable)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if p, err := exec.LookPath("runuser"); err == nil {
		return []string{p, "-u", "postgres", "--"}, &ids{uid, gid}, nil
	}
	if p, err := exec.LookPath("su"); err == nil {
		// su takes one shell command string; run() quotes it.
		return []string{p, "postgres", "-s", "/bin/sh", "-c"}, &ids{uid, gid}, nil
	}
	return nil, nil, fmt.Errorf("%w: running as root and neither runuser nor su is available", ErrUnavailable)
}

// freePort finds a port below 32768 that nothing listens on: the kernel's
// port 0 hands out ephemeral ports (32768-60999), which the load generator's
// client sockets use and could collide with. The start point depends on the
// process id so concurrent test binaries probe different ranges.
func freePort(attempt int) (int, error) {
	base := 20000 + (os.Getpid()*7+attempt*997)%12000
	for i := range 200 {
		port := 20000 + (base-20000+i)%12700
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		_ = l.Close()
		return port, nil
	}
	return 0, errors.New("pgtest: no free port found below 32768")
}

// shellQuote joins argv into one /bin/sh command line, each word in single
// quotes.
func shellQuote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

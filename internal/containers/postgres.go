package containers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresMajor is the PostgreSQL major version the image is assembled from:
// Debian 12's.
const PostgresMajor = 15

const (
	pgUID       = 999
	pgData      = "/var/lib/postgresql/data"
	pgSocketDir = "/var/run/postgresql"
	pgEntry     = "/usr/local/bin/cascade-postgres"
)

// ErrPostgresNotInstalled reports that the PostgreSQL server files the image
// is assembled from are not on this machine.
var ErrPostgresNotInstalled = errors.New("PostgreSQL server files not installed")

// pgEntrypoint runs initdb on first start (trust auth: this is a local test
// database on 127.0.0.1 only) and then postgres in the foreground. Durability
// is off: the data lives on a tmpfs and dies with the container.
const pgEntrypoint = `#!/bin/sh
set -eu
PGBIN=/usr/lib/postgresql/%[1]d/bin
: "${PGDATA:=%[2]s}"
: "${PGPORT:=5432}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	"$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust --encoding=UTF8 --locale=C --no-sync --no-instructions >&2
fi
echo "cascade: starting postgres on 127.0.0.1:$PGPORT" >&2
exec "$PGBIN/postgres" -D "$PGDATA" -p "$PGPORT" \
	-c listen_addresses=127.0.0.1 -c unix_socket_directories=%[3]s \
	-c fsync=off -c full_page_writes=off -c synchronous_commit=off -c jit=off "$@"
`

// postgresRootfs assembles PostgreSQL from Debian's installed packages
// (postgresql-15, which apt installed with all its library dependencies).
func postgresRootfs(ctx context.Context) (*rootfs, error) {
	lib := fmt.Sprintf("/usr/lib/postgresql/%d", PostgresMajor)
	share := fmt.Sprintf("/usr/share/postgresql/%d", PostgresMajor)
	if _, err := os.Stat(lib + "/bin/postgres"); err != nil {
		return nil, fmt.Errorf("%w: %s/bin/postgres: %v (apt-get install -y --no-install-recommends postgresql-%d)", ErrPostgresNotInstalled, lib, err, PostgresMajor)
	}
	r := newRootfs()
	for _, b := range []string{"postgres", "initdb", "pg_ctl", "pg_isready", "psql"} {
		if err := r.addHost(lib+"/bin/"+b, nil); err != nil {
			return nil, err
		}
	}
	// bitcode is for JIT (off) and pgxs for building extensions: 26 MB unused.
	skipLib := func(p string) bool {
		b := path.Base(p)
		return b == "bitcode" || b == "pgxs" || strings.HasPrefix(b, "llvmjit")
	}
	if err := r.addHost(lib+"/lib", skipLib); err != nil {
		return nil, err
	}
	if err := r.addHost(share, func(p string) bool { return path.Base(p) == "man" }); err != nil {
		return nil, err
	}
	// Debian builds PostgreSQL against the system time zone database.
	if err := r.addHost("/usr/share/zoneinfo", func(p string) bool { return path.Base(p) == "right" }); err != nil {
		return nil, err
	}
	// initdb starts "postgres --boot" through popen, which needs /bin/sh,
	// and lists locales with `locale -a` to import them as collations.
	for _, p := range []string{"/bin/sh", "/usr/bin/locale", "/usr/lib/locale/C.utf8"} {
		if _, err := os.Lstat(p); err != nil && p == "/usr/lib/locale/C.utf8" {
			continue // optional: without it PostgreSQL has C and ICU collations only
		}
		if err := r.addHost(p, nil); err != nil {
			return nil, err
		}
	}
	if err := r.addELFLibraries(ctx); err != nil {
		return nil, err
	}
	passwd, group := passwdFiles("postgres", pgUID)
	for _, f := range []struct {
		p    string
		data []byte
		mode int64
	}{
		{"/etc/passwd", passwd, 0o644},
		{"/etc/group", group, 0o644},
		{"/etc/nsswitch.conf", []byte("passwd: files\ngroup: files\nhosts: files\n"), 0o644},
		{pgEntry, fmt.Appendf(nil, pgEntrypoint, PostgresMajor, pgData, pgSocketDir), 0o755},
	} {
		if err := r.addFile(f.p, f.data, f.mode, 0, 0); err != nil {
			return nil, err
		}
	}
	for _, dir := range []struct {
		p        string
		mode     int64
		uid, gid int
	}{
		{"/tmp", 0o1777, 0, 0},
		{"/var/lib/postgresql", 0o755, pgUID, pgUID},
		{pgData, 0o700, pgUID, pgUID},
		{pgSocketDir, 0o2775, pgUID, pgUID},
	} {
		if err := r.addDir(dir.p, dir.mode, dir.uid, dir.gid); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// BuildPostgresImage returns the PostgreSQL image cascade/postgres:<hash>,
// importing a root filesystem assembled from this machine's Debian
// PostgreSQL files unless an image with the same hash exists.
func (d *Docker) BuildPostgresImage(ctx context.Context) (Image, error) {
	start := time.Now()
	r, err := postgresRootfs(ctx)
	if err != nil {
		return Image{}, err
	}
	changes := []string{
		"USER postgres",
		"ENV PGDATA=" + pgData,
		"ENV TZ=UTC",
		fmt.Sprintf("ENV PATH=/usr/lib/postgresql/%d/bin:/usr/bin:/bin", PostgresMajor),
		fmt.Sprintf(`ENTRYPOINT [%q]`, pgEntry),
		"LABEL " + LabelImage + "=postgres",
	}
	return d.buildRootfsImage(ctx, start, "cascade/postgres", "postgres-"+strconv.Itoa(PostgresMajor), r, changes)
}

// PostgresSpec describes a PostgreSQL container.
type PostgresSpec struct {
	// Name within the run; zero means "postgres".
	Name string
	// Port is where PostgreSQL listens on 127.0.0.1; required, 1..MaxPort.
	// [FreePort] picks one.
	Port int
	// Settings are extra server settings, passed as -c name=value
	// (e.g. max_connections=20).
	Settings map[string]string
	// StartupTimeout bounds initdb plus start; zero means DefaultStartupTimeout.
	StartupTimeout time.Duration
}

// Postgres is a running PostgreSQL container.
type Postgres struct {
	*Container
	// Image is the image it runs, with its build time.
	Image Image
	// Port is where it listens on 127.0.0.1.
	Port int
	// DSN connects as the superuser postgres to database postgres (trust auth).
	DSN string
}

var settingName = regexp.MustCompile(`^[a-z_][a-z0-9_.]*$`)

// RunPostgres builds (or reuses) the PostgreSQL image and starts it for run
// runID on 127.0.0.1:s.Port with host networking; it returns once a pgx
// connection from this host succeeds. The data directory is a tmpfs.
func (d *Docker) RunPostgres(ctx context.Context, runID string, s PostgresSpec) (*Postgres, error) {
	if s.Name == "" {
		s.Name = "postgres"
	}
	if s.Port < 1 || s.Port > MaxPort {
		return nil, fmt.Errorf("%w: postgres %s: port %d outside 1..%d (use FreePort)", ErrInvalidSpec, s.Name, s.Port, MaxPort)
	}
	keys := slices.Sorted(maps.Keys(s.Settings))
	var args []string
	for _, k := range keys {
		v := s.Settings[k]
		if !settingName.MatchString(k) || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("%w: postgres %s: bad setting %q=%q", ErrInvalidSpec, s.Name, k, v)
		}
		args = append(args, "-c", k+"="+v)
	}
	img, err := d.BuildPostgresImage(ctx)
	if err != nil {
		return nil, err
	}
	timeout := s.StartupTimeout
	if timeout == 0 {
		timeout = DefaultStartupTimeout
	}
	c, err := d.Run(ctx, runID, Spec{
		Name:           s.Name,
		Role:           "postgres",
		Image:          img.Ref,
		Cmd:            args,
		Env:            map[string]string{"PGPORT": strconv.Itoa(s.Port)},
		Port:           s.Port,
		WaitLog:        "database system is ready to accept connections",
		StartupTimeout: timeout,
		Tmpfs:          map[string]string{pgData: fmt.Sprintf("rw,mode=0700,uid=%d,gid=%d", pgUID, pgUID)},
		// SIGINT is PostgreSQL's fast shutdown; the default SIGTERM waits for
		// clients to disconnect, which a run's pool may never do.
		StopSignal: "SIGINT",
	})
	if err != nil {
		return nil, err
	}
	p := &Postgres{
		Container: c,
		Image:     img,
		Port:      s.Port,
		DSN:       fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.Port),
	}
	// The log line says the server is up; a connection from this host says
	// it is up where the run will dial (another process could hold the port).
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	if err := pingUntil(pctx, p.DSN); err != nil {
		tail := logTail(ctx, c.c, 20)
		_ = c.Terminate(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("postgres %s on 127.0.0.1:%d: %w\ncontainer log tail:\n%s", c.Name, s.Port, err, tail)
	}
	p.Ready += time.Since(start)
	return p, nil
}

func pingUntil(ctx context.Context, dsn string) error {
	var last error
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(context.WithoutCancel(ctx))
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not accepting connections: %w (last error: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

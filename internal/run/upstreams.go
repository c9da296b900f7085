package run

import (
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/faults/slowdb"
	"github.com/cascadehq/cascade/internal/containers"
	"github.com/cascadehq/cascade/internal/event"
)

// The run's outside resources for upstreams: PostgreSQL containers for
// database upstreams that ask for one, and containerised replicas (cascade's
// own binary in a FROM scratch image, or an image the scenario names).
// Everything started here is removed by close, on every exit path; labels
// let `cascade cleanup` find what a killed run left.
//
//	plan.Upstreams ─▶ prepare ─┬─ database.container ─▶ RunPostgres ─▶ DSN
//	                           └─ container ─▶ image ─▶ Spawn ─▶ Process per replica

// EnvUpstreamBinary names a static cascade binary to put in upstream images,
// when the running one is not static (or is a test binary).
const EnvUpstreamBinary = "CASCADE_UPSTREAM_BINARY"

// containerStartTimeout bounds one container's start.
const containerStartTimeout = 60 * time.Second

type upstreamEnv struct {
	runID  string
	seed   uint64
	sink   event.Sink
	clock  *event.Clock
	binary string // from Options.UpstreamBinary
	// notice tells the user what a slow setup step is doing (see step);
	// nil says nothing.
	notice func(msg string)

	mu       sync.Mutex
	docker   *containers.Docker
	image    string // cascade's upstream image, built once
	rng      *rand.Rand
	given    map[int]bool // ports freePort handed out
	cleanups []func(context.Context) error
}

func newUpstreamEnv(name string, seed uint64, sink event.Sink, clock *event.Clock, binary string) *upstreamEnv {
	return &upstreamEnv{runID: runID(name), seed: seed, sink: sink, clock: clock, binary: binary,
		rng: rand.New(rand.NewPCG(seed, hash("ports", name)))}
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// runID names the run's containers: the scenario, the time and the PID, so
// two runs of one scenario never collide and `cascade cleanup --run` can
// pick one.
func runID(name string) string {
	n := unsafeName.ReplaceAllString(name, "-")
	if len(n) > 32 {
		n = n[:32]
	}
	return fmt.Sprintf("%s-%s-%d", n, time.Now().Format("20060102-150405"), os.Getpid())
}

// runIDForm is the end of every id runID makes: the time and the PID.
var runIDForm = regexp.MustCompile(`-([0-9]{8}-[0-9]{6})-([0-9]+)$`)

// runProcess reads back the PID of the process that ran run id, and when
// the id was made; ok is false for an id runID did not make.
func runProcess(id string) (pid int, made time.Time, ok bool) {
	m := runIDForm.FindStringSubmatch(id)
	if m == nil {
		return 0, time.Time{}, false
	}
	made, err := time.ParseInLocation("20060102-150405", m[1], time.Local)
	pid, perr := strconv.Atoi(m[2])
	if err != nil || perr != nil || pid <= 0 {
		return 0, time.Time{}, false
	}
	return pid, made, true
}

func hash(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// Setup steps that take longer than slowStep say so, and then every
// stillEvery: a first containerised run can spend minutes building a static
// binary and seconds on images and containers, and said nothing at all
// until the load started or the 60 s readiness wait gave up.
var (
	slowStep   = time.Second
	stillEvery = 10 * time.Second
)

// step runs fn; if it is still running after slowStep, it tells the user
// what it is doing, then again every stillEvery, and how it ended. A quick
// step prints nothing.
func (e *upstreamEnv) step(what string, fn func() error) error {
	if e.notice == nil {
		return fn()
	}
	start := time.Now()
	done := make(chan struct{})
	said := make(chan bool, 1)
	go func() {
		spoke := false
		defer func() { said <- spoke }()
		t := time.NewTimer(slowStep)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if !spoke {
				e.notice(what + "...")
				spoke = true
			} else {
				e.notice(fmt.Sprintf("still %s (%s so far)", what, time.Since(start).Round(time.Second)))
			}
			t.Reset(stillEvery)
		}
	}()
	err := fn()
	close(done)
	if <-said {
		took := time.Since(start).Round(10 * time.Millisecond)
		if err != nil {
			e.notice(fmt.Sprintf("%s: failed after %s", what, took))
		} else {
			e.notice(fmt.Sprintf("%s: done in %s", what, took))
		}
	}
	return err
}

// needsDocker reports whether any upstream needs a container.
func needsDocker(ups []faults.UpstreamConfig) bool {
	for _, u := range ups {
		if u.Container != nil || (u.Database != nil && u.Database.Container) {
			return true
		}
	}
	return false
}

func (e *upstreamEnv) connect(ctx context.Context) (*containers.Docker, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.docker != nil {
		return e.docker, nil
	}
	containers.SilenceLibraryBanner()
	d, err := containers.Connect(ctx, containers.WithEvents(e.sink, e.clock), containers.WithLogf(func(string, ...any) {}))
	if err != nil {
		if errors.Is(err, containers.ErrNoDocker) {
			return nil, fmt.Errorf("this scenario runs containers and needs Docker: %w", err)
		}
		return nil, err
	}
	e.docker = d
	return d, nil
}

func (e *upstreamEnv) onClose(f func(context.Context) error) {
	e.mu.Lock()
	e.cleanups = append(e.cleanups, f)
	e.mu.Unlock()
}

// close removes everything the environment started, newest first. It runs
// after a Ctrl-C cancelled the run's context, so it never uses that one:
// the graceful stops (a container's stop signal and grace period) wait
// until teardown ends (a second Ctrl-C), and the removal that follows has
// a fresh context of its own, so a hurried teardown still removes
// everything.
func (e *upstreamEnv) close(teardown context.Context) error {
	ctx, cancel := context.WithTimeout(teardown, 2*time.Minute)
	defer cancel()
	e.mu.Lock()
	cl := e.cleanups
	e.cleanups = nil
	d := e.docker
	e.mu.Unlock()
	var errs []error
	for i := len(cl) - 1; i >= 0; i-- {
		if err := cl[i](ctx); err != nil && ctx.Err() == nil {
			errs = append(errs, err) // a hurried stop's error: the removal below covers it
		}
	}
	if d != nil {
		// Force-removes anything still under this run's label: what a
		// failed start left, or a hurry cut short.
		rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
		defer rcancel()
		if _, err := d.Cleanup(rctx, e.runID); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, d.Close())
	}
	return errors.Join(errs...)
}

// prepare turns an upstream's container settings into what faults needs: a
// DSN for a containerised PostgreSQL, a Spawn for containerised replicas.
func (e *upstreamEnv) prepare(ctx context.Context, uc faults.UpstreamConfig) (faults.UpstreamConfig, error) {
	if db := uc.Database; db != nil && db.Container && db.DSN == "" {
		d, err := e.connect(ctx)
		if err != nil {
			return uc, fmt.Errorf("upstream %s: %w", uc.Name, err)
		}
		port, err := e.freePort()
		if err != nil {
			return uc, err
		}
		// Room for every replica's pool and the lock_contention connection.
		maxConns := max(20, uc.Replicas*(db.WithDefaults().PoolSize+2)+5)
		var pg *containers.Postgres
		err = e.step(fmt.Sprintf("upstream %s: starting PostgreSQL in a container on 127.0.0.1:%d", uc.Name, port), func() (err error) {
			pg, err = d.RunPostgres(ctx, e.runID, containers.PostgresSpec{Name: "pg-" + safe(uc.Name), Port: port,
				Settings: map[string]string{"max_connections": strconv.Itoa(maxConns)}})
			return err
		})
		if err != nil {
			return uc, fmt.Errorf("upstream %s: start PostgreSQL: %w", uc.Name, err)
		}
		e.onClose(pg.Terminate)
		c := *db
		c.DSN = pg.DSN
		uc.Database = &c
	}
	if uc.Container != nil {
		cc := *uc.Container
		if _, err := e.connect(ctx); err != nil {
			return uc, fmt.Errorf("upstream %s: %w", uc.Name, err)
		}
		if cc.Image == "" {
			if _, err := e.cascadeImage(ctx); err != nil {
				return uc, fmt.Errorf("upstream %s: %w", uc.Name, err)
			}
		}
		behaviour := uc.Behaviour
		name := uc.Name
		uc.Spawn = func(ctx context.Context, index int, replica string) (faults.Process, error) {
			return e.spawn(ctx, name, index, replica, cc, behaviour)
		}
	}
	return uc, nil
}

// reserve keeps port from freePort: a fixed port something of the run
// binds later.
func (e *upstreamEnv) reserve(port int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.given == nil {
		e.given = map[int]bool{}
	}
	e.given[port] = true
}

// freePort picks a free port for a container, never one it already gave
// this run (or reserved): replicas start concurrently, and a port handed
// out is free until its container binds it.
func (e *upstreamEnv) freePort() (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.given == nil {
		e.given = map[int]bool{}
	}
	for {
		p, err := containers.FreePort(e.rng)
		if err != nil {
			return 0, err
		}
		if !e.given[p] {
			e.given[p] = true
			return p, nil
		}
	}
}

func safe(s string) string { return unsafeName.ReplaceAllString(s, "-") }

// spawn starts one replica's container and waits until it serves.
func (e *upstreamEnv) spawn(ctx context.Context, upstream string, index int, replica string, cc faults.ContainerConfig, b faults.Behaviour) (faults.Process, error) {
	d, err := e.connect(ctx)
	if err != nil {
		return nil, err
	}
	port := cc.Port
	if port == 0 {
		if port, err = e.freePort(); err != nil {
			return nil, err
		}
	}
	spec := containers.Spec{
		Name:           fmt.Sprintf("%s-%d", safe(upstream), index),
		Role:           "upstream",
		Port:           port,
		StartupTimeout: containerStartTimeout,
		StopSignal:     "SIGTERM",
		Labels:         map[string]string{"io.cascade.replica": replica},
	}
	if cc.Image == "" {
		img, err := e.cascadeImage(ctx)
		if err != nil {
			return nil, err
		}
		spec.Image = img
		spec.Cmd, err = upstreamArgs(upstream, index, port, e.seed, b)
		if err != nil {
			return nil, err
		}
		spec.WaitLog = UpstreamReadyLine
	} else {
		spec.Image = cc.Image
		spec.Cmd = cc.Cmd
		spec.Env = map[string]string{}
		for k, v := range cc.Env {
			spec.Env[k] = v
		}
		if cc.PortEnv != "" {
			spec.Env[cc.PortEnv] = strconv.Itoa(port)
		}
		spec.WaitHTTP = cc.Ready
		if spec.WaitHTTP == "" {
			spec.WaitHTTP = "/"
		}
	}
	var c *containers.Container
	err = e.step(fmt.Sprintf("starting replica %s in a container (%s) on 127.0.0.1:%d", replica, spec.Image, port), func() (err error) {
		c, err = d.Run(ctx, e.runID, spec)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("replica %s: %w", replica, err)
	}
	p := &containerProcess{c: c}
	e.onClose(p.Close)
	return p, nil
}

// UpstreamReadyLine is what `cascade upstream` prints once it serves; the
// run waits for it before it sends a containerised replica any traffic.
const UpstreamReadyLine = "cascade upstream: serving"

// upstreamArgs is the command line of `cascade upstream` serving one replica
// with behaviour b.
func upstreamArgs(upstream string, index, port int, seed uint64, b faults.Behaviour) ([]string, error) {
	args := []string{"upstream", "--listen", "127.0.0.1:" + strconv.Itoa(port), "--name", upstream,
		"--index", strconv.Itoa(index), "--seed", strconv.FormatUint(seed, 10)}
	if !b.Latency.IsZero() {
		lat, err := json.Marshal(b.Latency) // JSON is YAML: --latency decodes it back
		if err != nil {
			return nil, err
		}
		args = append(args, "--latency", string(lat))
	}
	if b.Status != 0 {
		args = append(args, "--status", strconv.Itoa(b.Status))
	}
	if b.BodySize != 0 {
		args = append(args, "--body-size", strconv.FormatInt(b.BodySize.Bytes(), 10))
	}
	return args, nil
}

// cascadeImage builds (once per run, and cached by content across runs) the
// FROM scratch image holding a static cascade binary.
func (e *upstreamEnv) cascadeImage(ctx context.Context) (string, error) {
	e.mu.Lock()
	img, d := e.image, e.docker
	e.mu.Unlock()
	if img != "" {
		return img, nil
	}
	bin, err := staticBinary(ctx, e.binary, e.step)
	if err != nil {
		return "", err
	}
	var built containers.Image
	err = e.step("building the upstream image from "+bin, func() (err error) {
		built, err = d.BuildBinaryImage(ctx, "upstream", bin)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("build the upstream image: %w", err)
	}
	e.mu.Lock()
	e.image = built.Ref
	e.mu.Unlock()
	return built.Ref, nil
}

// staticBinary finds a cascade binary that can run on scratch: the one
// given, $CASCADE_UPSTREAM_BINARY, or the running one when it is a static
// cascade binary; otherwise it builds one from the module the working
// directory is in (CGO_ENABLED=0 go build).
func staticBinary(ctx context.Context, given string, step func(string, func() error) error) (string, error) {
	for _, cand := range []string{given, os.Getenv(EnvUpstreamBinary)} {
		if cand == "" {
			continue
		}
		if err := isStatic(cand); err != nil {
			return "", fmt.Errorf("upstream binary %s: %w", cand, err)
		}
		return cand, nil
	}
	if exe, err := os.Executable(); err == nil && !strings.HasSuffix(exe, ".test") && isStatic(exe) == nil &&
		strings.HasPrefix(filepath.Base(exe), "cascade") {
		return exe, nil
	}
	var out string
	err := step("building a static cascade binary for the upstream image (CGO_ENABLED=0 go build ./cmd/cascade; "+
		"the first build takes a minute or more; set "+EnvUpstreamBinary+" to skip it)", func() (err error) {
		out, err = buildStatic(ctx)
		return err
	})
	return out, err
}

func isStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("not an ELF executable: %v", err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return errors.New("dynamically linked; a FROM scratch image needs a static binary (CGO_ENABLED=0 go build ./cmd/cascade)")
		}
	}
	return nil
}

const modulePath = "github.com/cascadehq/cascade"

// buildStatic compiles cmd/cascade with CGO_ENABLED=0 into the user's cache
// directory, from the cascade module found above the working directory.
func buildStatic(ctx context.Context) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", fmt.Errorf("no static cascade binary for the upstream image: %w; build one (CGO_ENABLED=0 go build -o cascade ./cmd/cascade) and set %s", err, EnvUpstreamBinary)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "cascade")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Each build writes into a directory of its own, then renames its
	// binary into place: two runs building at once (CI jobs on one
	// machine) shared "cascade-static.tmp", and one could rename the
	// other's half-written file into place. The rename is atomic, so a run
	// sees the old binary or a whole new one.
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(dir, "cascade-static")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(tmp, "cascade"), "./cmd/cascade")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("CGO_ENABLED=0 go build ./cmd/cascade in %s: %v\n%s", root, err, b)
	}
	if err := os.Rename(filepath.Join(tmp, "cascade"), out); err != nil {
		return "", err
	}
	return out, nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module "+modulePath+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("the working directory is not inside the cascade module")
		}
		dir = parent
	}
}

// containerProcess drives a replica's container for the instance faults.
type containerProcess struct {
	c *containers.Container
}

var _ faults.Process = (*containerProcess)(nil)

func (p *containerProcess) Addr() string { return p.c.Addr }

// Kill stops the container at once (SIGKILL after no grace): the kernel
// resets its connections and its port refuses.
func (p *containerProcess) Kill(ctx context.Context) error { return p.c.Stop(ctx, 0) }

func (p *containerProcess) Start(ctx context.Context) error { return p.c.Start(ctx) }

func (p *containerProcess) Pause(ctx context.Context) error { return p.c.Pause(ctx) }

func (p *containerProcess) Resume(ctx context.Context) error { return p.c.Unpause(ctx) }

func (p *containerProcess) Close(ctx context.Context) error { return p.c.Terminate(ctx) }

// emitUpstreamStats records, for each database replica, what its database
// saw: the counters behind the db_timeout / upstream_timeout / db_error
// causes (pool waits, lock and statement timeouts, orphaned work).
func emitUpstreamStats(sink event.Sink, clock *event.Clock, ups []*faults.Upstream) {
	for _, u := range ups {
		for _, r := range u.Replicas() {
			db, ok := r.Backend().(*slowdb.Upstream)
			if !ok {
				continue
			}
			st := db.Stats()
			sink.Emit(event.Event{T: clock.Now(), Source: "upstream", Type: "upstream.database", Target: r.Name(), Attrs: map[string]any{
				"requests": st.Requests, "ok": st.OK, "db_timeouts": st.DBTimeouts, "db_errors": st.DBErrors,
				"upstream_timeouts": st.UpstreamTimeouts, "pool_waits": st.PoolWaits, "pool_timeouts": st.PoolTimeouts,
				"lock_timeouts": st.LockTimeouts, "statement_timeouts": st.StmtTimeouts, "refused": st.Refused,
				"orphaned": st.Orphaned, "pool_size": st.Pool.Size, "fault_effects": st.FaultEffects,
			}})
		}
	}
}

// Package containers starts the containers of a cascade run (fake upstreams,
// user-named replicas, PostgreSQL, third-party gateways) on the local Docker
// daemon through testcontainers-go, on a machine with no image registry and
// no bridge network.
//
//	binary on disk ──tar──▶ ImageBuild (FROM scratch) ──▶ cascade/<name>:<sha>
//	host packages ──ldd──▶ rootfs tar ──▶ ImageImport ──▶ cascade/postgres:<sha>
//	                                                     cascade/nginx:<sha> ...
//	image + Spec ──▶ provider.RunContainer (host network, labels
//	                 cascade.run=<id>, cascade.managed=true) ──▶ wait ──▶ *Container
//
// Every container uses host networking and listens on 127.0.0.1, so there is
// no port mapping: the port a process binds is the port the run dials.
// Images are content-addressed (the tag carries a hash of what went in), so
// building an unchanged image is a cheap inspect. Containers are found again
// only by their labels, so [Docker.Cleanup] removes exactly one run's
// containers and never anything it did not start.
//
// Only this package imports testcontainers-go: it is slow to compile, and the
// rest of cascade should not pay for it unless it starts containers.
package containers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"

	"github.com/cascadehq/cascade/internal/event"
)

// Labels put on every container this package starts. Cleanup selects by them
// and by nothing else.
const (
	LabelManaged = "cascade.managed"
	LabelRun     = "cascade.run"
	LabelRole    = "cascade.role"
	// LabelOwner is the process that started the container, as
	// owner.Process.String() writes it: `cascade cleanup` leaves the
	// containers of a process that still runs.
	LabelOwner = "cascade.owner"
)

// Environment variables this package sets for testcontainers-go when they are
// unset. Both are required on our machines: the reaper image cannot be pulled
// (there is no registry), and the machine image has /.dockerenv, so without
// the override testcontainers looks for the daemon's ports on the default
// gateway instead of loopback.
const (
	EnvRyukDisabled = "TESTCONTAINERS_RYUK_DISABLED"
	EnvHostOverride = "TESTCONTAINERS_HOST_OVERRIDE"
)

// DefaultDockerHost is where the daemon is looked for when DOCKER_HOST is unset.
const DefaultDockerHost = "unix:///var/run/docker.sock"

// ErrNoDocker reports that no Docker daemon answers. Tests skip on it (or
// fail when CASCADE_REQUIRE_DOCKER=1); the CLI prints it.
var ErrNoDocker = errors.New("docker daemon not reachable")

// ErrNotLoopback reports a daemon, or a published-ports host, that is not on
// this machine's loopback: cascade sends traffic only to 127.0.0.0/8.
var ErrNotLoopback = errors.New("docker host is not a loopback address")

// ErrImageMissing reports an image that is not present locally. There is no
// registry to pull from, so it must be built or loaded (docker load) first.
var ErrImageMissing = errors.New("image not present locally")

// Docker is a connection to the local Docker daemon. It is safe for
// concurrent use. Close it when done.
type Docker struct {
	provider *testcontainers.DockerProvider
	host     string // daemon URL, e.g. unix:///var/run/docker.sock
	logger   tclog.Logger
	envSet   []string
	events   event.Sink
	clock    *event.Clock
}

// EventSource is the Source of every event this package emits.
const EventSource = "containers"

// emit reports one lifecycle step (image built, container ready, paused,
// stopped, removed) on the run's clock.
func (d *Docker) emit(typ, target string, attrs map[string]any) {
	d.events.Emit(event.Event{T: d.clock.Now(), Source: EventSource, Type: typ, Target: target, Attrs: attrs})
}

// Option configures [Connect].
type Option func(*connectConfig)

type connectConfig struct {
	logger tclog.Logger
	events event.Sink
	clock  *event.Clock
}

// WithEvents emits lifecycle events (image.build, container.ready,
// container.start_failed, container.pause, container.unpause,
// container.stop, container.start, container.terminate, containers.cleanup)
// into sink, stamped on clock. By default they are discarded.
func WithEvents(sink event.Sink, clock *event.Clock) Option {
	return func(c *connectConfig) {
		if sink != nil && clock != nil {
			c.events, c.clock = sink, clock
		}
	}
}

// WithLogf routes testcontainers' progress lines (container created, waiting,
// ...) to logf. By default they are discarded: the run reports its own events.
func WithLogf(logf func(format string, args ...any)) Option {
	return func(c *connectConfig) {
		if logf != nil {
			c.logger = printfLogger(logf)
		}
	}
}

type printfLogger func(format string, args ...any)

func (f printfLogger) Printf(format string, args ...any) { f(format, args...) }

// Connect checks that a Docker daemon answers on a loopback address and
// returns a handle to it.
//
// It sets TESTCONTAINERS_RYUK_DISABLED=true and
// TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 in the process environment when they
// are unset (see [Docker.EnvSet]); testcontainers-go reads them once per
// process, so they must be in place before its first call. It refuses a
// DOCKER_HOST or host override that is not loopback before any traffic is sent
// there, and checks again what the provider resolved.
func Connect(ctx context.Context, opts ...Option) (*Docker, error) {
	d, err := connect(ctx, opts...)
	if err != nil && ctx.Err() != nil && !errors.Is(err, ErrNotLoopback) {
		// Interrupted, not absent: a cancelled ping must not send the user
		// off to start a dockerd that is running fine. (A refused,
		// non-loopback host stays refused whatever the context says.)
		return nil, ctx.Err()
	}
	return d, err
}

func connect(ctx context.Context, opts ...Option) (*Docker, error) {
	cfg := connectConfig{logger: tclog.NewNoopLogger(), events: event.Discard, clock: event.NewClock()}
	for _, o := range opts {
		o(&cfg)
	}
	envSet, err := setTestcontainersEnv()
	if err != nil {
		return nil, err
	}
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = DefaultDockerHost
	}
	if err := checkDaemonURL(host); err != nil {
		return nil, err
	}
	if err := checkPublishedHost(os.Getenv(EnvHostOverride)); err != nil {
		return nil, err
	}
	if u, err := url.Parse(host); err == nil && u.Scheme == "unix" {
		// Fail fast and clearly: testcontainers would otherwise probe several
		// other places and cache the failure for the life of the process.
		if _, err := os.Stat(u.Path); err != nil {
			return nil, noDocker(host, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Ask the daemon the user named, and only that one, with a bound: a
	// socket file left by a daemon that is gone, or a port nobody answers
	// on, made testcontainers move on to the next place it knows (the
	// default socket, a docker context) and run there without a word; and
	// a daemon that accepts and never answers held the run, and cleanup,
	// forever.
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := pingHost(cctx, host); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if cctx.Err() != nil {
			return nil, fmt.Errorf("%w: %s %w within %v (hung or overloaded?)", ErrNoDocker, host, ErrNoAnswer, connectTimeout)
		}
		return nil, noDocker(host, err)
	}

	provider, err := newProviderContext(cctx, cfg.logger)
	if err != nil {
		if ctx.Err() == nil && cctx.Err() != nil {
			return nil, fmt.Errorf("%w: %s %w within %v (hung or overloaded?)", ErrNoDocker, host, ErrNoAnswer, connectTimeout)
		}
		return nil, noDocker(host, err)
	}
	d := &Docker{provider: provider, host: provider.Client().DaemonHost(), logger: cfg.logger, envSet: envSet, events: cfg.events, clock: cfg.clock}
	if err := checkDaemonURL(d.host); err != nil {
		_ = provider.Close()
		return nil, err
	}
	if !sameDaemon(d.host, host) {
		_ = provider.Close()
		return nil, fmt.Errorf("%w: testcontainers chose the daemon at %s, not %s (check tc.host in ~/.testcontainers.properties and the current docker context)",
			ErrOtherDaemon, d.host, host)
	}
	published, err := provider.DaemonHost(ctx)
	if err != nil {
		_ = provider.Close()
		return nil, fmt.Errorf("resolve docker published host: %w", err)
	}
	if err := checkPublishedHost(published); err != nil {
		_ = provider.Close()
		return nil, err
	}
	if err := d.Ping(ctx); err != nil {
		_ = provider.Close()
		return nil, err
	}
	return d, nil
}

// ConnectTimeout bounds [Connect]'s first question to the daemon. A local
// daemon answers in milliseconds; one that has not answered by then is
// reported as not reachable rather than waited for.
const ConnectTimeout = 15 * time.Second

var connectTimeout = ConnectTimeout // tests shorten it

// ErrNoAnswer reports a daemon that accepted the connection but did not
// answer within [ConnectTimeout] (hung, or overloaded). It comes wrapped
// with [ErrNoDocker]; unlike an absent daemon, it may hold containers.
var ErrNoAnswer = errors.New("accepted the connection but did not answer")

// ErrOtherDaemon reports that testcontainers resolved a daemon other than
// the one DOCKER_HOST (or the default socket) names.
var ErrOtherDaemon = errors.New("docker daemon is not the one asked for")

// pingHost asks the daemon at host, and no other, whether it answers.
func pingHost(ctx context.Context, host string) error {
	cli, err := client.New(client.FromEnv, client.WithHost(host))
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = cli.Ping(ctx, client.PingOptions{})
	return err
}

// sameDaemon reports whether two daemon URLs name the same daemon.
func sameDaemon(a, b string) bool {
	norm := func(s string) string {
		u, err := url.Parse(s)
		if err != nil {
			return s
		}
		switch u.Scheme {
		case "unix":
			return "unix://" + path.Clean(u.Host+u.Path)
		case "http", "tcp":
			return "tcp://" + strings.ToLower(u.Host)
		}
		return u.Scheme + "://" + strings.ToLower(u.Host) + u.Path
	}
	return norm(a) == norm(b)
}

// Ping checks that the daemon answers now. (testcontainers' own Health
// answers from a per-process cache after the first success, so it cannot
// notice a daemon that went away.)
func (d *Docker) Ping(ctx context.Context) error {
	if _, err := d.provider.Client().Ping(ctx, client.PingOptions{}); err != nil {
		if ctx.Err() != nil {
			return ctx.Err() // the caller gave up; the daemon may be fine
		}
		return noDocker(d.host, err)
	}
	return nil
}

// SilenceLibraryBanner stops testcontainers-go from printing its
// "Connected to docker" banner (ten lines on stderr, once per process) through
// its process-wide default logger. It changes process-global state, so only
// main should call it, before [Connect].
func SilenceLibraryBanner() {
	tclog.SetDefault(tclog.NewNoopLogger())
}

// newProvider builds the provider the way PLATFORM.md requires: the default
// network is "host", so testcontainers never creates a bridge network.
// It recovers a panic because some testcontainers discovery paths panic when
// no daemon is found.
func newProvider(logger tclog.Logger) (p *testcontainers.DockerProvider, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("testcontainers: %v", r)
		}
	}()
	return testcontainers.NewDockerProvider(
		testcontainers.WithLogger(logger),
		testcontainers.WithDefaultBridgeNetwork("host"),
	)
}

// newProviderContext is newProvider bounded by ctx. testcontainers finds
// the daemon by asking it for its info without a context, so a daemon that
// accepts and never answers would hold Connect, and a Ctrl-C with it,
// forever. On ctx's end the discovery is left to finish on its own and its
// provider, if any, is closed.
func newProviderContext(ctx context.Context, logger tclog.Logger) (*testcontainers.DockerProvider, error) {
	type result struct {
		p   *testcontainers.DockerProvider
		err error
	}
	rc := make(chan result, 1)
	go func() {
		p, err := newProvider(logger)
		rc <- result{p, err}
	}()
	select {
	case r := <-rc:
		return r.p, r.err
	case <-ctx.Done():
		go func() {
			if r := <-rc; r.p != nil {
				_ = r.p.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

func noDocker(host string, cause error) error {
	return fmt.Errorf("%w at %s: start dockerd, see .ci/docker.sh: %v", ErrNoDocker, host, cause)
}

// Host is the daemon URL in use, e.g. unix:///var/run/docker.sock.
func (d *Docker) Host() string { return d.host }

// EnvSet lists the NAME=value settings Connect put into the environment
// because they were unset, so the caller can say so.
func (d *Docker) EnvSet() []string { return append([]string(nil), d.envSet...) }

// Close releases the client's connections. Containers keep running: stop them
// with [Container.Terminate] or [Docker.Cleanup].
func (d *Docker) Close() error { return d.provider.Close() }

// setTestcontainersEnv sets the two settings testcontainers needs here when
// the user has not chosen otherwise, and says which it set.
func setTestcontainersEnv() ([]string, error) {
	var set []string
	for _, kv := range [][2]string{{EnvRyukDisabled, "true"}, {EnvHostOverride, "127.0.0.1"}} {
		if _, ok := os.LookupEnv(kv[0]); ok {
			continue
		}
		if err := os.Setenv(kv[0], kv[1]); err != nil {
			return nil, fmt.Errorf("set %s: %w", kv[0], err)
		}
		set = append(set, kv[0]+"="+kv[1])
	}
	return set, nil
}

// checkDaemonURL accepts a unix socket or a tcp/http(s) URL whose host is a
// loopback literal. Names other than "localhost" are refused rather than
// resolved: resolving would itself be traffic we cannot vouch for.
func checkDaemonURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: cannot parse docker host %q: %v", ErrNotLoopback, raw, err)
	}
	switch u.Scheme {
	case "unix":
		return nil
	case "tcp", "http", "https":
		if isLoopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%w: docker host %q (cascade only talks to 127.0.0.0/8; unset DOCKER_HOST to use %s)", ErrNotLoopback, raw, DefaultDockerHost)
	default:
		return fmt.Errorf("%w: docker host %q has unsupported scheme %q (use unix:// or tcp://127.0.0.1)", ErrNotLoopback, raw, u.Scheme)
	}
}

// checkPublishedHost checks the address testcontainers dials to reach a
// container's ports (its "daemon host"); empty means not set yet.
func checkPublishedHost(h string) error {
	if h == "" || isLoopbackHost(h) {
		return nil
	}
	return fmt.Errorf("%w: containers would be reached at %q (set %s=127.0.0.1)", ErrNotLoopback, h, EnvHostOverride)
}

func isLoopbackHost(h string) bool {
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

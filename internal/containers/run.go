package containers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/cascadehq/cascade/internal/owner"
)

// MaxPort is the highest port a container may listen on: the load
// generator's client sockets take ephemeral ports from 32768 up, and a fixed
// listener there can collide with them (PLATFORM.md, "Ports").
const MaxPort = 32767

// DefaultStartupTimeout bounds the wait for a container to become ready when
// [Spec.StartupTimeout] is zero.
const DefaultStartupTimeout = 60 * time.Second

// stopTimeout is how long Terminate lets a container shut down before the
// daemon kills it. Everything we run is disposable test infrastructure.
const stopTimeout = 5 * time.Second

var namePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// ErrInvalidSpec wraps every validation error of a [Spec] or run id.
var ErrInvalidSpec = errors.New("invalid container spec")

// File is a file copied into a container after it is created and before it
// starts (no bind mount, so it works wherever the daemon runs).
type File struct {
	Path    string // absolute path inside the container
	Content []byte
	Mode    int64 // zero means 0o644
}

// Spec describes one container of a run. Zero values are documented per
// field; Name and Image are required.
type Spec struct {
	// Name identifies the container within its run (e.g. "upstream-a-0"); the
	// container is named cascade-<run>-<Name>. Letters, digits, '_', '.', '-'.
	Name string
	// Role is a free-form label value (cascade.role) for reports; zero means Name.
	Role string
	// Image is a local image reference. It is never pulled: there is no registry.
	Image string
	// Entrypoint and Cmd override the image's; nil keeps them.
	Entrypoint []string
	Cmd        []string
	// Env is passed to the process.
	Env map[string]string
	// User overrides the image's user ("name", "uid" or "uid:gid").
	User string
	// Port is the TCP port the process listens on at 127.0.0.1 (host
	// networking: there is no mapping). Zero means none. At most [MaxPort].
	Port int
	// WaitHTTP, if set, is a path polled on 127.0.0.1:Port until it answers
	// with a status below 400. Requires Port.
	WaitHTTP string
	// WaitLog, if set, is a line the container must log before it is ready.
	WaitLog string
	// StartupTimeout bounds the wait; zero means [DefaultStartupTimeout].
	StartupTimeout time.Duration
	// Files are copied in before start.
	Files []File
	// Tmpfs mounts, path → mount options (e.g. "rw,size=1g").
	Tmpfs map[string]string
	// StopSignal overrides the image's stop signal (e.g. "SIGINT").
	StopSignal string
	// Labels are extra labels; keys starting with "cascade." are reserved.
	Labels map[string]string
}

// Validate reports the first problem with s.
func (s Spec) Validate() error {
	switch {
	case !namePattern.MatchString(s.Name):
		return fmt.Errorf("%w: name %q: want 1-63 of [a-zA-Z0-9_.-], starting with a letter or digit", ErrInvalidSpec, s.Name)
	case s.Image == "":
		return fmt.Errorf("%w: %s: image is required", ErrInvalidSpec, s.Name)
	case s.Port < 0 || s.Port > MaxPort:
		return fmt.Errorf("%w: %s: port %d outside 1..%d (ports from 32768 are the load generator's ephemeral range)", ErrInvalidSpec, s.Name, s.Port, MaxPort)
	case s.WaitHTTP != "" && s.Port == 0:
		return fmt.Errorf("%w: %s: wait_http %q needs a port", ErrInvalidSpec, s.Name, s.WaitHTTP)
	case s.WaitHTTP != "" && !strings.HasPrefix(s.WaitHTTP, "/"):
		return fmt.Errorf("%w: %s: wait_http %q must start with /", ErrInvalidSpec, s.Name, s.WaitHTTP)
	case s.StartupTimeout < 0:
		return fmt.Errorf("%w: %s: negative startup timeout %v", ErrInvalidSpec, s.Name, s.StartupTimeout)
	}
	for k := range s.Labels {
		if strings.HasPrefix(k, "cascade.") {
			return fmt.Errorf("%w: %s: label %q: the cascade. prefix is reserved", ErrInvalidSpec, s.Name, k)
		}
	}
	for _, f := range s.Files {
		if !strings.HasPrefix(f.Path, "/") {
			return fmt.Errorf("%w: %s: file path %q must be absolute", ErrInvalidSpec, s.Name, f.Path)
		}
	}
	return nil
}

// ValidateRunID reports whether id can label and name a run's containers.
func ValidateRunID(id string) error {
	if !namePattern.MatchString(id) {
		return fmt.Errorf("%w: run id %q: want 1-63 of [a-zA-Z0-9_.-], starting with a letter or digit", ErrInvalidSpec, id)
	}
	return nil
}

// Container is a running container of a run.
type Container struct {
	// Name is the container name, cascade-<run>-<spec name>.
	Name string
	// ID is the Docker container id.
	ID string
	// Image is the image reference it runs.
	Image string
	// Addr is 127.0.0.1:<port> when the spec had a port, else empty.
	Addr string
	// Ready is how long it took from the create request until the wait
	// strategy passed.
	Ready time.Duration

	c testcontainers.Container
	d *Docker
}

// Stop stops the container's process (SIGTERM, or the spec's StopSignal,
// then SIGKILL after grace) but keeps the container, so [Container.Start] can
// bring the same replica back: a crash-and-restart fault.
func (c *Container) Stop(ctx context.Context, grace time.Duration) error {
	if err := c.c.Stop(ctx, &grace); err != nil {
		return fmt.Errorf("stop %s: %w", c.Name, err)
	}
	c.d.emit("container.stop", c.Name, nil)
	return nil
}

// Start starts a stopped container again and waits until it is ready, as
// [Docker.Run] did.
func (c *Container) Start(ctx context.Context) error {
	start := time.Now()
	if err := c.c.Start(ctx); err != nil {
		return fmt.Errorf("restart %s: %w", c.Name, err)
	}
	c.d.emit("container.start", c.Name, map[string]any{"ready_ms": ms(time.Since(start))})
	return nil
}

// Pause freezes every process of the container (cgroup freezer): sockets
// stay open and connects still complete in the kernel, but nothing answers, the
// way a replica stuck in a GC pause or a deadlock looks from outside.
func (c *Container) Pause(ctx context.Context) error {
	if _, err := c.d.provider.Client().ContainerPause(ctx, c.ID, client.ContainerPauseOptions{}); err != nil {
		return fmt.Errorf("pause %s: %w", c.Name, err)
	}
	c.d.emit("container.pause", c.Name, nil)
	return nil
}

// Unpause thaws a paused container.
func (c *Container) Unpause(ctx context.Context) error {
	if _, err := c.d.provider.Client().ContainerUnpause(ctx, c.ID, client.ContainerUnpauseOptions{}); err != nil {
		return fmt.Errorf("unpause %s: %w", c.Name, err)
	}
	c.d.emit("container.unpause", c.Name, nil)
	return nil
}

// Terminate stops and removes the container. Safe to call twice.
func (c *Container) Terminate(ctx context.Context) error {
	if c == nil || c.c == nil {
		return nil
	}
	err := c.c.Terminate(ctx, testcontainers.StopTimeout(stopTimeout))
	if err != nil && isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("terminate %s: %w", c.Name, err)
	}
	c.d.emit("container.terminate", c.Name, nil)
	return nil
}

// Logs returns the container's combined stdout and stderr so far.
func (c *Container) Logs(ctx context.Context) ([]byte, error) {
	rc, err := c.c.Logs(ctx)
	if err != nil {
		return nil, fmt.Errorf("logs of %s: %w", c.Name, err)
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Running reports whether the container's process is still running.
func (c *Container) Running(ctx context.Context) (bool, error) {
	st, err := c.c.State(ctx)
	if err != nil {
		return false, fmt.Errorf("state of %s: %w", c.Name, err)
	}
	return st.Running, nil
}

// Run starts a container for run runID and waits until it is ready. On any
// failure after the container was created it is removed, and the error carries
// the tail of its log.
func (d *Docker) Run(ctx context.Context, runID string, s Spec) (*Container, error) {
	if err := ValidateRunID(runID); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if err := d.requireImage(ctx, s.Image); err != nil {
		return nil, err
	}
	name := "cascade-" + runID + "-" + s.Name
	role := s.Role
	if role == "" {
		role = s.Name
	}
	labels := map[string]string{}
	maps.Copy(labels, s.Labels)
	labels[LabelManaged] = "true"
	labels[LabelRun] = runID
	labels[LabelRole] = role
	labels[LabelOwner] = owner.Self().String()

	timeout := s.StartupTimeout
	if timeout == 0 {
		timeout = DefaultStartupTimeout
	}
	var waits []wait.Strategy
	if s.WaitHTTP != "" {
		waits = append(waits, wait.ForHTTP(s.WaitHTTP).
			WithPort(strconv.Itoa(s.Port)+"/tcp").
			WithForcedIPv4LocalHost().
			WithStatusCodeMatcher(func(status int) bool { return status < 400 }).
			WithPollInterval(50*time.Millisecond).
			WithStartupTimeout(timeout))
	}
	if s.WaitLog != "" {
		waits = append(waits, wait.ForLog(s.WaitLog).
			WithPollInterval(50*time.Millisecond).
			WithStartupTimeout(timeout))
	}
	var strategy wait.Strategy
	switch len(waits) {
	case 0:
	case 1:
		strategy = waits[0]
	default:
		strategy = wait.ForAll(waits...).WithDeadline(timeout)
	}

	files := make([]testcontainers.ContainerFile, 0, len(s.Files))
	for _, f := range s.Files {
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		files = append(files, testcontainers.ContainerFile{
			Reader:            bytes.NewReader(f.Content),
			ContainerFilePath: f.Path,
			FileMode:          mode,
		})
	}

	req := testcontainers.ContainerRequest{
		Image:      s.Image,
		Name:       name,
		Entrypoint: s.Entrypoint,
		Cmd:        s.Cmd,
		Env:        s.Env,
		Labels:     labels,
		Files:      files,
		Tmpfs:      s.Tmpfs,
		WaitingFor: strategy,
		ConfigModifier: func(c *container.Config) {
			if s.User != "" {
				c.User = s.User
			}
			if s.StopSignal != "" {
				c.StopSignal = s.StopSignal
			}
		},
		HostConfigModifier: func(hc *container.HostConfig) {
			// Host networking only: the machine has no bridge, and traffic
			// must stay on loopback.
			hc.NetworkMode = "host"
			hc.PortBindings = nil
		},
	}

	start := time.Now()
	// The create runs to its end whatever ctx says: a create request cut
	// short by a Ctrl-C still makes the container on the daemon, after
	// this process stopped waiting for it, and nothing removed it (it
	// stayed "Created"). It is short: the image is local, nothing is
	// pulled. Start and the wait for readiness do follow ctx.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	ctr, err := d.provider.CreateContainer(cctx, req)
	ccancel()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err() // interrupted while it was being made: remove it below
	}
	if err == nil {
		if serr := ctr.Start(ctx); serr != nil {
			if ctx.Err() == nil && errors.Is(serr, context.DeadlineExceeded) && len(waits) > 0 {
				// Say what was waited for, and how long: "context deadline
				// exceeded" alone, after a silent minute, sent users looking
				// everywhere but at the port their image listens on.
				serr = fmt.Errorf("not ready within %v: %s", timeout, s.awaited())
			}
			err = fmt.Errorf("%w: could not start container", serr)
		}
	}
	if err != nil {
		d.emit("container.start_failed", name, map[string]any{"image": s.Image, "error": err.Error()})
		if ctr != nil {
			tail := ""
			if ctx.Err() == nil { // an interrupt is no failure to explain
				tail = logTail(ctx, ctr, 20)
			}
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = ctr.Terminate(cctx, testcontainers.StopTimeout(time.Second))
			if tail != "" {
				return nil, fmt.Errorf("start %s: %w\ncontainer log tail:\n%s", name, err, tail)
			}
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &Container{Name: name, ID: ctr.GetContainerID(), Image: s.Image, Ready: time.Since(start), c: ctr, d: d}
	if s.Port != 0 {
		c.Addr = "127.0.0.1:" + strconv.Itoa(s.Port)
	}
	d.emit("container.ready", name, map[string]any{"image": s.Image, "role": role, "addr": c.Addr, "ready_ms": ms(c.Ready)})
	return c, nil
}

// awaited says what the readiness wait of s waits for.
func (s Spec) awaited() string {
	var parts []string
	if s.WaitHTTP != "" {
		parts = append(parts, fmt.Sprintf("GET http://127.0.0.1:%d%s never answered below 400 (does the process listen on 127.0.0.1:%d?)", s.Port, s.WaitHTTP, s.Port))
	}
	if s.WaitLog != "" {
		parts = append(parts, fmt.Sprintf("the log never showed %q", s.WaitLog))
	}
	return strings.Join(parts, "; ")
}

func logTail(ctx context.Context, ctr testcontainers.Container, n int) string {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	rc, err := ctr.Logs(lctx)
	if err != nil {
		return ""
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, 1<<20))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// requireImage fails clearly instead of letting testcontainers try a pull,
// which would reach for a registry this machine does not have.
func (d *Docker) requireImage(ctx context.Context, ref string) error {
	_, err := d.provider.Client().ImageInspect(ctx, ref)
	if err == nil {
		return nil
	}
	if isNotFound(err) {
		return fmt.Errorf("%w: %q (there is no registry: build it or `docker load` it first)", ErrImageMissing, ref)
	}
	return fmt.Errorf("inspect image %q: %w", ref, err)
}

// HasImage reports whether ref is present locally.
func (d *Docker) HasImage(ctx context.Context, ref string) (bool, error) {
	err := d.requireImage(ctx, ref)
	if errors.Is(err, ErrImageMissing) {
		return false, nil
	}
	return err == nil, err
}

// Cleanup force-removes every container labelled with run runID (and
// cascade.managed=true), and returns their names. It selects by label only,
// so containers of other runs and containers cascade did not start survive.
func (d *Docker) Cleanup(ctx context.Context, runID string) ([]string, error) {
	if err := ValidateRunID(runID); err != nil {
		return nil, err
	}
	return d.removeLabelled(ctx, LabelManaged+"=true", LabelRun+"="+runID)
}

// CleanupAll force-removes every container labelled cascade.managed=true,
// whatever its run (for `cascade cleanup`), and returns their names.
func (d *Docker) CleanupAll(ctx context.Context) ([]string, error) {
	return d.removeLabelled(ctx, LabelManaged+"=true")
}

// CleanupUnless is Cleanup for run runID, or CleanupAll when runID is
// empty, except that it leaves each container for which keep, given its
// labels, gives a reason, and lists it as "<name> (<reason>)" in kept.
func (d *Docker) CleanupUnless(ctx context.Context, runID string, keep func(labels map[string]string) string) (removed, kept []string, err error) {
	labels := []string{LabelManaged + "=true"}
	if runID != "" {
		if err := ValidateRunID(runID); err != nil {
			return nil, nil, err
		}
		labels = append(labels, LabelRun+"="+runID)
	}
	items, err := d.listLabelled(ctx, labels...)
	if err != nil {
		return nil, nil, err
	}
	var gone []listed
	for _, it := range items {
		if why := keep(it.labels); why != "" {
			kept = append(kept, it.name+" ("+why+")")
			continue
		}
		gone = append(gone, it)
	}
	slices.Sort(kept)
	removed, err = d.remove(ctx, gone, strings.Join(labels, ","))
	return removed, kept, err
}

// List returns the names of the containers of run runID, running or not.
// An empty runID lists every cascade-managed container.
func (d *Docker) List(ctx context.Context, runID string) ([]string, error) {
	labels := []string{LabelManaged + "=true"}
	if runID != "" {
		if err := ValidateRunID(runID); err != nil {
			return nil, err
		}
		labels = append(labels, LabelRun+"="+runID)
	}
	items, err := d.listLabelled(ctx, labels...)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(items))
	for _, it := range items {
		names = append(names, it.name)
	}
	slices.Sort(names)
	return names, nil
}

type listed struct {
	id, name string
	labels   map[string]string
}

func (d *Docker) listLabelled(ctx context.Context, labels ...string) ([]listed, error) {
	res, err := d.provider.Client().ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", labels...),
	})
	if err != nil {
		return nil, fmt.Errorf("list containers %v: %w", labels, err)
	}
	out := make([]listed, 0, len(res.Items))
	for _, it := range res.Items {
		// The daemon ANDs label filters; check again so a daemon that did not
		// could never make us remove a stranger's container.
		if !hasLabels(it.Labels, labels) {
			continue
		}
		name := it.ID
		if len(it.Names) > 0 {
			name = strings.TrimPrefix(it.Names[0], "/")
		}
		out = append(out, listed{id: it.ID, name: name, labels: it.Labels})
	}
	return out, nil
}

func hasLabels(have map[string]string, want []string) bool {
	for _, kv := range want {
		k, v, _ := strings.Cut(kv, "=")
		if have[k] != v {
			return false
		}
	}
	return true
}

func (d *Docker) removeLabelled(ctx context.Context, labels ...string) ([]string, error) {
	items, err := d.listLabelled(ctx, labels...)
	if err != nil {
		return nil, err
	}
	return d.remove(ctx, items, strings.Join(labels, ","))
}

// remove force-removes items; selector names them in the event.
func (d *Docker) remove(ctx context.Context, items []listed, selector string) ([]string, error) {
	var removed []string
	var errs []error
	for _, it := range items {
		_, err := d.provider.Client().ContainerRemove(ctx, it.id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("remove %s: %w", it.name, err))
			continue
		}
		removed = append(removed, it.name)
	}
	slices.Sort(removed)
	if len(removed) > 0 {
		d.emit("containers.cleanup", selector, map[string]any{"removed": removed})
	}
	return removed, errors.Join(errs...)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

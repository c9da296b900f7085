package run

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/cascadehq/cascade/internal/containers"
	"github.com/cascadehq/cascade/internal/owner"
)

// A run removes what it starts on every exit path (deferred closes; the
// CLI turns SIGINT, SIGTERM and SIGHUP into a cancelled context). What a
// killed run leaves behind, Cleanup removes: each Cleaner finds one kind of
// leftover by the labels or name prefixes runs give it, and keeps what a
// live process still uses (a run in progress, on a machine others share
// too), unless forced.

// CleanupOptions select what Cleanup removes.
type CleanupOptions struct {
	// RunID limits the cleanup to one run's leftovers; empty means every
	// run's.
	RunID string
	// Images also removes the images cascade built.
	Images bool
	// Force also removes what a live process still uses (a run in
	// progress), which Cleanup otherwise keeps and lists.
	Force bool
}

// Cleaner removes one kind of leftover.
type Cleaner interface {
	// Name labels the cleaner's lines in the report ("containers").
	Name() string
	// Clean removes the leftovers and lists them, and what it left because
	// a live process still uses it. ErrNothingToClean (or wrapping it)
	// means the facility is absent here (no Docker, not root): a skip, not
	// a failure.
	Clean(ctx context.Context, o CleanupOptions) (Cleaned, error)
}

// Cleaned is what one cleaner did.
type Cleaned struct {
	Removed []string
	// Kept lists what was left, each with why: "<what> (<reason>)".
	Kept []string
}

// ErrNothingToClean reports that a cleaner's facility is absent, so it has
// nothing to remove.
var ErrNothingToClean = errors.New("nothing to clean here")

// CleanupReport is one cleaner's outcome.
type CleanupReport struct {
	Name    string
	Removed []string
	Kept    []string // left because still in use, each with why
	Skipped string   // why the cleaner did not run
	Failed  bool     // the cleaner failed: Cleanup's error says why
}

// Cleaners lists what Cleanup runs, in order: containers, the packet
// layer's network namespaces (and their devices) by their per-run prefix,
// and temporary directories whose process is gone.
func Cleaners() []Cleaner {
	return []Cleaner{containerCleaner{}, netnsCleaner{}, tempCleaner{}}
}

// Cleanup runs every cleaner; an error from one does not stop the others.
func Cleanup(ctx context.Context, o CleanupOptions) ([]CleanupReport, error) {
	if o.RunID != "" {
		if err := containers.ValidateRunID(o.RunID); err != nil {
			return nil, err
		}
	}
	var out []CleanupReport
	var errs []error
	for _, c := range Cleaners() {
		done, err := c.Clean(ctx, o)
		r := CleanupReport{Name: c.Name(), Removed: done.Removed, Kept: done.Kept}
		switch {
		case errors.Is(err, ErrNothingToClean):
			r.Skipped = err.Error()
		case err != nil:
			r.Failed = true
			errs = append(errs, fmt.Errorf("%s: %w", c.Name(), err))
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// containerCleaner removes containers labelled cascade.managed (one run's
// with RunID), and with Images the images cascade built.
type containerCleaner struct{}

func (containerCleaner) Name() string { return "containers" }

func (containerCleaner) Clean(ctx context.Context, o CleanupOptions) (Cleaned, error) {
	containers.SilenceLibraryBanner()
	d, err := containers.Connect(ctx, containers.WithLogf(func(string, ...any) {}))
	if errors.Is(err, containers.ErrNoAnswer) {
		// A daemon that hangs may still hold a run's containers.
		return Cleaned{}, fmt.Errorf("containers not checked: %w", err)
	}
	if errors.Is(err, containers.ErrNoDocker) {
		return Cleaned{}, fmt.Errorf("%w: no Docker daemon answers, so no container can be left", ErrNothingToClean)
	}
	if err != nil {
		return Cleaned{}, err
	}
	defer d.Close()
	keep := liveContainer
	if o.Force {
		keep = func(map[string]string) string { return "" }
	}
	removed, kept, err := d.CleanupUnless(ctx, o.RunID, keep)
	if err != nil || !o.Images {
		return Cleaned{Removed: removed, Kept: kept}, err
	}
	imgs, err := d.CleanupImages(ctx)
	for _, i := range imgs {
		removed = append(removed, "image "+i)
	}
	return Cleaned{Removed: removed, Kept: kept}, err
}

// liveContainer says why a container must stay: the process that started
// it (its cascade.owner label) still runs, or, for a container without
// that label (an older cascade's), the process its run id names.
func liveContainer(labels map[string]string) string {
	if p, err := owner.Parse(labels[containers.LabelOwner]); err == nil {
		if p.Alive() {
			return fmt.Sprintf("process %d that started it is still running", p.PID)
		}
		return ""
	}
	if pid, made, ok := runProcess(labels[containers.LabelRun]); ok && owner.RunningSince(pid, made) {
		return fmt.Sprintf("its run's process %d is still running", pid)
	}
	return ""
}

// tempCleaner removes the temporary directories (image build contexts,
// SQLite databases) of processes that are gone; a live process's are kept.
// With RunID, only those of the run's process.
type tempCleaner struct{}

func (tempCleaner) Name() string { return "temp files" }

func (tempCleaner) Clean(ctx context.Context, o CleanupOptions) (Cleaned, error) {
	pid := 0
	if o.RunID != "" {
		var ok bool
		if pid, _, ok = runProcess(o.RunID); !ok {
			return Cleaned{}, nil // not an id a run made: no directory carries it
		}
	}
	dirs, err := owner.TempDirs()
	if err != nil {
		return Cleaned{}, err
	}
	var c Cleaned
	var errs []error
	for _, d := range dirs {
		if ctx.Err() != nil {
			break
		}
		if pid != 0 && d.Owner.PID != pid {
			continue
		}
		if !o.Force && d.Owner.Alive() {
			c.Kept = append(c.Kept, fmt.Sprintf("%s (process %d that made it is still running)", d.Path, d.Owner.PID))
			continue
		}
		if err := os.RemoveAll(d.Path); err != nil {
			errs = append(errs, err)
			continue
		}
		c.Removed = append(c.Removed, d.Path)
	}
	return c, errors.Join(errs...)
}

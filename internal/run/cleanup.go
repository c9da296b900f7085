package run

import (
	"context"
	"errors"
	"fmt"

	"github.com/cascadehq/cascade/internal/containers"
)

// A run removes what it starts on every exit path (deferred closes; the
// CLI turns SIGINT and SIGTERM into a cancelled context). What a killed
// run leaves behind, Cleanup removes: each Cleaner finds one kind of
// leftover by the labels or name prefixes runs give it.

// CleanupOptions select what Cleanup removes.
type CleanupOptions struct {
	// RunID limits the cleanup to one run's leftovers; empty means every
	// run's.
	RunID string
	// Images also removes the images cascade built.
	Images bool
}

// Cleaner removes one kind of leftover.
type Cleaner interface {
	// Name labels the cleaner's lines in the report ("containers").
	Name() string
	// Clean removes the leftovers and lists them. ErrNothingToClean (or
	// wrapping it) means the facility is absent here (no Docker, not root):
	// a skip, not a failure.
	Clean(ctx context.Context, o CleanupOptions) ([]string, error)
}

// ErrNothingToClean reports that a cleaner's facility is absent, so it has
// nothing to remove.
var ErrNothingToClean = errors.New("nothing to clean here")

// CleanupReport is one cleaner's outcome.
type CleanupReport struct {
	Name    string
	Removed []string
	Skipped string // why the cleaner did not run
}

// Cleaners lists what Cleanup runs, in order: containers, and the packet
// layer's network namespaces (and their devices) by their per-run prefix.
func Cleaners() []Cleaner {
	return []Cleaner{containerCleaner{}, netnsCleaner{}}
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
		removed, err := c.Clean(ctx, o)
		r := CleanupReport{Name: c.Name(), Removed: removed}
		switch {
		case errors.Is(err, ErrNothingToClean):
			r.Skipped = err.Error()
		case err != nil:
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

func (containerCleaner) Clean(ctx context.Context, o CleanupOptions) ([]string, error) {
	containers.SilenceLibraryBanner()
	d, err := containers.Connect(ctx, containers.WithLogf(func(string, ...any) {}))
	if errors.Is(err, containers.ErrNoDocker) {
		return nil, fmt.Errorf("%w: no Docker daemon answers, so no container can be left", ErrNothingToClean)
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	var removed []string
	if o.RunID != "" {
		removed, err = d.Cleanup(ctx, o.RunID)
	} else {
		removed, err = d.CleanupAll(ctx)
	}
	if err != nil || !o.Images {
		return removed, err
	}
	imgs, err := d.CleanupImages(ctx)
	for _, i := range imgs {
		removed = append(removed, "image "+i)
	}
	return removed, err
}

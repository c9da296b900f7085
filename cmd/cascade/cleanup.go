package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cascadehq/cascade/internal/containers"
	"github.com/cascadehq/cascade/internal/run"
)

func newCleanupCmd(stdout, stderr io.Writer) *cobra.Command {
	var runID string
	var images, force bool
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove what killed runs left behind (containers, the packet layer's namespaces, temporary files)",
		Long: `A run removes everything it starts when it ends, fails or is interrupted. A run that
was killed (SIGKILL, a third Ctrl-C, a crash) cannot: cleanup removes its leftovers,
found by the labels and name prefixes cascade gives them: containers labelled
cascade.managed, the packet layer's network namespaces (named cz<run hash>...), and
temporary directories ($TMPDIR/cascade-build-<pid>..., cascade-slowdb-<pid>...), or
only one run's with --run. What a live process still uses is kept, and listed with
why: a container whose process (or run) still runs, a namespace a process holds, a
directory whose process still runs. --force removes those too (the runs using them
will fail).`,
		Example: `  cascade cleanup
  cascade cleanup --run quickstart-20261122-101500-4242
  cascade cleanup --images   # also the images cascade built
  cascade cleanup --run quickstart-20261122-101500-4242 --force   # even if its process still runs`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// A malformed --run is a usage error (exit 2), not a cleanup
			// that failed (3): nothing was looked at.
			if runID != "" {
				if err := containers.ValidateRunID(runID); err != nil {
					return exitWith(ExitUsage, fmt.Errorf("--run: %w", err))
				}
			}
			rep, err := run.Cleanup(cmd.Context(), run.CleanupOptions{RunID: runID, Images: images, Force: force})
			kept := 0
			for _, r := range rep {
				switch {
				case r.Skipped != "":
					fmt.Fprintf(stdout, "%-12s skipped: %s\n", r.Name, r.Skipped)
				case r.Failed && len(r.Removed) == 0 && len(r.Kept) == 0:
					fmt.Fprintf(stdout, "%-12s failed (the error follows)\n", r.Name)
				case len(r.Removed) == 0 && len(r.Kept) == 0:
					fmt.Fprintf(stdout, "%-12s nothing to remove\n", r.Name)
				default:
					for _, x := range r.Removed {
						fmt.Fprintf(stdout, "%-12s removed %s\n", r.Name, x)
					}
					for _, x := range r.Kept {
						fmt.Fprintf(stdout, "%-12s kept %s\n", r.Name, x)
					}
					kept += len(r.Kept)
					if r.Failed {
						// Not "nothing to remove": it could not look (the error follows).
						fmt.Fprintf(stdout, "%-12s failed: see the error below\n", r.Name)
					}
				}
			}
			if kept > 0 {
				fmt.Fprintf(stdout, "kept %d in use by live processes (runs in progress?); --force removes them too\n", kept)
			}
			if err != nil {
				return exitWith(ExitRunFailed, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&runID, "run", "", "only this run's leftovers (the id in its container names, cascade-<run>-...)")
	cmd.Flags().BoolVar(&force, "force", false, "also remove what live processes still use (their runs will fail)")
	cmd.Flags().BoolVar(&images, "images", false, "also remove the images cascade built (they are rebuilt on demand), and the untagged steps of interrupted builds")
	return cmd
}

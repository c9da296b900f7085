package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cascadehq/cascade/faults"
)

func newFaultsCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "faults",
		Short: "List the fault kinds, their layer and what a ramp scales",
		Long: `Faults lists every registered fault kind with the layer it acts at and the
upstreams it applies to. 'cascade schema' gives each kind's parameters.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tLAYER\tAPPLIES TO\tRAMP\tWHAT IT DOES")
			for _, k := range faults.AllKinds() {
				applies := "any upstream"
				if len(k.Upstreams) > 0 {
					applies = strings.Join(k.Upstreams, ", ") + " upstreams"
				}
				if k.InProcess {
					applies += " (in-process replicas)"
				}
				ramp := k.Ramp
				if ramp == "" {
					ramp = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.Name, k.Layer, applies, ramp, k.Doc)
			}
			return tw.Flush()
		},
	}
}

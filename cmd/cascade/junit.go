package main

import (
	"io"

	"github.com/cascadehq/cascade/internal/atomicfile"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/verdict"
)

// writeJUnitFile writes the objectives as JUnit XML (`cascade report
// --junit`); a run writes junit.xml into its directory by itself. The file
// is replaced whole or not at all: a write that fails partway leaves the
// one that was there.
func writeJUnitFile(path string, s *results.Summary) error {
	return atomicfile.Write(path, 0o644, func(w io.Writer) error { return verdict.WriteJUnit(w, s) })
}

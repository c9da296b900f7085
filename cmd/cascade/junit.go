package main

import (
	"os"

	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/verdict"
)

// writeJUnitFile writes the objectives as JUnit XML (`cascade report
// --junit`); a run writes junit.xml into its directory by itself.
func writeJUnitFile(path string, s *results.Summary) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := verdict.WriteJUnit(f, s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

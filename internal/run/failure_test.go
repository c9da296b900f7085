package run

import (
	"errors"
	"testing"
)

// A failure set before the load's stop function is known (a results file
// the disk refused while the load was starting) still stops the load, as
// soon as the function is given: before, the load ran to its planned end
// with the run already failed. A later failure adds nothing.
func TestFailureBeforeTheLoadStopsItOnceItRuns(t *testing.T) {
	var f failure
	f.set(errors.New("write results: file too large"))
	stopped := 0
	f.stopLoad(func() { stopped++ })
	if stopped != 1 {
		t.Fatalf("the load was stopped %d times, want once as its stop function was given", stopped)
	}
	f.set(errors.New("a second error"))
	if stopped != 1 || f.get().Error() != "write results: file too large" {
		t.Errorf("after a second error: stopped %d times, error %v; want once, the first", stopped, f.get())
	}

	var g failure
	g.stopLoad(func() { stopped++ })
	if stopped != 1 {
		t.Fatal("a run without a failure was stopped")
	}
	g.set(errors.New("boom"))
	if stopped != 2 {
		t.Errorf("a failure once the load runs did not stop it")
	}
}

package interrupt

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestTeardownContextOutlivesTheRunButNotAHurry(t *testing.T) {
	s := New()
	ctx, cancel := context.WithCancel(With(context.Background(), s))
	tctx, tcancel := TeardownContext(ctx)
	defer tcancel()
	cancel() // the first signal: the run stops, its teardown begins
	select {
	case <-tctx.Done():
		t.Fatal("the teardown context ended with the run's")
	case <-time.After(20 * time.Millisecond):
	}
	s.Hurry() // the second signal
	select {
	case <-tctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a hurry did not end the teardown context")
	}
	s.Hurry() // idempotent
}

func TestWithoutAStopNothingHurries(t *testing.T) {
	var s *Stop
	s.Hurry()
	s.Running("x")()
	if s.Runs() != nil || From(context.Background()) != nil {
		t.Fatal("a nil Stop holds something")
	}
	tctx, cancel := TeardownContext(context.Background())
	if tctx.Err() != nil {
		t.Fatal("teardown context done at once")
	}
	cancel()
	if tctx.Err() == nil {
		t.Fatal("cancel did not end the teardown context")
	}
}

func TestRunningLists(t *testing.T) {
	s := New()
	a := s.Running("a-1")
	b := s.Running("b-2")
	if got := s.Runs(); !slices.Equal(got, []string{"a-1", "b-2"}) {
		t.Fatalf("Runs() = %v", got)
	}
	a()
	a()
	if got := s.Runs(); !slices.Equal(got, []string{"b-2"}) {
		t.Fatalf("Runs() after a's end = %v", got)
	}
	b()
	if len(s.Runs()) != 0 {
		t.Fatal("runs left")
	}
}

// Finishing: every run in progress has had its load end by itself.
func TestFinishing(t *testing.T) {
	var none *Stop
	none.LoadEnded("x")
	if none.Finishing() {
		t.Error("a nil Stop is finishing")
	}
	s := New()
	if s.Finishing() {
		t.Error("no run in progress, yet finishing")
	}
	a := s.Running("a-1")
	b := s.Running("b-2")
	s.LoadEnded("a-1")
	if s.Finishing() {
		t.Error("finishing while b-2's load runs")
	}
	s.LoadEnded("b-2")
	if !s.Finishing() {
		t.Error("not finishing once both loads ended")
	}
	a()
	b()
	c := s.Running("a-1") // the same id again: a new run, its load not ended
	defer c()
	if s.Finishing() {
		t.Error("a new run inherits an old one's end")
	}
}

// Package interrupt carries in a context what repeated stop signals (Ctrl-C,
// SIGTERM, SIGHUP) ask of a run, so that an impatient second Ctrl-C still
// leaves a clean machine:
//
//	1st signal ─▶ the context ends: stop the load, write partial results,
//	              remove what the run started (waiting for in-flight work)
//	2nd signal ─▶ Hurry: teardown stops waiting for in-flight work, but
//	              still removes what the run started
//	3rd signal ─▶ the process dies at once (cmd/cascade); `cascade cleanup
//	              --run <id>` removes what is left
//
// The CLI owns the signals; a run registers its id so the CLI can name it
// in what it prints, and asks for a teardown context that a hurry ends.
package interrupt

import (
	"context"
	"slices"
	"sync"
)

// Stop is the state of one process's stop signals. Its methods are safe
// for concurrent use, and on a nil *Stop (no CLI: a test, a library user)
// they do nothing.
type Stop struct {
	hurry   context.Context
	hurried context.CancelFunc

	mu    sync.Mutex
	runs  []string
	ended map[string]bool // runs whose load has ended: their results are whole
}

// New returns a Stop that has not been hurried.
func New() *Stop {
	s := &Stop{}
	s.hurry, s.hurried = context.WithCancel(context.Background())
	return s
}

type key struct{}

// With returns ctx carrying s.
func With(ctx context.Context, s *Stop) context.Context { return context.WithValue(ctx, key{}, s) }

// From returns the Stop ctx carries, or nil.
func From(ctx context.Context) *Stop {
	s, _ := ctx.Value(key{}).(*Stop)
	return s
}

// Hurry asks every teardown to stop waiting for in-flight work.
func (s *Stop) Hurry() {
	if s != nil {
		s.hurried()
	}
}

// Running records that run id is in progress until done is called, so a
// signal's message can name it (for `cascade cleanup --run`).
func (s *Stop) Running(id string) (done func()) {
	if s == nil {
		return func() {}
	}
	s.mu.Lock()
	s.runs = append(s.runs, id)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if i := slices.Index(s.runs, id); i >= 0 {
			s.runs = slices.Delete(s.runs, i, i+1)
		}
		delete(s.ended, id)
	}
}

// LoadEnded records that run id's load ended by itself: a stop signal from
// here on cuts nothing short (the run is judging, reporting and removing
// what it started), and its message must not promise partial results.
func (s *Stop) LoadEnded(id string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended == nil {
		s.ended = map[string]bool{}
	}
	s.ended[id] = true
}

// Finishing reports whether every run in progress has had its load end by
// itself (false with none in progress).
func (s *Stop) Finishing() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.runs {
		if !s.ended[id] {
			return false
		}
	}
	return len(s.runs) > 0
}

// Runs lists the runs in progress.
func (s *Stop) Runs() []string {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.runs)
}

// TeardownContext is for the graceful waits of a teardown that ctx's end
// started (a server's shutdown, a container's stop): it keeps ctx's values
// but not its cancellation, and ends when the process is hurried. What
// removes resources must not use it: a hurry skips the waiting, not the
// removal.
func TeardownContext(ctx context.Context) (context.Context, context.CancelFunc) {
	tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := From(ctx)
	if s == nil {
		return tctx, cancel
	}
	stop := context.AfterFunc(s.hurry, cancel)
	return tctx, func() { stop(); cancel() }
}

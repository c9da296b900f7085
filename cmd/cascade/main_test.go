package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/interrupt"
)

// hurried waits for the teardown context to end (a hurry ends it from a
// goroutine of its own).
func hurried(t *testing.T, teardown context.Context) {
	t.Helper()
	select {
	case <-teardown.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the teardown was not hurried")
	}
}

// Each stop signal asks for a firmer stop and says what the next will do:
// the first ends the context, the second hurries the teardown, the third
// kills; each names the run `cascade cleanup --run` needs.
func TestEscalate(t *testing.T) {
	st := interrupt.New()
	done := st.Running("quickstart-20261122-101500-4242")
	defer done()
	ctx, cancel := context.WithCancel(interrupt.With(context.Background(), st))
	teardown, endTeardown := interrupt.TeardownContext(ctx)
	defer endTeardown()
	sigs := make(chan os.Signal, 3)
	var stderr bytes.Buffer
	var killedBy os.Signal
	sigs <- os.Interrupt
	sigs <- syscall.SIGTERM
	sigs <- syscall.SIGHUP
	close(sigs)
	escalate(sigs, cancel, st, &stderr, func(s os.Signal) { killedBy = s })
	hurried(t, teardown)
	if ctx.Err() == nil || killedBy != syscall.SIGHUP {
		t.Fatalf("after three signals: run ctx %v, teardown %v, killed by %v", ctx.Err(), teardown.Err(), killedBy)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a line per signal, got:\n%s", stderr.String())
	}
	for i, want := range []string{"stopping run quickstart-20261122-101500-4242: writing partial results and removing what it started",
		"not waiting for work in flight; still removing", "killed by a third signal"} {
		if !strings.Contains(lines[i], want) || !strings.Contains(lines[i], "`cascade cleanup --run quickstart-20261122-101500-4242`") {
			t.Errorf("signal %d: %q, want %q and the cleanup command", i+1, lines[i], want)
		}
	}
}

// Two signals: the run is stopped and its teardown hurried, and the
// process is not killed.
func TestEscalateTwice(t *testing.T) {
	st := interrupt.New()
	ctx, cancel := context.WithCancel(interrupt.With(context.Background(), st))
	teardown, endTeardown := interrupt.TeardownContext(ctx)
	defer endTeardown()
	sigs := make(chan os.Signal, 2)
	sigs <- os.Interrupt
	sigs <- os.Interrupt
	close(sigs)
	var stderr bytes.Buffer
	escalate(sigs, cancel, st, &stderr, func(os.Signal) { t.Fatal("killed by a second signal") })
	hurried(t, teardown)
	if ctx.Err() == nil {
		t.Fatal("the run's context did not end")
	}
	if stderr.Len() != 0 {
		t.Errorf("no run in progress, yet: %s", stderr.String())
	}
}

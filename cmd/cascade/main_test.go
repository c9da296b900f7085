package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
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
		"not waiting for the upstreams' work in flight; still removing", "killed by a third signal"} {
		if !strings.Contains(lines[i], want) || !strings.Contains(lines[i], "`cascade cleanup --run quickstart-20261122-101500-4242`") {
			t.Errorf("signal %d: %q, want %q and the cleanup command", i+1, lines[i], want)
		}
	}
}

// A signal after the run's load ended cuts nothing short: the run
// finishes its report and exits with its verdict (0 for a pass). The
// notice said "writing partial results" all the same.
func TestEscalateAfterTheLoadEnded(t *testing.T) {
	st := interrupt.New()
	done := st.Running("quickstart-20261122-101500-4242")
	defer done()
	st.LoadEnded("quickstart-20261122-101500-4242")
	ctx, cancel := context.WithCancel(interrupt.With(context.Background(), st))
	sigs := make(chan os.Signal, 1)
	sigs <- os.Interrupt
	close(sigs)
	var stderr bytes.Buffer
	escalate(sigs, cancel, st, &stderr, func(os.Signal) { t.Fatal("killed by one signal") })
	if ctx.Err() == nil {
		t.Fatal("the run's context did not end")
	}
	if out := stderr.String(); strings.Contains(out, "partial") || !strings.Contains(out, "had finished its load: its results are whole") {
		t.Errorf("notice: %s", out)
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

// A path that names no regular file (a named pipe here: open waited for a
// writer for ever, deaf to Ctrl-C; /dev/zero was read until memory ran
// out) is refused by validate, as the scenario or as a data set it names.
func TestValidateRefusesFilesThatAreNotFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := dir + "/pipe.csv"
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	scenario := dir + "/s.yaml"
	src := "name: s\nupstreams: [{name: api}]\ngateway: {routes: [{path: /, upstream: api}]}\n" +
		"load: {rate: 10/s, duration: 1s, data: {users: pipe.csv}, requests: [{path: \"/u/{{users.id}}\"}]}\n"
	if err := os.WriteFile(scenario, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{fifo, "pipe.csv is not a regular file (it is a named pipe)"},
		{scenario, "s.yaml:4:"},
	} {
		type result struct {
			code int
			errs string
		}
		done := make(chan result, 1)
		go func() {
			code, _, errs := runCLI(context.Background(), "validate", tc.path)
			done <- result{code, errs}
		}()
		select {
		case r := <-done:
			if r.code != ExitUsage || !strings.Contains(r.errs, tc.want) || !strings.Contains(r.errs, "named pipe") {
				t.Errorf("validate %s: exit %d, %q; want %d and %q", tc.path, r.code, r.errs, ExitUsage, tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("validate %s: no answer after 10 s", tc.path)
		}
	}
}

// A process started with SIGINT ignored (a background job of a script)
// is killed at once by a third Ctrl-C: die restored the default
// disposition, which restored the ignoring, and the run went on for a
// second after "killed by a third signal" (its report, "partial results
// in ..."). Checked in a child process started with SIGINT ignored.
func TestDieWhenStartedWithSIGINTIgnored(t *testing.T) {
	if os.Getenv("CASCADE_TEST_DIE") == "1" {
		ignoredAtStart[os.Interrupt] = signal.Ignored(os.Interrupt)
		signal.Notify(make(chan os.Signal, 1), os.Interrupt)
		go func() {
			time.Sleep(200 * time.Millisecond)
			fmt.Println("still running")
		}()
		die(os.Interrupt)
		return
	}
	cmd := exec.Command("bash", "-c", `trap "" INT; exec "$0" "$@"`, os.Args[0], "-test.run=^TestDieWhenStartedWithSIGINTIgnored$")
	cmd.Env = append(os.Environ(), "CASCADE_TEST_DIE=1")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitInterrupted || strings.Contains(string(out), "still running") {
		t.Errorf("die: %v, output %q: want exit %d at once", err, out, ExitInterrupted)
	}
}

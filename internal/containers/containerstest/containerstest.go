// Package containerstest connects tests to Docker the way every cascade test
// must: skip with a clear message when no daemon answers, but fail when
// CASCADE_REQUIRE_DOCKER=1 (CI sets it), so an all-skipped run cannot look
// green.
package containerstest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/containers"
)

// EnvRequireDocker turns a missing Docker daemon from a skip into a failure.
const EnvRequireDocker = "CASCADE_REQUIRE_DOCKER"

// Connect returns a Docker handle closed at the end of the test, or skips
// the test (fails it under CASCADE_REQUIRE_DOCKER=1) when no daemon answers.
// Any other connection error fails the test.
func Connect(tb testing.TB, opts ...containers.Option) *containers.Docker {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := containers.Connect(ctx, opts...)
	if err != nil {
		if errors.Is(err, containers.ErrNoDocker) {
			if os.Getenv(EnvRequireDocker) == "1" {
				tb.Fatalf("%s=1 but: %v", EnvRequireDocker, err)
			}
			tb.Skipf("skipping: %v", err)
		}
		tb.Fatalf("connect to docker: %v", err)
	}
	if set := d.EnvSet(); len(set) > 0 {
		tb.Logf("containers: set %v for testcontainers", set)
	}
	tb.Cleanup(func() { _ = d.Close() })
	return d
}

// SkipUnlessRequired skips the test because of err (a missing PostgreSQL,
// nginx or HAProxy package, say), or fails it under CASCADE_REQUIRE_DOCKER=1,
// where CI has promised everything containers need (.ci/docker.sh).
func SkipUnlessRequired(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv(EnvRequireDocker) == "1" {
		tb.Fatalf("%s=1 but: %v", EnvRequireDocker, err)
	}
	tb.Skipf("skipping: %v", err)
}

var unsafeChars = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// RunID returns a run id unique to this test and process, and removes that
// run's containers when the test ends, so a failing test leaves nothing behind.
func RunID(tb testing.TB, d *containers.Docker) string {
	tb.Helper()
	name := unsafeChars.ReplaceAllString(tb.Name(), "-")
	if len(name) > 30 {
		name = name[:30]
	}
	id := fmt.Sprintf("t%s-%s-%s", strconv.Itoa(os.Getpid()), strconv.FormatInt(time.Now().UnixNano(), 36), name)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if removed, err := d.Cleanup(ctx, id); err != nil {
			tb.Errorf("cleanup run %s: %v", id, err)
		} else if len(removed) > 0 {
			tb.Logf("cleanup run %s removed %v", id, removed)
		}
	})
	return id
}

// Logf adapts tb.Logf for [containers.WithLogf], so testcontainers' progress
// lines appear under the test (with -v) instead of on stderr.
func Logf(tb testing.TB) func(string, ...any) {
	return func(format string, args ...any) { tb.Logf(format, args...) }
}

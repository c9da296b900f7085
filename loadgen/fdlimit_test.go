//go:build linux

package loadgen

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
)

// A dial that fails because the generator is out of file descriptors is
// the generator's own limit: transport_error, not the target's
// connect_failure, and the kept error says so and what to do about it. The
// limit is lowered in a child process (this test binary again), never in
// the test process itself.
func TestFDLimitIsTheClients(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFDLimitChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "CASCADE_FDLIMIT_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "fdlimit child: checked 3 clients") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
}

// TestFDLimitChild runs in the child of TestFDLimitIsTheClients: with its
// soft RLIMIT_NOFILE lowered and every descriptor under it taken, each
// client's dial fails with EMFILE.
func TestFDLimitChild(t *testing.T) {
	if os.Getenv("CASCADE_FDLIMIT_CHILD") == "" {
		t.Skip("run by TestFDLimitIsTheClients in a process of its own")
	}
	const limit = 256
	lowerFDLimit(t, limit)
	type client struct {
		name    string
		tr, src Transport // src keeps the errors
	}
	cfg := Config{Target: "http://127.0.0.1:1", KeepAlive: true, Requests: []Request{{Path: "/"}}, ClientTimeout: 5 * time.Second}
	h1t, nh := clientTransport(t, cfg, false), clientTransport(t, cfg, true)
	clients := []client{{"h1 worker", h1t.(*H1Transport).Worker(), h1t}, {"h1 pool", h1t, h1t}, {"net/http", nh, nh}}

	// Take every descriptor left.
	var held []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatal(err)
			}
			break
		}
		held = append(held, f)
	}
	samples := make([]Sample, len(clients))
	for i, c := range clients {
		c.tr.RoundTrip(context.Background(), 0, &samples[i])
	}
	for _, f := range held {
		f.Close()
	}

	for i, c := range clients {
		kept := FirstClientErrors(c.src)
		var fd *FDLimitError
		if samples[i].Cause != cause.TransportError || len(kept) != 1 || !errors.As(kept[0].Err, &fd) || fd.Limit != limit ||
			!strings.Contains(kept[0].Error(), "ulimit -n") || !strings.Contains(kept[0].Error(), "--max-in-flight") ||
			!strings.Contains(kept[0].Error(), "too many open files") {
			t.Errorf("%s: cause %v, kept %v; want transport_error and the generator's file-descriptor limit of %d named", c.name, samples[i].Cause, kept, limit)
		}
		t.Logf("%s: %v", c.name, kept)
	}
	t.Logf("fdlimit child: checked %d clients", len(clients))
}

// A VU whose socket cannot be opened for lack of file descriptors waits
// before it tries again (1 ms doubling to 1 s), instead of counting the
// same failure a few hundred thousand times a second. The VUs run in a
// child process with a lowered limit; the server runs here, with this
// process's descriptors.
func TestFDLimitVUsBackOff(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, loops := range []string{"0", "2"} {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFDLimitVUsChild$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "CASCADE_FDLIMIT_VUS="+srv.URL, "CASCADE_FDLIMIT_LOOPS="+loops)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "fdlimit vus child: done") {
			t.Fatalf("child (loops %s): %v\n%s", loops, err, out)
		}
		t.Logf("child (loops %s):\n%s", loops, out)
	}
}

// TestFDLimitVUsChild runs in the child of TestFDLimitVUsBackOff.
func TestFDLimitVUsChild(t *testing.T) {
	target := os.Getenv("CASCADE_FDLIMIT_VUS")
	if target == "" {
		t.Skip("run by TestFDLimitVUsBackOff in a process of its own")
	}
	const limit, vus = 128, 200
	lowerFDLimit(t, limit)
	loops, _ := strconv.Atoi(os.Getenv("CASCADE_FDLIMIT_LOOPS"))
	rec := &memRecorder{}
	clock := event.NewClock()
	g, err := New(Config{Target: target, Kind: VUs, KeepAlive: true, Loops: loops, Requests: []Request{{Path: "/"}},
		Stages: []Stage{{Duration: time.Second, From: vus, To: vus}}, ClientTimeout: 5 * time.Second}, rec, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock.Reset(time.Now())
	if err := g.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var ok, fd int
	for _, s := range rec.samples {
		switch {
		case s.Cause == cause.OK:
			ok++
		case s.fdLimit:
			fd++
		}
	}
	t.Logf("%d VUs under a limit of %d descriptors, 1 s: %d answered, %d failed for lack of descriptors", vus, limit, ok, fd)
	// Over 1 s a VU backing off from 1 ms tries about 10 times; one
	// retrying at once, tens of thousands.
	if fd == 0 || fd > 12*vus {
		t.Errorf("%d failures for lack of descriptors: want some, and at most %d", fd, 12*vus)
	}
	if ok == 0 {
		t.Errorf("no request answered: the VUs that have a connection must go on")
	}
	t.Logf("fdlimit vus child: done")
}

// A closed model with more VUs than the process may open sockets is named
// before the run: past the limit a VU sends nothing but failures.
func TestFDWarning(t *testing.T) {
	limit := openFileLimit()
	if limit == 0 {
		t.Skip("no RLIMIT_NOFILE here")
	}
	vus := func(n float64) Config {
		return Config{Kind: VUs, Stages: []Stage{{Duration: time.Second, From: n, To: n}}}
	}
	if msg := FDWarning(vus(float64(limit) * 2)); !strings.Contains(msg, "ulimit -n") {
		t.Errorf("VUs twice the limit %d: %q", limit, msg)
	}
	if msg := FDWarning(vus(10)); msg != "" {
		t.Errorf("10 VUs: %q", msg)
	}
	if msg := FDWarning(Config{Kind: ArrivalRate, Stages: []Stage{{Duration: time.Second, From: 1e6, To: 1e6}}}); msg != "" {
		t.Errorf("an open model (its in-flight cap bounds it): %q", msg)
	}
}

// lowerFDLimit sets this (child) process's soft RLIMIT_NOFILE.
func lowerFDLimit(t *testing.T, limit uint64) {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	rl.Cur = limit
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
}

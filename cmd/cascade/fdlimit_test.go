//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A load whose in-flight requests need more sockets than the process may
// open: the requests it could not send are the generator's own
// file-descriptor limit, and the report says so (ulimit -n,
// --max-in-flight) instead of blaming the target with connect_failure.
// The limit is lowered in a child process (this test binary again),
// never in the test process.
func TestLoadFDLimitNamed(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	tg := newTarget(t, time.Second) // holds every request: 300/s need ~300 sockets
	for _, client := range []string{"h1", "nethttp"} {
		t.Run(client, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLoadFDLimitChild$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), "CASCADE_FDLIMIT_URL="+tg.url, "CASCADE_FDLIMIT_CLIENT="+client,
				"CASCADE_FDLIMIT_OUT="+filepath.Join(t.TempDir(), "run"))
			b, err := cmd.CombinedOutput()
			out := string(b)
			if err != nil || !strings.Contains(out, "--- PASS: TestLoadFDLimitChild") {
				t.Fatalf("child: %v\n%s", err, out)
			}
			t.Logf("child:\n%s", out)
			outcomes := regexp.MustCompile(`(?m)^Outcomes .*$`).FindString(out)
			for _, want := range []string{
				"warning: requests not sent (cause transport_error): the load generator ran out of file descriptors (EMFILE): its own limit",
				"ulimit -n", "--max-in-flight", "too many open files",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("the report lacks %q:\n%s", want, out)
				}
			}
			if !strings.Contains(outcomes, "ok ") || !strings.Contains(outcomes, "transport_error[client]") || strings.Contains(outcomes, "connect_failure") {
				t.Errorf("outcomes %q: want some ok, the rest transport_error, no connect_failure of the target's", outcomes)
			}
		})
	}
}

// TestLoadFDLimitChild runs in the child of TestLoadFDLimitNamed: a
// cascade load with the soft RLIMIT_NOFILE a few dozen above the
// descriptors already open.
func TestLoadFDLimitChild(t *testing.T) {
	url := os.Getenv("CASCADE_FDLIMIT_URL")
	if url == "" {
		t.Skip("run by TestLoadFDLimitNamed in a process of its own")
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	rl.Cur = uint64(len(fds) + 48)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	args := []string{"load", url + "/", "--rate", "300/s", "--duration", "1s", "--progress", "off", "--out", os.Getenv("CASCADE_FDLIMIT_OUT")}
	if os.Getenv("CASCADE_FDLIMIT_CLIENT") == "nethttp" {
		args = append(args, "--nethttp")
	}
	code, out, errs := runCLI(context.Background(), args...)
	fmt.Println(out)
	if code != ExitPass {
		t.Fatalf("exit %d\n%s", code, errs)
	}
}

package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/interrupt"
)

// sleepyServer answers after the number of milliseconds in its path
// (/500: half a second).
func sleepyServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		select {
		case <-time.After(time.Duration(n) * time.Millisecond):
			io.WriteString(w, "slept")
		case <-r.Context().Done():
		}
	})}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

type drainAnswer struct {
	status int
	close  bool
	err    error
}

// getAsync GETs url on a connection of its own.
func getAsync(url string) <-chan drainAnswer {
	out := make(chan drainAnswer, 1)
	go func() {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
		res, err := c.Get(url)
		if err != nil {
			out <- drainAnswer{err: err}
			return
		}
		_, err = io.ReadAll(res.Body)
		res.Body.Close()
		out <- drainAnswer{status: res.StatusCode, close: res.Close, err: err}
	}()
	return out
}

// refusedWithin reports whether connections to addr are refused within d.
func refusedWithin(addr string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// startGateway runs `cascade gateway` in this process, as main would, with
// a context the test cancels (the first signal) and an interrupt.Stop it
// hurries (the second).
func startGateway(t *testing.T, args ...string) (addr string, errb *gwLogBuffer, first, second func(), done <-chan int) {
	t.Helper()
	st := interrupt.New()
	ctx, cancel := context.WithCancel(interrupt.With(context.Background(), st))
	t.Cleanup(cancel)
	errb = &gwLogBuffer{}
	ch := make(chan int, 1)
	go func() {
		ch <- cli(ctx, append([]string{"gateway", "--listen", "127.0.0.1:0"}, args...), io.Discard, errb)
	}()
	re := regexp.MustCompile(`listening on http://(\S+)`)
	deadline := time.Now().Add(5 * time.Second)
	for addr == "" && time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(errb.String()); m != nil {
			addr = m[1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	if addr == "" {
		t.Fatalf("no listening line: %s", errb.String())
	}
	return addr, errb, cancel, st.Hurry, ch
}

func waitExit(t *testing.T, done <-chan int, within time.Duration, errb *gwLogBuffer) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case code := <-done:
		if code != ExitPass {
			t.Errorf("exit %d: %s", code, errb.String())
		}
	case <-time.After(within):
		t.Fatalf("the gateway did not exit within %s: %s", within, errb.String())
	}
	return time.Since(start)
}

// The first stop signal drains: requests in flight are answered (with
// Connection: close), new connections are refused at once, and the
// gateway exits as soon as none is left; on goroutines and on event loops.
func TestGatewayDrainsOnStop(t *testing.T) {
	up := sleepyServer(t)
	for _, loops := range []string{"0", "1"} {
		t.Run("loops="+loops, func(t *testing.T) {
			addr, errb, first, _, done := startGateway(t, "--upstream", "http://"+up, "--loops", loops, "--drain-timeout", "5s")
			var answers []<-chan drainAnswer
			for range 3 {
				answers = append(answers, getAsync("http://"+addr+"/500"))
			}
			time.Sleep(150 * time.Millisecond)
			first()
			if !refusedWithin(addr, 200*time.Millisecond) {
				t.Error("new connections still accepted 200 ms after the signal")
			}
			for i, ch := range answers {
				if a := <-ch; a.err != nil || a.status != 200 || !a.close {
					t.Errorf("request %d in flight: status %d, close %v, %v; want 200 with Connection: close", i, a.status, a.close, a.err)
				}
			}
			waitExit(t, done, 2*time.Second, errb)
			for _, want := range []string{"draining 3 requests in flight", "3 requests in flight at the signal, 3 finished during the drain, 0 cut"} {
				if !strings.Contains(errb.String(), want) {
					t.Errorf("stderr lacks %q: %s", want, errb.String())
				}
			}
		})
	}
}

// A drain timeout shorter than the upstream cuts the request, and says so;
// a second signal cuts at once, however long the drain timeout.
func TestGatewayDrainCut(t *testing.T) {
	up := sleepyServer(t)
	for _, c := range []struct {
		name, timeout string
		second        bool
		want          string
	}{
		{"timeout", "200ms", false, "1 cut at the drain timeout (200ms)"},
		{"second signal", "30s", true, "1 cut by a second signal"},
		{"zero", "0s", false, "1 cut (--drain-timeout 0)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, errb, first, second, done := startGateway(t, "--upstream", "http://"+up, "--loops", "0", "--drain-timeout", c.timeout)
			answer := getAsync("http://" + addr + "/3000")
			time.Sleep(150 * time.Millisecond)
			first()
			if c.second {
				time.Sleep(100 * time.Millisecond)
				second()
			}
			took := waitExit(t, done, 2*time.Second, errb)
			if took > time.Second {
				t.Errorf("exit took %s after the last signal", took)
			}
			if a := <-answer; a.err == nil {
				t.Errorf("the cut request was answered: %+v", a)
			}
			if !strings.Contains(errb.String(), c.want) {
				t.Errorf("stderr lacks %q: %s", c.want, errb.String())
			}
		})
	}
}

// The real thing: SIGTERM to a `cascade gateway` process (event loops, its
// default on Linux) drains; a second SIGTERM cuts at once.
func TestGatewaySIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildCascade(t)
	up := sleepyServer(t)
	start := func(t *testing.T) (*exec.Cmd, string, *gwLogBuffer, chan error) {
		errb := &gwLogBuffer{}
		cmd := exec.Command(bin, "gateway", "--upstream", "http://"+up, "--listen", "127.0.0.1:0", "--drain-timeout", "10s")
		cmd.Stderr = errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		t.Cleanup(func() { cmd.Process.Kill(); <-waited })
		re := regexp.MustCompile(`listening on http://(\S+)`)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if m := re.FindStringSubmatch(errb.String()); m != nil {
				return cmd, m[1], errb, waited
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("no listening line: %s", errb.String())
		return nil, "", nil, nil
	}
	exited := func(t *testing.T, waited chan error, within time.Duration, errb *gwLogBuffer) {
		t.Helper()
		select {
		case err := <-waited:
			waited <- err // for the cleanup
			if err != nil {
				t.Errorf("exit: %v: %s", err, errb.String())
			}
		case <-time.After(within):
			t.Fatalf("still running %s later: %s", within, errb.String())
		}
	}
	t.Run("drain", func(t *testing.T) {
		cmd, addr, errb, waited := start(t)
		a1, a2 := getAsync("http://"+addr+"/500"), getAsync("http://"+addr+"/500")
		time.Sleep(150 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGTERM)
		if !refusedWithin(addr, 300*time.Millisecond) {
			t.Error("new connections still accepted 300 ms after SIGTERM")
		}
		for _, ch := range []<-chan drainAnswer{a1, a2} {
			if a := <-ch; a.err != nil || a.status != 200 || !a.close {
				t.Errorf("in flight at SIGTERM: status %d, close %v, %v; want 200 with Connection: close", a.status, a.close, a.err)
			}
		}
		exited(t, waited, 2*time.Second, errb)
		if want := "2 requests in flight at the signal, 2 finished during the drain, 0 cut"; !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q: %s", want, errb.String())
		}
	})
	t.Run("second signal", func(t *testing.T) {
		cmd, addr, errb, waited := start(t)
		a := getAsync("http://" + addr + "/5000")
		time.Sleep(150 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGTERM)
		time.Sleep(200 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGTERM)
		exited(t, waited, time.Second, errb)
		if r := <-a; r.err == nil {
			t.Errorf("the cut request was answered: %+v", r)
		}
		if want := "1 cut by a second signal"; !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q: %s", want, errb.String())
		}
	})
}

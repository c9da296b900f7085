package gameday_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/gameday"
	"github.com/cascadehq/cascade/internal/run"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// scenario is a small live run: two replicas, 100 requests/s.
func scenario(stages, extra string) string {
	return `name: live
seed: 3
upstreams:
  - {name: api, replicas: 2, latency: 2ms}
gateway:
  routes:
    - {path: /, upstream: api, timeouts: {connect: 200ms, response_header: 1s, total: 1500ms}}
load:
  client_timeout: 2s
  stages:
` + stages + `
  requests:
    - {path: /items}
` + extra
}

type outcome struct {
	o   *run.Outcome
	err error
}

// liveRun is a game day running in the test's process, with a client on
// its control API.
type liveRun struct {
	t      *testing.T
	dir    string
	plan   *plan.Plan
	c      *gameday.Client
	done   chan outcome
	cancel context.CancelFunc
	stderr *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startLive(t *testing.T, src string) *liveRun {
	t.Helper()
	p, err := plan.CompileBytes(t.Name()+".yaml", []byte(src), plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "run")
	ready := make(chan string, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	lr := &liveRun{t: t, dir: dir, plan: p, done: make(chan outcome, 1), cancel: cancel, stderr: &syncBuffer{}}
	go func() {
		o, err := run.Run(ctx, p, run.Options{OutDir: dir, Progress: run.ProgressOff, Stdout: io.Discard, Stderr: lr.stderr,
			Live: &run.LiveOptions{Ready: func(d string) { ready <- d }}})
		lr.done <- outcome{o, err}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-lr.done:
		case <-time.After(30 * time.Second):
			t.Error("the run did not end after cancel")
		}
	})
	select {
	case <-ready:
	case out := <-lr.done:
		t.Fatalf("the run ended before its control API was ready: %v", out.err)
	case <-time.After(30 * time.Second):
		t.Fatal("the control API never became ready")
	}
	c, err := gameday.Dial(dir, "tester")
	if err != nil {
		t.Fatal(err)
	}
	lr.c = c
	lr.waitState("running", "gated")
	return lr
}

// waitPast waits until the run's clock is past secs.
func (lr *liveRun) waitPast(what string, secs float64) {
	lr.t.Helper()
	waitFor(lr.t, what, 10*time.Second, func() bool {
		st, err := lr.c.Status(context.Background())
		return err == nil && st.T > secs
	})
}

func (lr *liveRun) waitState(states ...string) gameday.Status {
	lr.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := lr.c.Status(context.Background())
		if err == nil {
			for _, s := range states {
				if st.State == s {
					return st
				}
			}
		}
		if time.Now().After(deadline) {
			lr.t.Fatalf("state never became %v (last %q, %v)", states, st.State, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (lr *liveRun) wait() *run.Outcome {
	lr.t.Helper()
	select {
	case out := <-lr.done:
		lr.done <- out // for the cleanup
		if out.err != nil {
			lr.t.Fatalf("run: %v\n%s", out.err, lr.stderr)
		}
		return out.o
	case <-time.After(90 * time.Second):
		lr.t.Fatal("the run did not end")
	}
	return nil
}

// events reads the run's events after it ended.
func events(t *testing.T, dir string) []event.Event {
	t.Helper()
	r, err := results.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r.Events
}

func find(evs []event.Event, typ, fault string) []event.Event {
	var out []event.Event
	for _, e := range evs {
		if e.Type == typ && (fault == "" || e.Attr("fault") == fault) {
			out = append(out, e)
		}
	}
	return out
}

// prober is a client of the system under test beside the load generator:
// it sends a request every few milliseconds and keeps when each answer
// came and its status, so effects are observed from the client's side.
type prober struct {
	mu   sync.Mutex
	obs  []observation
	stop chan struct{}
	done chan struct{}
}

type observation struct {
	at     time.Time
	status int
}

func probe(t *testing.T, target string) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 2 * time.Second}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			resp, err := client.Get(target + "/probe")
			if err != nil {
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			p.mu.Lock()
			p.obs = append(p.obs, observation{at: time.Now(), status: resp.StatusCode})
			p.mu.Unlock()
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *prober) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// first5xxAfter is when the prober first saw a 5xx after t.
func (p *prober) first5xxAfter(t time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range p.obs {
		if o.at.After(t) && o.status >= 500 {
			return o.at, true
		}
	}
	return time.Time{}, false
}

// last5xx is when the prober last saw a 5xx, and how many answers came
// after t.
func (p *prober) last5xx(after time.Time) (last time.Time, answersAfter int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range p.obs {
		if o.status >= 500 {
			last = o.at
		}
		if o.at.After(after) {
			answersAfter++
		}
	}
	return last, answersAfter
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// raw sends a request to the control API with the given token (or none)
// and returns the status and the decoded error message.
func raw(t *testing.T, lr *liveRun, method, path, token, body string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, lr.c.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e gameday.APIError
	_ = json.Unmarshal(b, &e)
	if e.Error == "" {
		e.Error = string(b)
	}
	return resp.StatusCode, e.Error
}

func TestControlAPIAuthAndMalformedRequests(t *testing.T) {
	lr := startLive(t, scenario("    - {duration: 8s, rate: 50/s}", ""))
	tok := lr.c.Token

	// The control file holds the token: owner-only.
	fi, err := os.Stat(filepath.Join(lr.dir, gameday.ControlFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("control.json mode %v, want 0600", fi.Mode().Perm())
	}
	if !strings.Contains(lr.stderr.String(), tok) {
		t.Errorf("the token is not printed at start:\n%s", lr.stderr)
	}

	good := `{kind: error, target: api, params: {status: 503}}`
	// A token one character off; not "0"+tok[1:], which is the token itself
	// whenever it starts with a 0.
	off := "0" + tok[1:]
	if tok[0] == '0' {
		off = "1" + tok[1:]
	}
	for _, tc := range []struct {
		name, method, path, token, body string
		hdr                             map[string]string
		want                            int
		says                            string
	}{
		{"no token", "GET", "/v1/status", "", "", nil, 401, "missing token"},
		{"no token, write", "POST", "/v1/faults", "", good, nil, 401, "missing token"},
		{"wrong token", "GET", "/v1/faults", off, "", nil, 401, "wrong token"},
		{"wrong token, write", "POST", "/v1/stop", "nope", "", nil, 401, "wrong token"},
		{"token as basic auth", "GET", "/v1/status", "", "", map[string]string{"Authorization": "Basic " + tok}, 401, "Bearer"},
		{"stream without token", "GET", "/v1/stream", "", "", nil, 401, "missing token"},
		{"dashboard without token", "GET", "/", "", "", nil, 401, "missing token"},
		{"dashboard with a wrong token", "GET", "/?token=nope", "", "", nil, 401, "wrong token"},
		{"another host name (DNS rebinding)", "GET", "/v1/status", tok, "", map[string]string{"Host": "evil.example:80"}, 403, "loopback"},
		{"cross-origin write", "POST", "/v1/stop", tok, "", map[string]string{"Origin": "http://evil.example"}, 403, "cross-origin"},
		{"malformed fault: bad param", "POST", "/v1/faults", tok, `{kind: latency, target: api, params: {delay: 20}}`, nil, 400, "params.delay: expected a duration"},
		{"malformed fault: unknown kind", "POST", "/v1/faults", tok, `{kind: latensy, target: api}`, nil, 400, `unknown fault kind "latensy"`},
		{"malformed fault: unknown target", "POST", "/v1/faults", tok, `{kind: error, target: db}`, nil, 400, `unknown upstream "db" (declared: api)`},
		{"malformed fault: not YAML", "POST", "/v1/faults", tok, `{kind: error, target: [`, nil, 400, "request:1:"},
		{"malformed fault: empty", "POST", "/v1/faults", tok, ``, nil, 400, "empty fault"},
		{"malformed fault: start", "POST", "/v1/faults", tok, `{kind: error, target: api, start: 1s}`, nil, 400, "start does not apply"},
		{"unknown fault to remove", "DELETE", "/v1/faults/nope", tok, "", nil, 404, "no such fault"},
		{"no gate waiting", "POST", "/v1/phase/next", tok, "", nil, 409, "no gate is waiting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, msg := raw(t, lr, tc.method, tc.path, tc.token, tc.body, tc.hdr)
			if code != tc.want || !strings.Contains(msg, tc.says) {
				t.Errorf("%s %s: %d %q, want %d mentioning %q", tc.method, tc.path, code, msg, tc.want, tc.says)
			}
		})
	}
	// The reason for a malformed fault is the plan compiler's, word for
	// word, as for the same fault in a file.
	bad := `{kind: latency, target: api, params: {delay: 20}}`
	_, want := lr.plan.CompileFault("request", []byte(bad), "x")
	if _, msg := raw(t, lr, "POST", "/v1/faults", tok, bad, nil); msg != want.Error() {
		t.Errorf("API says %q, the compiler %q", msg, want)
	}
	// A name already taken by a scripted fault or a phase is refused.
	if code, msg := raw(t, lr, "POST", "/v1/faults", tok, `{name: run, kind: error, target: api}`, nil); code != 409 && code != 400 {
		t.Errorf("fault named like a phase: %d %q", code, msg)
	}
	// The right token works, and refused calls were journaled.
	if code, msg := raw(t, lr, "GET", "/v1/status", tok, "", nil); code != 200 {
		t.Errorf("status with the token: %d %q", code, msg)
	}
	if _, err := lr.c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	lr.wait()
	j, err := gameday.ReadJournal(lr.dir)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, e := range j {
		if e.Error != "" {
			refused++
		}
	}
	if refused < 6 {
		t.Errorf("journal holds %d refused actions, want the malformed ones: %+v", refused, j)
	}
	if _, err := os.Stat(filepath.Join(lr.dir, gameday.ControlFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control.json left behind after the run: %v", err)
	}
}

func TestControlAPIRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:8080", ":0", "localhost:0", "example.com:80", "127.0.0.1:40000"} {
		if err := gameday.CheckListen(addr); err == nil {
			t.Errorf("%s accepted", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "127.0.0.2:9000", "[::1]:0", "127.0.0.1:61000"} {
		if err := gameday.CheckListen(addr); err != nil {
			t.Errorf("%s refused: %v", addr, err)
		}
	}
	p, err := plan.CompileBytes("x.yaml", []byte(scenario("    - {duration: 1s, rate: 10/s}", "")), plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = run.Run(context.Background(), p, run.Options{OutDir: t.TempDir(), Progress: run.ProgressOff, Live: &run.LiveOptions{Listen: "0.0.0.0:0"}})
	if !errors.Is(err, run.ErrSetup) || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("run with a public control address: %v", err)
	}
}

// A fault added live takes effect within a second, as a client of the
// system sees it; removed, it stops within a second.
func TestLiveFaultTakesEffectWithinOneSecond(t *testing.T) {
	lr := startLive(t, scenario("    - {duration: 10s, rate: 100/s}", ""))
	st, err := lr.c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pr := probe(t, st.Target)
	waitFor(t, "the prober sees answers", 5*time.Second, func() bool { _, n := pr.last5xx(time.Time{}); return n > 10 })
	if _, ok := pr.first5xxAfter(time.Time{}); ok {
		t.Fatal("5xx before any fault")
	}
	sent := time.Now()
	a, err := lr.c.AddFault(context.Background(), "cli", []byte(`{kind: error, target: api, params: {status: 503}}`))
	if err != nil {
		t.Fatal(err)
	}
	var seen time.Time
	waitFor(t, "a 5xx after the fault was added", 3*time.Second, func() bool {
		var ok bool
		seen, ok = pr.first5xxAfter(sent)
		return ok
	})
	effect := seen.Sub(sent)
	t.Logf("live fault %s: first 5xx at the client %s after the request was sent", a.Name, effect.Round(100*time.Microsecond))
	if effect > time.Second {
		t.Errorf("the fault took effect after %s, want within 1s", effect)
	}
	// Leave it on for 300 ms, ~30 of the load generator's requests at
	// 100/s, so it sees the fault too: the prober can see a 5xx within a
	// few ms, before the generator's next request is due.
	time.Sleep(time.Until(sent.Add(300 * time.Millisecond)))
	rmSent := time.Now()
	if _, err := lr.c.RemoveFault(context.Background(), a.Name); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	last, after := pr.last5xx(rmSent)
	t.Logf("removed: last 5xx at the client %s after the remove was sent", last.Sub(rmSent).Round(100*time.Microsecond))
	if last.Sub(rmSent) > time.Second || after < 10 {
		t.Errorf("5xx until %s after the remove (answers after: %d)", last.Sub(rmSent), after)
	}
	if _, err := lr.c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	o := lr.wait()
	pr.close()
	// The load generator saw it too: upstream errors, from the fault only.
	if n := o.Summary.Run.Stats.Causes[cause.UpstreamError.String()]; n == 0 {
		t.Errorf("the load generator saw no upstream error: %v", o.Summary.Run.Stats.Causes)
	}
	evs := events(t, lr.dir)
	starts := find(evs, "fault.start", a.Name)
	applies := find(evs, "fault.apply", a.Name)
	if len(starts) != 1 || len(applies) == 0 {
		t.Fatalf("events: %d starts, %d applies", len(starts), len(applies))
	}
	t.Logf("first firing %s after the onset (run clock)", (applies[0].T - starts[0].T).Round(100*time.Microsecond))
}

// A safety check that breaks removes every fault at once — active,
// added by hand, scripted to come — records the halt, and the run goes
// on (on_breach: continue).
func TestAutoHaltRemovesEveryFaultWithinOneSecond(t *testing.T) {
	extra := `faults:
  - {name: slow, kind: latency, target: api, start: 0s, duration: 9s, params: {delay: 5ms}}
  - {name: later, kind: latency, target: api, start: 7s, duration: 1s, params: {delay: 50ms}}
safety:
  - {objective: "error_rate < 20%", window: 1s, on_breach: continue}
slo:
  - p99 < 1s
`
	lr := startLive(t, scenario("    - {duration: 10s, rate: 100/s}", extra))
	st, err := lr.c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pr := probe(t, st.Target)
	time.Sleep(1500 * time.Millisecond) // a healthy window first: the check is armed
	if len(st.Faults) != 1 || st.Faults[0].Name != "slow" {
		t.Errorf("faults before: %+v", st.Faults)
	}
	sent := time.Now()
	a, err := lr.c.AddFault(context.Background(), "cli", []byte(`{kind: error, target: api, params: {status: 500}}`))
	if err != nil {
		t.Fatal(err)
	}
	var halted gameday.Status
	waitFor(t, "the halt", 5*time.Second, func() bool {
		s, err := lr.c.Status(context.Background())
		halted = s
		return err == nil && len(s.Halts) > 0
	})
	// Run clock → wall clock, from this status answer.
	wallOf := func(tRun float64) time.Time {
		return time.Now().Add(-time.Duration((halted.T - tRun) * float64(time.Second)))
	}
	h := halted.Halts[0]
	haltWall := wallOf(h.TS)
	time.Sleep(1500 * time.Millisecond)
	last, after := pr.last5xx(haltWall)
	t.Logf("fault added %s before the halt; last 5xx at the client %s after the halt", haltWall.Sub(sent).Round(time.Millisecond), last.Sub(haltWall).Round(time.Millisecond))
	if last.Sub(haltWall) > time.Second || after < 10 {
		t.Errorf("5xx until %s after the halt (answers after: %d)", last.Sub(haltWall), after)
	}
	if h.Objective != "error_rate < 20%" || h.Stop || !strings.Contains(strings.Join(h.Removed, ","), a.Name) || !strings.Contains(strings.Join(h.Removed, ","), "slow") ||
		!strings.Contains(strings.Join(h.Removed, ","), "later") {
		t.Errorf("halt = %+v", h)
	}
	if s, _ := lr.c.Status(context.Background()); len(s.Faults) != 0 || s.State != "running" {
		t.Errorf("after the halt: state %s, faults %+v", s.State, s.Faults)
	}
	o := lr.wait() // runs to its end: on_breach continue
	if o.Interrupted {
		t.Error("interrupted")
	}
	evs := events(t, lr.dir)
	halts := find(evs, "gameday.halt", "")
	if len(halts) != 1 || halts[0].Attr("objective") != "error_rate < 20%" || halts[0].Attr("measured") == "" {
		t.Fatalf("halt events: %+v", halts)
	}
	ht := halts[0].T
	onset := find(evs, "fault.start", a.Name)[0].T
	for _, name := range []string{a.Name, "slow"} {
		stops := find(evs, "fault.stop", name)
		if len(stops) != 1 || stops[0].T < ht || stops[0].T-ht > 100*time.Millisecond {
			t.Errorf("%s: stops %+v, halt at %s", name, stops, ht)
		}
	}
	if n := len(find(evs, "fault.start", "later")); n != 0 {
		t.Errorf("the pending fault started %d times after the halt", n)
	}
	t.Logf("halt %s after the error fault's onset (the 1 s window crosses 20%% after ≈0.2 s of errors); faults removed at the halt instant", (ht - onset).Round(time.Millisecond))
	if ht-onset > 1500*time.Millisecond {
		t.Errorf("the halt came %s after the onset", ht-onset)
	}
	j, _ := gameday.ReadJournal(lr.dir)
	var sawHalt bool
	for _, e := range j {
		sawHalt = sawHalt || (e.Action == gameday.ActHalt && e.Who == "safety")
	}
	if !sawHalt {
		t.Errorf("journal: %+v", j)
	}
}

// A halt with on_breach: stop ends the run gracefully.
func TestAutoHaltStop(t *testing.T) {
	extra := `safety:
  - {objective: "error_rate < 10%", window: 1s}
`
	lr := startLive(t, scenario("    - {duration: 20s, rate: 100/s}", extra))
	time.Sleep(1200 * time.Millisecond)
	if _, err := lr.c.AddFault(context.Background(), "cli", []byte(`{kind: error, target: api}`)); err != nil {
		t.Fatal(err)
	}
	o := lr.wait()
	if o.Interrupted || o.Summary.Elapsed > 10 {
		t.Errorf("interrupted %v, elapsed %.1fs of %.1fs", o.Interrupted, float64(o.Summary.Elapsed), float64(o.Summary.Planned))
	}
	b, _ := os.ReadFile(filepath.Join(lr.dir, gameday.StateFile))
	var st gameday.State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(st.Stopped, "safety:") || len(st.Halts) != 1 || !st.Halts[0].Stop {
		t.Errorf("state: %+v", st)
	}
}

// cascade stop ends the load gracefully: requests in flight finish (none
// is aborted), the run is judged as usual, not marked interrupted.
func TestGracefulStop(t *testing.T) {
	extra := `slo:
  - error_rate < 1%
  - p99 < 1s
`
	lr := startLive(t, scenario("    - {duration: 30s, rate: 100/s}", extra))
	if _, err := lr.c.AddFault(context.Background(), "cli", []byte(`{kind: latency, target: api, params: {delay: 300ms}}`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if _, err := lr.c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := lr.c.Stop(context.Background()); err == nil {
		t.Error("a second stop was accepted")
	}
	o := lr.wait()
	s := o.Summary
	if o.Interrupted || s.Interrupted || !o.Pass || s.Verdict != results.VerdictPass {
		t.Errorf("interrupted %v, pass %v, verdict %s", o.Interrupted, o.Pass, s.Verdict)
	}
	if s.Run.Stats.Causes[cause.Aborted.String()] != 0 || s.Run.Stats.Sent < 100 {
		t.Errorf("causes %v, sent %d", s.Run.Stats.Causes, s.Run.Stats.Sent)
	}
	if s.Elapsed > 10 {
		t.Errorf("elapsed %.1fs: the stop did not stop", float64(s.Elapsed))
	}
	// Rates are over the time the load ran, not the planned 30 s.
	if r := s.Run.Stats.AchievedRate; r < 80 || r > 120 {
		t.Errorf("achieved %.1f/s", r)
	}
	j, _ := gameday.ReadJournal(lr.dir)
	if len(j) != 3 || j[0].Fault != "manual-latency-1" || j[1].Action != gameday.ActStop || j[1].Who != "tester" || j[1].Error != "" ||
		!strings.Contains(j[2].Error, "stopping") {
		t.Errorf("journal: %+v", j)
	}
	// The last interval is as wide as the part of it the load ran, as
	// after Ctrl-C: it was a whole second, its rate reading low.
	r, err := results.Load(lr.dir)
	if err != nil || len(r.Intervals) == 0 || len(j) < 2 {
		t.Fatalf("results: %v, %d intervals", err, len(r.Intervals))
	}
	last := r.Intervals[len(r.Intervals)-1]
	if end := float64(last.Start + last.Width); math.Abs(end-j[1].T) > 0.05 {
		t.Errorf("the last interval [%v, +%v) ends at %.3fs; the load was stopped at %.3fs", last.Start, last.Width, end, j[1].T)
	}
}

// A manual gate holds the load at the rate before it and the fault
// timeline with it; the phase boundaries are where the gate really opened.
func TestManualGateHoldsLoadAndTimeline(t *testing.T) {
	extra := `phases:
  - {name: check, start: 2s, gate: manual, max_hold: 1m}
faults:
  - {name: slow, kind: latency, target: api, start: 3s, duration: 1s, params: {delay: 30ms}}
slo:
  - {phase: check, objective: "achieved_rate >= 90%"}
  - {phase: slow, objective: "p50 > 25ms"}
`
	lr := startLive(t, scenario("    - {duration: 2s, rate: 50/s}\n    - {duration: 3s, rate: 150/s}", extra))
	st := lr.waitState("gated")
	if st.Gate == nil || st.Gate.Name != "check" || st.Gate.Rate != 50 {
		t.Fatalf("gate: %+v", st.Gate)
	}
	time.Sleep(2 * time.Second) // the script stands still; the load holds 50/s
	st, _ = lr.c.Status(context.Background())
	if st.ScriptT != 2 || len(st.Faults) != 0 {
		t.Errorf("while gated: scenario clock %.2fs, faults %+v", st.ScriptT, st.Faults)
	}
	d, err := lr.c.NextPhase(context.Background())
	if err != nil || d.Phase != "check" {
		t.Fatalf("phase next: %+v %v", d, err)
	}
	o := lr.wait()
	if !o.Pass {
		for _, r := range o.Summary.Objectives {
			t.Logf("%s: %s (%s)", r.Name, r.Measured, r.Evidence)
		}
		t.Error("objectives failed")
	}
	var gate results.PhaseSummary
	for _, ph := range o.Summary.Phases {
		if ph.Name == "check" {
			gate = ph
		}
	}
	held := float64(gate.End - gate.Start)
	// The API answers with the instant the gate opened, which is where the
	// phase ends: the same clock read, not two a scheduling delay apart.
	if gate.Start < 1.9 || gate.Start > 2.2 || held < 1.9 || math.Abs(float64(gate.End)-d.T) > 0.002 {
		t.Errorf("gate phase [%.3f, %.3f), opened at %.3f", float64(gate.Start), float64(gate.End), d.T)
	}
	if r := gate.Stats.AchievedRate; r < 45 || r > 55 {
		t.Errorf("held %.1f/s, want 50/s", r)
	}
	evs := events(t, lr.dir)
	start := find(evs, "fault.start", "slow")
	want := gate.End.D() + time.Second // scripted at 3s, one second after the gate
	if len(start) != 1 || (start[0].T-want).Abs() > 100*time.Millisecond {
		t.Errorf("slow started at %v, want %v", start, want)
	}
	if got := float64(o.Summary.Planned); got < 5+held-0.01 || got > 5+held+0.01 {
		t.Errorf("planned %.3fs, want 5s + %.3fs held", got, held)
	}
}

// In a gated game day, removing a scripted fault cancels what is to come of
// it: a repeated fault does not come back, and one removed before its
// start never starts (it used to answer 404 and start anyway).
func TestGatedRemoveCancelsScriptedFaults(t *testing.T) {
	extra := `phases:
  - {name: check, start: 1s, gate: manual, max_hold: 1m}
faults:
  - {name: flap, kind: error, target: api, start: 2s, duration: 500ms, repeat: {every: 1s, times: 3}, params: {status: 503}}
  - {name: later, kind: latency, target: api, start: 4s, duration: 500ms, params: {delay: 20ms}}
`
	lr := startLive(t, scenario("    - {duration: 5s, rate: 50/s}", extra))
	lr.waitState("gated")
	if _, err := lr.c.RemoveFault(context.Background(), "later"); err != nil {
		t.Fatalf("removing a scripted fault before its start: %v", err)
	}
	if _, err := lr.c.RemoveFault(context.Background(), "nothing"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("removing a fault that is nowhere: %v", err)
	}
	d, err := lr.c.NextPhase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// flap's first occurrence starts 1 s after the gate; remove it while on.
	active := func() bool {
		st, err := lr.c.Status(context.Background())
		return err == nil && slices.ContainsFunc(st.Faults, func(f gameday.FaultStatus) bool { return f.Name == "flap" })
	}
	for deadline := time.Now().Add(10 * time.Second); !active() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := lr.c.RemoveFault(context.Background(), "flap"); err != nil {
		t.Fatalf("removing flap while on: %v", err)
	}
	lr.wait()
	evs := events(t, lr.dir)
	if n := len(find(evs, "fault.start", "flap")); n != 1 {
		t.Errorf("flap started %d times after the gate opened at %.2fs; removed during the first, it must not come back", n, d.T)
	}
	if n := len(find(evs, "fault.start", "later")); n != 0 {
		t.Errorf("later started %d times although removed before its start", n)
	}
}

// A gate nobody opens opens by itself after max_hold.
func TestGateOpensAtMaxHold(t *testing.T) {
	extra := `phases:
  - {name: wait, start: 1s, gate: manual, max_hold: 1s}
`
	lr := startLive(t, scenario("    - {duration: 2s, rate: 50/s}", extra))
	o := lr.wait()
	if o.Summary.Elapsed < 2.9 || o.Summary.Elapsed > 4.5 {
		t.Errorf("elapsed %.2fs, want 2s + 1s hold", float64(o.Summary.Elapsed))
	}
	opens := find(events(t, lr.dir), "gate.open", "")
	if len(opens) != 1 || opens[0].Attr("by") != "max_hold" {
		t.Errorf("gate.open: %+v", opens)
	}
}

// The journal of a game day exports to a scenario that replays it: the
// same faults at the same times, within 100 ms.
func TestExportReplaysTheFaultTimeline(t *testing.T) {
	extra := `phases:
  - {name: go, start: 1s, gate: manual, max_hold: 1m}
faults:
  - {name: scripted, kind: latency, target: api, start: 2s, duration: 1s, params: {delay: 10ms}}
  - {name: repeated, kind: latency, target: "api[random]", start: 1500ms, duration: 300ms, repeat: {every: 1s, times: 3}, params: {delay: 5ms}}
slo:
  - {phase: scripted, objective: "p50 > 5ms"}
`
	lr := startLive(t, scenario("    - {duration: 5s, rate: 50/s}", extra))
	lr.waitState("gated")
	ctx := context.Background()
	a, err := lr.c.AddFault(ctx, "fault.yaml", []byte("name: by-hand\nkind: error\ntarget: \"api[1]\"\nparams: {status: 502, probability: 0.5}\n"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	if _, err := lr.c.NextPhase(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(800 * time.Millisecond)
	if _, err := lr.c.RemoveFault(ctx, a.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := lr.c.AddFault(ctx, "cli", []byte(`{kind: latency, target: api, params: {delay: 15ms}, duration: 1s}`)); err != nil {
		t.Fatal(err)
	}
	lr.wait()

	out, err := gameday.Export(lr.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exported:\n%s", out)
	p, err := plan.CompileBytes("replay.yaml", out, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Gates) != 0 {
		t.Fatalf("the export still has gates: %+v", p.Gates)
	}
	dir := filepath.Join(t.TempDir(), "replay")
	if _, err := run.Run(context.Background(), p, run.Options{OutDir: dir, Progress: run.ProgressOff}); err != nil {
		t.Fatal(err)
	}
	windows := func(dir string) map[string][][2]time.Duration {
		out := map[string][][2]time.Duration{}
		var open = map[string]int{}
		for _, e := range events(t, dir) {
			n := e.Attr("fault")
			switch e.Type {
			case "fault.start":
				open[n] = len(out[n])
				out[n] = append(out[n], [2]time.Duration{e.T, -1})
			case "fault.stop":
				out[n][open[n]][1] = e.T
			}
		}
		return out
	}
	live, replay := windows(lr.dir), windows(dir)
	// The live run's faults, by onset: each occurrence is one entry in the
	// export (a repeated fault moved by the gate is n entries, name-k).
	flat := func(m map[string][][2]time.Duration) [][2]time.Duration {
		var all [][2]time.Duration
		for _, ws := range m {
			all = append(all, ws...)
		}
		sortWindows(all)
		return all
	}
	lw, rw := flat(live), flat(replay)
	if len(lw) != len(rw) {
		t.Fatalf("live had %d fault windows, the replay %d\nlive %v\nreplay %v", len(lw), len(rw), live, replay)
	}
	var worst time.Duration
	for i := range lw {
		for k := 0; k < 2; k++ {
			if lw[i][k] < 0 || rw[i][k] < 0 {
				if (lw[i][k] < 0) != (rw[i][k] < 0) {
					t.Errorf("window %d: live %v, replay %v", i, lw[i], rw[i])
				}
				continue
			}
			worst = max(worst, (lw[i][k] - rw[i][k]).Abs())
		}
	}
	t.Logf("%d fault windows; worst start/stop difference live vs replay %s", len(lw), worst.Round(100*time.Microsecond))
	if worst > 100*time.Millisecond {
		t.Errorf("the replay's fault timeline is %s off the game day's (live %v, replay %v)", worst, lw, rw)
	}
}

// A game day's phases follow its faults as they ran: a scripted fault
// removed early ends its phase then, a fault added by hand gets a phase,
// and the gaps move with them. So the game day judges the windows its
// exported replay compiles, and compare finds the same phases in both.
func TestGameDayPhasesAreTheReplays(t *testing.T) {
	extra := `faults:
  - {name: slow, kind: latency, target: api, start: 1s, duration: 4s, params: {delay: 10ms}}
slo:
  - {phase: slow, objective: "p50 > 5ms"}
`
	lr := startLive(t, scenario("    - {duration: 6s, rate: 50/s}", extra))
	ctx := context.Background()
	lr.waitPast("the scripted fault", 2)
	if _, err := lr.c.RemoveFault(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := lr.c.AddFault(ctx, "cli", []byte(`{name: by-hand, kind: latency, target: api, params: {delay: 15ms}, duration: 1s}`)); err != nil {
		t.Fatal(err)
	}
	live := lr.wait().Summary

	out, err := gameday.Export(lr.dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.CompileBytes("replay.yaml", out, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o, err := run.Run(context.Background(), p, run.Options{OutDir: filepath.Join(t.TempDir(), "replay"), Progress: run.ProgressOff})
	if err != nil {
		t.Fatal(err)
	}
	windows := func(s *results.Summary) map[string][2]time.Duration {
		m := map[string][2]time.Duration{}
		for _, ph := range s.Phases {
			m[ph.Name] = [2]time.Duration{ph.Start.D(), ph.End.D()}
		}
		return m
	}
	lw, rw := windows(live), windows(o.Summary)
	t.Logf("game day %v\nreplay   %v", lw, rw)
	if len(lw) != len(rw) {
		t.Fatalf("the game day has %d phases, its replay %d", len(lw), len(rw))
	}
	for name, w := range lw {
		r, ok := rw[name]
		if !ok {
			t.Errorf("phase %s: not in the replay", name)
			continue
		}
		if d := max((w[0] - r[0]).Abs(), (w[1] - r[1]).Abs()); d > 100*time.Millisecond {
			t.Errorf("phase %s: game day %v, replay %v", name, w, r)
		}
	}
	if w := lw["slow"]; w[1] > 3500*time.Millisecond {
		t.Errorf("the removed fault's phase runs to %s, past its removal at about 2s", w[1])
	}
	if _, ok := lw["by-hand"]; !ok {
		t.Error("the fault added by hand has no phase")
	}
}

func sortWindows(ws [][2]time.Duration) {
	for i := 1; i < len(ws); i++ {
		for j := i; j > 0 && ws[j][0] < ws[j-1][0]; j-- {
			ws[j], ws[j-1] = ws[j-1], ws[j]
		}
	}
}

// Safety checks work in a plain run too (no control API): a scripted
// fault that breaks the system is halted, and on_breach: stop ends the run.
func TestSafetyInPlainRun(t *testing.T) {
	extra := `faults:
  - {name: boom, kind: error, target: api, start: 1s, params: {status: 500}}
safety:
  - {objective: "error_rate < 20%", window: 1s}
`
	p, err := plan.CompileBytes("plain.yaml", []byte(scenario("    - {duration: 20s, rate: 100/s}", extra)), plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "run")
	o, err := run.Run(context.Background(), p, run.Options{OutDir: dir, Progress: run.ProgressOff})
	if err != nil {
		t.Fatal(err)
	}
	if o.Interrupted || o.Summary.Elapsed > 5 {
		t.Errorf("interrupted %v, elapsed %.1fs", o.Interrupted, float64(o.Summary.Elapsed))
	}
	evs := events(t, dir)
	halts, stops := find(evs, "gameday.halt", ""), find(evs, "fault.stop", "boom")
	if len(halts) != 1 || len(stops) != 1 || stops[0].T-halts[0].T > 100*time.Millisecond || halts[0].T-stops[0].T > 0 {
		t.Errorf("halts %+v, stops %+v", halts, stops)
	}
	if _, err := os.Stat(filepath.Join(dir, gameday.ControlFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a plain run opened a control API: %v", err)
	}
}

// A check halts once per breach. After the halt the window still holds the
// errors the removed faults caused, and its edge moves in 250 ms steps, so
// the measured rate saws around the bound for a window's length; each dip
// below it re-armed the check and the next rise halted again, with nothing
// left to remove (five halts in 2 s on the game day example).
func TestAutoHaltOncePerBreach(t *testing.T) {
	extra := `safety:
  - {objective: "error_rate < 20%", window: 2s, on_breach: continue}
`
	lr := startLive(t, scenario("    - {duration: 7s, rate: 100/s}", extra))
	time.Sleep(2500 * time.Millisecond) // a healthy window first: the check is armed
	if _, err := lr.c.AddFault(context.Background(), "cli", []byte(`{kind: error, target: api, params: {status: 500, probability: 30%}}`)); err != nil {
		t.Fatal(err)
	}
	lr.wait()
	halts := find(events(t, lr.dir), "gameday.halt", "")
	if len(halts) != 1 {
		for _, h := range halts {
			t.Logf("halt at %s: measured %v, removed %v", h.T, h.Attr("measured"), h.Attrs["removed"])
		}
		t.Fatalf("%d halts for one breach, want 1", len(halts))
	}
}

// snapshotNow reads the first message of the dashboard's stream.
func snapshotNow(t *testing.T, c *gameday.Client) gameday.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/v1/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set(gameday.HeaderWho, c.Who)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var snap gameday.Snapshot
			if err := json.Unmarshal([]byte(data), &snap); err != nil {
				t.Fatal(err)
			}
			return snap
		}
	}
	t.Fatalf("no snapshot on the stream: %v", sc.Err())
	return gameday.Snapshot{}
}

// The dashboard lists phases in time order, a phase a fault added by hand
// made among them, and judges each objective on its own phase's samples
// after a phase the plan derived is gone (b removed before it started
// takes b and after-a with it). The Gone phases once shifted every later
// phase onto the stats of the one before, so `after` read b's: none.
func TestDashboardPhasesAfterLiveEdits(t *testing.T) {
	extra := `faults:
  - {name: a, kind: latency, target: api, start: 1s, duration: 1s, params: {delay: 5ms}}
  - {name: b, kind: latency, target: api, start: 3s, duration: 1s, params: {delay: 5ms}}
slo:
  - {name: after-ok, phase: after, objective: "p50 < 1s"}
`
	lr := startLive(t, scenario("    - {duration: 7s, rate: 50/s}", extra))
	ctx := context.Background()
	lr.waitPast("fault a", 1.3)
	if _, err := lr.c.RemoveFault(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	lr.waitPast("the gap after a", 2.3)
	if _, err := lr.c.AddFault(ctx, "cli", []byte(`{name: by-hand, kind: latency, target: api, params: {delay: 5ms}, duration: 1s}`)); err != nil {
		t.Fatal(err)
	}
	lr.waitPast("the phase after the fault by hand", 4.5)
	snap := snapshotNow(t, lr.c)
	var names []string
	var last float64
	for _, ph := range snap.Phases {
		names = append(names, ph.Name)
		if ph.Start == nil {
			t.Errorf("phase %s has not started at %.1fs", ph.Name, snap.T)
			continue
		}
		if *ph.Start < last {
			t.Errorf("phase %s starts at %.2fs, before the one listed above it (%.2fs)", ph.Name, *ph.Start, last)
		}
		last = *ph.Start
	}
	if got, want := strings.Join(names, " "), "run before a after-a by-hand after"; got != want {
		t.Errorf("phases %q, want %q", got, want)
	}
	for _, slo := range snap.SLO {
		if slo.Name == "after-ok" && (slo.State != "pass" || slo.Measured == "") {
			t.Errorf("after-ok on phase after, which has run for a second: state %s, measured %q (%s)", slo.State, slo.Measured, slo.Evidence)
		}
	}
	lr.cancel()
}

// A game day without gates is one generator, as a plain run: its intervals
// are written as soon as no request can still land in them, for an open
// model (its arrivals counted) and a closed one (its VUs' sends), not a
// client timeout (30 s) later, which a kill lost. Stopped by hand, it
// writes each interval once (the one the stop falls in at the end) and
// they add up to the summary.
func TestGameDayWritesIntervalsEarly(t *testing.T) {
	for name, load := range map[string]string{
		"open": `  client_timeout: 30s
  stages:
    - {duration: 40s, rate: 100/s}
  requests:
    - {path: /o}
`,
		"vus": `  vus: 2
  duration: 40s
  think: 20ms
  client_timeout: 30s
  requests:
    - {path: /v}
`,
	} {
		t.Run(name, func(t *testing.T) {
			lr := startLive(t, `name: live-early
seed: 3
upstreams:
  - {name: api, replicas: 2, latency: 2ms}
gateway:
  routes:
    - {path: /, upstream: api, timeouts: {connect: 200ms, response_header: 1s, total: 1500ms}}
load:
`+load)
			intervals := filepath.Join(lr.dir, results.IntervalsFile)
			waitFor(t, "three intervals written", 15*time.Second, func() bool {
				b, _ := os.ReadFile(intervals)
				return bytes.Count(b, []byte("\n")) >= 3
			})
			if _, err := lr.c.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			o := lr.wait()
			r, err := results.Load(lr.dir)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[results.Seconds]bool{}
			var sent int64
			for _, iv := range r.Intervals {
				if seen[iv.Start] {
					t.Errorf("the interval at %v was written twice: a request landed in it after it was written", iv.Start)
				}
				seen[iv.Start] = true
				sent += iv.Stats.Sent
			}
			if sent != o.Summary.Run.Stats.Sent || len(r.Intervals) < 3 {
				t.Errorf("%d intervals sent %d requests, the summary %d", len(r.Intervals), sent, o.Summary.Run.Stats.Sent)
			}
		})
	}
}

package faults_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/event"
)

// tlRig is an upstream and a running timeline on a fresh clock.
type tlRig struct {
	up    *faults.Upstream
	tl    *faults.Timeline
	sink  *event.Memory
	clock *event.Clock
	stop  func()
}

func newTimelineRig(t *testing.T, replicas int, entries ...faults.Entry) *tlRig {
	t.Helper()
	sink := &event.Memory{}
	clock := event.NewClock()
	opts := faults.Options{Seed: 7, Sink: sink, Clock: clock}
	up := faults.NewUpstream(faults.UpstreamConfig{Name: "api", Replicas: replicas}, opts)
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	tl, err := faults.NewTimeline(entries, []*faults.Upstream{up}, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	done := make(chan struct{})
	go func() { tl.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return &tlRig{up: up, tl: tl, sink: sink, clock: clock, stop: stop}
}

func errorEntry(name string, replica int) faults.Entry {
	return faults.Entry{Name: name, Kind: "error", Spec: &faults.ErrorSpec{Status: 500, Selector: faults.Selector{Probability: 1}},
		Upstream: "api", Replica: replica}
}

func TestTimelineLiveStartStop(t *testing.T) {
	r := newTimelineRig(t, 2)
	url := r.up.Replicas()[0].URL()
	if got := call(url, time.Second).status; got != 200 {
		t.Fatalf("before: %d", got)
	}
	e := errorEntry("gameday-500", 0)
	e.Start = time.Hour // ignored: a live start is now
	if err := r.tl.Start(e); err != nil {
		t.Fatal(err)
	}
	if got := r.tl.Active(); !slices.Equal(got, []string{"gameday-500"}) {
		t.Fatalf("Active = %v", got)
	}
	if got := call(url, time.Second).status; got != 500 {
		t.Fatalf("after Start: %d", got)
	}
	if err := r.tl.Start(e); !errors.Is(err, faults.ErrFaultActive) {
		t.Fatalf("second Start: %v, want ErrFaultActive", err)
	}
	if err := r.tl.Stop("gameday-500"); err != nil {
		t.Fatal(err)
	}
	if got := call(url, time.Second).status; got != 200 {
		t.Fatalf("after Stop: %d", got)
	}
	if len(r.tl.Active()) != 0 {
		t.Fatalf("Active after Stop = %v", r.tl.Active())
	}
	if err := r.tl.Stop("gameday-500"); !errors.Is(err, faults.ErrNotActive) {
		t.Fatalf("second Stop: %v", err)
	}
	if err := r.tl.Stop("nope"); !errors.Is(err, faults.ErrUnknownFault) {
		t.Fatalf("Stop unknown: %v", err)
	}
	bad := errorEntry("bad", 5)
	if err := r.tl.Start(bad); err == nil || !strings.Contains(err.Error(), "no replica 5") {
		t.Fatalf("Start on a missing replica: %v", err)
	}
	// A restart of the same name keeps counting in one report.
	if err := r.tl.Start(e); err != nil {
		t.Fatal(err)
	}
	call(url, time.Second)
	rep := r.tl.Reports()[0]
	if rep.Fired != 2 || rep.Occurrences != 2 {
		t.Fatalf("report %+v, want 2 firings over 2 starts", rep)
	}
	r.stop()
	if err := r.tl.Start(errorEntry("late", 0)); !errors.Is(err, faults.ErrTimelineDone) {
		t.Fatalf("Start after the run: %v", err)
	}
	if got := call(url, time.Second).status; got != 200 {
		t.Fatalf("the timeline's end must revert live faults too: %d", got)
	}
}

func TestTimelineLiveStartWithDuration(t *testing.T) {
	r := newTimelineRig(t, 1)
	e := errorEntry("short", 0)
	e.Duration = 200 * time.Millisecond
	if err := r.tl.Start(e); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if len(r.tl.Active()) != 0 {
		t.Fatalf("a live fault with a duration must end by itself: %v", r.tl.Active())
	}
}

func TestTimelineRepeat(t *testing.T) {
	e := errorEntry("flap", 0)
	e.Start, e.Duration, e.Every, e.Times = 100*time.Millisecond, 100*time.Millisecond, 300*time.Millisecond, 3
	r := newTimelineRig(t, 1, e)
	time.Sleep(1100 * time.Millisecond)
	var starts, stops []time.Duration
	for _, ev := range r.sink.Events() {
		switch ev.Type {
		case "fault.start":
			starts = append(starts, ev.T)
		case "fault.stop":
			stops = append(stops, ev.T)
		}
	}
	if len(starts) != 3 || len(stops) != 3 {
		t.Fatalf("starts %v stops %v, want 3 of each", starts, stops)
	}
	for i := range 3 {
		want := 100*time.Millisecond + time.Duration(i)*300*time.Millisecond
		if d := starts[i] - want; d < 0 || d > 80*time.Millisecond {
			t.Errorf("occurrence %d started at %s, want %s", i+1, starts[i], want)
		}
		if d := stops[i] - starts[i]; d < 90*time.Millisecond || d > 180*time.Millisecond {
			t.Errorf("occurrence %d lasted %s, want 100ms", i+1, d)
		}
	}
	if rep := r.tl.Reports()[0]; rep.Occurrences != 3 {
		t.Fatalf("report: %+v", rep)
	}
}

func TestTimelineRampScalesLatency(t *testing.T) {
	e := faults.Entry{Name: "ramp", Kind: "latency", Upstream: "api", Replica: -1,
		Spec: &faults.LatencySpec{Delay: dist.FixedLatency(400 * time.Millisecond), Selector: faults.Selector{Probability: 1}},
		Ramp: time.Second}
	r := newTimelineRig(t, 1, e)
	url := r.up.Replicas()[0].URL()
	time.Sleep(50 * time.Millisecond)
	early := call(url, 2*time.Second).elapsed // ~5% of the way: ≈ 20ms
	time.Sleep(time.Second)
	late := call(url, 2*time.Second).elapsed // past the ramp: the full 400ms
	if early > 150*time.Millisecond {
		t.Errorf("early in the ramp the delay was %s, want ≈ 20-60ms", early)
	}
	if late < 400*time.Millisecond || late > 700*time.Millisecond {
		t.Errorf("after the ramp the delay was %s, want 400ms", late)
	}
}

func TestTimelineRandomReplicaIsSeeded(t *testing.T) {
	pick := func() []string {
		e := errorEntry("monkey", faults.RandomReplica)
		e.Duration, e.Every, e.Times = 20*time.Millisecond, 40*time.Millisecond, 5
		r := newTimelineRig(t, 3, e)
		time.Sleep(400 * time.Millisecond)
		return r.tl.Reports()[0].Replicas
	}
	a, b := pick(), pick()
	if !slices.Equal(a, b) || len(a) == 0 {
		t.Fatalf("random picks differ for one seed: %v then %v", a, b)
	}
}

func TestTimelineAggregatesApplyEvents(t *testing.T) {
	e := errorEntry("busy", 0)
	r := newTimelineRig(t, 1, e)
	url := r.up.Replicas()[0].URL()
	time.Sleep(20 * time.Millisecond)
	c := &http.Client{}
	deadline := time.Now().Add(1500 * time.Millisecond)
	n := 0
	for time.Now().Before(deadline) {
		res, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		n++
	}
	r.stop()
	applies, total := 0, int64(0)
	for _, ev := range r.sink.Events() {
		if ev.Type == "fault.apply" {
			applies++
			if c, ok := ev.Attrs["count"].(int64); ok && ev.Attrs["first"] == nil {
				total += c
			}
		}
	}
	if rep := r.tl.Reports()[0]; rep.Fired != int64(n) {
		t.Fatalf("fired %d, sent %d: the counter must stay exact", rep.Fired, n)
	}
	if total != int64(n) {
		t.Fatalf("the aggregated apply events add up to %d, want %d", total, n)
	}
	// One first-firing event plus at most one per window (and one at stop).
	if applies > 4 || n < 50 {
		t.Fatalf("%d apply events for %d firings", applies, n)
	}
}

func TestTimelineExplainsNoEffect(t *testing.T) {
	idle := errorEntry("idle", 1) // nobody calls replica 1
	m := errorEntry("posts-only", 0)
	m.Spec = &faults.ErrorSpec{Status: 500, Selector: faults.Selector{Probability: 1, Match: &faults.Match{Method: "POST"}}}
	r := newTimelineRig(t, 2, idle, m)
	time.Sleep(20 * time.Millisecond)
	for range 3 {
		call(r.up.Replicas()[0].URL(), time.Second)
	}
	reps := r.tl.Reports()
	if reps[0].Fired != 0 || !strings.Contains(reps[0].Reason, "api[1]") || !strings.Contains(reps[0].Reason, "no request reached") {
		t.Errorf("idle replica: %+v", reps[0])
	}
	if reps[1].Fired != 0 || !strings.Contains(reps[1].Reason, "none matched") {
		t.Errorf("match filter: %+v", reps[1])
	}
}

// A latency fault counts, per delayed request, how late past the drawn
// delay it released it, and never early; the report carries it.
func TestTimelineLatencyReportsLateness(t *testing.T) {
	e := faults.Entry{Name: "slow", Kind: "latency", Upstream: "api", Replica: -1,
		Spec: &faults.LatencySpec{Delay: dist.FixedLatency(10 * time.Millisecond), Selector: faults.Selector{Probability: 1}}}
	r := newTimelineRig(t, 2, e)
	time.Sleep(20 * time.Millisecond) // onset
	for i := range 6 {
		if o := call(r.up.Replicas()[i%2].URL(), 5*time.Second); o.elapsed < 10*time.Millisecond {
			t.Fatalf("answered after %s, before the 10ms delay", o.elapsed)
		}
	}
	rep := r.tl.Reports()[0]
	l := rep.Effects.Lateness
	if rep.Fired != 6 || l == nil || l.Releases() != 6 || l.Max < 0 {
		t.Fatalf("fired %d, lateness %+v: want 6 releases, none early", rep.Fired, l)
	}
	if rep.Effects.Connection != nil || rep.Effects.Packet != nil {
		t.Errorf("an HTTP fault reported connection or packet effects: %+v", rep.Effects)
	}
}

// A fault from 0 must meet the run's first request: ApplyDue puts every due
// step in place before the load starts, with no Run goroutine to race.
func TestTimelineApplyDueBeforeRun(t *testing.T) {
	clock, opts, up := oneReplica(t)
	now, later := errorEntry("from-zero", 0), errorEntry("later", 0)
	now.Duration, later.Start = time.Hour, time.Hour
	later.Spec = &faults.ErrorSpec{Status: 503, Selector: faults.Selector{Probability: 1}}
	tl, err := faults.NewTimeline([]faults.Entry{now, later}, []*faults.Upstream{up}, opts)
	if err != nil {
		t.Fatal(err)
	}
	clock.Reset(time.Now())
	tl.ApplyDue(context.Background())
	if got := tl.Active(); !slices.Equal(got, []string{"from-zero"}) {
		t.Fatalf("Active after ApplyDue = %v, want [from-zero]", got)
	}
	if got := call(up.Replicas()[0].URL(), time.Second).status; got != 500 {
		t.Fatalf("first request: %d, want the fault's 500", got)
	}
}

// lateFault counts an effect whenever the test says, also after it
// stopped: as a database fault counts a wait it caused that ended later.
type lateFault struct{ n *atomic.Int64 }

func (lateFault) Kind() string { return "test_late_effect" }
func (f lateFault) Apply(_ *faults.Replica, fx *faults.Effect) error {
	fx.AddCounter(f.n.Load)
	return nil
}
func (lateFault) Revert(*faults.Replica) error { return nil }

type lateSpec struct{ n *atomic.Int64 }

func (lateSpec) Validate() error     { return nil }
func (s lateSpec) New() faults.Fault { return lateFault{n: s.n} }

func init() {
	faults.RegisterKind(faults.Kind{Name: "test_late_effect", Layer: faults.LayerInstance,
		New: func() faults.Spec { return lateSpec{n: new(atomic.Int64)} }})
}

// An effect a fault counts after it stopped is in its report.
func TestTimelineCountsEffectsAfterTheStop(t *testing.T) {
	r := newTimelineRig(t, 1)
	n := new(atomic.Int64)
	e := faults.Entry{Name: "late", Kind: "test_late_effect", Spec: lateSpec{n: n}, Upstream: "api", Replica: -1}
	if err := r.tl.Start(e); err != nil {
		t.Fatal(err)
	}
	n.Add(2)
	if err := r.tl.Stop("late"); err != nil {
		t.Fatal(err)
	}
	n.Add(1) // a wait the fault caused, ending after its stop
	reps := r.tl.Reports()
	if len(reps) != 1 || reps[0].Name != "late" || reps[0].Fired != 3 {
		t.Fatalf("reports %+v, want late fired 3: the effect counted after the stop is the fault's", reps)
	}
}

// A fault ends at its planned end, not when the timeline's timer gets to
// removing it: the first request of the phase after a fault, sent at the
// fault's end, got the fault's 500 when the stop fired half a millisecond
// late. Here the timeline never runs, so nothing removes the fault: the
// request after its planned end must pass by it all the same.
func TestFaultEndsAtItsPlannedEnd(t *testing.T) {
	clock, opts, up := oneReplica(t)
	e := errorEntry("brief", 0)
	e.Duration = 300 * time.Millisecond
	tl, err := faults.NewTimeline([]faults.Entry{e}, []*faults.Upstream{up}, opts)
	if err != nil {
		t.Fatal(err)
	}
	clock.Reset(time.Now())
	tl.ApplyDue(context.Background())
	if got := call(up.Replicas()[0].URL(), time.Second).status; got != 500 {
		t.Fatalf("during the fault: %d, want its 500", got)
	}
	time.Sleep(time.Until(clock.At(e.Duration + 50*time.Millisecond)))
	if got := tl.Active(); !slices.Equal(got, []string{"brief"}) {
		t.Fatalf("Active = %v: the test needs the fault still in place", got)
	}
	if got := call(up.Replicas()[0].URL(), time.Second).status; got != 200 {
		t.Errorf("after the fault's planned end: %d, want 200", got)
	}
}

// slowProc stands for a replica in a container: every operation is a round
// trip to the Docker daemon, here a fixed 100 ms.
type slowProc struct {
	addr   string
	paused atomic.Bool
	at     atomic.Int64 // when the last Pause or Resume finished, UnixNano
}

func (p *slowProc) Addr() string { return p.addr }
func (p *slowProc) op() {
	time.Sleep(100 * time.Millisecond)
	p.at.Store(time.Now().UnixNano())
}
func (p *slowProc) Kill(context.Context) error   { p.op(); return nil }
func (p *slowProc) Start(context.Context) error  { p.op(); return nil }
func (p *slowProc) Pause(context.Context) error  { p.op(); p.paused.Store(true); return nil }
func (p *slowProc) Resume(context.Context) error { p.op(); p.paused.Store(false); return nil }
func (p *slowProc) Close(context.Context) error  { return nil }

// An instance fault on replicas in containers acts on all of them at once:
// one after another, each waiting for the daemon, the last of six replicas
// froze 230 ms after the fault's start (measured with real containers).
func TestTimelineActsOnContainerisedReplicasAtOnce(t *testing.T) {
	const n = 6
	procs := make([]*slowProc, n)
	sink := &event.Memory{}
	clock := event.NewClock()
	opts := faults.Options{Seed: 7, Sink: sink, Clock: clock}
	up := faults.NewUpstream(faults.UpstreamConfig{Name: "api", Replicas: n, Container: &faults.ContainerConfig{},
		Spawn: func(_ context.Context, i int, _ string) (faults.Process, error) {
			procs[i] = &slowProc{addr: "127.0.0.1:1"}
			return procs[i], nil
		}}, opts)
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	entry := faults.Entry{Name: "freeze", Kind: "pause", Spec: &faults.PauseSpec{}, Upstream: "api", Replica: -1, Duration: time.Hour}
	tl, err := faults.NewTimeline([]faults.Entry{entry}, []*faults.Upstream{up}, opts)
	if err != nil {
		t.Fatal(err)
	}
	spread := func(what string, want bool) {
		t.Helper()
		lo, hi := int64(1<<62), int64(0)
		for i, p := range procs {
			if p.paused.Load() != want {
				t.Fatalf("%s: replica %d paused = %v", what, i, !want)
			}
			lo, hi = min(lo, p.at.Load()), max(hi, p.at.Load())
		}
		// At once: within one operation of each other, not n of them.
		if d := time.Duration(hi - lo); d > 60*time.Millisecond {
			t.Errorf("%s: the replicas were reached %v apart (serial would be %v)", what, d, (n-1)*100*time.Millisecond)
		}
	}
	start := time.Now()
	tl.ApplyDue(context.Background())
	if took := time.Since(start); took > 400*time.Millisecond {
		t.Errorf("pausing %d replicas took %v", n, took)
	}
	spread("pause", true)
	if err := tl.Stop("freeze"); err != nil {
		t.Fatal(err)
	}
	spread("resume", false)
}

// oneReplica starts upstream api with one replica, on a clock and sink of
// its own.
func oneReplica(t *testing.T) (*event.Clock, faults.Options, *faults.Upstream) {
	t.Helper()
	clock := event.NewClock()
	opts := faults.Options{Seed: 7, Sink: &event.Memory{}, Clock: clock}
	up := faults.NewUpstream(faults.UpstreamConfig{Name: "api", Replicas: 1}, opts)
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	return clock, opts, up
}

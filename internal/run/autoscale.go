package run

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/cascadehq/cascade/autoscale"
	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/gateway"
	"github.com/cascadehq/cascade/internal/event"
)

// DrainGrace is how long a removed replica may finish its requests, as a
// scaled-down pod's terminationGracePeriod.
const DrainGrace = 5 * time.Second

// upstreamMetrics keeps what an autoscaler measures over its last sync
// periods: in-flight samples, arrivals and service times.
type upstreamMetrics struct {
	keep time.Duration

	mu       sync.Mutex
	inflight []inflightSample
	arrivals []time.Duration
	finished []timedDur
}

type inflightSample struct {
	at       time.Duration
	total    int64
	replicas int
}

type timedDur struct{ at, d time.Duration }

func (m *upstreamMetrics) arrive(at time.Duration) {
	m.mu.Lock()
	m.arrivals = append(m.arrivals, at)
	m.mu.Unlock()
}

func (m *upstreamMetrics) finish(at, d time.Duration) {
	m.mu.Lock()
	m.finished = append(m.finished, timedDur{at, d})
	m.mu.Unlock()
}

func (m *upstreamMetrics) sample(at time.Duration, total int64, replicas int) {
	m.mu.Lock()
	m.inflight = append(m.inflight, inflightSample{at, total, replicas})
	cut := at - m.keep
	for len(m.inflight) > 0 && m.inflight[0].at < cut {
		m.inflight = m.inflight[1:]
	}
	for len(m.arrivals) > 0 && m.arrivals[0] < cut {
		m.arrivals = m.arrivals[1:]
	}
	for len(m.finished) > 0 && m.finished[0].at < cut {
		m.finished = m.finished[1:]
	}
	m.mu.Unlock()
}

// source adapts the windows to autoscale.Source for one metric.
type source struct {
	m      *upstreamMetrics
	metric string
}

// Measure implements autoscale.Source: the mean per replica over the period
// for in_flight and request_rate (as the metrics pipeline averages pods),
// the 95th percentile of service times finished in the period for
// p95_latency; NaN without data.
func (s source) Measure(now, period time.Duration) float64 {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	from := now - period
	switch s.metric {
	case autoscale.InFlight:
		var sum float64
		n := 0
		for _, x := range m.inflight {
			if x.at > from && x.at <= now && x.replicas > 0 {
				sum += float64(x.total) / float64(x.replicas)
				n++
			}
		}
		if n == 0 {
			return math.NaN()
		}
		return sum / float64(n)
	case autoscale.RequestRate:
		n, reps := 0, 0
		for _, a := range m.arrivals {
			if a > from && a <= now {
				n++
			}
		}
		for _, x := range m.inflight {
			if x.at > from && x.at <= now {
				reps = max(reps, x.replicas)
			}
		}
		if reps == 0 {
			return math.NaN()
		}
		return float64(n) / period.Seconds() / float64(reps)
	case autoscale.P95Latency:
		var ds []time.Duration
		for _, f := range m.finished {
			if f.at > from && f.at <= now {
				ds = append(ds, f.d)
			}
		}
		if len(ds) == 0 {
			return math.NaN()
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[int(math.Ceil(0.95*float64(len(ds))))-1].Seconds()
	}
	return math.NaN()
}

// scaleTarget adapts a fake upstream behind the gateway's balancer to
// autoscale.Target: scaling up starts replicas and, after the startup delay,
// adds them to the gateway's targets; scaling down takes replicas out of the
// targets first, then drains them.
type scaleTarget struct {
	up      *faults.Upstream
	gw      *gateway.Gateway
	delay   time.Duration
	sink    event.Sink
	clock   *event.Clock
	run     context.Context // the run's background context: pending joins stop with it
	pending sync.WaitGroup

	mu    sync.Mutex
	ready map[*faults.Replica]bool
}

func newScaleTarget(ctx context.Context, up *faults.Upstream, gw *gateway.Gateway, delay time.Duration, sink event.Sink, clock *event.Clock) *scaleTarget {
	t := &scaleTarget{up: up, gw: gw, delay: delay, sink: sink, clock: clock, run: ctx, ready: map[*faults.Replica]bool{}}
	for _, r := range up.Replicas() {
		t.ready[r] = true
	}
	return t
}

// Replicas implements autoscale.Target (created ones count, ready or not,
// as a Deployment's replicas do).
func (t *scaleTarget) Replicas() int { return len(t.up.Replicas()) }

// publish sets the gateway's targets to the ready replicas.
func (t *scaleTarget) publishLocked() error {
	var urls []string
	for _, r := range t.up.Replicas() {
		if t.ready[r] {
			urls = append(urls, r.URL())
		}
	}
	return t.gw.SetTargets(t.up.Name(), urls)
}

// Scale implements autoscale.Target.
func (t *scaleTarget) Scale(ctx context.Context, n int) error {
	cur := t.Replicas()
	var errs []error
	for ; cur < n; cur++ {
		r, err := t.up.AddReplica(ctx)
		if err != nil {
			errs = append(errs, err)
			break
		}
		t.sink.Emit(event.Event{T: t.clock.Now(), Source: "run", Type: "upstream.listen", Target: r.Name(), Attrs: map[string]any{"addr": r.Addr()}})
		t.pending.Add(1)
		go t.join(r)
	}
	for ; cur > n; cur-- {
		r, err := t.up.DetachReplica()
		if err != nil {
			errs = append(errs, err)
			break
		}
		t.mu.Lock()
		delete(t.ready, r)
		if err := t.publishLocked(); err != nil {
			errs = append(errs, err)
		}
		t.mu.Unlock()
		t.sink.Emit(event.Event{T: t.clock.Now(), Source: "run", Type: "upstream.remove", Target: r.Name(), Attrs: map[string]any{"addr": r.Addr()}})
		t.pending.Add(1)
		go func() {
			defer t.pending.Done()
			// Out of the balancer already; finish what it has, as a pod
			// within its grace period.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DrainGrace)
			defer cancel()
			_ = r.Drain(dctx)
		}()
	}
	return errors.Join(errs...)
}

// join makes a new replica ready after the startup delay.
func (t *scaleTarget) join(r *faults.Replica) {
	defer t.pending.Done()
	if t.delay > 0 {
		timer := time.NewTimer(t.delay)
		defer timer.Stop()
		select {
		case <-t.run.Done():
			return
		case <-timer.C:
		}
	}
	t.mu.Lock()
	t.ready[r] = true
	err := t.publishLocked()
	t.mu.Unlock()
	ev := event.Event{T: t.clock.Now(), Source: "run", Type: "upstream.ready", Target: r.Name(), Attrs: map[string]any{"addr": r.Addr()}}
	if err != nil {
		ev.Attrs["error"] = err.Error()
	}
	t.sink.Emit(ev)
}

// startAutoscalers starts one controller per autoscaler in scale mode;
// wait blocks until they and their pending joins and drains are done.
func startAutoscalers(ctx context.Context, specs []autoscale.Settings, ups []*faults.Upstream, gw *gateway.Gateway,
	rec *recording, sink event.Sink, clock *event.Clock) (wait func(), err error) {
	var wg sync.WaitGroup
	var targets []*scaleTarget
	for _, s := range specs {
		if s.Mode != autoscale.ModeScale {
			continue
		}
		var up *faults.Upstream
		for _, u := range ups {
			if u.Name() == s.Upstream {
				up = u
			}
		}
		if up == nil || gw == nil {
			return nil, fmt.Errorf("autoscaler for %s: no such upstream behind cascade's gateway", s.Upstream)
		}
		t := newScaleTarget(ctx, up, gw, s.StartupDelay, sink, clock)
		targets = append(targets, t)
		c := autoscale.NewController(s, t, source{m: rec.metrics[s.Upstream], metric: s.Metric}, sink, clock)
		wg.Add(1)
		go func() { defer wg.Done(); c.Run(ctx) }()
	}
	return func() {
		wg.Wait()
		for _, t := range targets {
			t.pending.Wait()
		}
	}, nil
}

package autoscale

import (
	"context"
	"math"
	"time"

	"github.com/cascadehq/cascade/internal/event"
)

// Events the controller emits (Source "autoscaler", Target the upstream).
const (
	// EvSync is every sync: replicas, metric, value, target, ratio,
	// desired (raw), stabilized, to, reason, dead_band.
	EvSync = "autoscale.sync"
	// EvScale is a sync that changed the replicas: from, to, metric, value,
	// target, desired, reason. Verdicts on autoscaling read these.
	EvScale = "autoscale.scale"
	// EvError is a scale that failed: from, to, error.
	EvError = "autoscale.error"
)

// Target is what an autoscaler scales: the run adapts a fake upstream and
// the gateway's balancer to it.
type Target interface {
	// Replicas is the current count (ready or not).
	Replicas() int
	// Scale moves to n replicas; it returns when the change is made (a new
	// replica may join the balancer later, after its startup delay).
	Scale(ctx context.Context, n int) error
}

// Source measures the metric over the period that ended at now: the mean
// per replica for Pods metrics, the upstream's value for p95_latency; NaN
// when there is no data.
type Source interface {
	Measure(now, period time.Duration) float64
}

// Controller runs an HPA against a Target every sync period.
type Controller struct {
	hpa   *HPA
	tgt   Target
	src   Source
	sink  event.Sink
	clock *event.Clock
}

// NewController returns a controller; Run starts it.
func NewController(s Settings, t Target, src Source, sink event.Sink, clock *event.Clock) *Controller {
	if sink == nil {
		sink = event.Discard
	}
	if clock == nil {
		clock = event.NewClock()
	}
	return &Controller{hpa: New(s), tgt: t, src: src, sink: sink, clock: clock}
}

// Run syncs until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	s := c.hpa.Settings()
	t := time.NewTicker(s.SyncPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.Sync(ctx)
	}
}

// Sync is one decision, made now.
func (c *Controller) Sync(ctx context.Context) Decision {
	s := c.hpa.Settings()
	now := c.clock.Now()
	cur := c.tgt.Replicas()
	v := c.src.Measure(now, s.SyncPeriod)
	d := c.hpa.Step(now, cur, v)
	attrs := map[string]any{"replicas": d.From, "metric": s.Metric, "target": s.Target, "desired": d.Raw,
		"stabilized": d.Stabilized, "to": d.To, "reason": d.Reason, "dead_band": d.DeadBand}
	if !math.IsNaN(v) {
		attrs["value"], attrs["ratio"] = round3(v), round3(d.Ratio)
	}
	c.sink.Emit(event.Event{T: now, Source: "autoscaler", Type: EvSync, Target: s.Upstream, Attrs: attrs})
	if !d.Scaled() {
		return d
	}
	if err := c.tgt.Scale(ctx, d.To); err != nil {
		c.sink.Emit(event.Event{T: c.clock.Now(), Source: "autoscaler", Type: EvError, Target: s.Upstream,
			Attrs: map[string]any{"from": d.From, "to": d.To, "error": err.Error()}})
		return d
	}
	sc := map[string]any{"from": d.From, "to": d.To, "metric": s.Metric, "target": s.Target, "desired": d.Raw, "reason": d.Reason}
	if !math.IsNaN(v) {
		sc["value"] = round3(v)
	}
	c.sink.Emit(event.Event{T: now, Source: "autoscaler", Type: EvScale, Target: s.Upstream, Attrs: sc})
	return d
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

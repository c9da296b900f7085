// Package autoscale is the Kubernetes horizontal pod autoscaler's
// algorithm, as a pure function of (metrics history, now), plus a controller
// that runs it against something scalable and an oracle that replays it over
// recorded metrics.
//
// The algorithm is cascade's own code on purpose: the product is a verdict
// on how a real HPA would behave, so it follows the reference
// (k8s.io/kubernetes pkg/controller/podautoscaler: GetResourceReplicas,
// stabilizeRecommendationWithBehaviors, convertDesiredReplicasWithBehaviorRate)
// step for step, without importing the controller-manager.
//
//	metric ─▶ ratio = metric ÷ target ─▶ |ratio−1| ≤ tolerance? keep : ceil(current × ratio)
//	       ─▶ stabilization (max of recent recommendations for down, min for up)
//	       ─▶ scaling policies (pods / percent per period; select max, min or disabled)
//	       ─▶ clamp to [min, max] ─▶ desired replicas
package autoscale

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

// Metrics an autoscaler can follow.
const (
	// InFlight is the mean number of requests in flight (being handled or
	// queued) per replica: a Pods metric with an AverageValue target.
	InFlight = "in_flight"
	// RequestRate is requests per second per replica: a Pods metric.
	RequestRate = "request_rate"
	// P95Latency is the upstream's 95th percentile service time: an Object
	// metric with a Value target (it does not divide by replicas).
	P95Latency = "p95_latency"
)

// Metrics lists the metric names.
var Metrics = []string{InFlight, RequestRate, P95Latency}

// Modes.
const (
	ModeScale  = "scale"  // add and remove replicas for real during the run
	ModeOracle = "oracle" // scale nothing; compute what an HPA would have done
)

// Policy types (Kubernetes HPAScalingPolicyType).
const (
	Pods    = "pods"
	Percent = "percent"
)

// Policy selections (Kubernetes ScalingPolicySelect).
const (
	SelectMax      = "max"
	SelectMin      = "min"
	SelectDisabled = "disabled"
)

// Policy limits how much the replicas may change in a period.
type Policy struct {
	// Type is "pods" (Value replicas) or "percent" (Value % of the replicas
	// at the start of the period).
	Type   string         `yaml:"type" json:"type" jsonschema:"enum=pods,enum=percent"`
	Value  int            `yaml:"value" json:"value"`
	Period units.Duration `yaml:"period" json:"period"`
}

// Rules are one direction's behaviour (Kubernetes HPAScalingRules).
type Rules struct {
	// StabilizationWindow: recommendations this recent are considered
	// (down: the highest wins; up: the lowest). Default 0 up, 300s down.
	StabilizationWindow *units.Duration `yaml:"stabilization_window,omitempty" json:"stabilization_window,omitempty"`
	// SelectPolicy picks among policies: max (default), min or disabled.
	SelectPolicy string `yaml:"select_policy,omitempty" json:"select_policy,omitempty" jsonschema:"enum=max,enum=min,enum=disabled"`
	// Policies; default up: 4 pods or 100% per 15s; down: 100% per 15s.
	Policies []Policy `yaml:"policies,omitempty" json:"policies,omitempty"`
}

// Behavior is Kubernetes' HorizontalPodAutoscalerBehavior.
type Behavior struct {
	ScaleUp   *Rules `yaml:"scale_up,omitempty" json:"scale_up,omitempty"`
	ScaleDown *Rules `yaml:"scale_down,omitempty" json:"scale_down,omitempty"`
}

// Spec is one autoscaler as a scenario writes it. Names follow the
// HorizontalPodAutoscaler (autoscaling/v2) in snake case, so a user can
// paste their HPA's numbers.
type Spec struct {
	// Upstream to scale.
	Upstream string `yaml:"upstream" json:"upstream"`
	// Mode is "scale" (default: replicas are really added and removed) or
	// "oracle" (nothing scales; the verdict computes what an HPA would have
	// done from the recorded metrics).
	Mode        string `yaml:"mode,omitempty" json:"mode,omitempty" jsonschema:"enum=scale,enum=oracle"`
	MinReplicas int    `yaml:"min_replicas,omitempty" json:"min_replicas,omitempty"` // default 1
	MaxReplicas int    `yaml:"max_replicas" json:"max_replicas"`
	// Metric is in_flight (per replica), request_rate (per replica) or
	// p95_latency (the upstream's).
	Metric string `yaml:"metric" json:"metric" jsonschema:"enum=in_flight,enum=request_rate,enum=p95_latency"`
	// Target: a number for in_flight, a rate (100/s) for request_rate, a
	// duration (50ms) for p95_latency.
	Target string `yaml:"target" json:"target"`
	// Tolerance is the dead band around the target (default 10%, the
	// controller manager's --horizontal-pod-autoscaler-tolerance).
	Tolerance *units.Percent `yaml:"tolerance,omitempty" json:"tolerance,omitempty"`
	// SyncPeriod is how often it decides (default 15s, the controller
	// manager's --horizontal-pod-autoscaler-sync-period).
	SyncPeriod units.Duration `yaml:"sync_period,omitempty" json:"sync_period,omitempty"`
	// StartupDelay is how long a new replica takes to become ready (join
	// the gateway's targets) after it is created. Default 0.
	StartupDelay units.Duration `yaml:"startup_delay,omitempty" json:"startup_delay,omitempty"`
	Behavior     Behavior       `yaml:"behavior,omitempty" json:"behavior,omitempty"`
}

// Defaults.
const (
	DefaultTolerance        = 0.1
	DefaultSyncPeriod       = 15 * time.Second
	DefaultDownStabilize    = 300 * time.Second
	DefaultPolicyPeriod     = 15 * time.Second
	DefaultUpPods           = 4
	DefaultUpPercent        = 100
	DefaultDownPercent      = 100
	maxReplicasLimit        = 200
	minSyncPeriod           = 100 * time.Millisecond
	maxStabilizationHistory = 10000
)

// Validate reports every problem, each naming its field (relative to the
// spec).
func (s Spec) Validate() []yamlfile.FieldError {
	var errs []yamlfile.FieldError
	bad := func(p, f string, a ...any) { errs = append(errs, yamlfile.Fieldf(p, f, a...)) }
	switch s.Mode {
	case "", ModeScale, ModeOracle:
	default:
		bad("mode", "must be %q or %q, got %q", ModeScale, ModeOracle, s.Mode)
	}
	if s.MinReplicas < 0 {
		bad("min_replicas", "must be at least 1, got %d", s.MinReplicas)
	}
	switch {
	case s.MaxReplicas <= 0:
		bad("max_replicas", "is required and must be at least 1")
	case s.MaxReplicas > maxReplicasLimit:
		bad("max_replicas", "must be at most %d (each replica is a listener on this machine), got %d", maxReplicasLimit, s.MaxReplicas)
	case s.MaxReplicas < max(s.MinReplicas, 1):
		bad("max_replicas", "(%d) is below min_replicas (%d)", s.MaxReplicas, s.MinReplicas)
	}
	if _, err := ParseTarget(s.Metric, s.Target); err != nil {
		field := "target"
		if !validMetric(s.Metric) {
			field = "metric"
		}
		bad(field, "%v", err)
	}
	if s.Tolerance != nil && (s.Tolerance.F() < 0 || s.Tolerance.F() >= 1) {
		bad("tolerance", "must be within 0%%..99%%, got %s", s.Tolerance)
	}
	if d := s.SyncPeriod.D(); d != 0 && d < minSyncPeriod {
		bad("sync_period", "must be at least %s, got %s", minSyncPeriod, d)
	}
	if s.StartupDelay < 0 {
		bad("startup_delay", "must not be negative")
	}
	for dir, r := range map[string]*Rules{"behavior.scale_up": s.Behavior.ScaleUp, "behavior.scale_down": s.Behavior.ScaleDown} {
		if r == nil {
			continue
		}
		switch r.SelectPolicy {
		case "", SelectMax, SelectMin, SelectDisabled:
		default:
			bad(dir+".select_policy", "must be max, min or disabled, got %q", r.SelectPolicy)
		}
		if r.StabilizationWindow != nil && (r.StabilizationWindow.D() < 0 || r.StabilizationWindow.D() > time.Hour) {
			bad(dir+".stabilization_window", "must be within 0..1h (Kubernetes allows 0..3600s), got %s", r.StabilizationWindow)
		}
		for i, p := range r.Policies {
			pp := fmt.Sprintf("%s.policies[%d]", dir, i)
			if p.Type != Pods && p.Type != Percent {
				bad(pp+".type", "must be pods or percent, got %q", p.Type)
			}
			if p.Value <= 0 {
				bad(pp+".value", "must be greater than 0, got %d", p.Value)
			}
			if p.Period.D() <= 0 || p.Period.D() > 30*time.Minute {
				bad(pp+".period", "must be within (0, 30m] (Kubernetes allows 1..1800s), got %s", p.Period)
			}
		}
	}
	return errs
}

func validMetric(m string) bool {
	for _, x := range Metrics {
		if x == m {
			return true
		}
	}
	return false
}

// ParseTarget reads a target in the metric's unit: a number for in_flight,
// per second for request_rate, seconds for p95_latency.
func ParseTarget(metric, target string) (float64, error) {
	if target == "" {
		return 0, errors.New("target is required")
	}
	switch metric {
	case InFlight:
		var v float64
		if _, err := fmt.Sscanf(strings.TrimSpace(target), "%g", &v); err != nil || v <= 0 || math.IsInf(v, 0) {
			return 0, fmt.Errorf("in_flight target %q must be a positive number of requests per replica, such as 4", target)
		}
		return v, nil
	case RequestRate:
		r, err := units.ParseRate(target)
		if err != nil || r <= 0 {
			return 0, fmt.Errorf("request_rate target %q must be a rate per replica such as 100/s", target)
		}
		return r.PerSecond(), nil
	case P95Latency:
		d, err := units.ParseDuration(target)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("p95_latency target %q must be a duration such as 50ms", target)
		}
		return d.D().Seconds(), nil
	}
	return 0, fmt.Errorf("unknown metric %q (valid: %s)", metric, strings.Join(Metrics, ", "))
}

// PerReplica says whether the metric is an average over replicas (a Pods
// metric), which an oracle rescales when it imagines a different count.
func PerReplica(metric string) bool { return metric != P95Latency }

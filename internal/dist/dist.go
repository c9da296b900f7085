// Package dist describes latency distributions as people state them ("p50
// 20 ms, p99 200 ms") and samples them from a seeded generator, so that the
// same scenario file produces the same delays.
package dist

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/invopop/jsonschema"

	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

// Kinds of distribution.
const (
	Fixed       = "fixed"
	Uniform     = "uniform"
	Normal      = "normal"
	LogNormal   = "lognormal"
	Percentiles = "percentiles"
)

// Latency is a distribution of delays. In a file it is either a plain
// duration ("20ms", meaning fixed) or a mapping:
//
//	{dist: uniform, min: 10ms, max: 50ms}
//	{dist: normal, mean: 50ms, stddev: 10ms}
//	{dist: lognormal, p50: 20ms, p99: 200ms}
//	{dist: percentiles, p50: 20ms, p90: 60ms, p99: 200ms, max: 400ms}
//
// "percentiles" interpolates linearly between the given quantiles (from min,
// default 0, up to max, default the highest one given), so a user can write
// down a latency profile measured elsewhere.
type Latency struct {
	Dist   string         `yaml:"dist" json:"dist" jsonschema:"enum=fixed,enum=uniform,enum=normal,enum=lognormal,enum=percentiles"`
	Value  units.Duration `yaml:"value,omitempty" json:"value,omitempty"`
	Min    units.Duration `yaml:"min,omitempty" json:"min,omitempty"`
	Max    units.Duration `yaml:"max,omitempty" json:"max,omitempty"`
	Mean   units.Duration `yaml:"mean,omitempty" json:"mean,omitempty"`
	Stddev units.Duration `yaml:"stddev,omitempty" json:"stddev,omitempty"`
	P50    units.Duration `yaml:"p50,omitempty" json:"p50,omitempty"`
	P90    units.Duration `yaml:"p90,omitempty" json:"p90,omitempty"`
	P99    units.Duration `yaml:"p99,omitempty" json:"p99,omitempty"`
	P999   units.Duration `yaml:"p999,omitempty" json:"p999,omitempty"`
}

// FixedLatency is a shorthand constructor.
func FixedLatency(d time.Duration) Latency { return Latency{Dist: Fixed, Value: units.Duration(d)} }

// IsZero reports whether no latency was configured.
func (l Latency) IsZero() bool { return l == Latency{} }

type latencyFields Latency // no methods: lets UnmarshalYAML decode without recursion

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (l *Latency) UnmarshalYAML(node ast.Node) error {
	if _, isMap := node.(*ast.MappingNode); !isMap {
		var d units.Duration
		if err := d.UnmarshalYAML(node); err != nil {
			return yamlfile.NodeError(node, "expected a duration (fixed latency) or a mapping such as {dist: lognormal, p50: 20ms, p99: 200ms}")
		}
		*l = FixedLatency(d.D())
		return nil
	}
	var f latencyFields
	if err := yamlfile.DecodeNode(node, &f); err != nil {
		return err
	}
	*l = Latency(f)
	if err := l.Validate(); err != nil {
		return yamlfile.NodeError(node, "%v", err)
	}
	return nil
}

// MarshalYAML writes the short form for fixed latencies.
func (l Latency) MarshalYAML() (any, error) {
	if l.Dist == Fixed {
		return l.Value.String(), nil
	}
	return latencyFields(l), nil
}

// JSONSchema allows both the shorthand and the mapping.
func (Latency) JSONSchema() *jsonschema.Schema {
	r := jsonschema.Reflector{FieldNameTag: "yaml", DoNotReference: true, ExpandedStruct: true, Anonymous: true}
	m := r.Reflect(&latencyFields{})
	m.Version = ""
	return &jsonschema.Schema{
		OneOf:       []*jsonschema.Schema{units.Duration(0).JSONSchema(), m},
		Description: "a fixed delay (20ms) or a distribution {dist: uniform|normal|lognormal|percentiles, ...}",
	}
}

// Validate checks that the fields fit the kind of distribution.
func (l Latency) Validate() error {
	set := func(d units.Duration) bool { return d != 0 }
	allowed := map[string][]string{
		Fixed:       {"value"},
		Uniform:     {"min", "max"},
		Normal:      {"mean", "stddev"},
		LogNormal:   {"p50", "p99"},
		Percentiles: {"min", "p50", "p90", "p99", "p999", "max"},
	}
	fields := map[string]units.Duration{"value": l.Value, "min": l.Min, "max": l.Max, "mean": l.Mean,
		"stddev": l.Stddev, "p50": l.P50, "p90": l.P90, "p99": l.P99, "p999": l.P999}
	ok, known := allowed[l.Dist]
	if !known {
		return fmt.Errorf("unknown dist %q: expected one of fixed, uniform, normal, lognormal, percentiles", l.Dist)
	}
	for name, v := range fields {
		if set(v) && !contains(ok, name) {
			return fmt.Errorf("dist %s does not take %q (it takes %v)", l.Dist, name, ok)
		}
	}
	switch l.Dist {
	case Uniform:
		if l.Max < l.Min || !set(l.Max) {
			return fmt.Errorf("uniform needs min <= max and max > 0")
		}
	case Normal:
		if !set(l.Mean) {
			return fmt.Errorf("normal needs mean")
		}
	case LogNormal:
		if !set(l.P50) || !set(l.P99) || l.P99 < l.P50 {
			return fmt.Errorf("lognormal needs p50 and p99 with p50 <= p99")
		}
	case Percentiles:
		pts := l.points()
		if len(pts) < 2 {
			return fmt.Errorf("percentiles needs at least one of p50, p90, p99, p999 or max")
		}
		for i := 1; i < len(pts); i++ {
			if pts[i].v < pts[i-1].v {
				return fmt.Errorf("percentiles must not decrease (%s at q=%g is below %s at q=%g)",
					time.Duration(pts[i].v), pts[i].q, time.Duration(pts[i-1].v), pts[i-1].q)
			}
		}
	}
	return nil
}

type point struct{ q, v float64 }

func (l Latency) points() []point {
	pts := []point{{0, float64(l.Min)}}
	for _, p := range []point{{0.5, float64(l.P50)}, {0.9, float64(l.P90)}, {0.99, float64(l.P99)}, {0.999, float64(l.P999)}} {
		if p.v != 0 {
			pts = append(pts, p)
		}
	}
	if l.Max != 0 {
		pts = append(pts, point{1, float64(l.Max)})
	} else if len(pts) > 1 {
		last := pts[len(pts)-1]
		pts = append(pts, point{1, last.v})
	}
	return pts
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// Sampler draws delays from a distribution. It is not safe for concurrent use:
// callers hold one per goroutine or guard it, like the *rand.Rand inside.
type Sampler struct {
	l      Latency
	rng    *rand.Rand
	mu, sg float64
	pts    []point
}

// z99 is the standard normal quantile at 0.99.
const z99 = 2.3263478740408408

// NewSampler prepares a sampler; l must be valid.
func NewSampler(l Latency, rng *rand.Rand) *Sampler {
	s := &Sampler{l: l, rng: rng}
	switch l.Dist {
	case LogNormal:
		s.mu = math.Log(float64(l.P50))
		s.sg = (math.Log(float64(l.P99)) - s.mu) / z99
	case Percentiles:
		s.pts = l.points()
	}
	return s
}

// Sample returns one delay, never negative.
func (s *Sampler) Sample() time.Duration {
	l := s.l
	var v float64
	switch l.Dist {
	case "", Fixed:
		return l.Value.D()
	case Uniform:
		v = float64(l.Min) + s.rng.Float64()*float64(l.Max-l.Min)
	case Normal:
		v = float64(l.Mean) + s.rng.NormFloat64()*float64(l.Stddev)
	case LogNormal:
		v = math.Exp(s.mu + s.sg*s.rng.NormFloat64())
	case Percentiles:
		v = quantile(s.pts, s.rng.Float64())
	}
	if v < 0 {
		v = 0
	}
	return time.Duration(v)
}

// quantile interpolates linearly between sorted (q, v) points.
func quantile(pts []point, q float64) float64 {
	i := sort.Search(len(pts), func(i int) bool { return pts[i].q >= q })
	if i == 0 {
		return pts[0].v
	}
	if i >= len(pts) {
		return pts[len(pts)-1].v
	}
	a, b := pts[i-1], pts[i]
	if b.q == a.q {
		return b.v
	}
	return a.v + (b.v-a.v)*(q-a.q)/(b.q-a.q)
}

// Upper is the distribution's p99 (or its maximum where it has one); the
// static timeout lint compares timeouts with it.
func (l Latency) Upper() time.Duration {
	switch l.Dist {
	case Fixed:
		return l.Value.D()
	case Uniform:
		return l.Max.D()
	case Normal:
		return l.Mean.D() + 3*l.Stddev.D()
	case LogNormal:
		return l.P99.D()
	case Percentiles:
		p := l.points()
		return time.Duration(p[len(p)-1].v)
	}
	return 0
}

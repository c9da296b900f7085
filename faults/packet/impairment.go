package packet

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/invopop/jsonschema"

	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

// Direction says which way a packet travels through a Link.
type Direction uint8

// Directions. The zero value is Both, so an impairment written without a
// direction applies to both.
const (
	Both         Direction = iota // both ways
	ToUpstream                    // from the gateway's namespace to the upstream's
	FromUpstream                  // from the upstream's namespace to the gateway's
)

var directionNames = [...]string{Both: "both", ToUpstream: "to_upstream", FromUpstream: "from_upstream"}

func (d Direction) String() string {
	if int(d) < len(directionNames) {
		return directionNames[d]
	}
	return "direction(" + strconv.Itoa(int(d)) + ")"
}

// ParseDirection parses "both", "to_upstream" or "from_upstream".
func ParseDirection(s string) (Direction, error) {
	for i, n := range directionNames {
		if s == n {
			return Direction(i), nil
		}
	}
	return 0, fmt.Errorf("unknown direction %q: expected one of both, to_upstream, from_upstream", s)
}

// MarshalText writes the name.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads the name.
func (d *Direction) UnmarshalText(b []byte) error {
	v, err := ParseDirection(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// UnmarshalYAML implements yaml.NodeUnmarshaler so a bad value keeps its position.
func (d *Direction) UnmarshalYAML(node ast.Node) error {
	s, ok := node.(*ast.StringNode)
	if !ok {
		return yamlfile.NodeError(node, "expected a direction: both, to_upstream or from_upstream")
	}
	v, err := ParseDirection(s.Value)
	if err != nil {
		return yamlfile.NodeError(node, "%v", err)
	}
	*d = v
	return nil
}

// JSONSchema lists the names.
func (Direction) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Enum: []any{"both", "to_upstream", "from_upstream"}}
}

// Impairment is what a Link does to the packets of one direction. The zero
// value passes every packet untouched. Stages apply in this order, as in
// netem: filter, SYN blackhole, loss, corruption, duplication, bandwidth,
// delay and jitter, reordering.
//
// In a file (every field optional):
//
//	loss: 5%                      # or {gemodel: {p: 1%, r: 30%}}
//	delay: 50ms
//	jitter: 5ms
//	correlation: 25%
//	distribution: normal          # uniform (default) or normal
//	duplicate: 1%
//	reorder: {percent: 5%, gap: 3}
//	corrupt: 0.1%
//	bandwidth: {rate: 10mbit, queue: 64KiB}
//	syn_blackhole: true
//	filter: {port: 8080}
type Impairment struct {
	// Loss drops packets at random.
	Loss Loss `yaml:"loss,omitempty" json:"loss,omitzero"`
	// Delay holds every packet this long (measured from when the engine read it).
	Delay units.Duration `yaml:"delay,omitempty" json:"delay,omitempty"`
	// Jitter spreads the delay by up to ±Jitter (uniform) or with standard
	// deviation Jitter (normal); a packet is never sent before it arrived.
	// Like netem, packets leave in order of their send time, so jitter larger
	// than the gap between packets reorders them.
	Jitter units.Duration `yaml:"jitter,omitempty" json:"jitter,omitempty"`
	// Correlation ties each jitter sample to the previous one (AR(1) on a
	// normal variate; unlike netem's mix, it keeps the spread the same).
	Correlation Percent `yaml:"correlation,omitempty" json:"correlation,omitempty"`
	// Distribution of the jitter: "uniform" (default) or "normal".
	Distribution string `yaml:"distribution,omitempty" json:"distribution,omitempty" jsonschema:"enum=uniform,enum=normal"`
	// Duplicate sends this share of packets twice.
	Duplicate Percent `yaml:"duplicate,omitempty" json:"duplicate,omitempty"`
	// Reorder holds some packets back so later ones overtake them.
	Reorder Reorder `yaml:"reorder,omitempty" json:"reorder,omitzero"`
	// Corrupt flips one bit in this share of packets; see corrupt() for where.
	Corrupt Percent `yaml:"corrupt,omitempty" json:"corrupt,omitempty"`
	// Bandwidth limits the rate with a token bucket and a tail-drop queue.
	Bandwidth Bandwidth `yaml:"bandwidth,omitempty" json:"bandwidth,omitzero"`
	// SYNBlackhole drops every TCP SYN (without ACK), so connects time out.
	SYNBlackhole bool `yaml:"syn_blackhole,omitempty" json:"syn_blackhole,omitempty"`
	// Filter narrows the packets the impairment applies to; others pass untouched.
	Filter Filter `yaml:"filter,omitempty" json:"filter,omitzero"`
}

// Loss is random packet loss: either independent (Percent) or bursty
// (GEModel). In a file, a bare percentage is shorthand for {percent: ...}.
type Loss struct {
	// Percent drops each packet independently with this probability (Bernoulli).
	Percent Percent `yaml:"percent,omitempty" json:"percent,omitempty"`
	// GEModel is the Gilbert–Elliott model for bursty loss.
	GEModel GilbertElliott `yaml:"gemodel,omitempty" json:"gemodel,omitzero"`
}

// IsZero reports whether no loss is configured.
func (l Loss) IsZero() bool { return l == Loss{} }

type lossFields Loss

// UnmarshalYAML accepts a bare percentage or a mapping.
func (l *Loss) UnmarshalYAML(node ast.Node) error {
	if _, isMap := node.(*ast.MappingNode); !isMap {
		var p Percent
		if err := p.UnmarshalYAML(node); err != nil {
			switch node.(type) {
			case *ast.IntegerNode, *ast.FloatNode:
				return err // a bare number: its own message says how to write it
			}
			if strings.HasSuffix(strings.TrimSpace(node.String()), "%") {
				return err // a percentage, out of range: its own message says so
			}
			return yamlfile.NodeError(node, "expected a percentage such as 5%% or a mapping {percent: 5%%} or {gemodel: {p: 1%%, r: 30%%}}")
		}
		*l = Loss{Percent: p}
		return nil
	}
	var f lossFields
	if err := yamlfile.DecodeNode(node, &f); err != nil {
		return err
	}
	*l = Loss(f)
	return nil
}

// JSONSchema allows the percentage shorthand.
func (Loss) JSONSchema() *jsonschema.Schema {
	r := jsonschema.Reflector{FieldNameTag: "yaml", DoNotReference: true, ExpandedStruct: true, Anonymous: true}
	m := r.Reflect(&lossFields{})
	m.Version = ""
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{Percent(0).JSONSchema(), m}}
}

// GilbertElliott is the two-state bursty loss model with netem's parameters
// (`tc qdisc ... netem loss gemodel p r 1-h 1-k`): in the good state a packet
// is lost with GoodLoss (netem's 1-k), in the bad state with BadLoss (netem's
// 1-h); P moves from good to bad and R from bad to good, each decided per
// packet. As in netem, R defaults to 1-P and BadLoss to 100%; GoodLoss
// defaults to 0. The long-run loss is (R·GoodLoss + P·BadLoss)/(P+R), and the
// mean burst in the bad state lasts 1/R packets.
type GilbertElliott struct {
	P        Percent `yaml:"p" json:"p"`
	R        Percent `yaml:"r,omitempty" json:"r,omitempty"`
	BadLoss  Percent `yaml:"bad_loss,omitempty" json:"bad_loss,omitempty"`
	GoodLoss Percent `yaml:"good_loss,omitempty" json:"good_loss,omitempty"`
}

// IsZero reports whether the model is unset.
func (g GilbertElliott) IsZero() bool { return g == GilbertElliott{} }

// withDefaults fills netem's defaults for unset parameters.
func (g GilbertElliott) withDefaults() GilbertElliott {
	if g.R == 0 {
		g.R = 1 - g.P
	}
	if g.BadLoss == 0 {
		g.BadLoss = 1
	}
	return g
}

// MeanLoss is the model's long-run loss fraction.
func (g GilbertElliott) MeanLoss() float64 {
	g = g.withDefaults()
	p, r := g.P.F(), g.R.F()
	if p+r == 0 {
		return g.GoodLoss.F()
	}
	return (r*g.GoodLoss.F() + p*g.BadLoss.F()) / (p + r)
}

// Reorder holds a share of packets back until Gap later packets of the same
// direction have been sent (or Timeout passed, so a quiet connection is not
// stalled). Unlike netem it needs no delay to work: netem reorders by sending
// some packets early, which only does anything when the rest are delayed.
type Reorder struct {
	Percent Percent        `yaml:"percent" json:"percent"`
	Gap     int            `yaml:"gap,omitempty" json:"gap,omitempty"`         // default 1
	Timeout units.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"` // default 10ms
}

// IsZero reports whether reordering is off.
func (r Reorder) IsZero() bool { return r == Reorder{} }

// Bandwidth limits throughput like tbf: a token bucket of Burst bytes filled
// at Rate, with at most Queue bytes waiting; packets beyond that are dropped.
type Bandwidth struct {
	Rate  BitRate    `yaml:"rate" json:"rate"`
	Queue units.Size `yaml:"queue,omitempty" json:"queue,omitempty"` // default: 100ms at Rate, at least 64KiB
	Burst units.Size `yaml:"burst,omitempty" json:"burst,omitempty"` // default: 1ms at Rate, at least one packet
}

// IsZero reports whether no limit is set.
func (b Bandwidth) IsZero() bool { return b == Bandwidth{} }

// Filter narrows an impairment to part of the traffic. The direction is
// chosen by Link.Set.
type Filter struct {
	// Port, when set, limits the impairment to TCP and UDP packets with this
	// source or destination port: one upstream's traffic, both ways.
	Port int `yaml:"port,omitempty" json:"port,omitempty"`
}

// IsZero reports whether the impairment is a no-op.
func (imp Impairment) IsZero() bool { return imp == Impairment{} }

// Validate checks ranges and combinations that the types alone cannot.
func (imp Impairment) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if imp.Loss.Percent != 0 && !imp.Loss.GEModel.IsZero() {
		bad("loss: set either percent or gemodel, not both")
	}
	if g := imp.Loss.GEModel; !g.IsZero() && g.P == 0 && g.GoodLoss == 0 {
		bad("loss.gemodel: p is 0 and good_loss is 0, so nothing would ever be lost")
	}
	switch imp.Distribution {
	case "", "uniform", "normal":
	default:
		bad("distribution: unknown %q: expected uniform or normal", imp.Distribution)
	}
	if imp.Jitter == 0 && (imp.Correlation != 0 || imp.Distribution != "") {
		bad("correlation and distribution shape the jitter, but jitter is not set")
	}
	if imp.Correlation >= 1 {
		bad("correlation: must be below 100%% (100%% would freeze the jitter at its first sample)")
	}
	if imp.Reorder.Gap < 0 || imp.Reorder.Gap > 1000 {
		bad("reorder.gap: %d is outside 1..1000 (0 or left out: 1)", imp.Reorder.Gap)
	}
	if !imp.Reorder.IsZero() && imp.Reorder.Percent == 0 {
		bad("reorder: percent is not set")
	}
	if b := imp.Bandwidth; !b.IsZero() {
		if b.Rate <= 0 {
			bad("bandwidth.rate: must be above 0 (e.g. 10mbit)")
		}
		if b.Queue < 0 || b.Burst < 0 {
			bad("bandwidth: queue and burst must not be negative")
		}
	}
	if imp.Filter.Port < 0 || imp.Filter.Port > 65535 {
		bad("filter.port: %d is outside 1..65535", imp.Filter.Port)
	}
	if imp.Delay.D() > time.Hour || imp.Jitter.D() > time.Hour {
		bad("delay and jitter must be at most 1h")
	}
	return errors.Join(errs...)
}

// attrs describes the impairment for an event: only what is set.
func (imp Impairment) attrs() map[string]any {
	m := map[string]any{}
	if imp.Loss.Percent != 0 {
		m["loss"] = imp.Loss.Percent.String()
	}
	if g := imp.Loss.GEModel; !g.IsZero() {
		d := g.withDefaults()
		m["loss_gemodel"] = map[string]any{"p": d.P.String(), "r": d.R.String(), "bad_loss": d.BadLoss.String(),
			"good_loss": d.GoodLoss.String(), "mean_loss": units.Percent(d.MeanLoss()).String()}
	}
	if imp.Delay != 0 {
		m["delay"] = imp.Delay.String()
	}
	if imp.Jitter != 0 {
		m["jitter"] = imp.Jitter.String()
		m["distribution"] = cmpOr(imp.Distribution, "uniform")
		if imp.Correlation != 0 {
			m["correlation"] = imp.Correlation.String()
		}
	}
	if imp.Duplicate != 0 {
		m["duplicate"] = imp.Duplicate.String()
	}
	if !imp.Reorder.IsZero() {
		m["reorder"] = imp.Reorder.Percent.String()
		m["reorder_gap"] = max(imp.Reorder.Gap, 1)
	}
	if imp.Corrupt != 0 {
		m["corrupt"] = imp.Corrupt.String()
	}
	if !imp.Bandwidth.IsZero() {
		m["rate"] = imp.Bandwidth.Rate.String()
	}
	if imp.SYNBlackhole {
		m["syn_blackhole"] = true
	}
	if imp.Filter.Port != 0 {
		m["port"] = imp.Filter.Port
	}
	return m
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// BitRate is a link rate in bits per second, written as tc writes it:
// "800kbit", "10mbit", "1.5gbit" (decimal multiples; "/s" may follow).
// Byte-based spellings ("kbps", "MB/s") are refused: tc reads "kbps" as
// kilobytes, most people as kilobits, and a factor of 8 is too easy to miss.
//
// It lives here rather than in internal/units because only packet faults use
// it so far.
type BitRate float64

var bitUnits = []struct {
	suffix string
	mult   float64
}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}}

// ParseBitRate parses "10mbit", "1.5gbit/s", "64000bit".
func ParseBitRate(s string) (BitRate, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "/s")
	for _, u := range bitUnits {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				break
			}
			if v <= 0 {
				return 0, fmt.Errorf("bit rate %q must be above 0", s)
			}
			return BitRate(v * u.mult), nil
		}
	}
	return 0, fmt.Errorf("invalid bit rate %q: expected e.g. 800kbit, 10mbit or 1gbit", s)
}

// BytesPerSecond returns the rate in bytes per second.
func (r BitRate) BytesPerSecond() float64 { return float64(r) / 8 }

func (r BitRate) String() string {
	for _, u := range bitUnits {
		if float64(r) >= u.mult {
			return strconv.FormatFloat(float64(r)/u.mult, 'g', 6, 64) + u.suffix
		}
	}
	return strconv.FormatFloat(float64(r), 'g', 6, 64) + "bit"
}

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (r *BitRate) UnmarshalYAML(node ast.Node) error {
	s, ok := node.(*ast.StringNode)
	if !ok {
		return yamlfile.NodeError(node, "expected a bit rate such as 10mbit (a bare number has no unit)")
	}
	v, err := ParseBitRate(s.Value)
	if err != nil {
		return yamlfile.NodeError(node, "%v", err)
	}
	*r = v
	return nil
}

// MarshalYAML writes the canonical string form.
func (r BitRate) MarshalYAML() (any, error) { return r.String(), nil }

// MarshalText writes the canonical string form (JSON uses it too).
func (r BitRate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads the string form.
func (r *BitRate) UnmarshalText(b []byte) error {
	v, err := ParseBitRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// JSONSchema describes the accepted form.
func (BitRate) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Pattern: `^[0-9]+(\.[0-9]+)?\s*([kKmMgG])?bit(/s)?$`,
		Description: "a bit rate such as 800kbit, 10mbit or 1gbit", Examples: []any{"10mbit"}}
}

// Package units holds the value types that configuration files share:
// durations, percentages, rates and byte sizes. Each decodes itself from a
// YAML node so that a bad value is reported at its own line and column, and
// each describes itself in JSON Schema so editors can check it.
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/goccy/go-yaml/ast"
	"github.com/invopop/jsonschema"

	"github.com/cascadehq/cascade/internal/yamlfile"
)

// scalar returns the textual value of a scalar node.
func scalar(node ast.Node) (string, bool) {
	switch n := node.(type) {
	case *ast.StringNode:
		return n.Value, true
	case *ast.IntegerNode, *ast.FloatNode:
		return n.GetToken().Value, true
	case *ast.NullNode:
		return "", true
	}
	return "", false
}

// Duration is a non-negative time span written as Go writes it: "300ms",
// "2s", "1m30s". A bare number is refused: "5" could mean seconds or
// milliseconds, and guessing wrong is exactly the mistake cascade exists to
// catch.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// ParseDuration parses the textual form used in files and flags.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("expected a duration such as 300ms or 2s, got an empty value")
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && s != "0" && !math.IsNaN(f) && !math.IsInf(f, 0) {
		return 0, fmt.Errorf("duration %q has no unit: expected e.g. %sms or %ss", s, s, s)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: expected e.g. 300ms, 2s, 1m30s", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return Duration(v), nil
}

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (d *Duration) UnmarshalYAML(node ast.Node) error {
	s, ok := scalar(node)
	if !ok {
		return yamlfile.NodeError(node, "expected a duration such as 300ms or 2s")
	}
	v, err := ParseDuration(s)
	if err != nil {
		return yamlfile.NodeError(node, "%v", err)
	}
	*d = v
	return nil
}

// MarshalYAML writes the canonical string form.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes the canonical string form.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(d.String())), nil }

// UnmarshalJSON reads the string form.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return fmt.Errorf("expected a quoted duration, got %s", b)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// JSONSchema describes the accepted form.
func (Duration) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Type:        "string",
		Pattern:     `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$`,
		Description: "a duration such as 300ms, 2s or 1m30s",
		Examples:    []any{"300ms", "2s"},
	}
}

// Percent is a fraction in [0, 1], written "5%" or "0.5%" (or as a bare
// fraction such as 0.05). It is stored as the fraction.
type Percent float64

// ParsePercent parses "5%", "0.5%" or a fraction "0.05".
func ParsePercent(s string) (Percent, error) {
	s = strings.TrimSpace(s)
	var v float64
	var err error
	if strings.HasSuffix(s, "%") {
		v, err = strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(s, "%")), 64)
		v /= 100
	} else {
		v, err = strconv.ParseFloat(s, 64)
		if err == nil && v > 1 {
			return 0, fmt.Errorf("percentage %q is above 1: write it with a %% sign (e.g. %s%%) or as a fraction in [0, 1]", s, s)
		}
	}
	if err != nil || math.IsNaN(v) {
		return 0, fmt.Errorf("invalid percentage %q: expected e.g. 5%% or 0.5%%", s)
	}
	if v < 0 || v > 1 {
		return 0, fmt.Errorf("percentage %q is outside 0%%..100%%", s)
	}
	return Percent(v), nil
}

// F returns the fraction.
func (p Percent) F() float64 { return float64(p) }

func (p Percent) String() string {
	return strconv.FormatFloat(float64(p)*100, 'g', 6, 64) + "%"
}

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (p *Percent) UnmarshalYAML(node ast.Node) error {
	s, ok := scalar(node)
	if !ok || s == "" {
		return yamlfile.NodeError(node, "expected a percentage such as 5%% or 0.5%%")
	}
	v, err := ParsePercent(s)
	if err != nil {
		return yamlfile.NodeError(node, "%v", err)
	}
	*p = v
	return nil
}

// MarshalYAML writes the "N%" form.
func (p Percent) MarshalYAML() (any, error) { return p.String(), nil }

// JSONSchema describes the accepted forms.
func (Percent) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		OneOf: []*jsonschema.Schema{
			{Type: "string", Pattern: `^[0-9]+(\.[0-9]+)?%$`},
			{Type: "number", Minimum: "0", Maximum: "1"},
		},
		Description: "a percentage such as 5% or 0.5%, or a fraction in [0, 1]",
	}
}

// Rate is a number of events per second, written "2000/s", "120/m" or "7200/h"
// (a bare number is per second).
type Rate float64

// ParseRate parses "2000/s", "120/m", "2/ms" or a bare number.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	num, unit, found := strings.Cut(s, "/")
	per := 1.0
	if found {
		switch strings.TrimSpace(unit) {
		case "s", "sec":
			per = 1
		case "ms":
			per = 0.001
		case "m", "min":
			per = 60
		case "h":
			per = 3600
		default:
			return 0, fmt.Errorf("invalid rate %q: unit must be /s, /m or /h", s)
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("invalid rate %q: expected e.g. 2000/s", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("rate %q is negative", s)
	}
	// 1e308/ms is finite as written but not per second.
	if math.IsInf(v/per, 0) {
		return 0, fmt.Errorf("rate %q is too large", s)
	}
	return Rate(v / per), nil
}

// PerSecond returns the rate in events per second.
func (r Rate) PerSecond() float64 { return float64(r) }

func (r Rate) String() string { return strconv.FormatFloat(float64(r), 'g', 8, 64) + "/s" }

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (r *Rate) UnmarshalYAML(node ast.Node) error {
	s, ok := scalar(node)
	if !ok || s == "" {
		return yamlfile.NodeError(node, "expected a rate such as 2000/s")
	}
	v, err := ParseRate(s)
	if err != nil {
		return yamlfile.NodeError(node, "%v", err)
	}
	*r = v
	return nil
}

// MarshalYAML writes the "N/s" form.
func (r Rate) MarshalYAML() (any, error) { return r.String(), nil }

// JSONSchema describes the accepted forms.
func (Rate) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		OneOf: []*jsonschema.Schema{
			{Type: "string", Pattern: `^[0-9]+(\.[0-9]+)?/(s|sec|ms|m|min|h)$`},
			{Type: "number", Minimum: "0"},
		},
		Description: "a rate such as 2000/s, 120/m or a bare number per second",
	}
}

// Size is a byte count, written "512", "4KiB", "1MB".
type Size int64

// ParseSize parses a byte count with an optional SI or IEC unit.
func ParseSize(s string) (Size, error) {
	v, err := humanize.ParseBytes(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: expected e.g. 512, 4KiB or 1MB", s)
	}
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Size(v), nil
}

// Bytes returns the size in bytes.
func (s Size) Bytes() int64 { return int64(s) }

func (s Size) String() string { return humanize.IBytes(uint64(s)) }

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (s *Size) UnmarshalYAML(node ast.Node) error {
	str, ok := scalar(node)
	if !ok || str == "" {
		return yamlfile.NodeError(node, "expected a size such as 512 or 4KiB")
	}
	v, err := ParseSize(str)
	if err != nil {
		return yamlfile.NodeError(node, "%v", err)
	}
	*s = v
	return nil
}

// MarshalYAML writes the byte count.
func (s Size) MarshalYAML() (any, error) { return int64(s), nil }

// JSONSchema describes the accepted forms.
func (Size) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		OneOf: []*jsonschema.Schema{
			{Type: "integer", Minimum: "0"},
			{Type: "string", Pattern: `^[0-9]+(\.[0-9]+)? ?([kKmMgG]i?[bB]?|[bB])?$`},
		},
		Description: "a byte count such as 512, 4KiB or 1MB",
	}
}

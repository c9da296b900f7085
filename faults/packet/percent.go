package packet

import (
	"math"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/invopop/jsonschema"

	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

// Percent is a share of packets, stored as a fraction in [0, 1] and written
// in a file with a % sign: "5%", "0.5%". A bare number other than 0 is
// refused, unlike units.Percent elsewhere in a scenario. tc-netem
// ("loss 0.5") and Chaos Mesh (loss: "0.5") read a bare number as a
// percentage, cascade's other fields read it as a fraction; people who come
// here from netem would get 0.5 read as 50 % where they meant 0.5 %, and
// `loss: 1` as a blackhole. The sign leaves no doubt.
type Percent float64

// F returns the fraction.
func (p Percent) F() float64 { return float64(p) }

func (p Percent) String() string { return units.Percent(p).String() }

// UnmarshalYAML implements yaml.NodeUnmarshaler: units.Percent's reading,
// after refusing a bare number other than 0.
func (p *Percent) UnmarshalYAML(node ast.Node) error {
	var s string
	switch n := node.(type) {
	case *ast.StringNode:
		s = strings.TrimSpace(n.Value)
	case *ast.IntegerNode, *ast.FloatNode:
		s = n.GetToken().Value
	}
	if v, err := strconv.ParseFloat(s, 64); err == nil && v != 0 && !math.IsNaN(v) && !math.IsInf(v, 0) {
		return yamlfile.NodeError(node, "write %s with a %% sign: %s%% as netem and Chaos Mesh read a bare %s, or %s%% as cascade's other fields read it", s, s, s, strconv.FormatFloat(v*100, 'g', 6, 64))
	}
	var u units.Percent
	if err := u.UnmarshalYAML(node); err != nil {
		return err
	}
	*p = Percent(u)
	return nil
}

// MarshalYAML writes the "N%" form, which UnmarshalYAML reads back.
func (p Percent) MarshalYAML() (any, error) { return p.String(), nil }

// JSONSchema describes the accepted forms: a percentage, or 0.
func (Percent) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		OneOf: []*jsonschema.Schema{
			{Type: "string", Pattern: `^[0-9]+(\.[0-9]+)?%$`},
			{Type: "number", Const: 0},
		},
		Description: "a percentage with its sign, such as 5% or 0.5% (a bare number other than 0 is refused: netem reads 0.5 as 0.5%, a fraction 0.5 is 50%)",
		Examples:    []any{"5%", "0.5%"},
	}
}

package scenarios

import (
	"github.com/goccy/go-yaml/ast"
	"github.com/invopop/jsonschema"

	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

// Safety is a health check for a live run (Gremlin's halt conditions): an
// objective over a sliding window of the most recent requests. "error_rate
// < 20%" alone, or {objective: "p99 < 2s", window: 10s, on_breach: continue}.
type Safety struct {
	// Objective is "<metric> <op> <value>" as in slo, judged over the window.
	Objective string `yaml:"objective" json:"objective"`
	// Window is how far back the check looks, by when requests ended
	// (default 5s).
	Window units.Duration `yaml:"window,omitempty" json:"window,omitempty" zero:"default"`
	// OnBreach: stop (default) ends the run after removing every fault;
	// continue keeps the load running without them.
	OnBreach string `yaml:"on_breach,omitempty" json:"on_breach,omitempty" jsonschema:"enum=stop,enum=continue"`
}

type safetyFields Safety

// UnmarshalYAML accepts the string shorthand.
func (s *Safety) UnmarshalYAML(node ast.Node) error {
	if str, ok := node.(*ast.StringNode); ok {
		*s = Safety{Objective: str.Value}
		return nil
	}
	if _, ok := node.(*ast.MappingNode); !ok {
		return yamlfile.NodeError(node, "a safety check is a string such as \"error_rate < 20%%\" or a mapping {objective: ..., window: 5s, on_breach: stop|continue}")
	}
	var f safetyFields
	if err := yamlfile.DecodeNode(node, &f); err != nil {
		return err
	}
	*s = Safety(f)
	return nil
}

// JSONSchema allows the string shorthand.
func (Safety) JSONSchema() *jsonschema.Schema {
	r := jsonschema.Reflector{FieldNameTag: "yaml", DoNotReference: true, ExpandedStruct: true, Anonymous: true}
	m := r.Reflect(&safetyFields{})
	m.Version = ""
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{{Type: "string", Examples: []any{"error_rate < 20%"}}, m}}
}

package scenarios

import (
	"encoding/json"
	"reflect"
	"strings"

	"github.com/invopop/jsonschema"

	"github.com/cascadehq/cascade/faults"
)

// Schema returns a JSON Schema of the scenario file, generated from the Go
// types, with each fault kind's params attached by kind, so editors complete
// and check scenario files.
func Schema() ([]byte, error) {
	r := &jsonschema.Reflector{FieldNameTag: "yaml", RequiredFromJSONSchemaTags: true, AllowAdditionalProperties: false, Namer: qualified, Anonymous: true}
	s := r.Reflect(&File{})
	s.ID = "https://github.com/cascadehq/cascade/scenario.schema.json"
	s.Title = "cascade scenario"
	if def, ok := s.Definitions["Fault"]; ok {
		kinds := faults.Kinds()
		enum := make([]any, len(kinds))
		for i, k := range kinds {
			enum[i] = k
			spec, _ := faults.NewSpec(k)
			ps := r.ReflectFromType(reflect.TypeOf(spec).Elem())
			for name, d := range ps.Definitions {
				s.Definitions[name] = d
			}
			ps.Definitions = nil
			ps.Version = ""
			props := jsonschema.NewProperties()
			props.Set("kind", &jsonschema.Schema{Const: k})
			then := jsonschema.NewProperties()
			then.Set("params", ps)
			def.AllOf = append(def.AllOf, &jsonschema.Schema{
				If:   &jsonschema.Schema{Properties: props},
				Then: &jsonschema.Schema{Properties: then},
			})
		}
		if kp, ok := def.Properties.Get("kind"); ok {
			kp.Enum = enum
		}
	}
	return json.MarshalIndent(s, "", "  ")
}

// qualified names the gateway's and the packet engine's types after their
// package (breaker.Config → BreakerConfig, gateway.Upstream →
// GatewayUpstream, packet.Percent → PacketPercent): several packages export a
// Config or a Percent, and definitions are keyed by type name.
func qualified(t reflect.Type) string {
	const gw, pk = "github.com/cascadehq/cascade/gateway", "github.com/cascadehq/cascade/faults/packet"
	if p := t.PkgPath(); p == gw || strings.HasPrefix(p, gw+"/") || p == pk {
		pkg := p[strings.LastIndex(p, "/")+1:]
		return strings.ToUpper(pkg[:1]) + pkg[1:] + t.Name()
	}
	return t.Name()
}

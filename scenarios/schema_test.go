package scenarios_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/cascadehq/cascade/scenarios"
)

// compileSchema loads `cascade schema` into a standard JSON Schema
// validator, as an editor would: a schema that only our own code reads
// could be broken (a nested $id re-roots every #/$defs reference under it)
// without a test noticing.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	raw, err := scenarios.Schema()
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(raw, []byte(`"$id"`)); n != 1 {
		t.Errorf("the schema has %d $id keys; only its root may have one", n)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	const url = "https://github.com/cascadehq/cascade/scenario.schema.json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(url)
	if err != nil {
		t.Fatalf("a standard validator cannot compile the schema: %v", err)
	}
	return s
}

func instance(t *testing.T, src []byte) any {
	t.Helper()
	js, err := yaml.YAMLToJSON(src)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Every shipped example is valid under the schema editors are given.
func TestExamplesMatchSchema(t *testing.T) {
	s := compileSchema(t)
	files, _ := filepath.Glob("examples/*.yaml")
	more, _ := filepath.Glob("examples/*/*.yaml")
	files = append(files, more...)
	if len(files) < 10 {
		t.Fatalf("examples missing: %v", files)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(instance(t, src)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// And the schema does refuse what the loader refuses: a misspelt field,
// a wrong kind of value, a fault's unknown parameter.
func TestSchemaRefuses(t *testing.T) {
	s := compileSchema(t)
	base := "name: x\nupstreams:\n  - {name: api}\ngateway:\n  routes: [{path: /, upstream: api}]\nload:\n  stages: [{duration: 1s, rate: 10/s}]\n  requests: [{path: /}]\n"
	if err := s.Validate(instance(t, []byte(base))); err != nil {
		t.Fatalf("the base file: %v", err)
	}
	for _, good := range []string{
		base + "faults:\n  - {name: f, kind: packet, target: api, params: {loss: 5%, duplicate: 0}}\n",
		base + "faults:\n  - {name: f, kind: error, target: api, params: {status: 500, probability: 0.5}}\n",
	} {
		if err := s.Validate(instance(t, []byte(good))); err != nil {
			t.Errorf("the schema refuses:\n%s\n%v", good, err)
		}
	}
	for _, bad := range []string{
		strings.Replace(base, "{name: api}", "{name: api, replicaz: 2}", 1),
		strings.Replace(base, "{name: api}", "{name: api, replicas: [2]}", 1),
		base + "faults:\n  - {name: f, kind: latency, target: api, params: {dealy: 5ms}}\n",
		base + "faults:\n  - {name: f, kind: latensy, target: api}\n",
		// What the loader requires, the schema requires: it accepted a
		// file without a name or a load, and a fault without a kind or
		// a target, so an editor showed nothing wrong.
		strings.Replace(base, "name: x\n", "", 1),
		strings.Replace(base, "{name: api}", "{replicas: 2}", 1),
		base[:strings.Index(base, "load:")],
		strings.Replace(base, "gateway:\n  routes: [{path: /, upstream: api}]\n", "", 1), // routes, or external
		base + "faults:\n  - {name: f, target: api, params: {delay: 5ms}}\n",
		base + "faults:\n  - {name: f, kind: latency, params: {delay: 5ms}}\n",
		// A packet share needs its % sign (netem reads a bare 0.5 as 0.5 %),
		// where other percentages take a fraction: the two Percent types
		// must not share one definition.
		base + "faults:\n  - {name: f, kind: packet, target: api, params: {loss: 0.5}}\n",
		base + "faults:\n  - {name: f, kind: packet, target: api, params: {jitter: 1ms, correlation: 0.25}}\n",
	} {
		if err := s.Validate(instance(t, []byte(bad))); err == nil {
			t.Errorf("the schema accepts:\n%s", bad)
		}
	}
}

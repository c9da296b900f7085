package yamlfile

import (
	"strings"
	"testing"

	"github.com/goccy/go-yaml/ast"
)

// selfDecoding stands for the units types: it takes any scalar itself.
type selfDecoding struct{ text string }

func (s *selfDecoding) UnmarshalYAML(n ast.Node) error {
	s.text = n.String()
	return nil
}

type shapeInner struct {
	Weight int `yaml:"weight"`
}

type shapeTimeouts struct {
	Total selfDecoding `yaml:"total" zero:"default"`
	Tries int          `yaml:"tries" zero:"default"`
	Slack int          `yaml:"slack"`
}

type ShapeBase struct {
	Replicas uint8 `yaml:"replicas"`
}

type shapeFile struct {
	Name      string                `yaml:"name"`
	Seed      uint64                `yaml:"seed"`
	Offset    int64                 `yaml:"offset"`
	Ratio     float64               `yaml:"ratio"`
	On        bool                  `yaml:"on"`
	Items     []shapeInner          `yaml:"items"`
	Labels    map[string]int        `yaml:"labels"`
	Inner     *shapeInner           `yaml:"inner"`
	Rate      selfDecoding          `yaml:"rate"`
	Tags      map[string]shapeInner `yaml:"tags"`
	Untagged  int
	Names     []string      `yaml:"names"`
	Timeouts  shapeTimeouts `yaml:"timeouts"`
	ShapeBase `yaml:",inline"`
}

func TestDecodeShape(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     string // "" = decodes; else the whole error
	}{
		{"valid", "name: a\nseed: 7\nitems:\n  - weight: 2\nreplicas: 3\n", ""},
		{"whole float", "seed: 2.0\n", ""},
		{"quoted whole number", "seed: \"12\"\n", ""},
		{"negative int", "offset: -3\n", ""},
		{"largest uint64", "seed: 18446744073709551615\n", ""},
		{"largest uint8", "replicas: 255.0\n", ""},
		{"number as a string", "name: 123\n", ""},
		{"self-decoding type takes anything", "rate: [1, 2]\n", ""},
		{"null value", "inner: ~\nseed: null\n", ""},
		{"tagged and anchored", "name: !!str abc\ninner: &x {weight: 1}\n", ""},
		{"byte-order mark", "\xef\xbb\xbfname: a\n", ""},
		{"untagged field by its lower-cased name", "untagged: 2\n", ""},

		{"zero where 0 is not the default", "timeouts: {slack: 0, total: 5s, tries: 2}\n", ""},
		{"zero duration standing for the default", "timeouts: {total: 0s}\n",
			"f.yaml:1:19: timeouts.total: 0 stands for the default here: leave total out for the default, or give a value above 0"},
		{"zero count standing for the default", "timeouts: {tries: 0}\n",
			"f.yaml:1:19: timeouts.tries: 0 stands for the default here: leave tries out for the default, or give a value above 0"},
		{"null key empties its mapping", "inner: {weight: 1, ~: x}\n",
			"f.yaml:1:20: inner.~: expected a field name as the key, got null"},
		{"null key at the top", "name: a\n~: 1\n",
			"f.yaml:2:1: ~: expected a field name as the key, got null"},
		{"null key in a map", "labels:\n  a: 1\n  null: 2\n",
			"f.yaml:3:3: labels.null: expected a field name as the key, got null"},
		{"fraction into an int", "items:\n  - weight: 0.5\n",
			"f.yaml:2:13: items[0].weight: expected a whole number, got 0.5"},
		{"fraction into an inline field", "replicas: 2.7\n",
			"f.yaml:1:11: replicas: expected a whole number, got 2.7"},
		{"past uint64", "seed: 18446744073709551616\n",
			"f.yaml:1:7: seed: expected a whole number from 0 to 18446744073709551615, got 18446744073709551616"},
		{"past uint8", "replicas: 256\n",
			"f.yaml:1:11: replicas: expected a whole number from 0 to 255, got 256"},
		{"negative into unsigned", "seed: -1\n",
			"f.yaml:1:7: seed: expected a whole number from 0 to 18446744073709551615, got -1"},
		{"word into an int", "tags:\n  x: {weight: heavy}\n",
			`f.yaml:2:15: tags.x.weight: expected a whole number, got the string "heavy"`},
		{"list into a string", "name: [a, b]\n",
			"f.yaml:1:7: name: expected a string, got a list"},
		{"unquoted URL in a flow list in a flow mapping", "{names: [http://127.0.0.1:8080/x, b]}\n",
			`f.yaml:1:10: names[0]: expected a string, got a mapping (if you meant the text "http://127.0.0.1:8080/x", put it in quotes)`},
		{"string into a list", "items: p99 < 250ms\n",
			`f.yaml:1:8: items: expected a list, got the string "p99 < 250ms"`},
		{"list into a struct", "inner: [1]\n",
			"f.yaml:1:8: inner: expected a mapping, got a list"},
		{"word into a float", "ratio: half\n",
			`f.yaml:1:8: ratio: expected a number, got the string "half"`},
		{"word into a bool", "on: maybe\n",
			`f.yaml:1:5: on: expected true or false, got the string "maybe"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v shapeFile
			_, err := Decode("f.yaml", []byte(tc.in), &v)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Decode: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("Decode accepted it: %+v", v)
			case tc.want != "" && err.Error() != tc.want:
				t.Fatalf("error\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
}

// The values that pass the check decode to what the file says: nothing is
// truncated or wrapped behind the check's back.
func TestDecodeShapeValues(t *testing.T) {
	var v shapeFile
	in := "\xef\xbb\xbfname: 123\nseed: 18446744073709551615\noffset: -9223372036854775808\nreplicas: 255.0\nitems: [{weight: \"7\"}]\n"
	if _, err := Decode("f.yaml", []byte(in), &v); err != nil {
		t.Fatal(err)
	}
	if v.Name != "123" || v.Seed != 18446744073709551615 || v.Offset != -9223372036854775808 ||
		v.Replicas != 255 || len(v.Items) != 1 || v.Items[0].Weight != 7 {
		t.Fatalf("decoded %+v", v)
	}
}

// FuzzDecodeShape: whatever a file holds, decoding it into a typed
// configuration returns (an error or a value) and never panics.
func FuzzDecodeShape(f *testing.F) {
	for _, s := range []string{
		"name: a\nseed: 7\n", "inner: {weight: 1, ~: x}\n", "seed: 1e400\n", "replicas: -0.0\n",
		"items: [{weight: .inf}]\n", "tags: {? [a]: {weight: 1}}\n", "<<: {seed: 1}\n", "x: &a 1\nseed: *a\n",
		"inner: &i {weight: 1}\nitems: [{<<: *i, weight: 2}, *i]\n", "tags: {a: &t {weight: 1}, b: {<<: [*t, {weight: 3}]}}\n",
		"labels: &l {a: 1}\ninner: {<<: *l}\n", "inner: {<<: &w {weight: 1}}\ntags: {x: *w}\n",
		"? seed\n: 1\n", "inner: {weight: 1, weight: 2}\n", "items: [{wieght: 1}]\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var v shapeFile
		_, err := Decode("f.yaml", []byte(in), &v)
		if err != nil && !strings.HasPrefix(err.Error(), "f.yaml") {
			t.Fatalf("error without the file's name: %v", err)
		}
	})
}

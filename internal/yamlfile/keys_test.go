package yamlfile

import (
	"testing"
)

// A field the place does not have is reported at its key, with the path
// of the mapping it is in, the fields that mapping takes, and the one it
// is likely a misspelling of; goccy/go-yaml said `unknown field "wieght"`
// alone, and which of two unknown fields depended on a map's order.
func TestUnknownFieldSaysWhereAndWhatIsExpected(t *testing.T) {
	const top = "inner, items, labels, name, names, offset, on, rate, ratio, replicas, seed, tags, timeouts, untagged"
	for _, tc := range []struct{ name, in, want string }{
		{"misspelt in a list item", "items:\n  - weight: 1\n    wieght: 2\n",
			`f.yaml:3:5: items[0]: unknown field "wieght" (did you mean "weight"?); expected one of: weight`},
		{"misspelt in a flow mapping", "timeouts: {slack: 1, totl: 5s}\n",
			`f.yaml:1:22: timeouts: unknown field "totl" (did you mean "total"?); expected one of: slack, total, tries`},
		{"at the top level", "name: a\nnmae: b\n",
			`f.yaml:2:1: unknown field "nmae" at the top level (did you mean "name"?); expected one of: ` + top},
		{"nothing like it", "inner: {weight: 1, colour: blue}\n",
			`f.yaml:1:20: inner: unknown field "colour"; expected one of: weight`},
		{"a field of an inline struct is known", "replicas: 1\nreplica: 2\n",
			`f.yaml:2:1: unknown field "replica" at the top level (did you mean "replicas"?); expected one of: ` + top},
		{"in a map's value", "tags:\n  x: {weight: 1, wait: 2}\n",
			`f.yaml:2:18: tags.x: unknown field "wait"; expected one of: weight`},
		{"a different case", "inner: {Weight: 1}\n",
			`f.yaml:1:9: inner: unknown field "Weight" (did you mean "weight"?); expected one of: weight`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v shapeFile
			_, err := Decode("f.yaml", []byte(tc.in), &v)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
	// Of several unknown fields, the first in the file, every time.
	for range 20 {
		var v shapeFile
		_, err := Decode("f.yaml", []byte("inner: {weight: 1, b: 2, a: 3, c: 4}\n"), &v)
		if want := `f.yaml:1:20: inner: unknown field "b"; expected one of: weight`; err == nil || err.Error() != want {
			t.Fatalf("error\n got: %v\nwant: %s", err, want)
		}
	}
}

// A key written twice in a mapping is refused at the second, with the
// mapping's path and where the first is; the parser said `mapping key
// "weight" already defined at [2:9]`, without the path.
func TestDuplicateKeySaysWhereAndWhereTheFirstIs(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"in a block mapping in a list", "items:\n  - weight: 1\n    weight: 2\n",
			`f.yaml:3:5: items[0]: duplicate key "weight" (first written at line 2 column 5); a mapping takes each key once`},
		{"in a flow mapping", "timeouts: {slack: 1, tries: 2, slack: 3}\n",
			`f.yaml:1:32: timeouts: duplicate key "slack" (first written at line 1 column 12); a mapping takes each key once`},
		{"at the top level", "seed: 1\nname: a\nseed: 2\n",
			`f.yaml:3:1: duplicate key "seed" at the top level (first written at line 1 column 1); a mapping takes each key once`},
		{"in a map", "labels:\n  a: 1\n  b: 2\n  a: 3\n",
			`f.yaml:4:3: labels: duplicate key "a" (first written at line 2 column 3); a mapping takes each key once`},
		{"quoted and plain are one key", "labels: {a: 1, \"a\": 2}\n",
			`f.yaml:1:16: labels: duplicate key "a" (first written at line 1 column 10); a mapping takes each key once`},
		{"two merges", "inner: &i {weight: 1}\ntags:\n  x: {<<: *i, <<: *i}\n",
			`f.yaml:3:15: tags.x: duplicate key "<<" (first written at line 3 column 7); a mapping takes each key once`},
		{"in an anchored block, at the block", "inner: &i {weight: 1, weight: 2}\nitems: [*i]\n",
			`f.yaml:1:23: inner: duplicate key "weight" (first written at line 1 column 12); a mapping takes each key once`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v shapeFile
			_, err := Decode("f.yaml", []byte(tc.in), &v)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
}

// YAML's explicit key form (`? key` then `: value`) is refused at the `?`,
// saying how to write the key: goccy/go-yaml reads `? seed: 42` as
// `seed: 42` where YAML has a mapping for the key, and the shape check took
// "? seed" for the key's name ("expected a field name as the key, got the
// string \"? <<\""). A list or a mapping as a key, which the parser refuses
// itself, says that a key is a name.
func TestExplicitKeysAreRefusedClearly(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"a name", "name: a\n? seed\n: 4\n",
			`f.yaml:2:1: seed: the explicit key form (?) is not supported; write the key plainly, as seed: followed by its value`},
		{"with its value on the line", "? seed: 4\n",
			`f.yaml:1:1: seed: the explicit key form (?) is not supported; write the key plainly, as seed: followed by its value`},
		{"without a value", "inner:\n  ? weight\n",
			`f.yaml:2:3: inner.weight: the explicit key form (?) is not supported; write the key plainly, as weight: followed by its value`},
		{"a merge key", "inner: &i {weight: 1}\ntags:\n  x:\n    ? <<\n    : *i\n",
			`f.yaml:4:5: tags.x.<<: the explicit key form (?) is not supported; write the key plainly, as <<: followed by its value`},
		{"in a flow mapping", "inner: {? weight : 1}\n",
			`f.yaml:1:9: inner.weight: the explicit key form (?) is not supported; write the key plainly, as weight: followed by its value`},
		{"a list", "labels:\n  ? [a, b]\n  : 1\n",
			`f.yaml:3:3: found an invalid key for this map; a key is a name, not a list or a mapping`},
		{"a flow list without ?", "labels: {[a]: 1}\n",
			`f.yaml:1:13: found an invalid key for this map; a key is a name, not a list or a mapping`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v shapeFile
			_, err := Decode("f.yaml", []byte(tc.in), &v)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
}

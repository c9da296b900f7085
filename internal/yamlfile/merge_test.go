package yamlfile

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

type mergeUpstream struct {
	Name     string            `yaml:"name"`
	Replicas int               `yaml:"replicas"`
	Latency  millis            `yaml:"latency"`
	Labels   map[string]string `yaml:"labels"`
}

type mergeFile struct {
	Base      map[string]any    `yaml:"base"`
	Upstreams []mergeUpstream   `yaml:"upstreams"`
	Labels    map[string]string `yaml:"labels"`
}

// Merge keys (YAML 1.1's <<) copy a mapping's keys into another; a key
// written in the mapping overrides a merged one (strict decoding called
// it a duplicate), and of several merged mappings the earlier wins.
func TestMergeKeys(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"a key after the merge overrides",
			"upstreams:\n  - &a {name: a, replicas: 2, latency: 5ms}\n  - {<<: *a, name: b}\n",
			"[{a 2 5ms map[]} {b 2 5ms map[]}]"},
		{"a key before the merge overrides",
			"upstreams:\n  - &a {name: a, replicas: 2}\n  - {name: b, <<: *a, latency: 1ms}\n",
			"[{a 2  map[]} {b 2 1ms map[]}]"},
		{"block style",
			"base: &b\n  replicas: 3\n  latency: 9ms\nupstreams:\n  - <<: *b\n    name: x\n    replicas: 4\n",
			"[{x 4 9ms map[]}]"},
		{"the earlier of several merged mappings wins",
			"base: {x: &x {replicas: 1}, y: &y {replicas: 3, latency: 7ms}}\nupstreams:\n  - {<<: [*x, *y], name: c}\n",
			"[{c 1 7ms map[]}]"},
		{"a merged mapping written in place",
			"upstreams:\n  - {<<: {replicas: 4, name: n}, name: m}\n",
			"[{m 4  map[]}]"},
		{"a mapping that merges, merged",
			"base: {a: &a {replicas: 1, latency: 1ms}, b: &b {<<: *a, replicas: 2}}\nupstreams:\n  - {<<: *b, name: d}\n",
			"[{d 2 1ms map[]}]"},
		{"into a map",
			"base: {l: &l {team: a, tier: 1}}\nupstreams:\n  - {name: e, labels: {<<: *l, tier: 2}}\n",
			"[{e 0  map[team:a tier:2]}]"},
		{"an anchored list of mappings",
			"base: {l: &l [{replicas: 5}, {replicas: 6, name: f}]}\nupstreams:\n  - <<: *l\n",
			"[{f 5  map[]}]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v mergeFile
			if _, err := Decode("f.yaml", []byte(tc.in), &v); err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(v.Upstreams); got != tc.want {
				t.Fatalf("decoded %s, want %s", got, tc.want)
			}
		})
	}
}

func TestMergeKeyErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"a key written twice is still a duplicate",
			"upstreams:\n  - &a {name: a}\n  - {<<: *a, name: b, name: c}\n",
			`f.yaml:3:23: upstreams[1]: duplicate key "name" (first written at line 3 column 14); a mapping takes each key once`},
		{"merging a scalar",
			"upstreams:\n  - {<<: 5, name: b}\n",
			"f.yaml:2:10: upstreams[0].<<: expected a mapping or a list of mappings to merge (such as <<: *defaults), got the number 5"},
		{"merging an alias of a scalar",
			"base: {s: &s slow}\nupstreams:\n  - {<<: *s, name: b}\n",
			`f.yaml:3:10: upstreams[0].<<: expected a mapping or a list of mappings to merge (such as <<: *defaults), got the string "slow" (via alias *s, defined at line 1 column 14)`},
		{"merging a list holding a scalar",
			"base: {a: &a {replicas: 1}}\nupstreams:\n  - {<<: [*a, 3], name: b}\n",
			"f.yaml:3:15: upstreams[0].<<[1]: expected a mapping to merge, got the number 3"},
		{"merging null",
			"upstreams:\n  - {<<: ~, name: b}\n",
			"f.yaml:2:10: upstreams[0].<<: expected a mapping or a list of mappings to merge (such as <<: *defaults), got null"},
		{"merging an alias not defined yet",
			"upstreams:\n  - {<<: *later, name: b}\n  - &later {name: c}\n",
			`f.yaml:2:10: upstreams[0].<<: alias *later names no anchor; an anchor &later written before it, on the value it repeats`},
		// What is merged is judged where it is merged.
		{"a merged field the place does not have",
			"base: &b {replicas: 2, weight: 1}\nupstreams:\n  - {<<: *b, name: b}\n",
			`f.yaml:3:10: upstreams[0]: unknown field "weight" (via alias *b, defined at line 1 column 24); expected one of: labels, latency, name, replicas`},
		{"a merged value that does not parse",
			"base: &b {latency: 5 parsecs}\nupstreams:\n  - {<<: *b, name: b}\n",
			"f.yaml:3:10: upstreams[0].latency: expected milliseconds such as 5ms (via alias *b, defined at line 1 column 20)"},
		{"a merged value that does not fit the shape",
			"base: &b {replicas: 2.5}\nupstreams:\n  - {<<: *b, name: b}\n",
			"f.yaml:3:10: upstreams[0].replicas: expected a whole number, got 2.5 (via alias *b, defined at line 1 column 21)"},
		{"a value merged in place that does not parse",
			"upstreams:\n  - {<<: {latency: 5 parsecs}, name: b}\n",
			"f.yaml:2:20: upstreams[0].latency: expected milliseconds such as 5ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v mergeFile
			_, err := Decode("f.yaml", []byte(tc.in), &v)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
}

// A field found wrong after decoding, by path, is located at the alias
// that merged it.
func TestMergedFieldsAreLocated(t *testing.T) {
	in := "upstreams:\n  - &a {name: a, replicas: 2}\n  - <<: *a\n    replicas: 3\n"
	var v mergeFile
	doc, err := Decode("f.yaml", []byte(in), &v)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"$.upstreams[1].name":     "f.yaml:3:9: upstreams[1].name: declared twice (via alias *a, defined at line 2 column 15)",
		"$.upstreams[1].replicas": "f.yaml:4:15: upstreams[1].replicas: declared twice",
	} {
		if got := doc.Errorf(path, "declared twice").Error(); got != want {
			t.Errorf("Errorf(%s)\n got: %s\nwant: %s", path, got, want)
		}
	}
}

// Merges do not get round the bound on what aliases add: each level
// merges one copy of the level below and aliases ten more.
func TestMergesThatMultiplyAreRefused(t *testing.T) {
	var b strings.Builder
	b.WriteString("base:\n  l0: &l0 {v: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}\n")
	for i := 1; i <= 6; i++ {
		fmt.Fprintf(&b, "  l%d: &l%d {<<: *l%d", i, i, i-1)
		for k := range 10 {
			fmt.Fprintf(&b, ", k%d: *l%d", k, i-1)
		}
		b.WriteString("}\n")
	}
	start := time.Now()
	var v mergeFile
	_, err := Decode("f.yaml", []byte(b.String()), &v)
	if err == nil || !strings.Contains(err.Error(), "aliases expand this file past 100000 values") {
		t.Fatalf("err %v", err)
	}
	if !strings.HasPrefix(err.Error(), "f.yaml:") || strings.HasPrefix(err.Error(), "f.yaml:1:") {
		t.Errorf("not located at the alias: %v", err)
	}
	// As for aliases (TestAliasesThatMultiplyAreRefused): refused, well
	// under a second; expanded, 10^7 values. 20 s tells them apart without
	// failing under -race on a loaded machine.
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v to refuse", d)
	}
}

// A mapping anchored where it is merged is still whole for its aliases,
// and an error in one of them is located at that alias, by its own path.
func TestAMergedAnchorServesItsAliases(t *testing.T) {
	in := "upstreams:\n  - {<<: &a {replicas: 2, latency: 5ms}, name: a}\n  - {<<: *a, name: b}\n  - *a\n"
	var v mergeFile
	if _, err := Decode("f.yaml", []byte(in), &v); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(v.Upstreams); got != "[{a 2 5ms map[]} {b 2 5ms map[]} { 2 5ms map[]}]" {
		t.Fatalf("decoded %s", got)
	}
	in = "upstreams:\n  - {<<: &a {labels: {x: y, z: w}}, name: a}\nlabels: *a\n"
	want := "f.yaml:3:9: labels.labels: expected a string, got a mapping (via alias *a, defined at line 2 column 22)"
	if _, err := Decode("f.yaml", []byte(in), &v); err == nil || err.Error() != want {
		t.Errorf("error\n got: %v\nwant: %s", err, want)
	}
}

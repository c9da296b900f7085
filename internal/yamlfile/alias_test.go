package yamlfile

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml/ast"
)

type aliasRequest struct {
	Path string `yaml:"path"`
}

type aliasExecutor struct {
	Name     string         `yaml:"name"`
	Requests []aliasRequest `yaml:"requests"`
}

type aliasFile struct {
	Defaults *aliasRequest   `yaml:"defaults"`
	Load     []aliasExecutor `yaml:"load"`
}

// aliasedLoad is n aliases of an executor that holds n aliases of a
// request: a file of a few KB that decodes into n² requests.
func aliasedLoad(n int) string {
	var b strings.Builder
	b.WriteString("load:\n  - &e {name: a, requests: [&r {path: /}")
	b.WriteString(strings.Repeat(", *r", n))
	b.WriteString("]}\n")
	b.WriteString(strings.Repeat("  - *e\n", n))
	return b.String()
}

// An alias of a list of aliases multiplies: refused at the alias that
// crosses the bound, before anything works on the copies (a scenario of
// 5,000 × 5,000 took validate 79 s and 6 GB).
func TestAliasesThatMultiplyAreRefused(t *testing.T) {
	start := time.Now()
	var f aliasFile
	_, err := Decode("f.yaml", []byte(aliasedLoad(1000)), &f)
	if err == nil || !strings.Contains(err.Error(), "aliases expand this file past") {
		t.Fatalf("decoded %d executors, err %v", len(f.Load), err)
	}
	if !strings.HasPrefix(err.Error(), "f.yaml:") || strings.HasPrefix(err.Error(), "f.yaml:1:") {
		t.Errorf("not located at the alias: %v", err)
	}
	// Refused before the copies are made, it takes well under a second
	// (2.5 s under -race on a loaded 2-core machine, which a 2 s bound
	// failed); made first, as before, it took 79 s. The bound sits between.
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v to refuse", d)
	}
}

// Aliases that reuse a block, even many times, decode as before.
func TestAliasesThatReuseDecode(t *testing.T) {
	var f aliasFile
	src := "defaults: &d {path: /x}\n" + aliasedLoad(100)
	if _, err := Decode("f.yaml", []byte(src), &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Load) != 101 || len(f.Load[100].Requests) != 101 || f.Defaults.Path != "/x" {
		t.Fatalf("decoded %d executors", len(f.Load))
	}
	if got := fmt.Sprint(f.Load[50].Requests[7]); got != "{/}" {
		t.Fatalf("request %s", got)
	}
}

// millis stands for the units types: a value that decodes itself and
// refuses what is not a number of milliseconds.
type millis string

func (m *millis) UnmarshalYAML(n ast.Node) error {
	s, ok := n.(*ast.StringNode)
	if !ok || !strings.HasSuffix(s.Value, "ms") {
		return NodeError(n, "expected milliseconds such as 5ms")
	}
	*m = millis(s.Value)
	return nil
}

type viaStep struct {
	Path  string `yaml:"path"`
	Delay millis `yaml:"delay"`
}

type viaFile struct {
	Labels   map[string]string `yaml:"labels"`
	Defaults map[string]any    `yaml:"defaults"`
	Names    []string          `yaml:"names"`
	Items    []shapeInner      `yaml:"items"`
	Step     *viaStep          `yaml:"step"`
	Steps    []viaStep         `yaml:"steps"`
	Inner    *shapeInner       `yaml:"inner"`
}

// A value that is wrong only where an alias puts it is reported at the
// alias, where the user has to look, with where the value is written: the
// anchor's place is fine on its own, and pointing there sent users to a
// line with nothing wrong on it.
func TestErrorsThroughAnAliasPointAtTheAlias(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"a value that decodes itself",
			"labels: {delay: &d 5 parsecs}\nstep:\n  path: /\n  delay: *d\n",
			"f.yaml:4:10: step.delay: expected milliseconds such as 5ms (via alias *d, defined at line 1 column 20)"},
		{"a field the other place does not have",
			"defaults: &p {path: /x, weight: 2}\ninner: {weight: 1}\nstep: *p\n",
			`f.yaml:3:7: step: unknown field "weight" (via alias *p, defined at line 1 column 25); expected one of: delay, path`},
		{"a wrong kind found by the shape check",
			"names: &n [a, b]\nitems: *n\n",
			"f.yaml:2:8: items[0]: expected a mapping, got the string \"a\" (via alias *n, defined at line 1 column 12)"},
		{"an alias in a list",
			"steps:\n  - &s {path: /, delay: 5ms}\n  - *s\nlabels: &l {a: b}\ninner: *l\n",
			`f.yaml:5:8: inner: unknown field "a" (via alias *l, defined at line 4 column 13); expected one of: weight`},
		// The alias the user wrote in the file's body is the one to look
		// at, even when the value came into its anchor through another.
		{"an alias of a block holding an alias",
			"labels: {d: &d 5 parsecs}\ndefaults: &s {path: /, delay: *d}\nsteps: [*s]\n",
			"f.yaml:3:9: steps[0].delay: expected milliseconds such as 5ms (via alias *s, defined at line 1 column 16)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v viaFile
			_, err := Decode("f.yaml", []byte(tc.in), &v)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
}

// An error found after decoding, by path, is located the same way, and so
// is one found when a section is decoded on its own later.
func TestLaterErrorsThroughAnAliasPointAtTheAlias(t *testing.T) {
	in := "step: &s {path: /a, delay: 5ms}\nsteps:\n  - *s\n"
	var v viaFile
	doc, err := Decode("f.yaml", []byte(in), &v)
	if err != nil {
		t.Fatal(err)
	}
	want := "f.yaml:3:5: steps[0].path: declared twice (via alias *s, defined at line 1 column 17)"
	if got := doc.Errorf("$.steps[0].path", "declared twice").Error(); got != want {
		t.Errorf("Errorf\n got: %s\nwant: %s", got, want)
	}
	if got := doc.Errorf("$.step.path", "declared twice").Error(); got != "f.yaml:1:17: step.path: declared twice" {
		t.Errorf("Errorf at the anchor itself: %s", got)
	}
	var only struct {
		Path string `yaml:"path"`
	}
	err = doc.DecodeNode(doc.Node("$.steps[0]"), &only)
	want = `f.yaml:3:5: steps[0]: unknown field "delay" (via alias *s, defined at line 1 column 21); expected one of: path`
	if err == nil || err.Error() != want {
		t.Errorf("DecodeNode\n got: %v\nwant: %s", err, want)
	}
}

package yamlfile

import (
	"runtime"
	"strings"
	"testing"
)

// The parser's own words for the commonest slips in a hand-written file
// said nothing a user could act on: a tab in the indentation came out as
// "found character '	' that cannot start any token" (the tab printed
// as itself), a line indented deeper than its siblings as "mapping value
// is not allowed in this context" at the line above, and a stray --- at
// line 1 column 1 wherever it was. Each now says where and what to write.
func TestSyntaxSlipsSayWhereAndWhatIsExpected(t *testing.T) {
	const deeper = `a "key: value" inside the value before it; indent this line as its sibling keys are (a line indented deeper goes on with the value above), or put a value that holds ": " in quotes`
	const tab = `a tab in the indentation; YAML indents with spaces only: replace the tab with spaces`
	const second = `a second YAML document starts here; a file holds one document (remove the --- line, or split the file)`
	for _, tc := range []struct{ name, in, want string }{
		{"a tab indents a key", "name: a\ninner:\n\tweight: 1\n", "f.yaml:3:1: " + tab},
		{"a tab indents a list item", "items:\n\t- weight: 1\n", "f.yaml:2:1: " + tab},
		{"a tab among the spaces", "items:\n  - weight: 1\n  \t  weight: 2\n", "f.yaml:3:3: " + tab},
		{"a key indented deeper than its sibling", "inner:\n  weight: 1\n   rate: 2\n", "f.yaml:3:8: " + deeper},
		{"a key indented deeper in a list item", "items:\n  - name: api\n     weight: 1\n", "f.yaml:3:12: " + deeper},
		{"a colon in a plain value", "name: a b: c\n", "f.yaml:1:10: " + deeper},
		{"a list item indented less than its siblings", "items:\n  - weight: 1\n - weight: 2\n", "f.yaml:3:2: a line indented less than its siblings above; indent it as they are"},
		{"text after a flow value", "name: a\nitems: [] x\n", "f.yaml:2:11: text after the value on this line; nothing after a closed [ ] or { } (a comment starts with #), or put the whole value in quotes"},
		{"a key after a top-level list", "- a\nname: b\n", "f.yaml:2:1: this does not go on from what the lines above started; one kind of value at the top level: a mapping of keys (key: value), not a list or a { } beside it"},
		{"an alias before its anchor", "items: [*a]\ninner: &a {weight: 1}\n", `f.yaml:1:10: alias *a names no anchor; an anchor &a written before it, on the value it repeats`},
		{"an alias in a merge", "inner: {<<: *x}\n", `f.yaml:1:13: inner.<<: alias *x names no anchor; an anchor &x written before it, on the value it repeats`},
		{"a second document", "name: a\n---\nseed: 1\n", "f.yaml:2:1: " + second},
		{"a second document after a first ---", "---\nname: a\n---\nseed: 1\n", "f.yaml:3:1: " + second},
		{"a second document after ...", "name: a\n...\n---\nseed: 1\n", "f.yaml:3:1: " + second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v shapeFile
			_, err := Decode("f.yaml", []byte(tc.in), &v)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
	// A tab between a key and its value is white space YAML allows.
	var v shapeFile
	if _, err := Decode("f.yaml", []byte("name: a\nseed:\t1\n"), &v); err != nil {
		t.Fatalf("a tab after the colon: %v", err)
	}
}

// A quoted string that is not what the field takes is quoted once in the
// message: it said `got the string "\"abc\""` for seed: "abc".
func TestAQuotedStringIsQuotedOnce(t *testing.T) {
	for _, in := range []string{"seed: \"abc\"\n", "seed: 'abc'\n"} {
		var v shapeFile
		_, err := Decode("f.yaml", []byte(in), &v)
		if want := `f.yaml:1:7: seed: expected a whole number, got the string "abc"`; err == nil || err.Error() != want {
			t.Fatalf("%q: error\n got: %v\nwant: %s", in, err, want)
		}
	}
}

// A file nested thousands of levels deep is refused at the level past
// the limit, quickly and in little memory: the parser's memory grows with
// the square of the depth, and 200,000 levels in a 400 KB file had the
// process killed for memory instead of an error.
func TestDeepNestingIsRefusedBeforeParsing(t *testing.T) {
	const n = 200_000
	const why = "nested more than 100 levels deep; a configuration nests a few levels; was a bracket or a \"- \" repeated?"
	for _, tc := range []struct{ name, in, want string }{
		{"flow lists", "name: x\nseed: " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n", "f.yaml:2:107: " + why},
		{"flow mappings", "name: x\nseed: " + strings.Repeat("{a: ", n) + "1" + strings.Repeat("}", n) + "\n", "f.yaml:2:407: " + why},
		{"flow lists over lines", "name: x\nseed:\n" + strings.Repeat("[\n", n) + strings.Repeat("]\n", n), "f.yaml:103:1: " + why},
		{"list items on one line", "name: x\nseed:\n" + strings.Repeat("- ", n) + "x\n", "f.yaml:3:201: " + why},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			var v shapeFile
			_, err := Decode("f.yaml", []byte(tc.in), &v)
			runtime.ReadMemStats(&after)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error\n got: %v\nwant: %s", err, tc.want)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<30 {
				t.Errorf("refusing it allocated %d MiB", grew>>20)
			}
		})
	}
	// As deep as the limit is fine (and the shape check says what it is).
	in := "name: x\nseed: " + strings.Repeat("[", MaxNesting) + strings.Repeat("]", MaxNesting) + "\n"
	var v shapeFile
	if _, err := Decode("f.yaml", []byte(in), &v); err == nil || !strings.Contains(err.Error(), "expected a whole number, got a list") {
		t.Fatalf("100 levels: %v", err)
	}
}

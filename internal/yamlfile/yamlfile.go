// Package yamlfile decodes YAML configuration files strictly and reports every
// problem as file:line:column, the field's path, and what was expected.
//
// It wraps github.com/goccy/go-yaml, which keeps positions on its AST. Three
// kinds of error reach a user, and all three come out as *Error:
//
//   - syntax and type errors found by the decoder (positions from its tokens);
//   - value errors raised by types that implement NodeUnmarshaler (units such as
//     durations), which build an *Error from the node they were given;
//   - semantic errors found after decoding (a dangling reference), which name a
//     YAML path that Doc.Errorf resolves to a position.
package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Error is a problem in a configuration file, located as precisely as the
// decoder allows. Line and Column are 1-based; zero means unknown.
type Error struct {
	File   string
	Line   int
	Column int
	Path   string // field path such as "gateway.routes[0].timeouts.total"; may be empty
	Msg    string

	// expected says what would have been right (the fields a mapping
	// takes), after Msg and what throughAlias adds to it.
	expected string

	// tok is the token NodeError found the problem at, kept until the
	// Doc it belongs to has seen whether an alias copied it there.
	tok *token.Token
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.expected != "" {
		b.WriteString("; ")
		b.WriteString(e.expected)
	}
	return b.String()
}

// Errors collects several problems so a user can fix a file in one pass.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Err returns nil for an empty list, so `return errs.Err()` reads naturally.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// NodeError builds an *Error located at node. Types implementing
// NodeUnmarshaler use it so that a bad value keeps its position.
func NodeError(node ast.Node, format string, args ...any) *Error {
	e := &Error{Msg: fmt.Sprintf(format, args...)}
	if node != nil {
		if tk := node.GetToken(); tk != nil && tk.Position != nil {
			e.Line, e.Column = tk.Position.Line, tk.Position.Column
			e.tok = tk
		}
		e.Path = displayPath(node.GetPath())
	}
	return e
}

// Doc is a parsed file, kept so that errors found after decoding can still be
// located by their YAML path.
type Doc struct {
	Name string // file name as given by the user, used in messages
	file *ast.File
	via  map[*token.Token]aliasUse // tokens that aliases copied, and the alias
}

// Decode parses data strictly into v: unknown fields, duplicate keys and type
// mismatches are errors. Aliases are expanded and merge keys (<<) applied
// first, so that what they bring in is checked where it lands. The
// returned Doc locates later, semantic errors.
func Decode(name string, data []byte, v any) (doc *Doc, err error) {
	defer containPanic(name, &err)
	// YAML allows a byte-order mark before the stream, and Windows editors
	// write one; the parser would make it part of the first key.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	// Duplicate keys are refused as the aliases are resolved (keys.go),
	// with the mapping's path; the parser's own message had none.
	if e := tooDeep(name, data); e != nil {
		return nil, e
	}
	f, err := parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		return nil, convert(name, err)
	}
	doc = &Doc{Name: name, file: f}
	if len(f.Docs) == 0 || f.Docs[0].Body == nil {
		return doc, &Error{File: name, Line: 1, Column: 1, Msg: "the file is empty"}
	}
	if len(f.Docs) > 1 {
		// Said where the second begins: a stray --- can be anywhere.
		e := &Error{File: name, Line: 1, Column: 1, Msg: "a second YAML document starts here", expected: "a file holds one document (remove the --- line, or split the file)"}
		if tk := f.Docs[1].Start; tk != nil && tk.Position != nil {
			e.Line, e.Column = tk.Position.Line, tk.Position.Column
		} else if b := f.Docs[1].Body; b != nil && b.GetToken() != nil && b.GetToken().Position != nil {
			e.Line, e.Column = b.GetToken().Position.Line, b.GetToken().Position.Column
		}
		return doc, e
	}
	var e *Error
	if doc.via, e = resolveAliases(f.Docs[0].Body); e != nil {
		return doc, doc.convert(e)
	}
	if err := decodeStrict(f.Docs[0].Body, v); err != nil {
		return doc, doc.convert(err)
	}
	return doc, nil
}

// DecodeNode decodes one node of an already parsed document strictly into v;
// used for parameters whose type is only known after a sibling field was read
// (a fault's params depend on its kind).
func (d *Doc) DecodeNode(node ast.Node, v any) (err error) {
	defer containPanic(d.Name, &err)
	if node == nil {
		return nil
	}
	if err := decodeStrict(node, v); err != nil {
		return d.convert(err)
	}
	return nil
}

// decodeStrict checks node's shape against v's type, then decodes it with
// unknown fields and duplicate keys refused.
func decodeStrict(node ast.Node, v any) error {
	if t := reflect.TypeOf(v); t != nil {
		if e := shape(node, t); e != nil {
			return e
		}
	}
	return yaml.NodeToValue(node, v, yaml.Strict(), yaml.DisallowUnknownField())
}

// containPanic turns a panic inside the YAML library into an error. The
// fuzzer found inputs that crash goccy/go-yaml (a tag on an empty flow
// sequence); a user's typo must get a message, not a stack trace.
func containPanic(name string, err *error) {
	if r := recover(); r != nil {
		*err = &Error{File: name, Line: 1, Column: 1,
			Msg: fmt.Sprintf("the YAML decoder failed on this file (%v): check the syntax, especially tags (!) and flow collections ([ ], { })", r)}
	}
}

// Errorf returns an error located at the YAML node at path (for example
// "$.gateway.routes[0].upstream"). When the path does not exist (the field
// was omitted) it walks up to the nearest existing parent.
func (d *Doc) Errorf(path string, format string, args ...any) *Error {
	e := &Error{Msg: fmt.Sprintf(format, args...), Path: displayPath(path)}
	if d == nil {
		return e
	}
	e.File = d.Name
	for p := path; p != "" && p != "$"; p = parentPath(p) {
		if n := d.lookup(p); n != nil {
			if tk := n.GetToken(); tk != nil && tk.Position != nil {
				e.Line, e.Column = tk.Position.Line, tk.Position.Column
				d.throughAlias(e, tk)
			}
			return e
		}
	}
	e.Line, e.Column = 1, 1
	return e
}

// Node returns the AST node at path, or nil.
func (d *Doc) Node(path string) ast.Node {
	if d == nil {
		return nil
	}
	return d.lookup(path)
}

func (d *Doc) lookup(path string) ast.Node {
	p, err := yaml.PathString(path)
	if err != nil {
		return nil
	}
	n, err := p.FilterFile(d.file)
	if err != nil {
		return nil
	}
	// FilterFile returns the value node; for a mapping value we prefer the
	// position of the value itself, which is what a user wants to fix.
	return n
}

func parentPath(p string) string {
	if i := strings.LastIndexAny(p, ".["); i > 0 {
		return p[:i]
	}
	return ""
}

// displayPath turns "$.a.b[0].c" into "a.b[0].c".
func displayPath(p string) string {
	p = strings.TrimPrefix(p, "$")
	return strings.TrimPrefix(p, ".")
}

// throughAlias moves an error found at tk, when an alias copied tk, to
// where that alias is written, and says where the value itself is: the
// alias is where the value was used (and may be wrong only there), the
// anchor's block is where it is written and would be edited.
func (d *Doc) throughAlias(e *Error, tk *token.Token) {
	e.tok = nil
	if d == nil || tk == nil {
		return
	}
	use, ok := d.via[tk]
	if !ok || use.at == nil || use.at.Position == nil || tk.Position == nil {
		return
	}
	e.Line, e.Column = use.at.Position.Line, use.at.Position.Column
	if e.Path == "" && use.node != nil {
		// The decoder's own errors (an unknown field) name no path; the
		// position alone no longer points at the field, so say which.
		e.Path = displayPath(use.node.Path)
	}
	e.Msg += fmt.Sprintf(" (via alias *%s, defined at line %d column %d)", use.name, tk.Position.Line, tk.Position.Column)
}

// convert turns a decoder error into *Error (or Errors), as the package's
// convert does, and moves the ones found in an alias's copy to the alias.
func (d *Doc) convert(err error) error {
	err = convert(d.Name, err)
	switch e := err.(type) {
	case *Error:
		d.throughAlias(e, e.tok)
	case Errors:
		for _, x := range e {
			d.throughAlias(x, x.tok)
		}
	}
	return err
}

// convert turns any decoder error into *Error (or Errors), keeping positions.
func convert(name string, err error) error {
	var own *Error
	if errors.As(err, &own) {
		c := *own
		if c.File == "" {
			c.File = name
		}
		return &c
	}
	var own2 Errors
	if errors.As(err, &own2) {
		out := make(Errors, len(own2))
		for i, e := range own2 {
			c := *e
			if c.File == "" {
				c.File = name
			}
			out[i] = &c
		}
		return out
	}
	type tokenError interface {
		GetToken() *token.Token
		GetMessage() string
	}
	var te tokenError
	if errors.As(err, &te) {
		e := &Error{File: name, Msg: te.GetMessage()}
		if tk := te.GetToken(); tk != nil && tk.Position != nil {
			e.Line, e.Column = tk.Position.Line, tk.Position.Column
			e.tok = tk
		}
		switch {
		case strings.HasPrefix(e.Msg, `could not find alias "`):
			// An alias before its anchor, or an anchor misspelt. (A lone
			// * is the parser's "could not find alias value": no name.)
			e.Msg, e.expected = noAnchor(strings.Trim(strings.TrimPrefix(e.Msg, "could not find alias "), `"`))
		}
		switch e.Msg {
		case "value is not allowed in this context":
			if prev := prevOnLine(e.tok); prev != nil {
				// "[1] 2", "{a: 1} x": text after a value that ended.
				e.Msg = "text after the value on this line"
				e.expected = "nothing after a closed [ ] or { } (a comment starts with #), or put the whole value in quotes"
			} else if e.Column > 1 {
				// A line indented less than its siblings, more than its parent.
				e.Msg = "a line indented less than its siblings above"
				e.expected = "indent it as they are"
			} else {
				// At the left margin: what follows a top-level list or
				// flow value ("- a" then "b: 1", or "{a: 1} x").
				e.Msg = "this does not go on from what the lines above started"
				e.expected = "one kind of value at the top level: a mapping of keys (key: value), not a list or a { } beside it"
			}
		case "found an invalid key for this map":
			// The parser's word for a list or a mapping as a key
			// ([a, b]: 1, ? {a: 1}), at the colon after it.
			e.expected = "a key is a name, not a list or a mapping"
		case "found character '\t' that cannot start any token":
			// A tab in a line's indentation; the parser printed the
			// tab itself, which reads as blank.
			e.Msg = "a tab in the indentation"
			e.expected = "YAML indents with spaces only: replace the tab with spaces"
		case "mapping value is not allowed in this context":
			// Said at the value before a line indented deeper than
			// its siblings (which YAML reads as that value going on),
			// or at a plain value holding ": ". The colon is where
			// it went wrong.
			if colon := nextColon(te.GetToken()); colon != nil {
				e.Line, e.Column, e.tok = colon.Position.Line, colon.Position.Column, colon
			}
			e.Msg = `a "key: value" inside the value before it`
			e.expected = `indent this line as its sibling keys are (a line indented deeper goes on with the value above), or put a value that holds ": " in quotes`
		}
		return e
	}
	return &Error{File: name, Msg: err.Error()}
}

// noAnchor says that alias *name has no anchor before it: the parser's
// words were "could not find alias".
func noAnchor(name string) (msg, expected string) {
	return fmt.Sprintf("alias *%s names no anchor", name), fmt.Sprintf("an anchor &%s written before it, on the value it repeats", name)
}

// prevOnLine is the token before tk when it is on tk's line, else nil.
func prevOnLine(tk *token.Token) *token.Token {
	if tk == nil || tk.Prev == nil || tk.Prev.Position == nil || tk.Position == nil || tk.Prev.Position.Line != tk.Position.Line {
		return nil
	}
	return tk.Prev
}

// nextColon is the mapping value indicator (the ':') at or just after
// tk, the token the parser stopped at.
func nextColon(tk *token.Token) *token.Token {
	for n, i := tk, 0; n != nil && i < 3; n, i = n.Next, i+1 {
		if n.Type == token.MappingValueType && n.Position != nil {
			return n
		}
	}
	return nil
}

// FieldError is a problem found by a package that validates its own config
// without knowing which file it came from. Path is relative to that config
// ("routes[0].upstream"); the file layer positions it with Doc.Position.
type FieldError struct {
	Path string
	Msg  string
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Fieldf builds a FieldError.
func Fieldf(path, format string, args ...any) FieldError {
	return FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Position locates field errors found under prefix (a YAML path such as
// "$.gateway") in this document.
func (d *Doc) Position(prefix string, errs []FieldError) Errors {
	var out Errors
	for _, fe := range errs {
		p := prefix
		if fe.Path != "" {
			if strings.HasPrefix(fe.Path, "[") {
				p += fe.Path
			} else {
				p += "." + fe.Path
			}
		}
		out = append(out, d.Errorf(p, "%s", fe.Msg))
	}
	return out
}

// DecodeNode decodes one node strictly into v; NodeUnmarshaler
// implementations use it for their mapping forms.
func DecodeNode(node ast.Node, v any) error {
	return decodeStrict(node, v)
}

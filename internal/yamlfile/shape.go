package yamlfile

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
)

// shape checks a node against the Go type it is about to be decoded into,
// before goccy/go-yaml decodes it, for what the library lets through
// silently or describes in Go's terms:
//
//   - a key that is not a name (`~: x`) empties the whole mapping it sits
//     in, so a typo on one line silently drops its siblings;
//   - a fraction bound for an integer field is truncated (replicas: 2.7
//     starts 2) and a number past uint64 wraps (a seed of 2^64 became 2^63);
//   - a value of the wrong kind is reported as "cannot unmarshal string
//     into Go struct field File.Load of type int", with no field path;
//   - a field the place does not have is reported as `unknown field
//     "dealy"`, without where or what would be, and which of several is
//     reported depends on a map's order.
//
// It returns the first problem, as the decoder would. Types that decode
// themselves (an UnmarshalYAML(ast.Node) method: units, durations, fault
// params) are left to their own checks, and so are the aliases left after
// resolveAliases (an anchor not defined yet), which the decoder refuses.
func shape(node ast.Node, t reflect.Type) *Error {
	node = unwrap(node)
	if node == nil || node.Type() == ast.NullType || node.Type() == ast.AliasType {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if decodesItself(t) {
		return nil
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return wholeNumber(node, t)
	case reflect.Float32, reflect.Float64:
		switch node.Type() {
		case ast.IntegerType, ast.FloatType, ast.InfinityType, ast.NanType:
			return nil
		}
		return NodeError(node, "expected a number, got %s", describe(node))
	case reflect.Bool:
		if node.Type() != ast.BoolType {
			return NodeError(node, "expected true or false, got %s", describe(node))
		}
	case reflect.String:
		if _, ok := node.(ast.ScalarNode); !ok {
			if at, hint := colonHint(node); hint != "" {
				e := NodeError(node, "expected a string, got a mapping%s", hint)
				if tk := at.GetToken(); tk != nil && tk.Position != nil {
					e.Line, e.Column = tk.Position.Line, tk.Position.Column
				}
				return e
			}
			return NodeError(node, "expected a string, got %s", describe(node))
		}
	case reflect.Slice, reflect.Array:
		seq, ok := node.(*ast.SequenceNode)
		if !ok {
			return NodeError(node, "expected a list, got %s", describe(node))
		}
		for _, v := range seq.Values {
			if e := shape(v, t.Elem()); e != nil {
				return e
			}
		}
	case reflect.Map, reflect.Struct:
		m, ok := mapping(node)
		if !ok {
			return NodeError(node, "expected a mapping, got %s", describe(node))
		}
		for _, mv := range m.Values {
			if e := namedKey(mv); e != nil {
				return e
			}
			var elem reflect.Type
			switch {
			case mv.Key.IsMergeKey():
				continue // <<: merged before (merge.go), so not from Decode
			case t.Kind() == reflect.Map:
				elem = t.Elem()
			default:
				f, ok := field(t, keyText(mv.Key))
				if !ok {
					return unknownField(node, mv, t)
				}
				switch zero := f.Tag.Get("zero"); {
				case zero == "" || !zeroLiteral(mv.Value):
				case zero == "default":
					return NodeError(mv.Value, "0 stands for the default here: leave %s out for the default, or give a value above 0", keyText(mv.Key))
				default: // a 0 that reads as the field left out, which means something else
					return NodeError(mv.Value, "%s: 0 %s: give a value above 0", keyText(mv.Key), zero)
				}
				elem = f.Type
			}
			if e := shape(mv.Value, elem); e != nil {
				return e
			}
		}
	}
	return nil
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	// The interfaces goccy/go-yaml hands a value's decoding over to.
	unmarshalers = []reflect.Type{
		reflect.TypeFor[interface{ UnmarshalYAML(ast.Node) error }](),
		reflect.TypeFor[interface{ UnmarshalYAML([]byte) error }](),
		reflect.TypeFor[interface {
			UnmarshalYAML(func(any) error) error
		}](),
		reflect.TypeFor[interface {
			UnmarshalYAML(context.Context, []byte) error
		}](),
		reflect.TypeFor[interface {
			UnmarshalYAML(context.Context, func(any) error) error
		}](),
	}
)

// decodesItself reports whether values of t are not decoded field by
// field: an interface, a duration, or a type with its own UnmarshalYAML
// (which checks what it is given itself).
func decodesItself(t reflect.Type) bool {
	if t.Kind() == reflect.Interface || t == durationType {
		return true
	}
	for _, u := range unmarshalers {
		if t.Implements(u) || reflect.PointerTo(t).Implements(u) {
			return true
		}
	}
	return false
}

// zeroLiteral reports whether a node writes zero: 0, 0.0, or a zero with a
// unit (0s, 0ms, 0%, 0KiB). A field tagged zero:"default" reads a zero as
// "not given" and puts its default in: written out, the user meant
// something else (Envoy reads a zero timeout as none), and got the default
// without a word (wait_duration_in_open: 0s kept a breaker open 60 s). Any
// other zero:"..." tag says what the zero would do instead (zero:"runs no
// VUs": vus: 0 read as not given, and the executor became another model).
func zeroLiteral(n ast.Node) bool {
	switch v := unwrap(n).(type) {
	case *ast.IntegerNode:
		return v.Value == int64(0) || v.Value == uint64(0)
	case *ast.FloatNode:
		return v.Value == 0
	case *ast.StringNode:
		num := strings.TrimRightFunc(strings.TrimSpace(v.Value), func(r rune) bool {
			return r == '%' || r == 'µ' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		})
		f, err := strconv.ParseFloat(num, 64)
		return err == nil && f == 0
	}
	return false
}

// unwrap looks through tags (!!int) and anchors (&a) to the value.
func unwrap(n ast.Node) ast.Node {
	for {
		switch v := n.(type) {
		case *ast.TagNode:
			n = v.Value
		case *ast.AnchorNode:
			n = v.Value
		default:
			return n
		}
	}
}

// mapping accepts a mapping; the parser gives a one-entry mapping as a
// bare MappingValueNode.
func mapping(n ast.Node) (*ast.MappingNode, bool) {
	switch v := n.(type) {
	case *ast.MappingNode:
		return v, true
	case *ast.MappingValueNode:
		return &ast.MappingNode{Values: []*ast.MappingValueNode{v}}, true
	}
	return nil, false
}

// namedKey refuses a key that is not a name: a null key, or a number or
// list where a field's name goes.
func namedKey(mv *ast.MappingValueNode) *Error {
	k := unwrap(mv.Key)
	if k == nil || mv.Key.IsMergeKey() {
		return nil
	}
	switch k.Type() {
	case ast.StringType, ast.IntegerType, ast.FloatType, ast.BoolType:
		return nil
	}
	return NodeError(mv.Key, "expected a field name as the key, got %s", describe(k))
}

// KeyName is a mapping key's name as written, without its quotes:
// `"abort": true` and `abort: true` are the same key. A key's String() is
// its source text, quotes included, and read that way the JSON style of a
// flow mapping (what `cascade load` writes) named no field.
func KeyName(k ast.MapKeyNode) string { return keyText(k) }

func keyText(k ast.MapKeyNode) string {
	if s, ok := unwrap(k).(*ast.StringNode); ok {
		return s.Value
	}
	return k.String()
}

// field finds the struct field that decodes key, as goccy/go-yaml names
// fields: the yaml tag, else the json tag, else the lower-cased Go name;
// inline structs lend their fields.
func field(t reflect.Type, key string) (reflect.StructField, bool) {
	var found reflect.StructField
	ok := false
	eachField(t, func(name string, f reflect.StructField) bool {
		if name == key {
			found, ok = f, true
		}
		return !ok
	})
	return found, ok
}

// eachField calls fn with each field of struct t that a key can name, and
// that name, in order, until fn returns false. The fields of an inline
// struct are t's; one that decodes itself lends them by name only, and its
// field is then given for each (goccy/go-yaml hands it the whole mapping).
func eachField(t reflect.Type, fn func(name string, f reflect.StructField) bool) bool {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "" {
			tag = f.Tag.Get("json")
		}
		name, opts, _ := strings.Cut(tag, ",")
		if tag == "-" {
			continue
		}
		if strings.Contains(","+opts+",", ",inline,") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() != reflect.Struct {
				continue
			}
			if !decodesItself(ft) {
				if !eachField(ft, fn) {
					return false
				}
				continue
			}
			if !eachField(ft, func(name string, _ reflect.StructField) bool { return fn(name, f) }) {
				return false
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if !fn(name, f) {
			return false
		}
	}
	return true
}

// unknownField refuses a key of mapping node that names no field of
// struct t: at the key, with the mapping's path, the fields there are, and
// the one it is likely a misspelling of.
func unknownField(node ast.Node, mv *ast.MappingValueNode, t reflect.Type) *Error {
	key := keyText(mv.Key)
	var names []string
	seen := map[string]bool{}
	eachField(t, func(name string, _ reflect.StructField) bool {
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
		return true
	})
	sort.Strings(names)
	e := NodeError(mv.Key, "unknown field %q", key)
	// The path of the mapping the key is in, not of the key: the key is
	// what is wrong, the mapping where it is.
	if m, ok := node.(*ast.MappingNode); ok {
		e.Path = displayPath(m.GetPath())
	} else {
		e.Path = displayPath(parentPath(mv.GetPath()))
	}
	if e.Path == "" {
		e.Msg += " at the top level"
	}
	if s := closest(key, names); s != "" {
		e.Msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	if len(names) == 0 {
		e.expected = "no field is expected here"
	} else {
		e.expected = "expected one of: " + strings.Join(names, ", ")
	}
	return e
}

// closest is the name key is most likely a misspelling of: the nearest by
// edit distance (a swap of two letters counts once), if near enough to be
// a slip rather than another word; "" otherwise.
func closest(key string, names []string) string {
	best, bestD := "", -1
	for _, n := range names {
		d := editDistance(strings.ToLower(key), n)
		if bestD < 0 || d < bestD {
			best, bestD = n, d
		}
	}
	if bestD < 0 || bestD > 2 || 2*bestD > len(key) {
		return ""
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of neighbours, by rune.
func editDistance(a, b string) int {
	x, y := []rune(a), []rune(b)
	if len(x) > 64 || len(y) > 64 {
		return 1 << 20 // not a slip of the finger
	}
	d := make([][]int, len(x)+1)
	for i := range d {
		d[i] = make([]int, len(y)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(x); i++ {
		for j := 1; j <= len(y); j++ {
			cost := 1
			if x[i-1] == y[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && x[i-1] == y[j-2] && x[i-2] == y[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(x)][len(y)]
}

// wholeNumber checks an integer field's value: a whole number that fits.
func wholeNumber(node ast.Node, t reflect.Type) *Error {
	lo, hi := intRange(t)
	switch n := node.(type) {
	case *ast.IntegerNode:
		switch x := n.Value.(type) {
		case int64:
			if x >= 0 && uint64(x) <= hi || x < 0 && x >= lo {
				return nil
			}
		case uint64:
			if x <= hi {
				return nil
			}
		}
	case *ast.FloatNode:
		if n.Value != math.Trunc(n.Value) {
			return NodeError(node, "expected a whole number, got %s", strings.TrimSpace(node.String()))
		}
		// float64(hi) rounds up to 2^63 or 2^64 for the 64-bit kinds, one
		// past the range; the smaller kinds' bounds are exact.
		if n.Value >= float64(lo) && (n.Value < float64(hi) || t.Bits() < 64 && n.Value == float64(hi)) {
			return nil
		}
	case *ast.StringNode:
		// The parser leaves a number past uint64 as a string (which the
		// decoder then wraps), and a quoted "5" decodes as 5.
		var err error
		if lo < 0 {
			_, err = strconv.ParseInt(n.Value, 10, t.Bits())
		} else {
			_, err = strconv.ParseUint(n.Value, 10, t.Bits())
		}
		if err == nil {
			return nil
		}
		if _, ferr := strconv.ParseFloat(n.Value, 64); ferr != nil && !errors.Is(ferr, strconv.ErrRange) {
			return NodeError(node, "expected a whole number, got %s", describe(node))
		}
		if !errors.Is(err, strconv.ErrRange) {
			return NodeError(node, "expected a whole number, got %s", n.Value)
		}
	default:
		return NodeError(node, "expected a whole number, got %s", describe(node))
	}
	return NodeError(node, "expected a whole number from %d to %d, got %s", lo, hi, strings.TrimSpace(node.String()))
}

// intRange is the range of an integer kind, as lo (≤ 0) and hi.
func intRange(t reflect.Type) (int64, uint64) {
	bits := t.Bits()
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return 0, math.MaxUint64 >> (64 - bits)
	}
	return -1 << (bits - 1), 1<<(bits-1) - 1
}

// describe names a node's kind for a message, with the value when short.
// colonHint explains the usual way a string becomes a mapping: an unquoted
// text with a colon in it, such as a URL, inside [ ] or { }, which the YAML
// parser splits at the colon into a key and a value. Quoting it keeps it
// whole.
// It returns the key's node, where the text starts, to point at.
func colonHint(n ast.Node) (ast.Node, string) {
	m, ok := mapping(n)
	if !ok || len(m.Values) != 1 {
		return nil, ""
	}
	k, kok := unwrap(m.Values[0].Key).(ast.ScalarNode)
	v, vok := unwrap(m.Values[0].Value).(ast.ScalarNode)
	if !kok || !vok || k == nil || v == nil {
		return nil, ""
	}
	text := fmt.Sprint(k.GetValue()) + ":" + fmt.Sprint(v.GetValue())
	return k, fmt.Sprintf(" (if you meant the text %q, put it in quotes)", text)
}

func describe(n ast.Node) string {
	switch n.Type() {
	case ast.MappingType, ast.MappingValueType:
		return "a mapping"
	case ast.SequenceType:
		return "a list"
	case ast.NullType:
		return "null"
	case ast.BoolType:
		return "a boolean (" + n.String() + ")"
	case ast.IntegerType, ast.FloatType, ast.InfinityType, ast.NanType:
		return "the number " + n.String()
	}
	s := strings.TrimSpace(n.String())
	if str, ok := unwrap(n).(*ast.StringNode); ok {
		s = str.Value // without the quotes it was written in: %q adds its own
	}
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return fmt.Sprintf("the string %q", s)
}

package yamlfile

import (
	"fmt"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// Keys are checked as the aliases are resolved (resolveAliases walks every
// mapping of the file once, in order), before anything is decoded.

// duplicateKey refuses a key m already has (seen: the keys before mv, by
// their text): at the second, with m's path and where the first is. The
// parser refused them itself, as `mapping key "replicas" already defined
// at [10:5]`, with no path; merge keys count (a mapping merges once).
func duplicateKey(m *ast.MappingNode, mv *ast.MappingValueNode, seen map[string]*ast.MappingValueNode) *Error {
	if mv == nil || mv.Key == nil {
		return nil
	}
	k := keyID(mv.Key)
	first, dup := seen[k]
	if !dup {
		seen[k] = mv
		return nil
	}
	e := NodeError(mv.Key, "duplicate key %q", keyText(mv.Key))
	e.Path = displayPath(m.GetPath())
	if e.Path == "" {
		e.Msg += " at the top level"
	}
	if tk := first.Key.GetToken(); tk != nil && tk.Position != nil {
		e.Msg += fmt.Sprintf(" (first written at line %d column %d)", tk.Position.Line, tk.Position.Column)
	}
	e.expected = "a mapping takes each key once"
	return e
}

// explicitKey refuses a key written in YAML's explicit form, `? key` then
// `: value`. A configuration's keys are names, which the plain form
// writes; goccy/go-yaml reads `? seed: 42` as seed: 42 where YAML reads a
// mapping as the key, and the shape check took the whole "? seed" for the
// key's name.
func explicitKey(mv *ast.MappingValueNode) *Error {
	mk, ok := mv.Key.(*ast.MappingKeyNode)
	if !ok || mk == nil {
		return nil
	}
	e := NodeError(mk, "the explicit key form (?) is not supported")
	if k, ok := unwrap(mk.Value).(ast.ScalarNode); ok && k != nil {
		text := strings.TrimSpace(k.String())
		e.expected = fmt.Sprintf("write the key plainly, as %s: followed by its value", text)
		return e
	}
	if mk.Value != nil {
		e.expected = fmt.Sprintf("a key is a name, not %s", describe(unwrap(mk.Value)))
	}
	return e
}

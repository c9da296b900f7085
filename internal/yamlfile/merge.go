package yamlfile

import (
	"github.com/goccy/go-yaml/ast"
)

// merge applies YAML 1.1's merge keys (https://yaml.org/type/merge.html)
// in m, once what they merge has had its own aliases and merges resolved:
// each `<<: *a` or `<<: [*a, *b]` entry is replaced by the entries of the
// mappings it names that m does not write itself, the earlier mapping
// winning over a later one. The decoder then sees plain keys.
//
// goccy/go-yaml merges too, but in strict mode it calls a key written
// next to a merge that also brings it a duplicate, so a merge could never
// override anything; a key written twice in one mapping is still refused,
// by duplicateKey, before this runs.
func (r *resolver) merge(m *ast.MappingNode) *Error {
	merges := false
	for _, mv := range m.Values {
		merges = merges || isMerge(mv)
	}
	if !merges {
		return nil
	}
	have := map[string]bool{}
	for _, mv := range m.Values {
		if !isMerge(mv) {
			have[keyID(mv.Key)] = true
		}
	}
	values := make([]*ast.MappingValueNode, 0, len(m.Values))
	for _, mv := range m.Values {
		if !isMerge(mv) {
			values = append(values, mv)
			continue
		}
		from, err := merged(mv)
		if err != nil {
			return err
		}
		for _, src := range from {
			for _, e := range src.Values {
				if k := keyID(e.Key); !have[k] {
					have[k] = true
					// A copy, with m's paths for the errors that name
					// them: the entry may also be an anchor's (<<: &a
					// {...}), and *a must still find it where it was.
					c := copier{via: r.via, keep: true, from: src.GetPath(), to: m.GetPath()}
					values = append(values, c.mappingValue(e))
				}
			}
		}
	}
	m.Values = values
	return nil
}

func isMerge(mv *ast.MappingValueNode) bool {
	return mv != nil && mv.Key != nil && mv.Key.IsMergeKey()
}

// merged returns the mappings a merge key's value names, in order: a
// mapping, or a list of mappings.
func merged(mv *ast.MappingValueNode) ([]*ast.MappingNode, *Error) {
	v := mv.Value
	if v == nil {
		return nil, NodeError(mv, "expected a mapping or a list of mappings to merge (such as <<: *defaults), got nothing")
	}
	switch n := unwrap(v).(type) {
	case *ast.SequenceNode:
		out := make([]*ast.MappingNode, 0, len(n.Values))
		for _, item := range n.Values {
			m, err := mergedMapping(item, "expected a mapping to merge, got %s")
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
		return out, nil
	default:
		m, err := mergedMapping(v, "expected a mapping or a list of mappings to merge (such as <<: *defaults), got %s")
		if err != nil {
			return nil, err
		}
		return []*ast.MappingNode{m}, nil
	}
}

func mergedMapping(v ast.Node, format string) (*ast.MappingNode, *Error) {
	n := unwrap(v)
	if a, ok := n.(*ast.AliasNode); ok && a.Value != nil {
		// Its anchor comes later, or is the alias's own: not resolved.
		e := NodeError(a, "")
		e.Msg, e.expected = noAnchor(a.Value.GetToken().Value)
		return nil, e
	}
	if n == nil {
		return nil, NodeError(v, format, "nothing")
	}
	if m, ok := mapping(n); ok {
		return m, nil
	}
	return nil, NodeError(n, format, describe(n))
}

// keyID is a key as the parser compares keys for duplicates: its text.
func keyID(k ast.MapKeyNode) string {
	var n ast.Node = k
	for {
		switch v := n.(type) {
		case *ast.MappingKeyNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		case *ast.AnchorNode:
			n = v.Value
		case *ast.AliasNode:
			return v.String() // *name
		case nil:
			return ""
		default:
			if tk := n.GetToken(); tk != nil {
				return tk.Value
			}
			return n.String()
		}
	}
}

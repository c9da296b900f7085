package yamlfile

import "github.com/goccy/go-yaml/ast"

// MaxAliasValues bounds the values aliases add to a file. A scenario
// reuses a few blocks (timeouts, a request); an alias of a list of aliases
// multiplies instead (YAML's "billion laughs"). The decoder shares what an
// anchor decodes to, but everything after it works on every copy: a 50 KB
// scenario of 5,000 aliases of an executor with 5,000 aliased requests
// took `cascade validate` 79 s and 6 GB to be told it was invalid.
const MaxAliasValues = 100_000

// resolveAliases replaces, in document order, each alias with the node its
// anchor marks, and refuses the alias that takes the values aliases add
// past MaxAliasValues.
//
// The decoder resolves aliases itself, but only within one decoding: a
// type that decodes its own node (the load, a data set, a fault's params)
// decodes it afresh, without the anchors around it, so `vus: *n` under
// load: was "could not find alias" with the anchor two lines up. Resolved
// here, every decoding sees the values. An alias of an anchor not defined
// yet (or of itself) is left for the decoder to refuse.
func resolveAliases(root ast.Node) *Error {
	anchors := map[string]ast.Node{} // anchor name → the node it marks
	sizes := map[string]int{}        // … and the values in it
	added := 0
	var walk func(n ast.Node) (int, *Error)
	// child walks a child and, if it is an alias it can resolve, returns
	// the node that replaces it.
	child := func(n ast.Node) (ast.Node, int, *Error) {
		if a, ok := n.(*ast.AliasNode); ok && a != nil && a.Value != nil {
			name := a.Value.GetToken().Value
			target, ok := anchors[name]
			if !ok {
				return n, 1, nil
			}
			if added += sizes[name]; added > MaxAliasValues {
				return n, 0, NodeError(a, "aliases expand this file past %d values (an alias of a list of aliases multiplies them): write the repeated part out, or alias a smaller one", MaxAliasValues)
			}
			return target, sizes[name], nil
		}
		s, err := walk(n)
		return n, s, err
	}
	walk = func(n ast.Node) (int, *Error) {
		switch v := n.(type) {
		case nil:
			return 0, nil
		case *ast.AnchorNode:
			if v == nil {
				return 0, nil
			}
			var s int
			var err *Error
			v.Value, s, err = child(v.Value)
			if err == nil && v.Name != nil {
				anchors[v.Name.GetToken().Value], sizes[v.Name.GetToken().Value] = v.Value, s
			}
			return s, err
		case *ast.TagNode:
			if v == nil {
				return 0, nil
			}
			var s int
			var err *Error
			v.Value, s, err = child(v.Value)
			return s, err
		case *ast.DocumentNode:
			if v == nil {
				return 0, nil
			}
			var s int
			var err *Error
			v.Body, s, err = child(v.Body)
			return s, err
		case *ast.MappingKeyNode:
			if v == nil {
				return 0, nil
			}
			return walk(v.Value)
		case *ast.MappingValueNode:
			if v == nil {
				return 0, nil
			}
			ks, err := walk(v.Key) // an alias as a key stays one
			if err != nil {
				return 0, err
			}
			var vs int
			v.Value, vs, err = child(v.Value)
			return ks + vs, err
		case *ast.MappingNode:
			if v == nil {
				return 0, nil
			}
			total := 1
			for _, mv := range v.Values {
				s, err := walk(mv)
				if err != nil {
					return 0, err
				}
				total += s
			}
			return total, nil
		case *ast.SequenceNode:
			if v == nil {
				return 0, nil
			}
			total := 1
			for i := range v.Values {
				var s int
				var err *Error
				v.Values[i], s, err = child(v.Values[i])
				if err != nil {
					return 0, err
				}
				total += s
			}
			return total, nil
		}
		return 1, nil
	}
	_, err := walk(root)
	return err
}

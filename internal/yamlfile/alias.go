package yamlfile

import "github.com/goccy/go-yaml/ast"

// MaxAliasValues bounds the values aliases add to a file. A scenario
// reuses a few blocks (timeouts, a request); an alias of a list of aliases
// multiplies instead (YAML's "billion laughs"). The decoder shares what an
// anchor decodes to, but everything after it works on every copy: a 50 KB
// scenario of 5,000 aliases of an executor with 5,000 aliased requests
// took `cascade validate` 79 s and 6 GB to be told it was invalid.
const MaxAliasValues = 100_000

// checkAliases counts, in document order, the values each alias stands for
// and refuses the alias that takes the total past MaxAliasValues.
func checkAliases(root ast.Node) *Error {
	sizes := map[string]int{} // anchor name → values of what it marks
	added := 0
	var walk func(n ast.Node) (int, *Error)
	walk = func(n ast.Node) (int, *Error) {
		sum := func(nodes ...ast.Node) (int, *Error) {
			total := 1
			for _, c := range nodes {
				s, err := walk(c)
				if err != nil {
					return 0, err
				}
				total += s
			}
			return total, nil
		}
		switch v := n.(type) {
		case nil:
			return 0, nil
		case *ast.AliasNode:
			if v == nil || v.Value == nil {
				return 1, nil
			}
			s := max(sizes[v.Value.GetToken().Value], 1) // an unknown one: the decoder says so
			if added += s; added > MaxAliasValues {
				return 0, NodeError(v, "aliases expand this file past %d values (an alias of a list of aliases multiplies them): write the repeated part out, or alias a smaller one", MaxAliasValues)
			}
			return s, nil
		case *ast.AnchorNode:
			if v == nil {
				return 0, nil
			}
			s, err := walk(v.Value)
			if err == nil && v.Name != nil {
				sizes[v.Name.GetToken().Value] = s
			}
			return s, err
		case *ast.TagNode:
			if v == nil {
				return 0, nil
			}
			return walk(v.Value)
		case *ast.DocumentNode:
			if v == nil {
				return 0, nil
			}
			return walk(v.Body)
		case *ast.MappingKeyNode:
			if v == nil {
				return 0, nil
			}
			return walk(v.Value)
		case *ast.MappingValueNode:
			if v == nil {
				return 0, nil
			}
			s, err := sum(v.Key, v.Value)
			return s - 1, err // a key and its value, no third
		case *ast.MappingNode:
			if v == nil {
				return 0, nil
			}
			nodes := make([]ast.Node, len(v.Values))
			for i, mv := range v.Values {
				nodes[i] = mv
			}
			return sum(nodes...)
		case *ast.SequenceNode:
			if v == nil {
				return 0, nil
			}
			return sum(v.Values...)
		}
		return 1, nil
	}
	_, err := walk(root)
	return err
}

package yamlfile

import (
	"reflect"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// MaxAliasValues bounds the values aliases add to a file. A scenario
// reuses a few blocks (timeouts, a request); an alias of a list of aliases
// multiplies instead (YAML's "billion laughs"). The decoder shares what an
// anchor decodes to, but everything after it works on every copy: a 50 KB
// scenario of 5,000 aliases of an executor with 5,000 aliased requests
// took `cascade validate` 79 s and 6 GB to be told it was invalid.
const MaxAliasValues = 100_000

// aliasUse is where a copied token came from: the alias, written in the
// file, whose anchor's value the copy was made of.
type aliasUse struct {
	name string        // the anchor's name (the alias is *name)
	at   *token.Token  // the alias's own token, where *name is written
	node *ast.BaseNode // the copied node the token is in, for its path
}

// resolver replaces each alias with a copy of its anchor's value.
type resolver struct {
	anchors map[string]ast.Node // anchor name → the node it marks
	sizes   map[string]int      // … and the values in it
	added   int
	// via maps every token of every copy to the alias that made it, so
	// that an error at a copy is reported where the alias is written: the
	// value may be fine at its anchor and wrong only where it is used.
	via map[*token.Token]aliasUse
}

// resolveAliases replaces, in document order, each alias with a copy of
// the node its anchor marks, and refuses the alias that takes the values
// aliases add past MaxAliasValues. Anchors are left out of the tree once
// read, so that a path such as $.upstreams[0].name reaches a field inside
// an anchored block (goccy/go-yaml's path filter stops at an anchor). It
// returns, for each copied token, the alias it came through.
//
// The decoder resolves aliases itself, but only within one decoding: a
// type that decodes its own node (the load, a data set, a fault's params)
// decodes it afresh, without the anchors around it, so `vus: *n` under
// load: was "could not find alias" with the anchor two lines up. Resolved
// here, every decoding sees the values. An alias of an anchor not defined
// yet (or of itself) is left for the decoder to refuse.
//
// Each alias gets its own copy rather than the anchor's node itself: an
// error found in the value (a unit that does not parse, a field the place
// does not have) then carries the copy's tokens, which via traces back to
// the alias, instead of the anchor's, which would send the user to a line
// where the value may well be right.
func resolveAliases(root ast.Node) (map[*token.Token]aliasUse, *Error) {
	r := &resolver{anchors: map[string]ast.Node{}, sizes: map[string]int{}, via: map[*token.Token]aliasUse{}}
	_, err := r.walk(root)
	return r.via, err
}

// child walks a child and returns the node that replaces it: for an alias
// it can resolve, a copy of the anchor's value; for an anchor, its value.
func (r *resolver) child(n ast.Node) (ast.Node, int, *Error) {
	switch v := n.(type) {
	case *ast.AliasNode:
		if v == nil || v.Value == nil {
			break
		}
		name := v.Value.GetToken().Value
		target, ok := r.anchors[name]
		if !ok {
			return n, 1, nil
		}
		if r.added += r.sizes[name]; r.added > MaxAliasValues {
			return n, 0, NodeError(v, "aliases expand this file past %d values (an alias of a list of aliases multiplies them): write the repeated part out, or alias a smaller one", MaxAliasValues)
		}
		c := copier{via: r.via, use: aliasUse{name: name, at: v.GetToken()}, from: target.GetPath(), to: v.GetPath()}
		return c.node(target), r.sizes[name], nil
	case *ast.AnchorNode:
		if v == nil {
			break
		}
		value, s, err := r.child(v.Value)
		if err != nil {
			return n, 0, err
		}
		if v.Name != nil {
			name := v.Name.GetToken().Value
			r.anchors[name], r.sizes[name] = value, s
		}
		if value == nil {
			return n, s, nil // an anchor of nothing: left as the parser made it
		}
		return value, s, nil
	}
	s, err := r.walk(n)
	return n, s, err
}

// walk resolves the aliases under n and returns the values n holds.
func (r *resolver) walk(n ast.Node) (int, *Error) {
	switch v := n.(type) {
	case nil:
		return 0, nil
	case *ast.TagNode:
		if v == nil {
			return 0, nil
		}
		var s int
		var err *Error
		v.Value, s, err = r.child(v.Value)
		return s, err
	case *ast.DocumentNode:
		if v == nil {
			return 0, nil
		}
		var s int
		var err *Error
		v.Body, s, err = r.child(v.Body)
		return s, err
	case *ast.MappingKeyNode:
		if v == nil {
			return 0, nil
		}
		return r.walk(v.Value)
	case *ast.MappingValueNode:
		if v == nil {
			return 0, nil
		}
		if err := explicitKey(v); err != nil {
			return 0, err
		}
		ks, err := r.walk(v.Key) // an alias as a key stays one
		if err != nil {
			return 0, err
		}
		var vs int
		v.Value, vs, err = r.child(v.Value)
		return ks + vs, err
	case *ast.MappingNode:
		if v == nil {
			return 0, nil
		}
		total := 1
		seen := make(map[string]*ast.MappingValueNode, len(v.Values))
		for _, mv := range v.Values {
			if err := duplicateKey(v, mv, seen); err != nil {
				return 0, err
			}
			s, err := r.walk(mv)
			if err != nil {
				return 0, err
			}
			total += s
		}
		// What a merge brings in was counted as the value of its <<;
		// the keys it loses to the mapping's own are counted still.
		return total, r.merge(v)
	case *ast.SequenceNode:
		if v == nil {
			return 0, nil
		}
		total := 1
		for i := range v.Values {
			var s int
			var err *Error
			v.Values[i], s, err = r.child(v.Values[i])
			if err != nil {
				return 0, err
			}
			if i < len(v.Entries) && v.Entries[i] != nil {
				v.Entries[i].Value = v.Values[i]
			}
			total += s
		}
		return total, nil
	}
	return 1, nil
}

// copier makes the copy of an anchor's value that one alias stands for.
//
// goccy/go-yaml has no deep copy of its AST, and a generic one (reflection)
// would follow every token's Prev and Next through the whole file; this one
// copies the nodes and their own tokens and shares the rest (comments,
// directives). Tokens keep their positions, so a copy prints as its anchor
// does; via records which alias each copied token came through, and paths
// are moved from where the anchor is (from) to where the alias is (to).
//
// A copier that keeps moves a value within the file (a merge): a token
// an alias copied stays traced to that alias, and the others to none.
type copier struct {
	via      map[*token.Token]aliasUse
	use      aliasUse
	keep     bool
	from, to string
}

func (c copier) base(b *ast.BaseNode) *ast.BaseNode {
	if b == nil {
		return nil
	}
	return &ast.BaseNode{Path: rebased(b.Path, c.from, c.to), Comment: b.Comment}
}

// rebased moves a path from under one node's path to under another's.
func rebased(p, from, to string) string {
	if rest, ok := strings.CutPrefix(p, from); ok && (rest == "" || rest[0] == '.' || rest[0] == '[') {
		return to + rest
	}
	return p
}

func (c copier) token(tk *token.Token, node *ast.BaseNode) *token.Token {
	if tk == nil {
		return nil
	}
	t := tk.Clone()
	u, ok := c.use, true
	if c.keep {
		u, ok = c.via[tk]
	}
	if ok {
		u.node = node
		c.via[t] = u
	}
	return t
}

// leaf points a copied node at a copy of its base (its path rebased) and
// of its first token (see token).
func (c copier) leaf(b **ast.BaseNode, tk **token.Token) {
	*b = c.base(*b)
	*tk = c.token(*tk, *b)
}

func (c copier) node(n ast.Node) ast.Node {
	if n == nil {
		return n
	}
	if rv := reflect.ValueOf(n); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return n // a typed nil: nothing to copy
	}
	switch v := n.(type) {
	case *ast.NullNode:
		x := *v
		c.leaf(&x.BaseNode, &x.Token)
		return &x
	case *ast.IntegerNode:
		x := *v
		c.leaf(&x.BaseNode, &x.Token)
		return &x
	case *ast.FloatNode:
		x := *v
		c.leaf(&x.BaseNode, &x.Token)
		return &x
	case *ast.StringNode:
		return c.string(v)
	case *ast.BoolNode:
		x := *v
		c.leaf(&x.BaseNode, &x.Token)
		return &x
	case *ast.InfinityNode:
		x := *v
		c.leaf(&x.BaseNode, &x.Token)
		return &x
	case *ast.NanNode:
		x := *v
		c.leaf(&x.BaseNode, &x.Token)
		return &x
	case *ast.MergeKeyNode:
		x := *v
		c.leaf(&x.BaseNode, &x.Token)
		return &x
	case *ast.LiteralNode:
		x := *v
		c.leaf(&x.BaseNode, &x.Start)
		x.Value = c.string(v.Value)
		return &x
	case *ast.TagNode:
		x := *v
		c.leaf(&x.BaseNode, &x.Start)
		x.Value = c.node(v.Value)
		return &x
	case *ast.AnchorNode:
		x := *v
		c.leaf(&x.BaseNode, &x.Start)
		x.Name = c.node(v.Name)
		x.Value = c.node(v.Value)
		return &x
	case *ast.AliasNode:
		x := *v
		c.leaf(&x.BaseNode, &x.Start)
		x.Value = c.node(v.Value)
		return &x
	case *ast.MappingKeyNode:
		x := *v
		c.leaf(&x.BaseNode, &x.Start)
		x.Value = c.node(v.Value)
		return &x
	case *ast.MappingValueNode:
		return c.mappingValue(v)
	case *ast.MappingNode:
		x := *v
		c.leaf(&x.BaseNode, &x.Start)
		x.End = c.token(v.End, x.BaseNode)
		x.Values = make([]*ast.MappingValueNode, len(v.Values))
		for i, mv := range v.Values {
			x.Values[i] = c.mappingValue(mv)
		}
		return &x
	case *ast.SequenceNode:
		x := *v
		c.leaf(&x.BaseNode, &x.Start)
		x.End = c.token(v.End, x.BaseNode)
		x.Values = make([]ast.Node, len(v.Values))
		for i, e := range v.Values {
			x.Values[i] = c.node(e)
		}
		x.Entries = nil
		for i, e := range v.Entries {
			if e == nil || i >= len(x.Values) {
				continue
			}
			y := *e
			c.leaf(&y.BaseNode, &y.Start)
			y.Value = x.Values[i]
			x.Entries = append(x.Entries, &y)
		}
		return &x
	}
	// Comments, directives, documents: not values, never under an anchor.
	return n
}

func (c copier) string(v *ast.StringNode) *ast.StringNode {
	if v == nil {
		return nil
	}
	x := *v
	x.BaseNode = c.base(v.BaseNode)
	x.Token = c.token(v.Token, x.BaseNode)
	return &x
}

func (c copier) mappingValue(v *ast.MappingValueNode) *ast.MappingValueNode {
	if v == nil {
		return nil
	}
	x := *v
	x.BaseNode = c.base(v.BaseNode)
	x.Start = c.token(v.Start, x.BaseNode)
	x.CollectEntry = c.token(v.CollectEntry, x.BaseNode)
	if k, ok := c.node(v.Key).(ast.MapKeyNode); ok {
		x.Key = k
	}
	x.Value = c.node(v.Value)
	return &x
}

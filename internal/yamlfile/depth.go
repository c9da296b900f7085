package yamlfile

import (
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/token"
)

// MaxNesting bounds how deep a file nests. The parser keeps every node's
// path from the root, so its memory grows with the square of the depth:
// 20,000 levels written in 40 KB ("[[[...]]]", or "- - - ... x" on one
// line) took 670 MB, and 200,000 had the process killed for memory. A
// scenario nests a few levels; aliases, which could multiply a depth,
// are bounded apart (alias.go).
const MaxNesting = 100

// tooDeep finds the first place src nests deeper than MaxNesting: inside
// flow brackets ([ {), or in block list items (or explicit keys) opened
// on one line ("- - - x"). A block nesting by indentation needs a longer
// line per level, so its depth stays near the square root of the size,
// and the parser copes.
func tooDeep(name string, src []byte) *Error {
	flow, line, onLine := 0, 0, 0
	for _, tk := range lexer.Tokenize(string(src)) {
		if tk.Position == nil {
			continue
		}
		if tk.Position.Line != line {
			line, onLine = tk.Position.Line, 0
		}
		depth := 0
		switch tk.Type {
		case token.SequenceStartType, token.MappingStartType:
			flow++
			depth = flow
		case token.SequenceEndType, token.MappingEndType:
			flow--
		case token.SequenceEntryType, token.MappingKeyType:
			onLine++
			depth = onLine
		}
		if depth > MaxNesting {
			return &Error{File: name, Line: tk.Position.Line, Column: tk.Position.Column,
				Msg:      "nested more than 100 levels deep",
				expected: "a configuration nests a few levels; was a bracket or a \"- \" repeated?"}
		}
	}
	return nil
}

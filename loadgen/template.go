package loadgen

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cascadehq/cascade/internal/regfile"
)

// Template is a request path, header value or body with variables in
// double braces, parsed once and rendered per request:
//
//	{{seq}}               the request's sequence number in its executor (0, 1, 2, ...)
//	{{rand_int 1 1000}}   a seeded random integer in [1, 1000]
//	{{rand_id}}           16 seeded random hex digits
//	{{uuid}}              a seeded random UUID (version 4 layout)
//	{{users.id}}          column id of this request's row of data set users
//	{{urlencode users.q}} the same, percent-encoded for a path segment or a
//	                      query value (JavaScript's encodeURIComponent)
//	{{json users.name}}   the same as a JSON string, quotes included
//
// Every random value is a pure function of the scenario's seed, the
// executor, the request's sequence number and the variable's position, so a
// run repeats exactly whatever the order in which workers send. Within one
// request every variable of a data set reads the same row (rows in order by
// sequence number, or a seeded random row).
//
// A hand-written mini-language rather than text/template: it renders into a
// reused buffer without reflection or allocation, and its whole grammar is
// the list above, so a typo is an error at load time, not at request 10 000.
type Template struct {
	src   string
	parts []tpart
}

type tkind uint8

const (
	tLit tkind = iota
	tSeq
	tRandInt
	tRandID
	tUUID
	tData
)

// tenc is how a data value is written out.
type tenc uint8

const (
	encRaw  tenc = iota // as it is
	encURL              // percent-encoded: every byte but A-Z a-z 0-9 - _ . ! ~ * ' ( )
	encJSON             // a JSON string
)

type tpart struct {
	kind     tkind
	enc      tenc // data values only
	lit      string
	lo, span uint64 // rand_int: lo and hi-lo+1 (0 means the full 2^64 range)
	set, col int    // data: data set index and column
	draw     uint64 // random variables: which independent draw of the request
}

// Dataset is a table of values that templates read by column: a CSV file
// with a header row, or a JSON array of flat objects.
type Dataset struct {
	Name    string
	Columns []string
	Rows    [][]string
	// Random picks a seeded random row per request instead of the rows in
	// order (row = sequence number modulo the row count).
	Random bool
}

// MaxDataset bounds a data set file: it is held in memory, rows and all.
const MaxDataset = 1 << 30

// ReadDataset reads a data set from a .csv or .json file.
func ReadDataset(name, path string, random bool) (*Dataset, error) {
	parse := ParseCSV
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
	case ".json":
		parse = ParseJSON
	default:
		return nil, fmt.Errorf("data set %q: %s: the file must end in .csv (with a header row) or .json (an array of objects)", name, path)
	}
	b, err := regfile.Read(path, MaxDataset)
	if err != nil {
		return nil, fmt.Errorf("data set %q: %w", name, err)
	}
	ds, err := parse(name, b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ds.Random = random
	return ds, nil
}

// ParseCSV reads CSV with a header row naming the columns.
func ParseCSV(name string, b []byte) (*Dataset, error) {
	// Excel's "CSV UTF-8" starts with a byte-order mark, which would
	// become an invisible part of the first column's name.
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	r := csv.NewReader(bytes.NewReader(b))
	head, err := r.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("data set %q: empty CSV: the first row must name the columns", name)
	}
	if err != nil {
		return nil, fmt.Errorf("data set %q: %w", name, err)
	}
	ds := &Dataset{Name: name, Columns: head}
	for {
		row, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("data set %q: %w", name, err)
		}
		ds.Rows = append(ds.Rows, row)
	}
	return ds, ds.check()
}

// ParseJSON reads a JSON array of objects whose values are strings, numbers,
// booleans or null; the columns are the union of the keys. Errors give the
// line and column, as encoding/csv's do for a CSV file.
func ParseJSON(name string, b []byte) (*Dataset, error) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var objs []map[string]any
	if err := d.Decode(&objs); err != nil {
		return nil, fmt.Errorf("data set %q: %sexpected a JSON array of objects: %w", name, jsonAt(b, jsonErrOffset(err)), err)
	}
	// Decode stops after the array: whatever follows was dropped without a
	// word (a second array's rows, or a file of one object per line after
	// a first line that was an array).
	next := int(d.InputOffset())
	if _, err := d.Token(); err != io.EOF {
		for next < len(b) && strings.IndexByte(" \t\r\n", b[next]) >= 0 {
			next++
		}
		return nil, fmt.Errorf("data set %q: %sexpected the end of the file after the array of objects", name, jsonAt(b, int64(next)+1))
	}
	keys := map[string]bool{}
	for _, o := range objs {
		for k := range o {
			keys[k] = true
		}
	}
	ds := &Dataset{Name: name}
	for k := range keys {
		ds.Columns = append(ds.Columns, k)
	}
	sort.Strings(ds.Columns)
	for i, o := range objs {
		row := make([]string, len(ds.Columns))
		for j, k := range ds.Columns {
			switch v := o[k].(type) {
			case nil:
			case string:
				row[j] = v
			case json.Number:
				row[j] = v.String()
			case bool:
				row[j] = strconv.FormatBool(v)
			default:
				// Numbered from 1, as a CSV file's rows are.
				return nil, fmt.Errorf("data set %q: row %d, key %q: only strings, numbers, booleans and null can be used as values", name, i+1, k)
			}
		}
		ds.Rows = append(ds.Rows, row)
	}
	return ds, ds.check()
}

// jsonErrOffset is the byte offset encoding/json gives an error, or 0.
func jsonErrOffset(err error) int64 {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return se.Offset
	case errors.As(err, &te):
		return te.Offset
	}
	return 0
}

// jsonAt says where byte offset off of b is ("line 3, column 12: "), or
// nothing when it is not known. The offset counts the byte it names.
func jsonAt(b []byte, off int64) string {
	if off <= 0 {
		return ""
	}
	head := b[:min(int(off), len(b))]
	line := 1 + bytes.Count(head, []byte("\n"))
	col := len(head) - bytes.LastIndexByte(head, '\n') - 1
	return fmt.Sprintf("line %d, column %d: ", line, max(col, 1))
}

func (ds *Dataset) check() error {
	if len(ds.Rows) == 0 {
		return fmt.Errorf("data set %q has no rows", ds.Name)
	}
	seen := map[string]bool{}
	for _, c := range ds.Columns {
		if c == "" || seen[c] {
			return fmt.Errorf("data set %q: column names must be unique and not empty (got %q)", ds.Name, ds.Columns)
		}
		seen[c] = true
	}
	for i, r := range ds.Rows {
		if len(r) != len(ds.Columns) {
			return fmt.Errorf("data set %q: row %d has %d fields, the header %d", ds.Name, i+1, len(r), len(ds.Columns))
		}
	}
	return nil
}

// ErrTemplate is wrapped by every template syntax error.
var ErrTemplate = errors.New("bad template")

// tparser numbers the random draws of one request across its templates.
type tparser struct {
	data  []*Dataset
	draws uint64
}

// ParseTemplate parses s against the data sets a request can read.
func ParseTemplate(s string, data []*Dataset) (*Template, error) {
	return (&tparser{data: data}).parse(s)
}

func (tp *tparser) parse(s string) (*Template, error) {
	t := &Template{src: s}
	rest := s
	for rest != "" {
		i := strings.Index(rest, "{{")
		if i < 0 {
			t.parts = append(t.parts, tpart{kind: tLit, lit: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, tpart{kind: tLit, lit: rest[:i]})
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, templateError(s, len(s)-len(rest)+i, errors.New("{{ without a closing }}"))
		}
		p, err := tp.variable(strings.Fields(rest[i+2 : i+j]))
		if err != nil {
			return nil, templateError(s, len(s)-len(rest)+i, err)
		}
		t.parts = append(t.parts, p)
		rest = rest[i+j+2:]
	}
	return t, nil
}

// templateError reports err for the variable at byte off of template s. A
// short one-line template (a path, a header value) is quoted whole; a long
// or multi-line one (a body, perhaps from a file of megabytes) is located
// by line and column, with only the spot quoted.
func templateError(s string, off int, err error) error {
	if len(s) <= 80 && !strings.Contains(s, "\n") {
		return fmt.Errorf("%w: %q: %v", ErrTemplate, s, err)
	}
	spot := s[off:]
	if len(spot) > 24 {
		spot = spot[:24] + "..."
	}
	return fmt.Errorf("%w: %s%v (at %q)", ErrTemplate, jsonAt([]byte(s), int64(off)+1), err, spot)
}

func (tp *tparser) variable(f []string) (tpart, error) {
	if len(f) == 0 {
		return tpart{}, errors.New("empty {{ }}")
	}
	args := func(n int) error {
		if len(f)-1 != n {
			return fmt.Errorf("{{%s}} takes %d argument(s), got %d", f[0], n, len(f)-1)
		}
		return nil
	}
	draw := func(p tpart) tpart { p.draw = tp.draws; tp.draws++; return p }
	switch f[0] {
	case "seq":
		return tpart{kind: tSeq}, args(0)
	case "rand_id":
		return draw(tpart{kind: tRandID}), args(0)
	case "uuid":
		return draw(tpart{kind: tUUID}), args(0)
	case "rand_int":
		if err := args(2); err != nil {
			return tpart{}, fmt.Errorf("%v: write {{rand_int MIN MAX}}", err)
		}
		lo, err1 := strconv.ParseInt(f[1], 10, 64)
		hi, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || hi < lo {
			return tpart{}, fmt.Errorf("{{rand_int %.20q %.20q}}: MIN and MAX must be integers with MIN <= MAX", f[1], f[2])
		}
		return draw(tpart{kind: tRandInt, lo: uint64(lo), span: uint64(hi-lo) + 1}), nil
	}
	words := f
	if words[0] == "urlencode" || words[0] == "json" {
		words = words[1:]
	}
	if set, col, ok := strings.Cut(strings.Join(words, " "), "."); ok && len(words) > 1 {
		// {{users.user id}}: a template's words are split at spaces, so a
		// column whose header has one can never be named; "unknown
		// variable" did not say why.
		for _, ds := range tp.data {
			if ds.Name == set && slices.Contains(ds.Columns, col) {
				return tpart{}, fmt.Errorf("column %.40q of data set %q has a space in its name, which a template cannot write: rename it in the file's header (e.g. %q)", col, set, strings.ReplaceAll(col, " ", "_"))
			}
		}
	}
	enc := encRaw
	switch f[0] {
	case "urlencode", "json":
		// Only data values need it: every other variable writes digits,
		// hex and dashes, which are the same encoded or not.
		if len(f) != 2 || !strings.Contains(f[1], ".") {
			return tpart{}, fmt.Errorf("{{%s}} takes one data column: write {{%s <data set>.<column>}}", f[0], f[0])
		}
		enc = encURL
		if f[0] == "json" {
			enc = encJSON
		}
		f = f[1:]
	}
	if set, col, ok := strings.Cut(f[0], "."); ok && len(f) == 1 {
		for i, ds := range tp.data {
			if ds.Name != set {
				continue
			}
			for j, c := range ds.Columns {
				if c == col {
					return tpart{kind: tData, enc: enc, set: i, col: j}, nil
				}
			}
			return tpart{}, fmt.Errorf("data set %q has no column %.40q (columns: %s)", set, col, quoteAll(ds.Columns))
		}
		return tpart{}, fmt.Errorf("unknown data set %.40q%s", set, dataNames(tp.data))
	}
	// Quoted and cut short: in a body file, what lies between a stray {{
	// and the next }} may be binary, and megabytes of it.
	return tpart{}, fmt.Errorf("unknown variable %.24q (valid: seq, rand_int MIN MAX, rand_id, uuid, <data set>.<column>, urlencode <data set>.<column>, json <data set>.<column>)", "{{"+strings.Join(f, " ")+"}}")
}

// appendURLEncoded appends s percent-encoded as JavaScript's
// encodeURIComponent does (k6 scripts use it for the same job): safe as a
// path segment and as a query name or value alike, which url.PathEscape
// ('&', '=', '+' stay) and url.QueryEscape (space as '+', a literal plus
// in a path) are not.
func appendURLEncoded(dst []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9',
			b == '-', b == '_', b == '.', b == '!', b == '~', b == '*', b == '\'', b == '(', b == ')':
			dst = append(dst, b)
		default:
			dst = append(dst, '%', hex[b>>4], hex[b&15])
		}
	}
	return dst
}

// appendJSONString appends s as a JSON string, quotes included.
func appendJSONString(dst []byte, s string) []byte {
	// strconv.Quote's escapes (\x.., \U...) are not JSON; encoding/json
	// allocates, and escapes <, > and & for HTML, which a request body
	// does not need.
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		b := s[i]
		if b >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			switch {
			case r == utf8.RuneError && n == 1:
				dst = append(dst, `\ufffd`...) // not UTF-8: JSON cannot carry it
			case r == '\u2028', r == '\u2029':
				dst = append(dst, `\u202`...) // valid JSON, but not JavaScript before ES2019
				dst = append(dst, hex[r&15])
			default:
				dst = append(dst, s[i:i+n]...)
			}
			i += n
			continue
		}
		switch {
		case b == '"' || b == '\\':
			dst = append(dst, '\\', b)
		case b == '\n':
			dst = append(dst, '\\', 'n')
		case b == '\r':
			dst = append(dst, '\\', 'r')
		case b == '\t':
			dst = append(dst, '\\', 't')
		case b < ' ' || b == 0x7f:
			dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&15])
		default:
			dst = append(dst, b)
		}
		i++
	}
	return append(dst, '"')
}

func dataNames(ds []*Dataset) string {
	if len(ds) == 0 {
		return " (no data sets declared)"
	}
	var n []string
	for _, d := range ds {
		n = append(n, d.Name)
	}
	return " (declared: " + strings.Join(n, ", ") + ")"
}

// Static reports whether t has no variables: it renders to its source.
// literal is a template of s as it is: no variables.
func literal(s string) *Template {
	t := &Template{src: s}
	if s != "" {
		t.parts = []tpart{{kind: tLit, lit: s}}
	}
	return t
}

func (t *Template) Static() bool {
	for _, p := range t.parts {
		if p.kind != tLit {
			return false
		}
	}
	return true
}

// String returns the template's source.
func (t *Template) String() string { return t.src }

// vars are the values of one request's variables.
type vars struct {
	seq  uint64
	key  uint64 // mixes seed, executor and seq; random draws derive from it
	data []*Dataset
	rows []int // the row each data set gives this request
}

// set prepares v for request seq; rows is reused.
func (v *vars) set(seed, seq uint64) {
	v.seq = seq
	v.key = mix64(seed ^ mix64(seq+0x9e3779b97f4a7c15))
	if cap(v.rows) < len(v.data) {
		v.rows = make([]int, len(v.data))
	}
	v.rows = v.rows[:len(v.data)]
	for i, ds := range v.data {
		n := uint64(len(ds.Rows))
		if ds.Random {
			v.rows[i] = int(mix64(v.key^uint64(i+1)<<40) % n)
		} else {
			v.rows[i] = int(seq % n)
		}
	}
}

// Append renders t for v onto dst.
func (t *Template) appendTo(dst []byte, v *vars) []byte {
	for i := range t.parts {
		p := &t.parts[i]
		switch p.kind {
		case tLit:
			dst = append(dst, p.lit...)
		case tSeq:
			dst = strconv.AppendUint(dst, v.seq, 10)
		case tRandInt:
			r := mix64(v.key + (p.draw+1)*0xbf58476d1ce4e5b9)
			if p.span != 0 {
				r %= p.span
			}
			dst = strconv.AppendInt(dst, int64(p.lo+r), 10)
		case tRandID:
			dst = appendHex(dst, mix64(v.key+(p.draw+1)*0xbf58476d1ce4e5b9), 16)
		case tUUID:
			a := mix64(v.key + (p.draw+1)*0xbf58476d1ce4e5b9)
			b := mix64(a ^ 0x94d049bb133111eb)
			a = a&^(0xf<<12) | 0x4<<12       // version 4
			b = b&^(0x3<<62) | uint64(2)<<62 // RFC 4122 variant
			dst = appendHex(dst, a>>32, 8)
			dst = append(dst, '-')
			dst = appendHex(dst, a>>16&0xffff, 4)
			dst = append(dst, '-')
			dst = appendHex(dst, a&0xffff, 4)
			dst = append(dst, '-')
			dst = appendHex(dst, b>>48, 4)
			dst = append(dst, '-')
			dst = appendHex(dst, b&0xffffffffffff, 12)
		case tData:
			val := v.data[p.set].Rows[v.rows[p.set]][p.col]
			switch p.enc {
			case encURL:
				dst = appendURLEncoded(dst, val)
			case encJSON:
				dst = appendJSONString(dst, val)
			default:
				dst = append(dst, val...)
			}
		}
	}
	return dst
}

// Render returns t rendered for request seq of an executor seeded with
// seed. It allocates; the generator renders into reused buffers instead.
func (t *Template) Render(seed, seq uint64, data []*Dataset) string {
	v := vars{data: data}
	v.set(seed, seq)
	return string(t.appendTo(nil, &v))
}

func appendHex(dst []byte, x uint64, digits int) []byte {
	const hex = "0123456789abcdef"
	for i := digits - 1; i >= 0; i-- {
		dst = append(dst, hex[x>>(uint(i)*4)&0xf])
	}
	return dst
}

// mix64 is SplitMix64's finalizer: a cheap bijection whose outputs for
// consecutive inputs look independent, so a variable's value can be computed
// from (seed, seq, position) directly, with no generator state to share
// between workers.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// quoteAll lists names quoted, so that a space or an invisible character in
// one shows.
func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

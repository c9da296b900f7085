package tcpfault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Errors returned when a toxic or its attributes are not valid. Each is
// wrapped with the detail (the toxic, the attribute, what was expected).
var (
	ErrUnknownToxic     = errors.New("unknown toxic type")
	ErrUnknownAttribute = errors.New("unknown attribute")
	ErrInvalidAttribute = errors.New("invalid attribute value")
	ErrInvalidStream    = errors.New("invalid stream")
)

// AttrError reports one bad attribute of one toxic type, with the
// attributes the type does accept so the message alone lets a user fix it.
type AttrError struct {
	Toxic string   // toxic type, "latency"
	Attr  string   // attribute name as given
	Valid []string // the type's attribute names, sorted
	Err   error    // ErrUnknownAttribute or ErrInvalidAttribute
	Msg   string   // what was wrong with the value
}

func (e *AttrError) Error() string {
	if errors.Is(e.Err, ErrUnknownAttribute) {
		return fmt.Sprintf("toxic %s: unknown attribute %q (valid: %s)", e.Toxic, e.Attr, strings.Join(e.Valid, ", "))
	}
	return fmt.Sprintf("toxic %s: attribute %q: %s", e.Toxic, e.Attr, e.Msg)
}

// Unwrap lets callers test with errors.Is(err, ErrUnknownAttribute).
func (e *AttrError) Unwrap() error { return e.Err }

// The attribute codec. A toxic type is a struct whose exported fields carry
// an `attr:"name[,unit]"` tag; unit "ms" or "us" marks a time.Duration
// written on the wire as an integer count of that unit (Toxiproxy's
// convention), which also accepts a Go duration string such as "1.5ms".
// Written by hand rather than with encoding/json struct tags because
// strictness is the point: an unknown name must list the valid ones, a
// negative delay or a float byte count must be refused with the attribute's
// name, and durations need a unit that JSON does not have.

type attrField struct {
	name  string
	index int
	unit  time.Duration // 0 unless a time.Duration field
}

func attrFields(t reflect.Type) ([]attrField, error) {
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("toxic type %v must be a pointer to a struct", t)
	}
	st := t.Elem()
	var out []attrField
	for i := 0; i < st.NumField(); i++ {
		f := st.Field(i)
		tag, ok := f.Tag.Lookup("attr")
		if !ok || !f.IsExported() {
			continue
		}
		name, unitName, _ := strings.Cut(tag, ",")
		af := attrField{name: name, index: i}
		isDur := f.Type == reflect.TypeFor[time.Duration]()
		switch {
		case isDur && unitName == "ms":
			af.unit = time.Millisecond
		case isDur && unitName == "us":
			af.unit = time.Microsecond
		case isDur:
			return nil, fmt.Errorf("field %s: a duration attribute needs a unit (ms or us)", f.Name)
		case unitName != "":
			return nil, fmt.Errorf("field %s: unit %q on a non-duration attribute", f.Name, unitName)
		default:
			switch f.Type.Kind() {
			case reflect.Int, reflect.Int64, reflect.Bool:
			default:
				return nil, fmt.Errorf("field %s: attribute kind %v is not supported", f.Name, f.Type.Kind())
			}
		}
		out = append(out, af)
	}
	return out, nil
}

func attrNames(fields []attrField) []string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	sort.Strings(names)
	return names
}

// decodeAttrs sets the attributes present in raw on dst (a pointer to a
// toxic struct) and leaves the others as they are, so an update can start
// from the current values, as Toxiproxy's PATCH does.
func decodeAttrs(typ string, dst any, raw json.RawMessage) error {
	fields, err := attrFields(reflect.TypeOf(dst))
	if err != nil {
		return err
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil
	}
	if trimmed[0] != '{' {
		return fmt.Errorf("toxic %s: %w: attributes must be a JSON object", typ, ErrInvalidAttribute)
	}
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("toxic %s: %w: attributes: %v", typ, ErrInvalidAttribute, err)
	}
	if dec.More() {
		return fmt.Errorf("toxic %s: %w: attributes: trailing data after the object", typ, ErrInvalidAttribute)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	v := reflect.ValueOf(dst).Elem()
	for _, k := range keys {
		var f *attrField
		for i := range fields {
			if fields[i].name == k {
				f = &fields[i]
				break
			}
		}
		if f == nil {
			return &AttrError{Toxic: typ, Attr: k, Valid: attrNames(fields), Err: ErrUnknownAttribute}
		}
		if msg := setAttr(v.Field(f.index), f.unit, m[k]); msg != "" {
			return &AttrError{Toxic: typ, Attr: k, Valid: attrNames(fields), Err: ErrInvalidAttribute, Msg: msg}
		}
	}
	return nil
}

// setAttr decodes one value; it returns what was wrong, or "".
func setAttr(fv reflect.Value, unit time.Duration, raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	switch {
	case unit != 0:
		if len(raw) > 0 && raw[0] == '"' {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return "expected a duration"
			}
			d, err := time.ParseDuration(strings.TrimSpace(s))
			if err != nil {
				return fmt.Sprintf("invalid duration %q: expected an integer (%s) or a duration such as \"100ms\"", s, unitName(unit))
			}
			if d < 0 {
				return fmt.Sprintf("duration %q is negative", s)
			}
			fv.SetInt(int64(d))
			return ""
		}
		n, msg := nonNegInt(raw, unitName(unit))
		if msg != "" {
			return msg
		}
		if n > math.MaxInt64/int64(unit) {
			return fmt.Sprintf("%d%s is too large", n, unitName(unit))
		}
		fv.SetInt(n * int64(unit))
	case fv.Kind() == reflect.Bool:
		switch string(raw) {
		case "true", "1":
			fv.SetBool(true)
		case "false", "0":
			fv.SetBool(false)
		default:
			return fmt.Sprintf("expected true/false (or 1/0), got %s", clip(raw))
		}
	default: // int, int64
		n, msg := nonNegInt(raw, "")
		if msg != "" {
			return msg
		}
		if fv.OverflowInt(n) {
			return fmt.Sprintf("%d is too large", n)
		}
		fv.SetInt(n)
	}
	return ""
}

func nonNegInt(raw json.RawMessage, unit string) (int64, string) {
	want := "a non-negative integer"
	if unit != "" {
		want = "a non-negative integer (" + unit + ")"
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, fmt.Sprintf("expected %s, got %s", want, clip(raw))
	}
	if n < 0 {
		return 0, fmt.Sprintf("expected %s, got %d", want, n)
	}
	return n, ""
}

func unitName(u time.Duration) string {
	if u == time.Microsecond {
		return "microseconds"
	}
	return "milliseconds"
}

func clip(raw []byte) string {
	if len(raw) > 40 {
		return string(raw[:40]) + "…"
	}
	return string(raw)
}

func btoi(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// encodeAttrs writes every attribute of src the way Toxiproxy does: durations
// as integers of their unit. A duration that is not a whole number of its
// unit (possible only from Go) is written as a duration string instead, so
// encoding never loses precision.
func encodeAttrs(src any) map[string]any {
	fields, err := attrFields(reflect.TypeOf(src))
	if err != nil {
		return map[string]any{}
	}
	v := reflect.ValueOf(src).Elem()
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		fv := v.Field(f.index)
		switch {
		case f.unit != 0:
			d := time.Duration(fv.Int())
			if d%f.unit == 0 {
				out[f.name] = int64(d / f.unit)
			} else {
				out[f.name] = d.String()
			}
		case fv.Kind() == reflect.Bool:
			// 1/0, not true/false: Toxiproxy's attributes are numbers, and
			// its clients assume so (toxiproxy-cli inspect panicked on a
			// bool). Decoding takes either.
			out[f.name] = btoi(fv.Bool())
		default:
			out[f.name] = fv.Int()
		}
	}
	return out
}

package tcpfault

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
)

// Factory returns a new toxic of one type with its default attributes. The
// result must be a pointer to a struct whose attributes carry `attr` tags.
type Factory func() Toxic

// registry maps type names to factories. It is written only by Register,
// which toxic files call from init, and read afterwards, like database/sql
// drivers; the lock makes late registration (a plugin) safe too.
type registry struct {
	mu     sync.RWMutex
	byName map[string]Factory
	byType map[reflect.Type]string
}

var toxicTypes = &registry{byName: map[string]Factory{}, byType: map[reflect.Type]string{}}

// Register makes a toxic type available by name to NewToxic, the HTTP API
// and scenario files. It panics on a duplicate name or a type the attribute
// codec cannot handle: both are programming errors found at start-up.
func Register(name string, f Factory) {
	t := f()
	typ := reflect.TypeOf(t)
	if _, err := attrFields(typ); err != nil {
		panic(fmt.Sprintf("tcpfault.Register(%q): %v", name, err))
	}
	toxicTypes.mu.Lock()
	defer toxicTypes.mu.Unlock()
	if _, dup := toxicTypes.byName[name]; dup {
		panic(fmt.Sprintf("tcpfault.Register(%q): registered twice", name))
	}
	if other, dup := toxicTypes.byType[typ]; dup {
		panic(fmt.Sprintf("tcpfault.Register(%q): type %v already registered as %q", name, typ, other))
	}
	toxicTypes.byName[name] = f
	toxicTypes.byType[typ] = name
}

// Types lists the registered toxic type names, sorted.
func Types() []string {
	toxicTypes.mu.RLock()
	defer toxicTypes.mu.RUnlock()
	out := make([]string, 0, len(toxicTypes.byName))
	for n := range toxicTypes.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// TypeName returns the registered name of t's type, or "" if t's type was
// never registered.
func TypeName(t Toxic) string {
	toxicTypes.mu.RLock()
	defer toxicTypes.mu.RUnlock()
	return toxicTypes.byType[reflect.TypeOf(t)]
}

// NewToxic builds a toxic of the named type from its attributes, a JSON
// object such as {"latency": 100, "jitter": 10} (Toxiproxy's form; an
// absent or null object keeps the defaults). Unknown types and attributes
// are refused with the valid names; see AttrError.
func NewToxic(typ string, attrs json.RawMessage) (Toxic, error) {
	toxicTypes.mu.RLock()
	f, ok := toxicTypes.byName[typ]
	toxicTypes.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (valid: %s)", ErrUnknownToxic, typ, strings.Join(Types(), ", "))
	}
	t := f()
	if err := decodeAttrs(typ, t, attrs); err != nil {
		return nil, err
	}
	if err := validateToxic(typ, t); err != nil {
		return nil, err
	}
	return t, nil
}

// WithAttributes returns a copy of t with the attributes in attrs changed
// and the others kept, which is what a Toxiproxy PATCH of a toxic means.
// t itself is not modified: toxics are immutable once installed.
func WithAttributes(t Toxic, attrs json.RawMessage) (Toxic, error) {
	typ := TypeName(t)
	if typ == "" {
		return nil, fmt.Errorf("%w: Go type %T is not registered", ErrUnknownToxic, t)
	}
	cp := reflect.New(reflect.TypeOf(t).Elem())
	cp.Elem().Set(reflect.ValueOf(t).Elem())
	nt := cp.Interface().(Toxic)
	if err := decodeAttrs(typ, nt, attrs); err != nil {
		return nil, err
	}
	if err := validateToxic(typ, nt); err != nil {
		return nil, err
	}
	return nt, nil
}

// Attributes returns t's attributes in Toxiproxy's wire form (durations as
// integer milliseconds, or microseconds where Toxiproxy uses those).
func Attributes(t Toxic) map[string]any { return encodeAttrs(t) }

func validateToxic(typ string, t Toxic) error {
	if v, ok := t.(Validator); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("toxic %s: %w: %v", typ, ErrInvalidAttribute, err)
		}
	}
	return nil
}

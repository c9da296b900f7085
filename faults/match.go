package faults

import (
	"errors"
	"fmt"
	"net/http"
	"path"
	"sort"
	"strings"

	"github.com/cascadehq/cascade/internal/units"
)

// Match limits an HTTP fault to some requests. Every field given must match;
// an empty Match matches every request.
type Match struct {
	// Method, e.g. POST (case-insensitive).
	Method string `yaml:"method,omitempty" json:"method,omitempty"`
	// Path is a prefix ("/orders" matches /orders and /orders/42), or a glob
	// when it contains * ? or [ ("/orders/*/items"; * does not cross a /).
	// The query string is not part of the path.
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// Header maps header names to exact values, e.g. {X-Tenant: acme}.
	Header map[string]string `yaml:"header,omitempty" json:"header,omitempty"`
}

// Validate checks the pattern and the method.
func (m *Match) Validate() error {
	if m == nil {
		return nil
	}
	var errs []error
	if m.Method != "" && strings.ContainsAny(m.Method, " \t/") {
		errs = append(errs, fmt.Errorf("match.method %q is not an HTTP method", m.Method))
	}
	if m.Path != "" {
		if !strings.HasPrefix(m.Path, "/") && !strings.HasPrefix(m.Path, "*") {
			errs = append(errs, fmt.Errorf("match.path %q must start with / (a prefix or a glob)", m.Path))
		}
		if isGlob(m.Path) {
			if _, err := path.Match(m.Path, "/"); err != nil {
				errs = append(errs, fmt.Errorf("match.path %q: %v", m.Path, err))
			}
		}
	}
	for k := range m.Header {
		if k == "" || strings.ContainsAny(k, " :\t") {
			errs = append(errs, fmt.Errorf("match.header: %q is not a header name", k))
		}
	}
	return errors.Join(errs...)
}

func isGlob(p string) bool { return strings.ContainsAny(p, "*?[") }

// Matches reports whether r is one of the requests the fault applies to.
func (m *Match) Matches(r *http.Request) bool {
	if m == nil {
		return true
	}
	if m.Method != "" && !strings.EqualFold(m.Method, r.Method) {
		return false
	}
	if m.Path != "" {
		if isGlob(m.Path) {
			if ok, _ := path.Match(m.Path, r.URL.Path); !ok {
				return false
			}
		} else if !strings.HasPrefix(r.URL.Path, m.Path) {
			return false
		}
	}
	for k, v := range m.Header {
		if r.Header.Get(k) != v {
			return false
		}
	}
	return true
}

// String is the filter as a person would write it.
func (m *Match) String() string {
	if m == nil {
		return "every request"
	}
	var parts []string
	if m.Method != "" {
		parts = append(parts, "method "+strings.ToUpper(m.Method))
	}
	if m.Path != "" {
		parts = append(parts, "path "+m.Path)
	}
	keys := make([]string, 0, len(m.Header))
	for k := range m.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+": "+m.Header[k])
	}
	return strings.Join(parts, ", ")
}

// Selector is what most HTTP faults share: which requests they act on.
type Selector struct {
	// Probability that a matching request is affected (default 100%, or as
	// the kind says), drawn from the run's seed.
	Probability units.Percent `yaml:"probability,omitempty" json:"probability,omitempty"`
	// Match limits the fault to some requests (method, path, headers).
	Match *Match `yaml:"match,omitempty" json:"match,omitempty"`
}

// Validate checks the match filter.
func (s *Selector) Validate() error { return s.Match.Validate() }

// admit decides whether the fault acts on r, counting what it saw so a fault
// that never fired can say why; scaleByRamp multiplies the probability by
// the ramp's intensity.
func (s *Selector) admit(r *http.Request, fx *Effect, scaleByRamp bool) bool {
	return admit(s.Match, s.Probability.F(), r, fx, scaleByRamp)
}

func admit(m *Match, p float64, r *http.Request, fx *Effect, scaleByRamp bool) bool {
	fx.Seen()
	if !m.Matches(r) {
		return false
	}
	fx.Matched()
	if scaleByRamp {
		p *= fx.Intensity()
	}
	return fx.Chance(p)
}

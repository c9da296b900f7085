// Package proxyconf knows the third-party proxies a scenario can run in a
// container (gateway.container: nginx, HAProxy) as far as the plan needs to
// before anything starts: their names, the Debian package each binary
// comes from, and the placeholders of a configuration file of your own,
// checked when the scenario is validated and filled in by the run once the
// replicas listen.
//
// It imports nothing of cascade's, so the plan can check a configuration
// without compiling the container machinery (internal/containers).
package proxyconf

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The proxies gateway.container runs.
const (
	Nginx   = "nginx"
	HAProxy = "haproxy"
)

// Kinds lists the proxies, sorted.
func Kinds() []string { return []string{HAProxy, Nginx} }

// Package is the Debian package that installs kind's binary on this machine
// (the image is assembled from it).
func Package(kind string) string {
	switch kind {
	case Nginx:
		return "nginx" // nginx-light installs the same /usr/sbin/nginx
	default:
		return kind
	}
}

// Placeholders a configuration file may use, each written {{name}};
// {{servers}} also takes parameters for each server line, {{servers
// max_fails=0}} (nginx) or {{servers check inter 1s}} (HAProxy).
var Placeholders = []string{"listen", "port", "servers", "addrs", "timeout", "ready"}

// ErrPlaceholder reports a {{...}} that is not one of Placeholders.
var ErrPlaceholder = errors.New("unknown placeholder")

// placeholder matches {{name}} or {{name params}}, spaces allowed inside
// the braces.
var placeholder = regexp.MustCompile(`\{\{\s*([A-Za-z_]*)(\s+[^{}]*?)?\s*\}\}`)

// Check reports the first {{...}} in text that is not a known placeholder,
// with its line (from 1).
func Check(text string) error {
	for i, line := range strings.Split(text, "\n") {
		rest := line
		for {
			at := strings.Index(rest, "{{")
			if at < 0 {
				break
			}
			m := placeholder.FindStringSubmatchIndex(rest[at:])
			if m == nil || m[0] != 0 {
				return fmt.Errorf("line %d: %w %q (placeholders: {{%s}})", i+1, ErrPlaceholder, clip(rest[at:]), strings.Join(Placeholders, "}}, {{"))
			}
			name := rest[at+m[2] : at+m[3]]
			if !slices.Contains(Placeholders, name) {
				return fmt.Errorf("line %d: %w {{%s}} (placeholders: {{%s}})", i+1, ErrPlaceholder, name, strings.Join(Placeholders, "}}, {{"))
			}
			if m[4] >= 0 && strings.TrimSpace(rest[at+m[4]:at+m[5]]) != "" && name != "servers" {
				return fmt.Errorf("line %d: %w: {{%s}} takes no parameters (only {{servers ...}} does: they end each server line)", i+1, ErrPlaceholder, name)
			}
			rest = rest[at+m[1]:]
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 24 {
		return s[:24] + "…"
	}
	return s
}

// Uses reports whether text holds the placeholder name.
func Uses(text, name string) bool {
	for _, m := range placeholder.FindAllStringSubmatch(text, -1) {
		if m[1] == name {
			return true
		}
	}
	return false
}

// Values fill the placeholders.
type Values struct {
	Kind    string
	Port    int           // {{port}}; {{listen}} is 127.0.0.1:Port
	Addrs   []string      // the replicas, host:port: {{addrs}}, {{servers}}
	Timeout time.Duration // {{timeout}}, in milliseconds
	Ready   string        // {{ready}}
}

// Render fills text's placeholders from v. A placeholder that renders as
// several lines ({{servers}}) indents each like the line it stands on.
func Render(text string, v Values) (string, error) {
	if err := Check(text); err != nil {
		return "", err
	}
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		lines[i] = placeholder.ReplaceAllStringFunc(line, func(m string) string {
			sm := placeholder.FindStringSubmatch(m)
			return strings.ReplaceAll(v.value(sm[1], strings.TrimSpace(sm[2])), "\n", "\n"+indent)
		})
	}
	return strings.Join(lines, "\n"), nil
}

func (v Values) value(name, params string) string {
	switch name {
	case "listen":
		return "127.0.0.1:" + strconv.Itoa(v.Port)
	case "port":
		return strconv.Itoa(v.Port)
	case "addrs":
		return strings.Join(v.Addrs, " ")
	case "servers":
		return Servers(v.Kind, v.Addrs, params)
	case "timeout":
		return Duration(v.Timeout)
	case "ready":
		return v.Ready
	}
	return ""
}

// Servers is one server line per address in kind's syntax, params (if
// any) ending each: nginx's "server 127.0.0.1:19001 max_fails=0;" (inside
// an upstream block), HAProxy's "server u0 127.0.0.1:19001 check" (inside
// a backend).
func Servers(kind string, addrs []string, params string) string {
	if params != "" {
		params = " " + params
	}
	out := make([]string, len(addrs))
	for i, a := range addrs {
		if kind == Nginx {
			out[i] = "server " + a + params + ";"
		} else {
			out[i] = "server u" + strconv.Itoa(i) + " " + a + params
		}
	}
	return strings.Join(out, "\n")
}

// Duration renders d in milliseconds, a unit both nginx and HAProxy accept.
func Duration(d time.Duration) string {
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

package gateway

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

// Defaults for timeouts left at zero. They follow Envoy (connect 5 s, route
// timeout 15 s); the response-header timeout defaults to the total, like a
// proxy with only a request timeout.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultTotalTimeout   = 15 * time.Second
)

// Config is a gateway: where it listens, its upstreams and its routes. The
// same type is read by `cascade gateway --config FILE` and, without
// Upstreams (those are the scenario's fake upstreams), from a scenario file.
type Config struct {
	// Listen is host:port (default 127.0.0.1:0, a kernel-chosen port).
	Listen string `yaml:"listen,omitempty" json:"listen,omitempty"`
	// Upstreams by name with their target URLs (standalone gateway only).
	Upstreams []UpstreamTargets `yaml:"upstreams,omitempty" json:"upstreams,omitempty"`
	// Routes are matched by longest path prefix.
	Routes []Route `yaml:"routes" json:"routes"`
}

// UpstreamTargets names an upstream and the replicas it balances over.
type UpstreamTargets struct {
	Name    string   `yaml:"name" json:"name"`
	Targets []string `yaml:"targets" json:"targets"` // base URLs such as http://127.0.0.1:9001
}

// Route sends requests whose path starts with Path to Upstream.
type Route struct {
	Path     string   `yaml:"path" json:"path"`
	Upstream string   `yaml:"upstream" json:"upstream"`
	Timeouts Timeouts `yaml:"timeouts,omitempty" json:"timeouts,omitempty"`
}

// Timeouts of a route. Zero values take the defaults above.
type Timeouts struct {
	// Connect bounds establishing a connection to a replica.
	Connect units.Duration `yaml:"connect,omitempty" json:"connect,omitempty"`
	// ResponseHeader bounds the wait for the replica's response headers after
	// the request was sent: the "read timeout" that most gateways expose.
	ResponseHeader units.Duration `yaml:"response_header,omitempty" json:"response_header,omitempty"`
	// Total bounds the whole exchange, body included.
	Total units.Duration `yaml:"total,omitempty" json:"total,omitempty"`
}

// Effective returns the timeouts with defaults filled in.
func (t Timeouts) Effective() Timeouts {
	if t.Connect == 0 {
		t.Connect = units.Duration(DefaultConnectTimeout)
	}
	if t.Total == 0 {
		t.Total = units.Duration(DefaultTotalTimeout)
	}
	if t.ResponseHeader == 0 {
		t.ResponseHeader = t.Total
	}
	return t
}

// Validate checks the config; paths in errors are relative to the config.
// When upstreams is non-nil, routes must name one of them; otherwise they
// must name one of c.Upstreams.
func (c *Config) Validate(upstreams map[string]bool) []yamlfile.FieldError {
	var errs []yamlfile.FieldError
	if upstreams == nil {
		upstreams = map[string]bool{}
		for i, u := range c.Upstreams {
			p := fmt.Sprintf("upstreams[%d]", i)
			if u.Name == "" {
				errs = append(errs, yamlfile.Fieldf(p+".name", "an upstream needs a name"))
			}
			if upstreams[u.Name] {
				errs = append(errs, yamlfile.Fieldf(p+".name", "upstream %q is declared twice", u.Name))
			}
			upstreams[u.Name] = true
			if len(u.Targets) == 0 {
				errs = append(errs, yamlfile.Fieldf(p+".targets", "upstream %q needs at least one target URL", u.Name))
			}
			for j, t := range u.Targets {
				if pu, err := url.Parse(t); err != nil || pu.Scheme != "http" || pu.Host == "" {
					errs = append(errs, yamlfile.Fieldf(fmt.Sprintf("%s.targets[%d]", p, j), "target %q must be an http:// URL with a host", t))
				}
			}
		}
	}
	if len(c.Routes) == 0 {
		errs = append(errs, yamlfile.Fieldf("routes", "at least one route is needed"))
	}
	seen := map[string]bool{}
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		if !strings.HasPrefix(r.Path, "/") {
			errs = append(errs, yamlfile.Fieldf(p+".path", "path %q must start with /", r.Path))
		}
		if seen[r.Path] {
			errs = append(errs, yamlfile.Fieldf(p+".path", "path %q has two routes", r.Path))
		}
		seen[r.Path] = true
		if !upstreams[r.Upstream] {
			errs = append(errs, yamlfile.Fieldf(p+".upstream", "unknown upstream %q (declared: %s)", r.Upstream, names(upstreams)))
		}
		t := r.Timeouts.Effective()
		if t.ResponseHeader > t.Total {
			errs = append(errs, yamlfile.Fieldf(p+".timeouts.response_header",
				"response_header %s is longer than total %s: it can never fire", t.ResponseHeader, t.Total))
		}
	}
	return errs
}

func names(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(sorted(out), ", ")
}

// LoadConfig reads a standalone gateway config file.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	var c Config
	doc, err := yamlfile.Decode(path, data, &c)
	if err != nil {
		return Config{}, err
	}
	if errs := doc.Position("$", c.Validate(nil)); len(errs) > 0 {
		return Config{}, errs
	}
	return c, nil
}

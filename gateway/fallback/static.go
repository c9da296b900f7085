package fallback

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/cascadehq/cascade/gateway/internal/emit"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

// StaticConfig is a fixed answer for a failed upstream, as a scenario
// writes it.
type StaticConfig struct {
	// Status of the answer. Default 200: a fallback is a degraded success.
	Status int `yaml:"status"`
	// Headers to send, such as Content-Type.
	Headers map[string]string `yaml:"headers"`
	// Body to send.
	Body string `yaml:"body"`
}

// Validate reports every problem at once, each naming its field.
func (c StaticConfig) Validate() error {
	var errs yamlfile.Errors
	if c.Status != 0 && (c.Status < 200 || c.Status > 599) {
		errs = append(errs, &yamlfile.Error{Path: "status", Msg: fmt.Sprintf("must be within 200..599, got %d", c.Status)})
	}
	for k, v := range c.Headers {
		field := "headers." + k
		switch {
		case k == "" || strings.ContainsAny(k, " \t\r\n:"):
			errs = append(errs, &yamlfile.Error{Path: field, Msg: fmt.Sprintf("%q is not a valid header name", k)})
		case strings.ContainsAny(v, "\r\n"):
			errs = append(errs, &yamlfile.Error{Path: field, Msg: "a header value cannot contain a line break"})
		}
		switch textproto.CanonicalMIMEHeaderKey(k) {
		case "Content-Length", cause.Header, Header:
			errs = append(errs, &yamlfile.Error{Path: field, Msg: "is set by the gateway itself"})
		}
	}
	return errs.Err()
}

// Static is a fixed fallback answer. It is safe for concurrent use.
type Static struct {
	status   int
	header   http.Header
	body     []byte
	em       emit.Emitter
	throttle emit.Throttle
}

// NewStatic returns a static fallback.
func NewStatic(cfg StaticConfig, opts ...Option) (*Static, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Static{status: cfg.Status, header: http.Header{}, body: []byte(cfg.Body), em: emit.From(opts)}
	if s.status == 0 {
		s.status = http.StatusOK
	}
	for k, v := range cfg.Headers {
		s.header.Set(k, v)
	}
	return s, nil
}

// Serve writes the answer for a request with the given method (no body for
// HEAD), marked X-Cascade-Fallback: static.
func (s *Static) Serve(w http.ResponseWriter, method string) {
	if due, n := s.throttle.Hit(time.Now()); due {
		s.em.Emit("fallback.serve", map[string]any{"kind": KindStatic, "count": n, "status": s.status})
	}
	write(w, method, s.status, s.header, s.body, -1, KindStatic, cause.Fallback.String())
}

package faults

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/units"
)

func init() {
	Register("latency", func() Spec { return &LatencySpec{Probability: 1} })
	Register("error", func() Spec { return &ErrorSpec{Probability: 1, Status: http.StatusServiceUnavailable} })
	Register("reset", func() Spec { return &ResetSpec{Probability: 1} })
	Register("hang", func() Spec { return &HangSpec{Probability: 1} })
	Register("down", func() Spec { return &DownSpec{} })
}

var (
	_ HTTPFault    = (*latencyFault)(nil)
	_ HTTPFault    = (*errorFault)(nil)
	_ HTTPFault    = (*resetFault)(nil)
	_ HTTPFault    = (*hangFault)(nil)
	_ ReplicaFault = (*downFault)(nil)
)

// LatencySpec adds a delay before the replica answers.
type LatencySpec struct {
	// Delay is added to every affected request: a duration or a distribution.
	Delay dist.Latency `yaml:"delay" json:"delay"`
	// Probability that a request is affected (default 100%).
	Probability units.Percent `yaml:"probability,omitempty" json:"probability,omitempty"`
}

// Validate implements Spec.
func (s *LatencySpec) Validate() error {
	if s.Delay.IsZero() {
		return fmt.Errorf("delay is required (e.g. delay: 200ms)")
	}
	return s.Delay.Validate()
}

// New implements Spec.
func (s *LatencySpec) New() Fault { return &latencyFault{spec: *s} }

type latencyFault struct{ spec LatencySpec }

func (*latencyFault) Kind() string { return "latency" }

func (f *latencyFault) Wrap(next http.Handler, fx *Effect) http.Handler {
	var sampler *dist.Sampler
	fx.Rand(func(r *randT) { sampler = dist.NewSampler(f.spec.Delay, r) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !fx.Chance(f.spec.Probability.F()) {
			next.ServeHTTP(w, r)
			return
		}
		var d time.Duration
		fx.Rand(func(*randT) { d = sampler.Sample() })
		fx.Fired()
		if !sleep(r, d) {
			return // the caller went away; nobody is left to answer
		}
		next.ServeHTTP(w, r)
	})
}

// ErrorSpec answers with an HTTP error status instead of the normal answer.
type ErrorSpec struct {
	Status      int           `yaml:"status,omitempty" json:"status,omitempty"` // default 503
	Body        string        `yaml:"body,omitempty" json:"body,omitempty"`
	Probability units.Percent `yaml:"probability,omitempty" json:"probability,omitempty"`
}

// Validate implements Spec.
func (s *ErrorSpec) Validate() error {
	if s.Status < 100 || s.Status > 599 {
		return fmt.Errorf("status %d is not an HTTP status (100-599)", s.Status)
	}
	return nil
}

// New implements Spec.
func (s *ErrorSpec) New() Fault { return &errorFault{spec: *s} }

type errorFault struct{ spec ErrorSpec }

func (*errorFault) Kind() string { return "error" }

func (f *errorFault) Wrap(next http.Handler, fx *Effect) http.Handler {
	body := f.spec.Body
	if body == "" {
		body = http.StatusText(f.spec.Status) + " (injected by cascade)\n"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !fx.Chance(f.spec.Probability.F()) {
			next.ServeHTTP(w, r)
			return
		}
		fx.Fired()
		h := w.Header()
		if f.spec.Status >= 400 {
			h.Set(cause.Header, cause.UpstreamError.String())
		}
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(f.spec.Status)
		_, _ = w.Write([]byte(body))
	})
}

// ResetSpec resets the TCP connection (RST) after the request was read and
// before any answer: the caller sees "connection reset by peer".
type ResetSpec struct {
	Probability units.Percent `yaml:"probability,omitempty" json:"probability,omitempty"`
}

// Validate implements Spec.
func (s *ResetSpec) Validate() error { return nil }

// New implements Spec.
func (s *ResetSpec) New() Fault { return &resetFault{spec: *s} }

type resetFault struct{ spec ResetSpec }

func (*resetFault) Kind() string { return "reset" }

func (f *resetFault) Wrap(next http.Handler, fx *Effect) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !fx.Chance(f.spec.Probability.F()) {
			next.ServeHTTP(w, r)
			return
		}
		fx.Fired()
		resetConn(w)
	})
}

// resetConn hijacks the connection and closes it with SO_LINGER 0, which makes
// the kernel send RST instead of FIN.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2): the nearest equivalent is to abort the stream.
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// HangSpec accepts the request and never answers: the caller waits until its
// own timeout fires (or the run ends).
type HangSpec struct {
	Probability units.Percent `yaml:"probability,omitempty" json:"probability,omitempty"`
}

// Validate implements Spec.
func (s *HangSpec) Validate() error { return nil }

// New implements Spec.
func (s *HangSpec) New() Fault { return &hangFault{spec: *s} }

type hangFault struct{ spec HangSpec }

func (*hangFault) Kind() string { return "hang" }

func (f *hangFault) Wrap(next http.Handler, fx *Effect) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !fx.Chance(f.spec.Probability.F()) {
			next.ServeHTTP(w, r)
			return
		}
		fx.Fired()
		// The request context ends when the caller closes the connection or
		// the replica shuts down, so a hang never outlives the run.
		<-r.Context().Done()
	})
}

// DownSpec closes the replica's listener (new connections are refused) and
// resets its open connections; the listener comes back when the fault ends.
type DownSpec struct{}

// Validate implements Spec.
func (s *DownSpec) Validate() error { return nil }

// New implements Spec.
func (s *DownSpec) New() Fault { return &downFault{} }

type downFault struct{}

func (*downFault) Kind() string { return "down" }

func (*downFault) Apply(r *Replica, fx *Effect) error {
	fx.Fired()
	return r.stopListening()
}

func (*downFault) Revert(r *Replica) error { return r.startListening() }

// sleep waits d unless the request ends first; it reports whether the full
// delay elapsed.
func sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

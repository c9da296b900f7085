package faults

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/dist"
)

func init() {
	http1 := func(name, ramp, doc string, f func() Spec) {
		RegisterKind(Kind{Name: name, Layer: LayerHTTP, InProcess: true, Ramp: ramp, Doc: doc, New: f})
	}
	http1("latency", "delay", "adds a delay (fixed or a distribution) before the replica answers",
		func() Spec { return &LatencySpec{Selector: Selector{Probability: 1}} })
	http1("error", "probability", "answers with an HTTP status and body instead",
		func() Spec {
			return &ErrorSpec{Selector: Selector{Probability: 1}, Status: http.StatusServiceUnavailable}
		})
	http1("reset", "probability", "resets the TCP connection (RST) after reading the request",
		func() Spec { return &ResetSpec{Selector: Selector{Probability: 1}} })
	http1("hang", "probability", "reads the request and never answers",
		func() Spec { return &HangSpec{Selector: Selector{Probability: 1}} })
	http1("spike", "probability", "slows a small share of requests (a p99 spike)",
		func() Spec { return &SpikeSpec{Selector: Selector{Probability: 0.01}} })
	http1("fail_first", "", "fails the first N requests, then lets every request through",
		func() Spec { return &FailFirstSpec{Status: http.StatusServiceUnavailable} })
	// The body faults live in body.go.
}

var (
	_ HTTPFault = (*latencyFault)(nil)
	_ HTTPFault = (*errorFault)(nil)
	_ HTTPFault = (*resetFault)(nil)
	_ HTTPFault = (*hangFault)(nil)
	_ HTTPFault = (*spikeFault)(nil)
	_ HTTPFault = (*failFirstFault)(nil)

	_ EffectReporter = (*latencyFault)(nil)
	_ EffectReporter = (*spikeFault)(nil)
)

// LatencySpec adds a delay before the replica answers. A ramp scales the
// delay from 0 to the drawn value.
type LatencySpec struct {
	// Delay is added to every affected request: a duration or a distribution.
	Delay    dist.Latency `yaml:"delay" json:"delay"`
	Selector `yaml:",inline"`
}

// Validate implements Spec.
func (s *LatencySpec) Validate() error {
	if s.Delay.IsZero() {
		return fmt.Errorf("delay is required (e.g. delay: 200ms)")
	}
	if err := s.Delay.Validate(); err != nil {
		return err
	}
	return s.Selector.Validate()
}

// New implements Spec.
func (s *LatencySpec) New() Fault { return &latencyFault{spec: *s} }

type latencyFault struct {
	spec  LatencySpec
	delay delay // over every replica it wraps
}

func (*latencyFault) Kind() string { return "latency" }

func (f *latencyFault) Wrap(next http.Handler, fx *Effect) http.Handler {
	return delayHandler(next, fx, f.spec.Delay, &f.spec.Selector, false, &f.delay)
}

// Effects implements EffectReporter: how late past the drawn delay each
// delayed request was released.
func (f *latencyFault) Effects() Effects { return f.delay.effects() }

func (w *delay) effects() Effects {
	l := w.late.Snapshot()
	return Effects{Lateness: &l}
}

// delayHandler delays admitted requests by a draw from d, waiting on wt.
// rampProbability says what a ramp scales: the share of requests (spike)
// or the delay.
func delayHandler(next http.Handler, fx *Effect, d dist.Latency, sel *Selector, rampProbability bool, wt *delay) http.Handler {
	var sampler *dist.Sampler
	fx.Rand(func(r *randT) { sampler = dist.NewSampler(d, r) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !sel.admit(r, fx, rampProbability) {
			next.ServeHTTP(w, r)
			return
		}
		var delay time.Duration
		fx.Rand(func(*randT) { delay = sampler.Sample() })
		if !rampProbability {
			delay = time.Duration(float64(delay) * fx.Intensity())
		}
		fx.Fired()
		if !wt.wait(r.Context(), delay) {
			return // the caller went away; nobody is left to answer
		}
		next.ServeHTTP(w, r)
	})
}

// SpikeSpec slows a small share of requests by a large delay: the p99 spike
// a GC pause or a cold cache gives. Probability is the share (default 1%).
type SpikeSpec struct {
	// Delay of a slowed request: a duration or a distribution. Required.
	Delay    dist.Latency `yaml:"delay" json:"delay"`
	Selector `yaml:",inline"`
}

// Validate implements Spec.
func (s *SpikeSpec) Validate() error {
	if s.Delay.IsZero() {
		return fmt.Errorf("delay is required (e.g. delay: 800ms)")
	}
	if err := s.Delay.Validate(); err != nil {
		return err
	}
	return s.Selector.Validate()
}

// New implements Spec.
func (s *SpikeSpec) New() Fault { return &spikeFault{spec: *s} }

type spikeFault struct {
	spec  SpikeSpec
	delay delay
}

func (*spikeFault) Kind() string { return "spike" }

func (f *spikeFault) Wrap(next http.Handler, fx *Effect) http.Handler {
	return delayHandler(next, fx, f.spec.Delay, &f.spec.Selector, true, &f.delay)
}

// Effects implements EffectReporter (see latencyFault.Effects).
func (f *spikeFault) Effects() Effects { return f.delay.effects() }

// ErrorSpec answers with an HTTP error status instead of the normal answer.
type ErrorSpec struct {
	Status   int    `yaml:"status,omitempty" json:"status,omitempty"` // default 503
	Body     string `yaml:"body,omitempty" json:"body,omitempty"`
	Selector `yaml:",inline"`
}

// Validate implements Spec.
func (s *ErrorSpec) Validate() error {
	if err := finalStatus(s.Status); err != nil {
		return err
	}
	return s.Selector.Validate()
}

// New implements Spec.
func (s *ErrorSpec) New() Fault { return &errorFault{spec: *s} }

type errorFault struct{ spec ErrorSpec }

func (*errorFault) Kind() string { return "error" }

func (f *errorFault) Wrap(next http.Handler, fx *Effect) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !f.spec.admit(r, fx, true) {
			next.ServeHTTP(w, r)
			return
		}
		fx.Fired()
		writeError(w, f.spec.Status, f.spec.Body)
	})
}

// finalStatus checks the status an injected answer ends with. A 1xx is
// none: Go's server sends it as an informational response and then the
// handler's answer as a 200, so an error fault of 103 "took effect" on
// requests that all succeeded; a 101 switches protocols, which the gateway
// reads as a malformed answer.
func finalStatus(status int) error {
	if status < 200 || status > 599 {
		return fmt.Errorf("status %d is not a final HTTP status (200-599)", status)
	}
	return nil
}

func writeError(w http.ResponseWriter, status int, body string) {
	if body == "" {
		body = http.StatusText(status) + " (injected by cascade)\n"
	}
	h := w.Header()
	if status >= 400 {
		h.Set(cause.Header, cause.UpstreamError.String())
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// FailFirstSpec fails the first Count matching requests after onset, then
// lets every request through: a cold start, or a dependency that needs a
// few calls to warm up. The count is shared by every replica it targets.
type FailFirstSpec struct {
	// Count of requests to fail. Required, at least 1.
	Count  int    `yaml:"count" json:"count"`
	Status int    `yaml:"status,omitempty" json:"status,omitempty"` // default 503
	Body   string `yaml:"body,omitempty" json:"body,omitempty"`
	// Match limits which requests count (and fail).
	Match *Match `yaml:"match,omitempty" json:"match,omitempty"`
}

// Validate implements Spec.
func (s *FailFirstSpec) Validate() error {
	if s.Count < 1 {
		return fmt.Errorf("count must be at least 1 (how many requests fail before the rest succeed)")
	}
	if err := finalStatus(s.Status); err != nil {
		return err
	}
	return s.Match.Validate()
}

// New implements Spec.
func (s *FailFirstSpec) New() Fault { return &failFirstFault{spec: *s} }

type failFirstFault struct {
	spec FailFirstSpec
	n    atomic.Int64 // matching requests so far, across replicas
}

func (*failFirstFault) Kind() string { return "fail_first" }

func (f *failFirstFault) Wrap(next http.Handler, fx *Effect) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !admit(f.spec.Match, 1, r, fx, false) || f.n.Add(1) > int64(f.spec.Count) {
			next.ServeHTTP(w, r)
			return
		}
		fx.Fired()
		writeError(w, f.spec.Status, f.spec.Body)
	})
}

// ResetSpec resets the TCP connection (RST) after the request was read and
// before any answer: the caller sees "connection reset by peer".
type ResetSpec struct {
	Selector `yaml:",inline"`
}

// Validate implements Spec.
func (s *ResetSpec) Validate() error { return s.Selector.Validate() }

// New implements Spec.
func (s *ResetSpec) New() Fault { return &resetFault{spec: *s} }

type resetFault struct{ spec ResetSpec }

func (*resetFault) Kind() string { return "reset" }

func (f *resetFault) Wrap(next http.Handler, fx *Effect) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !f.spec.admit(r, fx, true) {
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
	abort(conn)
}

// abort closes conn with RST.
func abort(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// HangSpec accepts the request and never answers: the caller waits until its
// own timeout fires (or the run ends).
type HangSpec struct {
	Selector `yaml:",inline"`
}

// Validate implements Spec.
func (s *HangSpec) Validate() error { return s.Selector.Validate() }

// New implements Spec.
func (s *HangSpec) New() Fault { return &hangFault{spec: *s} }

type hangFault struct{ spec HangSpec }

func (*hangFault) Kind() string { return "hang" }

func (f *hangFault) Wrap(next http.Handler, fx *Effect) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !f.spec.admit(r, fx, true) {
			next.ServeHTTP(w, r)
			return
		}
		fx.Fired()
		// The request context ends when the caller closes the connection or
		// the replica shuts down, so a hang never outlives the run.
		<-r.Context().Done()
	})
}

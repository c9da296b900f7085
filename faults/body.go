package faults

import (
	"bufio"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/cascadehq/cascade/internal/units"
)

// Faults that spoil the answer on the wire: they let the replica produce its
// normal answer, then send it slowly, partly, or not as HTTP at all. The
// last three write the response themselves on the hijacked connection, so
// the bytes on the wire are exactly the ones described.

func init() {
	RegisterKind(Kind{Name: "slow_body", Layer: LayerHTTP, InProcess: true,
		Doc: "sends the headers at once and the body at a fixed number of bytes per second",
		New: func() Spec { return &SlowBodySpec{Selector: Selector{Probability: 1}} }})
	RegisterKind(Kind{Name: "truncated_body", Layer: LayerHTTP, InProcess: true, Ramp: "probability",
		Doc: "announces the full Content-Length, sends part of the body, then closes (FIN)",
		New: func() Spec { return &TruncatedBodySpec{Selector: Selector{Probability: 1}, Fraction: 0.5} }})
	RegisterKind(Kind{Name: "close_mid_response", Layer: LayerHTTP, InProcess: true, Ramp: "probability",
		Doc: "sends the headers and part of the body, then resets the connection (or closes it)",
		New: func() Spec {
			return &CloseMidResponseSpec{Selector: Selector{Probability: 1}, After: 0.5, Close: CloseRST}
		}})
	RegisterKind(Kind{Name: "malformed", Layer: LayerHTTP, InProcess: true, Ramp: "probability",
		Doc: "answers with bytes that are not valid HTTP (a gateway must answer 502)",
		New: func() Spec { return &MalformedSpec{Selector: Selector{Probability: 1}, Variant: MalformedGarbage} }})
}

var (
	_ HTTPFault = (*slowBodyFault)(nil)
	_ HTTPFault = (*truncatedFault)(nil)
	_ HTTPFault = (*closeMidFault)(nil)
	_ HTTPFault = (*malformedFault)(nil)
)

// SlowBodySpec sends the response headers at once and the body at
// BytesPerSecond: the time to first byte is normal, the download is slow.
type SlowBodySpec struct {
	// BytesPerSecond is the body's pace, e.g. 1KiB. Required.
	BytesPerSecond units.Size `yaml:"bytes_per_second" json:"bytes_per_second"`
	Selector       `yaml:",inline"`
}

// Validate implements Spec.
func (s *SlowBodySpec) Validate() error {
	if s.BytesPerSecond.Bytes() < 1 {
		return fmt.Errorf("bytes_per_second is required and must be at least 1 (e.g. bytes_per_second: 1KiB)")
	}
	return s.Selector.Validate()
}

// New implements Spec.
func (s *SlowBodySpec) New() Fault { return &slowBodyFault{spec: *s} }

type slowBodyFault struct{ spec SlowBodySpec }

func (*slowBodyFault) Kind() string { return "slow_body" }

func (f *slowBodyFault) Wrap(next http.Handler, fx *Effect) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !f.spec.admit(r, fx, false) {
			next.ServeHTTP(w, r)
			return
		}
		fx.Fired()
		next.ServeHTTP(&dripWriter{ResponseWriter: w, rc: http.NewResponseController(w), r: r,
			rate: float64(f.spec.BytesPerSecond.Bytes())}, r)
	})
}

// dripWriter paces a body: about 20 ms worth of bytes per write, each
// flushed, each written when the pace says it is due.
type dripWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	r     *http.Request
	rate  float64 // bytes per second
	start time.Time
	sent  int64
}

func (d *dripWriter) Write(p []byte) (int, error) {
	if d.start.IsZero() {
		d.start = time.Now()
		_ = d.rc.Flush() // the headers go now; only the body is slow
	}
	chunk := max(1, int(d.rate/50))
	n := 0
	for len(p) > 0 {
		c := min(chunk, len(p))
		due := d.start.Add(time.Duration(float64(d.sent+int64(c)) / d.rate * float64(time.Second)))
		if !sleepUntil(d.r, due) {
			return n, d.r.Context().Err()
		}
		m, err := d.ResponseWriter.Write(p[:c])
		n += m
		if err != nil {
			return n, err
		}
		_ = d.rc.Flush()
		d.sent += int64(c)
		p = p[c:]
	}
	return n, nil
}

// Unwrap lets http.ResponseController reach the real writer.
func (d *dripWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// sleepUntil waits for t with a plain timer (pacing needs no sub-millisecond
// precision) unless the request ends first.
func sleepUntil(r *http.Request, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// TruncatedBodySpec announces the full Content-Length, sends only Fraction
// of the body, and closes the connection cleanly (FIN): the caller reads an
// unexpected EOF.
type TruncatedBodySpec struct {
	// Fraction of the body sent (default 50%; 0% sends the headers only).
	Fraction units.Percent `yaml:"fraction,omitempty" json:"fraction,omitempty"`
	Selector `yaml:",inline"`
}

// Validate implements Spec.
func (s *TruncatedBodySpec) Validate() error {
	if s.Fraction.F() >= 1 {
		return fmt.Errorf("fraction %s would send the whole body: give less than 100%%", s.Fraction)
	}
	return s.Selector.Validate()
}

// New implements Spec.
func (s *TruncatedBodySpec) New() Fault { return &truncatedFault{spec: *s} }

type truncatedFault struct{ spec TruncatedBodySpec }

func (*truncatedFault) Kind() string { return "truncated_body" }

func (f *truncatedFault) Wrap(next http.Handler, fx *Effect) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !f.spec.admit(r, fx, true) {
			next.ServeHTTP(w, r)
			return
		}
		fx.Fired()
		partialResponse(w, r, next, f.spec.Fraction.F(), false)
	})
}

// Ways close_mid_response ends the connection.
const (
	CloseRST = "rst"
	CloseFIN = "fin"
)

// CloseMidResponseSpec sends the headers and part of the body, then resets
// the connection (RST), as a process that crashes mid-write does.
type CloseMidResponseSpec struct {
	// After is the share of the body sent before the close (default 50%).
	After units.Percent `yaml:"after,omitempty" json:"after,omitempty"`
	// Close is rst (default: the peer sees "connection reset") or fin.
	Close    string `yaml:"close,omitempty" json:"close,omitempty" jsonschema:"enum=rst,enum=fin"`
	Selector `yaml:",inline"`
}

// Validate implements Spec.
func (s *CloseMidResponseSpec) Validate() error {
	if s.Close != CloseRST && s.Close != CloseFIN {
		return fmt.Errorf("close %q: expected rst or fin", s.Close)
	}
	if s.After.F() >= 1 {
		return fmt.Errorf("after %s would send the whole body: give less than 100%%", s.After)
	}
	return s.Selector.Validate()
}

// New implements Spec.
func (s *CloseMidResponseSpec) New() Fault { return &closeMidFault{spec: *s} }

type closeMidFault struct{ spec CloseMidResponseSpec }

func (*closeMidFault) Kind() string { return "close_mid_response" }

func (f *closeMidFault) Wrap(next http.Handler, fx *Effect) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !f.spec.admit(r, fx, true) {
			next.ServeHTTP(w, r)
			return
		}
		fx.Fired()
		partialResponse(w, r, next, f.spec.After.F(), f.spec.Close == CloseRST)
	})
}

// midWritePause is how long a partial answer sits on the wire before the
// close, so the peer reads the headers before it sees the close (a reset
// can otherwise overtake data the peer has not read yet).
const midWritePause = 5 * time.Millisecond

// partialResponse runs next into a buffer, then writes its status, headers
// (Content-Length: the full body) and fraction of the body on the raw
// connection, and closes it with RST or FIN.
func partialResponse(w http.ResponseWriter, r *http.Request, next http.Handler, fraction float64, rst bool) {
	rec := newRecorder(w.Header())
	next.ServeHTTP(rec, r)
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // not HTTP/1: abort the stream instead
	}
	rec.header.Del("Transfer-Encoding")
	rec.header.Set("Content-Length", strconv.Itoa(len(rec.body)))
	writeHead(brw.Writer, rec.status, rec.header)
	_, _ = brw.Write(rec.body[:int(fraction*float64(len(rec.body)))])
	_ = brw.Flush()
	(*delay)(nil).wait(r.Context(), midWritePause)
	if rst {
		abort(conn)
		return
	}
	_ = conn.Close()
}

func writeHead(w *bufio.Writer, status int, h http.Header) {
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			fmt.Fprintf(w, "%s: %s\r\n", k, v)
		}
	}
	w.WriteString("\r\n")
}

// recorder captures what a handler answers. (net/http/httptest has one, but
// importing it registers a command-line flag in every binary.)
type recorder struct {
	header http.Header
	status int
	body   []byte
	wrote  bool
}

func newRecorder(h http.Header) *recorder {
	return &recorder{header: h.Clone(), status: http.StatusOK}
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	r.body = append(r.body, p...)
	return len(p), nil
}

// Malformed variants: each breaks a different part of the response.
const (
	MalformedGarbage   = "garbage"    // the first line is not a status line
	MalformedStatus    = "bad_status" // "HTTP/1.1 2OO OK"
	MalformedHeader    = "bad_header" // a header line without a colon
	MalformedLength    = "bad_length" // Content-Length: -3
	malformedBadLength = "-3"
)

// MalformedSpec answers with bytes that are not valid HTTP/1.1, then closes.
// A gateway must turn it into 502 (cascade's: upstream_malformed).
type MalformedSpec struct {
	// Variant is garbage (default), bad_status, bad_header or bad_length.
	Variant  string `yaml:"variant,omitempty" json:"variant,omitempty" jsonschema:"enum=garbage,enum=bad_status,enum=bad_header,enum=bad_length"`
	Selector `yaml:",inline"`
}

// Validate implements Spec.
func (s *MalformedSpec) Validate() error {
	switch s.Variant {
	case MalformedGarbage, MalformedStatus, MalformedHeader, MalformedLength:
	default:
		return fmt.Errorf("variant %q: expected garbage, bad_status, bad_header or bad_length", s.Variant)
	}
	return s.Selector.Validate()
}

// New implements Spec.
func (s *MalformedSpec) New() Fault { return &malformedFault{spec: *s} }

type malformedFault struct{ spec MalformedSpec }

func (*malformedFault) Kind() string { return "malformed" }

func (f *malformedFault) Wrap(next http.Handler, fx *Effect) http.Handler {
	var wire string
	switch f.spec.Variant {
	case MalformedGarbage:
		wire = "SSH-2.0-OpenSSH_9.2 this is not HTTP\r\n\r\n"
	case MalformedStatus:
		wire = "HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n"
	case MalformedHeader:
		wire = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nthis header line has no colon\r\n\r\nok"
	case MalformedLength:
		wire = "HTTP/1.1 200 OK\r\nContent-Length: " + malformedBadLength + "\r\n\r\n"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !f.spec.admit(r, fx, true) {
			next.ServeHTTP(w, r)
			return
		}
		fx.Fired()
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		_, _ = brw.WriteString(wire)
		_ = brw.Flush()
		_ = conn.Close()
	})
}

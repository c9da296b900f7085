package loadgen

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync/atomic"

	"github.com/cascadehq/cascade/internal/cause"
)

// Request is one template of the request mix. Path, header values and body
// may hold variables (see Template).
type Request struct {
	Name   string // tag for per-request stats; default "METHOD path"
	Method string
	Path   string // path and query, appended to the target
	Header http.Header
	Body   []byte
	// RawBody sends Body as it is: no variables ("{{" is two bytes).
	RawBody bool
	Weight  int // relative share; 0 counts as 1
	// Expect, when set, decides which answers count as successes.
	Expect *Expect
}

// compiledRequest is a Request with its templates parsed.
type compiledRequest struct {
	name   string
	method string
	path   *Template
	header []compiledHeader // sorted by name, so a rendering is repeatable
	body   *Template        // nil: no body
	static bool             // no variables anywhere: render once
	expect *Expect          // nil: the status alone decides
}

type compiledHeader struct {
	name string
	val  *Template
}

// requestSet is an executor's request mix, compiled once and shared by its
// transport's goroutines (read-only after compile).
type requestSet struct {
	reqs []compiledRequest
	data []*Dataset
	seed uint64
	// firstBad is the first rendering the client refused. A sample has room
	// for a cause, not a message, so the reason is kept here, once.
	firstBad atomic.Pointer[RequestError]
	// failures are the first errors of requests that were built but
	// failed in the client, one per cause (see firstErrors).
	failures firstErrors
}

// RequestError says why a templated request was not sent: what its
// template rendered for one sequence number, and what the client refused.
// The samples of every such request carry the cause request_error; this is
// the first one's reason.
type RequestError struct {
	Request string // the template's name
	Seq     uint64
	Err     error
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("request %q (sequence number %d): %v", e.Request, e.Seq, e.Err)
}

// refused notes a rendering of request i that the client refused; the first
// is kept.
func (rs *requestSet) refused(i int, seq uint64, err error) {
	if rs.firstBad.Load() == nil {
		rs.firstBad.CompareAndSwap(nil, &RequestError{Request: rs.reqs[i].name, Seq: seq, Err: err})
	}
}

// check applies request i's Expect, if any, to a complete answer, and keeps
// the first that failed it.
func (rs *requestSet) check(i int, seq uint64, status int, c cause.Cause, body []byte) cause.Cause {
	e := rs.reqs[i].expect
	if e == nil {
		return c
	}
	c = e.judge(status, c, body)
	if c == cause.UnexpectedResponse && !rs.failures.has(c) {
		rs.failures.note(c, rs.reqs[i].name, seq, &UnexpectedError{Why: e.why(status, body)})
	}
	return c
}

// failed notes the error of a request i that failed in the client with
// cause c; the first of each kind is kept. Only for failed requests. It
// says whether the error was the generator's own lack of file descriptors.
func (rs *requestSet) failed(c cause.Cause, i int, seq uint64, err error) (fdLimit bool) {
	return rs.failures.note(c, rs.reqs[i].name, seq, err)
}

// RequestErrorSource is a transport that keeps the first request it could
// not build (every transport in this package is one).
type RequestErrorSource interface {
	FirstRequestError() *RequestError
}

// FirstRequestError is the first request tr could not build, or nil: tr's
// own answer when it keeps one.
func FirstRequestError(tr Transport) *RequestError {
	if s, ok := tr.(RequestErrorSource); ok {
		return s.FirstRequestError()
	}
	return nil
}

func compileRequests(reqs []Request, data []*Dataset, seed uint64) (*requestSet, error) {
	rs := &requestSet{data: data, seed: seed}
	for i, r := range reqs {
		tp := &tparser{data: data}
		c := compiledRequest{name: r.Name, method: r.Method, expect: r.Expect}
		if c.method == "" {
			c.method = http.MethodGet
		}
		if c.name == "" {
			c.name = c.method + " " + r.Path
		}
		var err error
		if c.path, err = tp.parse(r.Path); err != nil {
			return nil, fmt.Errorf("loadgen: request %d (%s): path: %w", i, r.Name, err)
		}
		static := c.path.Static()
		names := make([]string, 0, len(r.Header))
		for k := range r.Header {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			for _, v := range r.Header[k] {
				t, err := tp.parse(v)
				if err != nil {
					return nil, fmt.Errorf("loadgen: request %d (%s): header %s: %w", i, r.Name, k, err)
				}
				static = static && t.Static()
				c.header = append(c.header, compiledHeader{name: k, val: t})
			}
		}
		switch {
		case r.Body != nil && r.RawBody:
			c.body = literal(string(r.Body))
		case r.Body != nil:
			if c.body, err = tp.parse(string(r.Body)); err != nil {
				return nil, fmt.Errorf("loadgen: request %d (%s): body: %w", i, r.Name, err)
			}
			static = static && c.body.Static()
		}
		c.static = static
		rs.reqs = append(rs.reqs, c)
	}
	return rs, nil
}

// CheckPath refuses a path (and query) that the two clients would not send
// alike: each must send the same request for it or both refuse it. A '#'
// starts a fragment, which is never sent: from a data value, loadgen/h1
// cut the request short ("/p/a#b?q=a#b" went out as "/p/a") while net/http
// escaped it in the path and cut the query. A space in the query went out
// raw from net/http (on HTTP/1.1 a request its server answered 400, blamed
// on the target) and was refused by loadgen/h1. (A space in the path both
// send as %20; control characters neither sends.)
func CheckPath[T string | []byte](path T) error {
	query := false
	for i := 0; i < len(path); i++ {
		switch b := path[i]; {
		case b < ' ' || b == 0x7f:
			return fmt.Errorf("path %q: a control character at byte %d: no client sends it", path, i)
		case b == ' ' && query:
			return fmt.Errorf("path %q: a space in the query at byte %d: no client sends it; write %%20 or +, or a data value as {{urlencode set.column}}", path, i)
		case b == '?':
			query = true
		case b == '#':
			return fmt.Errorf("path %q: a '#' at byte %d would start a fragment, which is not sent: what follows would be cut off; write %%23 to send a '#', or a data value as {{urlencode set.column}}", path, i)
		}
	}
	return nil
}

// rendering is one request's rendered parts; its buffers are reused.
type rendering struct {
	v      vars
	path   []byte
	header [][2]string
	body   []byte
	hbuf   []byte
}

// render fills out for request i with sequence number seq.
func (rs *requestSet) render(i int, seq uint64, out *rendering) {
	c := &rs.reqs[i]
	out.v.data = rs.data
	out.v.set(rs.seed, seq)
	out.path = c.path.appendTo(out.path[:0], &out.v)
	out.header = out.header[:0]
	for _, h := range c.header {
		start := len(out.hbuf)
		out.hbuf = h.val.appendTo(out.hbuf, &out.v)
		out.header = append(out.header, [2]string{h.name, string(out.hbuf[start:])})
	}
	out.hbuf = out.hbuf[:0]
	out.body = out.body[:0]
	if c.body != nil {
		out.body = c.body.appendTo(out.body, &out.v)
	}
}

// picker makes weighted random choices of a request template.
type picker struct {
	rng *rand.Rand
	cum []int
}

func newPicker(reqs []Request, seed uint64) *picker {
	p := &picker{rng: rand.New(rand.NewPCG(seed, 0x6c6f6164))}
	total := 0
	for _, r := range reqs {
		total += max(r.Weight, 1)
		p.cum = append(p.cum, total)
	}
	return p
}

func (p *picker) pick() int {
	if len(p.cum) == 1 {
		return 0
	}
	x := p.rng.IntN(p.cum[len(p.cum)-1])
	for i, c := range p.cum {
		if x < c {
			return i
		}
	}
	return len(p.cum) - 1
}

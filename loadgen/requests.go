package loadgen

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
)

// Request is one template of the request mix. Path, header values and body
// may hold variables (see Template).
type Request struct {
	Name   string // tag for per-request stats; default "METHOD path"
	Method string
	Path   string // path and query, appended to the target
	Header http.Header
	Body   []byte
	Weight int // relative share; 0 counts as 1
}

// compiledRequest is a Request with its templates parsed.
type compiledRequest struct {
	method string
	path   *Template
	header []compiledHeader // sorted by name, so a rendering is repeatable
	body   *Template        // nil: no body
	static bool             // no variables anywhere: render once
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
}

func compileRequests(reqs []Request, data []*Dataset, seed uint64) (*requestSet, error) {
	rs := &requestSet{data: data, seed: seed}
	for i, r := range reqs {
		tp := &tparser{data: data}
		c := compiledRequest{method: r.Method}
		if c.method == "" {
			c.method = http.MethodGet
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
		if r.Body != nil {
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

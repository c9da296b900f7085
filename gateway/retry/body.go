package retry

import (
	"bytes"
	"io"
	"net/http"
)

// PrepareBody makes r's body sendable more than once when it fits in
// max_replay_body, and reports what Decide needs to know. A body without a
// known length is read up to the bound; when it turns out larger, what was
// read is put back in front of the rest so the single attempt still sends it
// whole. Caddy retried requests whose body had been consumed (caddy#5454);
// this is the guard against that.
func (p *Policy) PrepareBody(r *http.Request) (Request, error) {
	req := Request{Method: r.Method}
	if r.Body == nil || r.Body == http.NoBody || r.GetBody != nil {
		req.Replayable = true
		return req, nil
	}
	limit := p.set.maxReplay
	if r.ContentLength > limit {
		return req, nil
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return req, err
	}
	if int64(len(buf)) > limit {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
		return req, nil
	}
	if err := r.Body.Close(); err != nil {
		return req, err
	}
	r.ContentLength = int64(len(buf))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	r.Body, _ = r.GetBody()
	req.Replayable = true
	return req, nil
}

package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
)

func TestParseStatus(t *testing.T) {
	for in, want := range map[string]StatusRange{"200": {200, 200}, "2xx": {200, 299}, "5XX": {500, 599}, " 404 ": {404, 404}} {
		if got, err := ParseStatus(in); err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "99", "600", "6xx", "2x", "ok", "20x"} {
		if _, err := ParseStatus(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A request's expect: decides its successes on both clients, as k6's
// expectedStatuses and checks do: a listed 404 succeeds, an unlisted 200
// fails, a body without the text fails (also when the text sits past the
// first read, in a chunked body, or past MaxCheckedBody), and the first
// failure says why.
func TestExpectOnBothClients(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			w.WriteHeader(404)
		case "/created":
			w.WriteHeader(201)
		case "/big": // the text after 40 KiB, in a chunked body written in pieces
			for range 10 {
				fmt.Fprint(w, strings.Repeat("x", 4<<10))
				w.(http.Flusher).Flush()
			}
			fmt.Fprint(w, `{"items": []}`)
		case "/huge": // the text only past what is checked
			fmt.Fprint(w, strings.Repeat("x", MaxCheckedBody), `{"items": []}`)
		case "/broken":
			w.WriteHeader(503)
			fmt.Fprint(w, `{"items": []}`)
		default:
			fmt.Fprint(w, `{"error": "stale"}`)
		}
	}))
	defer srv.Close()
	items := []byte(`"items"`)
	reqs := []Request{
		{Name: "expected-404", Path: "/missing", Expect: &Expect{Status: []StatusRange{{200, 200}, {404, 404}}}},
		{Name: "unlisted-201", Path: "/created", Expect: &Expect{Status: []StatusRange{{200, 200}}}},
		{Name: "wrong-body", Path: "/stale", Expect: &Expect{BodyContains: items}},
		{Name: "big-body", Path: "/big", Expect: &Expect{Status: []StatusRange{{200, 299}}, BodyContains: items}},
		{Name: "huge-body", Path: "/huge", Expect: &Expect{BodyContains: items}},
		{Name: "error-status", Path: "/broken", Expect: &Expect{BodyContains: items}},
		{Name: "no-expect-404", Path: "/missing"},
	}
	want := []cause.Cause{cause.OK, cause.UnexpectedResponse, cause.UnexpectedResponse, cause.OK, cause.UnexpectedResponse, cause.ServiceUnavailable, cause.HTTPError}
	for _, nethttp := range []bool{false, true} {
		tr := clientTransport(t, Config{Target: srv.URL, KeepAlive: true, Requests: reqs, ClientTimeout: 5 * time.Second}, nethttp)
		for i := range reqs {
			for seq := uint64(1); seq <= 2; seq++ {
				s := Sample{Seq: seq}
				tr.RoundTrip(context.Background(), i, &s)
				if s.Cause != want[i] {
					t.Errorf("net/http %v, %s: cause %v, want %v", nethttp, reqs[i].Name, s.Cause, want[i])
				}
			}
		}
		// One kept error for the cause: the first request that failed its
		// expect, with why.
		got := FirstClientErrors(tr)
		if len(got) != 1 || got[0].Cause != cause.UnexpectedResponse || got[0].Request != "unlisted-201" || got[0].Seq != 1 ||
			!strings.Contains(got[0].Error(), "status 201, expected 200") {
			t.Errorf("net/http %v: kept %v", nethttp, got)
		}
	}
	e := &Expect{BodyContains: items}
	body := []byte(`{"error": "stale"}`)
	if c, why := e.judge(200, cause.OK, body), e.why(200, body); c != cause.UnexpectedResponse || why != `status 200, body without "\"items\"" (in its first 18 bytes)` {
		t.Errorf("judge: %v %q", c, why)
	}
}

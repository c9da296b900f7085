package fallback

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
)

// response builds an upstream answer to method url, as ModifyResponse sees it.
func response(method, target string, status int, body string, header ...string) *http.Response {
	req := httptest.NewRequest(method, target, nil)
	h := http.Header{}
	for i := 0; i+1 < len(header); i += 2 {
		h.Add(header[i], header[i+1])
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Request: req}
}

// proxied captures resp and reads its body through, as the proxy would.
func proxied(t *testing.T, c *Cache, resp *http.Response) bool {
	t.Helper()
	ok := c.Capture(Key(resp.Request), resp)
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return ok
}

func newCache(t *testing.T, cfg CacheConfig) (*Cache, *event.Memory) {
	t.Helper()
	var mem event.Memory
	c, err := NewCache(cfg, WithEvents(&mem, event.NewClock()), WithTarget("/api"))
	if err != nil {
		t.Fatal(err)
	}
	return c, &mem
}

func TestStaleIfError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, mem := newCache(t, CacheConfig{TTL: units.Duration(10 * time.Second), StaleIfError: units.Duration(20 * time.Second)})
		resp := response("GET", "http://api.test/items?page=2", 200, `{"items":[1]}`, "Content-Type", "application/json",
			"X-Cascade-Cause", "ok", "Connection", "keep-alive")
		if !proxied(t, c, resp) {
			t.Fatal("a 200 to GET was not captured")
		}
		key := "GET api.test/items?page=2"
		tests := []struct {
			at    time.Duration
			serve bool
			age   string
		}{
			{0, true, "0"},
			{9 * time.Second, true, "9"},   // fresh
			{15 * time.Second, true, "15"}, // stale, within the window
			{29 * time.Second, true, "29"},
			{30 * time.Second, false, ""}, // past ttl + stale_if_error
			{31 * time.Second, false, ""},
		}
		start := time.Now()
		for _, tt := range tests {
			time.Sleep(start.Add(tt.at).Sub(time.Now()))
			w := httptest.NewRecorder()
			if got := c.ServeStale(w, key); got != tt.serve {
				t.Fatalf("at %v: served = %v, want %v", tt.at, got, tt.serve)
			}
			if !tt.serve {
				continue
			}
			r := w.Result()
			body, _ := io.ReadAll(r.Body)
			if r.StatusCode != 200 || string(body) != `{"items":[1]}` || r.Header.Get("Content-Type") != "application/json" {
				t.Errorf("at %v: %d %q %v", tt.at, r.StatusCode, body, r.Header)
			}
			if r.Header.Get(Header) != KindCache || r.Header.Get(cause.Header) != "fallback" || r.Header.Get("Age") != tt.age {
				t.Errorf("at %v: marks %v", tt.at, r.Header)
			}
			if r.Header.Get("Connection") != "" || r.Header.Get("Content-Length") != "13" {
				t.Errorf("at %v: hop-by-hop or length wrong: %v", tt.at, r.Header)
			}
		}
		if n, _ := c.Len(); n != 0 {
			t.Errorf("expired entry kept: %d entries", n)
		}
		cc := c.Counters()
		if cc.Stored != 1 || cc.Fallbacks != 4 || cc.Misses != 2 || cc.Expired != 1 {
			t.Errorf("counters = %+v", cc)
		}
		evs := mem.Events()
		if len(evs) == 0 || evs[0].Type != "fallback.serve" || evs[0].Attr("kind") != KindCache {
			t.Errorf("events = %v", evs)
		}
	})
}

func TestServeFresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		off, _ := newCache(t, CacheConfig{})
		on, _ := newCache(t, CacheConfig{ServeFresh: true, TTL: units.Duration(5 * time.Second)})
		for _, c := range []*Cache{off, on} {
			proxied(t, c, response("GET", "http://h/x", 200, "x"))
		}
		if off.ServeFresh(httptest.NewRecorder(), "GET h/x") {
			t.Error("served fresh with serve_fresh off")
		}
		w := httptest.NewRecorder()
		if !on.ServeFresh(w, "GET h/x") || w.Body.String() != "x" || w.Header().Get(Header) != "" ||
			w.Header().Get(cause.Header) != "" || w.Header().Get("X-Cascade-Cache") != "hit" {
			t.Errorf("fresh hit: %v %q", w.Header(), w.Body)
		}
		time.Sleep(5 * time.Second)
		if on.ServeFresh(httptest.NewRecorder(), "GET h/x") {
			t.Error("served a stale entry as fresh")
		}
		if !on.ServeStale(httptest.NewRecorder(), "GET h/x") {
			t.Error("stale entry not available for a failure")
		}
	})
}

func TestNotCached(t *testing.T) {
	c, _ := newCache(t, CacheConfig{MaxEntrySize: 10})
	tests := []struct {
		name string
		resp *http.Response
	}{
		{"POST", response("POST", "http://h/a", 200, "x")},
		{"500", response("GET", "http://h/a", 500, "x")},
		{"204", response("GET", "http://h/a", 204, "")},
		{"no-store", response("GET", "http://h/a", 200, "x", "Cache-Control", "max-age=5, no-store")},
		{"private", response("GET", "http://h/a", 200, "x", "Cache-Control", "Private")},
		{"set-cookie", response("GET", "http://h/a", 200, "x", "Set-Cookie", "id=1")},
		{"vary star", response("GET", "http://h/a", 200, "x", "Vary", "*")},
		{"too large, known length", response("GET", "http://h/a", 200, "0123456789a")},
	}
	for _, tt := range tests {
		if proxied(t, c, tt.resp) {
			t.Errorf("%s: captured", tt.name)
		}
	}
	// Too large, unknown length: captured tentatively, dropped on the way,
	// and every byte still reaches the client.
	r := response("GET", "http://h/a", 200, "0123456789abcdef")
	r.ContentLength = -1
	c.Capture(Key(r.Request), r)
	got, _ := io.ReadAll(r.Body)
	if string(got) != "0123456789abcdef" {
		t.Errorf("body through the capture: %q", got)
	}
	// Cut short: the proxy stopped reading (client gone) before EOF.
	r = response("GET", "http://h/b", 200, "0123456789")
	c.Capture(Key(r.Request), r)
	buf := make([]byte, 4)
	r.Body.Read(buf)
	r.Body.Close()
	if n, _ := c.Len(); n != 0 {
		t.Errorf("%d entries kept", n)
	}
	if c.ServeStale(httptest.NewRecorder(), "GET h/a") {
		t.Error("served an uncacheable answer")
	}
}

func TestHead(t *testing.T) {
	c, _ := newCache(t, CacheConfig{})
	r := response("HEAD", "http://h/a", 200, "")
	r.Header.Set("Content-Type", "text/plain")
	if !c.Capture(Key(r.Request), r) {
		t.Fatal("HEAD not captured")
	}
	w := httptest.NewRecorder()
	if !c.ServeStale(w, "HEAD h/a") || w.Body.Len() != 0 || w.Header().Get("Content-Type") != "text/plain" {
		t.Errorf("HEAD fallback: %v %q", w.Header(), w.Body)
	}
	if c.ServeStale(httptest.NewRecorder(), "GET h/a") {
		t.Error("a HEAD entry answered a GET")
	}
}

func TestBounds(t *testing.T) {
	t.Run("entries, least recently used first", func(t *testing.T) {
		c, _ := newCache(t, CacheConfig{MaxEntries: 3})
		for _, p := range []string{"/1", "/2", "/3"} {
			proxied(t, c, response("GET", "http://h"+p, 200, p))
		}
		c.ServeStale(httptest.NewRecorder(), "GET h/1") // /1 is now the most recent
		proxied(t, c, response("GET", "http://h/4", 200, "/4"))
		for p, want := range map[string]bool{"/1": true, "/2": false, "/3": true, "/4": true} {
			if got := c.ServeStale(httptest.NewRecorder(), "GET h"+p); got != want {
				t.Errorf("%s kept = %v, want %v", p, got, want)
			}
		}
		if c.Counters().Evicted != 1 {
			t.Errorf("counters = %+v", c.Counters())
		}
	})
	t.Run("bytes", func(t *testing.T) {
		c, _ := newCache(t, CacheConfig{MaxBytes: 100, MaxEntrySize: 100})
		body := strings.Repeat("b", 30) // 30 + len("GET h/N") = 37 bytes each
		for i := range 5 {
			proxied(t, c, response("GET", "http://h/"+strconv.Itoa(i), 200, body))
		}
		n, size := c.Len()
		if n != 2 || size != 74 {
			t.Errorf("%d entries, %d bytes; want 2 entries, 74 bytes under max_bytes 100", n, size)
		}
	})
	t.Run("replacing an entry", func(t *testing.T) {
		c, _ := newCache(t, CacheConfig{})
		proxied(t, c, response("GET", "http://h/a", 200, "old"))
		proxied(t, c, response("GET", "http://h/a", 200, "newer"))
		w := httptest.NewRecorder()
		c.ServeStale(w, "GET h/a")
		if n, size := c.Len(); n != 1 || size != int64(len("GET h/a")+5) || w.Body.String() != "newer" {
			t.Errorf("%d entries, %d bytes, body %q", n, size, w.Body)
		}
	})
}

func TestStatic(t *testing.T) {
	var mem event.Memory
	s, err := NewStatic(StaticConfig{Headers: map[string]string{"content-type": "application/json"}, Body: `{"items":[]}`},
		WithEvents(&mem, nil))
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	s.Serve(w, http.MethodGet)
	if w.Code != 200 || w.Body.String() != `{"items":[]}` || w.Header().Get("Content-Type") != "application/json" ||
		w.Header().Get(Header) != KindStatic || w.Header().Get(cause.Header) != "fallback" || w.Header().Get("Age") != "" {
		t.Errorf("static: %d %v %q", w.Code, w.Header(), w.Body)
	}
	w = httptest.NewRecorder()
	s.Serve(w, http.MethodHead)
	if w.Body.Len() != 0 || w.Header().Get("Content-Length") != "12" {
		t.Errorf("HEAD: %v %q", w.Header(), w.Body)
	}
	s2, _ := NewStatic(StaticConfig{Status: 503, Body: "busy"})
	w = httptest.NewRecorder()
	s2.Serve(w, http.MethodGet)
	if w.Code != 503 {
		t.Errorf("status %d", w.Code)
	}
	if evs := mem.Events(); len(evs) != 1 || evs[0].Attr("kind") != KindStatic {
		t.Errorf("events = %v", evs)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		err   error
		field string
	}{
		{CacheConfig{TTL: units.Duration(-1)}.Validate(), "ttl"},
		{CacheConfig{StaleIfError: units.Duration(-1)}.Validate(), "stale_if_error"},
		{CacheConfig{MaxEntries: -1}.Validate(), "max_entries"},
		{CacheConfig{MaxBytes: -1}.Validate(), "max_bytes"},
		{CacheConfig{MaxBytes: 10, MaxEntrySize: 11}.Validate(), "max_entry_size"},
		{StaticConfig{Status: 99}.Validate(), "status"},
		{StaticConfig{Headers: map[string]string{"Bad Name": "x"}}.Validate(), "headers.Bad Name"},
		{StaticConfig{Headers: map[string]string{"X-A": "a\r\nb"}}.Validate(), "headers.X-A"},
		{StaticConfig{Headers: map[string]string{"x-cascade-cause": "ok"}}.Validate(), "headers.x-cascade-cause"},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.HasPrefix(tt.err.Error(), tt.field+": ") {
			t.Errorf("err = %v, want one naming %s", tt.err, tt.field)
		}
	}
	if d := (CacheConfig{MaxBytes: 1000}).withDefaults(); d.MaxEntrySize != 1000 {
		t.Errorf("default max_entry_size not capped by max_bytes: %v", d.MaxEntrySize)
	}
}

// TestThroughReverseProxy wires the cache and the static answer into
// httputil.ReverseProxy the way the gateway will, against a real upstream on
// loopback that is then stopped.
func TestThroughReverseProxy(t *testing.T) {
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "payload for "+r.URL.Path)
	}))
	target, _ := url.Parse(up.URL)
	c, _ := newCache(t, CacheConfig{TTL: units.Duration(time.Hour)})
	static, _ := NewStatic(StaticConfig{Status: 200, Body: "static"})
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// The key comes from the inbound request; the outbound one
			// names the upstream.
			pr.Out = pr.Out.WithContext(contextWithKey(pr.Out.Context(), Key(pr.In)))
		},
		ModifyResponse: func(resp *http.Response) error {
			c.Capture(keyFrom(resp.Request.Context()), resp)
			return nil
		},
		// ErrorHandler, like ModifyResponse, sees the outbound request.
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if !c.ServeStale(w, keyFrom(r.Context())) {
				static.Serve(w, r.Method)
			}
		},
	}
	gw := httptest.NewServer(rp)
	defer gw.Close()
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(gw.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if _, body := get("/a"); body != "payload for /a" {
		t.Fatalf("through the proxy: %q", body)
	}
	up.Close() // the upstream goes away
	resp, body := get("/a")
	if body != "payload for /a" || resp.Header.Get(Header) != KindCache || resp.Header.Get(cause.Header) != "fallback" {
		t.Errorf("cached fallback: %q %v", body, resp.Header)
	}
	resp, body = get("/never-seen")
	if body != "static" || resp.Header.Get(Header) != KindStatic {
		t.Errorf("static fallback: %q %v", body, resp.Header)
	}
	if hits.Load() != 1 {
		t.Errorf("upstream hits = %d", hits.Load())
	}
	if cause.FromResponse(resp.StatusCode, resp.Header.Get(cause.Header)) != cause.Fallback {
		t.Error("the load generator would not count this as a fallback")
	}
}

type keyCtx struct{}

func contextWithKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, keyCtx{}, key)
}

func keyFrom(ctx context.Context) string {
	k, _ := ctx.Value(keyCtx{}).(string)
	return k
}

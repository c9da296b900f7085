// Package fallback answers for an upstream that failed: with the last good
// response to the same request (a cache with a stale-if-error window, RFC
// 5861's idea), or with a fixed response a scenario declares. Every answer
// it writes is marked, so the load generator counts it as a fallback and
// not as the upstream's success:
//
//	X-Cascade-Fallback: cache | static
//	X-Cascade-Cause:    fallback
//
// The proxy wires it in three places:
//
//	ModifyResponse: cache.Capture(key, resp)     // keeps a copy of good answers
//	on failure:     cache.ServeStale(w, key) || static.Serve(w, method)
//	(optional)      cache.ServeFresh(w, key) before proxying, if serve_fresh
package fallback

import (
	"bytes"
	"container/list"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cascadehq/cascade/gateway/internal/emit"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

// Header marks a fallback answer with its kind.
const Header = "X-Cascade-Fallback"

// Kinds of fallback, the values of Header.
const (
	KindCache  = "cache"
	KindStatic = "static"
)

// CacheConfig is a route's fallback cache as a scenario writes it.
type CacheConfig struct {
	// TTL is how long an entry is fresh. Default 10s.
	TTL units.Duration `yaml:"ttl" zero:"default"`
	// StaleIfError is how long after it went stale an entry may still answer
	// for a failed upstream. Default 60s.
	StaleIfError units.Duration `yaml:"stale_if_error" zero:"default"`
	// MaxEntries bounds the number of entries. Default 1000.
	MaxEntries int `yaml:"max_entries" zero:"default"`
	// MaxBytes bounds the entries' total size (bodies and headers). Default
	// 32MiB.
	MaxBytes units.Size `yaml:"max_bytes" zero:"default"`
	// MaxEntrySize is the largest response kept; larger ones pass through
	// uncached. Default 1MiB, and never above max_bytes.
	MaxEntrySize units.Size `yaml:"max_entry_size" zero:"default"`
	// ServeFresh answers requests from fresh entries without asking the
	// upstream, as nginx's proxy_cache does. Default false: the cache only
	// answers for failures, because cascade exists to watch how the
	// upstream behaves under load, and a cache that silently shields it
	// would hide exactly that.
	ServeFresh bool `yaml:"serve_fresh"`
}

// Defaults.
const (
	DefaultTTL          = 10 * time.Second
	DefaultStaleIfError = 60 * time.Second
	DefaultMaxEntries   = 1000
	DefaultMaxBytes     = 32 << 20
	DefaultMaxEntrySize = 1 << 20
)

func (c CacheConfig) withDefaults() CacheConfig {
	if c.TTL == 0 {
		c.TTL = units.Duration(DefaultTTL)
	}
	if c.StaleIfError == 0 {
		c.StaleIfError = units.Duration(DefaultStaleIfError)
	}
	if c.MaxEntries == 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxEntrySize == 0 {
		c.MaxEntrySize = min(DefaultMaxEntrySize, c.MaxBytes)
	}
	return c
}

// Validate reports every problem at once, each naming its field.
func (c CacheConfig) Validate() error {
	var errs yamlfile.Errors
	bad := func(field, format string, args ...any) {
		errs = append(errs, &yamlfile.Error{Path: field, Msg: fmt.Sprintf(format, args...)})
	}
	if c.TTL < 0 {
		bad("ttl", "must not be negative, got %v", c.TTL)
	}
	if c.StaleIfError < 0 {
		bad("stale_if_error", "must not be negative, got %v", c.StaleIfError)
	}
	if c.MaxEntries < 0 {
		bad("max_entries", "must be at least 1, got %d", c.MaxEntries)
	}
	if c.MaxBytes < 0 {
		bad("max_bytes", "must not be negative, got %d", c.MaxBytes)
	}
	if c.MaxEntrySize < 0 {
		bad("max_entry_size", "must not be negative, got %d", c.MaxEntrySize)
	}
	if d := c.withDefaults(); c.MaxEntrySize > 0 && d.MaxEntrySize > d.MaxBytes {
		bad("max_entry_size", "(%v) exceeds max_bytes (%v): such an entry could never be kept", d.MaxEntrySize, d.MaxBytes)
	}
	return errs.Err()
}

// Key names a request in the cache: method and URL as the client sent it
// (host, path and query). Compute it from the inbound request (pr.In in
// Rewrite) and carry it in the outbound request's context: ModifyResponse
// and ErrorHandler only see the outbound request, whose URL names the
// upstream.
func Key(r *http.Request) string {
	return r.Method + " " + r.Host + r.URL.RequestURI()
}

type entry struct {
	key    string
	method string
	status int
	header http.Header
	body   []byte
	stored time.Time
	size   int64
}

// Cache keeps good answers to answer for failures. It is safe for
// concurrent use; a served entry is never modified, so it is written to the
// client outside the lock.
type Cache struct {
	cfg      CacheConfig
	ttl      time.Duration
	stale    time.Duration
	em       emit.Emitter
	throttle emit.Throttle

	mu    sync.Mutex
	lru   *list.List // of *entry, most recent first
	index map[string]*list.Element
	bytes int64

	stored, hitsFresh, fallbacks, misses, expired, evicted, uncacheable atomic.Uint64
}

// Option configures a Cache or Static beyond its Config.
type Option = emit.Option

// WithEvents sends fallback events to sink, stamped on clock.
func WithEvents(sink event.Sink, clock *event.Clock) Option { return emit.WithEvents(sink, clock) }

// WithTarget names the route in events.
func WithTarget(name string) Option { return emit.WithTarget(name) }

// NewCache returns an empty cache.
func NewCache(cfg CacheConfig, opts ...Option) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Cache{cfg: cfg, ttl: cfg.TTL.D(), stale: cfg.StaleIfError.D(), em: emit.From(opts),
		lru: list.New(), index: map[string]*list.Element{}}, nil
}

// hop-by-hop headers (RFC 9110 §7.6.1) and the cause header, which the
// fallback answer sets itself: none of them belongs in a stored answer.
var dropped = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding",
	"Upgrade", "Content-Length", cause.Header, Header}

// cacheable reports whether resp may be kept: a 200 to GET or HEAD that
// does not forbid shared caching and is not personal.
func (c *Cache) cacheable(resp *http.Response) bool {
	if resp.Request == nil || (resp.Request.Method != http.MethodGet && resp.Request.Method != http.MethodHead) {
		return false
	}
	if resp.StatusCode != http.StatusOK || resp.ContentLength > c.cfg.MaxEntrySize.Bytes() {
		return false
	}
	for _, cc := range resp.Header.Values("Cache-Control") {
		for d := range strings.SplitSeq(strings.ToLower(cc), ",") {
			if d = strings.TrimSpace(d); d == "no-store" || d == "private" {
				return false
			}
		}
	}
	return resp.Header.Get("Set-Cookie") == "" && resp.Header.Get("Vary") != "*"
}

// Capture arranges for resp to be stored under key once its body has been
// read to the end, if it is cacheable and not larger than max_entry_size.
// Call it from ReverseProxy.ModifyResponse. It reports whether it did.
func (c *Cache) Capture(key string, resp *http.Response) bool {
	if !c.cacheable(resp) {
		c.uncacheable.Add(1)
		return false
	}
	e := &entry{key: key, method: resp.Request.Method, status: resp.StatusCode, header: resp.Header.Clone()}
	for _, h := range dropped {
		e.header.Del(h)
	}
	if e.method == http.MethodHead || resp.Body == nil || resp.Body == http.NoBody {
		c.store(e)
		return true
	}
	cb := &captureBody{rc: resp.Body, c: c, e: e, max: c.cfg.MaxEntrySize.Bytes()}
	if resp.ContentLength > 0 {
		cb.buf.Grow(int(resp.ContentLength))
	}
	resp.Body = cb
	return true
}

// captureBody copies what the proxy reads, and stores it at EOF. A body cut
// short (the client went away, the upstream reset) is never stored.
type captureBody struct {
	rc   io.ReadCloser
	c    *Cache
	e    *entry
	buf  bytes.Buffer
	max  int64
	over bool
	done bool
}

func (b *captureBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if !b.over && !b.done {
		if int64(b.buf.Len()+n) > b.max {
			b.over, b.buf = true, bytes.Buffer{}
			b.c.uncacheable.Add(1)
		} else {
			b.buf.Write(p[:n])
		}
	}
	if err == io.EOF && !b.over && !b.done {
		b.done = true
		b.e.body = b.buf.Bytes()
		b.c.store(b.e)
	}
	return n, err
}

func (b *captureBody) Close() error { return b.rc.Close() }

func (c *Cache) store(e *entry) {
	e.stored = time.Now()
	e.size = int64(len(e.key) + len(e.body))
	for k, vs := range e.header {
		for _, v := range vs {
			e.size += int64(len(k) + len(v))
		}
	}
	if e.size > c.cfg.MaxBytes.Bytes() {
		c.uncacheable.Add(1)
		return
	}
	c.mu.Lock()
	if old, ok := c.index[e.key]; ok {
		c.removeLocked(old)
	}
	c.index[e.key] = c.lru.PushFront(e)
	c.bytes += e.size
	var evicted uint64
	for c.lru.Len() > c.cfg.MaxEntries || c.bytes > c.cfg.MaxBytes.Bytes() {
		c.removeLocked(c.lru.Back())
		evicted++
	}
	c.mu.Unlock()
	c.stored.Add(1)
	c.evicted.Add(evicted)
}

func (c *Cache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*entry)
	delete(c.index, e.key)
	c.bytes -= e.size
}

// lookup returns the entry under key if it is younger than maxAge, and its
// age. An entry past every use is dropped.
func (c *Cache) lookup(key string, maxAge time.Duration) (*entry, time.Duration) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.index[key]
	if !ok {
		return nil, 0
	}
	e := el.Value.(*entry)
	age := now.Sub(e.stored)
	if age >= c.ttl+c.stale {
		c.removeLocked(el)
		c.expired.Add(1)
		return nil, 0
	}
	if age >= maxAge {
		return nil, 0
	}
	c.lru.MoveToFront(el)
	return e, age
}

// ServeFresh answers from a fresh entry when serve_fresh is on, and reports
// whether it did. The answer is marked X-Cascade-Cache: hit, and is not a
// fallback (nothing failed).
func (c *Cache) ServeFresh(w http.ResponseWriter, key string) bool {
	if !c.cfg.ServeFresh {
		return false
	}
	e, age := c.lookup(key, c.ttl)
	if e == nil {
		return false
	}
	c.hitsFresh.Add(1)
	write(w, e.method, e.status, e.header, e.body, age, "", "")
	return true
}

// ServeStale answers for a failed upstream with an entry that is fresh or
// within stale_if_error of going stale, and reports whether it did.
func (c *Cache) ServeStale(w http.ResponseWriter, key string) bool {
	e, age := c.lookup(key, c.ttl+c.stale)
	if e == nil {
		c.misses.Add(1)
		return false
	}
	c.fallbacks.Add(1)
	if due, n := c.throttle.Hit(time.Now()); due {
		c.em.Emit("fallback.serve", map[string]any{"kind": KindCache, "count": n, "age_ms": age.Milliseconds(),
			"stale": age >= c.ttl})
	}
	write(w, e.method, e.status, e.header, e.body, age, KindCache, cause.Fallback.String())
	return true
}

// write sends a stored or static answer, marked when it is a fallback.
func write(w http.ResponseWriter, method string, status int, header http.Header, body []byte, age time.Duration, kind, causeName string) {
	h := w.Header()
	for k, vs := range header {
		h[k] = append([]string(nil), vs...)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if age >= 0 {
		h.Set("Age", strconv.FormatInt(int64(age/time.Second), 10))
	}
	if kind != "" {
		h.Set(Header, kind)
		h.Set(cause.Header, causeName)
	} else {
		h.Set("X-Cascade-Cache", "hit")
	}
	w.WriteHeader(status)
	if method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// Len is the number of entries and their total size in bytes.
func (c *Cache) Len() (entries int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.bytes
}

// CacheCounters are cumulative counts.
type CacheCounters struct {
	Stored      uint64 // answers kept
	Fresh       uint64 // requests answered by ServeFresh
	Fallbacks   uint64 // failures answered by ServeStale (fresh or stale entries)
	Misses      uint64 // failures ServeStale could not answer
	Expired     uint64 // entries dropped past ttl + stale_if_error
	Evicted     uint64 // entries dropped for max_entries or max_bytes
	Uncacheable uint64 // answers not kept (method, status, headers, size)
}

// Counters returns a snapshot.
func (c *Cache) Counters() CacheCounters {
	return CacheCounters{Stored: c.stored.Load(), Fresh: c.hitsFresh.Load(), Fallbacks: c.fallbacks.Load(),
		Misses: c.misses.Load(), Expired: c.expired.Load(), Evicted: c.evicted.Load(), Uncacheable: c.uncacheable.Load()}
}

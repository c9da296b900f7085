// Package toxiapi serves Toxiproxy's HTTP API over tcpfault proxies, so
// existing Toxiproxy clients (toxiproxy-cli, the Go client, the language
// clients and testcontainers modules built on them) can drive cascade's
// connection faults unchanged: the same paths, JSON field names and status
// codes as toxiproxy-server v2.5.
//
// It is the control plane only. Proxies do not know the server: it keeps a
// name → *tcpfault.Proxy map and calls their methods, so a proxy made by a
// scenario can be handed to it (AddProxy) and one made through the API can
// be read by the run (Proxy).
//
// Differences from toxiproxy-server: it listens on loopback only, and so do
// the proxies it creates (an empty listen address means 127.0.0.1:0, not
// every interface); attributes are decoded strictly (an unknown attribute is
// a 400 that lists the valid ones); toxics carry two extra fields,
// request_toxicity and stats; GET /proxies/{proxy}/stats returns the proxy's
// counters. Like toxiproxy-server it refuses requests from browsers, and it
// also refuses a Host header that is not loopback (DNS rebinding), since
// the API has no authentication.
package toxiapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cascadehq/cascade/faults/tcpfault"
	"github.com/cascadehq/cascade/internal/event"
)

// Config describes a server.
type Config struct {
	// Rand seeds every proxy the API creates (each gets its own source,
	// drawn from Rand in creation order). Required.
	Rand *rand.Rand
	// Events and Clock are handed to the proxies the API creates.
	Events event.Sink
	Clock  *event.Clock
	// Version is what GET /version reports. Default: "cascade".
	Version string
	// AllowRemote permits proxies to upstreams off loopback; without it
	// POST /proxies refuses them (400), as cascade sends traffic to
	// loopback only unless its user says otherwise.
	AllowRemote bool
	// OnDelete, if set, is called with each proxy a DELETE removed, after
	// it closed: an owner that handed one over with AddProxy learns that
	// it no longer listens (cascade faultproxy says so on its terminal).
	OnDelete func(p *tcpfault.Proxy)
}

// Server is the API and the collection of proxies it manages.
type Server struct {
	ctx     context.Context
	events  event.Sink
	clock   *event.Clock
	version string
	// allowRemote lets proxies created through the API dial upstreams off
	// loopback (cascade toxiproxy --allow-remote).
	allowRemote bool
	onDelete    func(p *tcpfault.Proxy)

	mu      sync.Mutex
	rng     *rand.Rand
	proxies map[string]*tcpfault.Proxy
	owned   map[*tcpfault.Proxy]bool // created through the API (not AddProxy)
	http    *http.Server
}

// New returns a server. Proxies created through it run until ctx is done or
// Close is called.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Rand == nil {
		return nil, errors.New("toxiapi.Config.Rand is required")
	}
	s := &Server{ctx: ctx, events: cfg.Events, clock: cfg.Clock, version: cfg.Version, rng: cfg.Rand, allowRemote: cfg.AllowRemote,
		onDelete: cfg.OnDelete, proxies: map[string]*tcpfault.Proxy{}, owned: map[*tcpfault.Proxy]bool{}}
	if s.version == "" {
		s.version = "cascade"
	}
	return s, nil
}

// Start serves the API on addr (a loopback host:port; port 0 lets the
// kernel choose) in the background and returns the bound address.
func (s *Server) Start(addr string) (net.Addr, error) {
	a, err := tcpfault.LoopbackAddr(addr)
	if err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(s.ctx, "tcp", a)
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	s.mu.Lock()
	s.http = hs
	s.mu.Unlock()
	go hs.Serve(ln)
	return ln.Addr(), nil
}

// Close stops serving and closes the proxies created through the API;
// those handed over with AddProxy are left to their owner.
func (s *Server) Close() error {
	s.mu.Lock()
	hs := s.http
	var ps []*tcpfault.Proxy
	for p := range s.owned {
		ps = append(ps, p)
	}
	s.proxies, s.owned = map[string]*tcpfault.Proxy{}, map[*tcpfault.Proxy]bool{}
	s.mu.Unlock()
	var err error
	if hs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = hs.Shutdown(ctx)
		cancel()
	}
	for _, p := range ps {
		p.Close()
	}
	return err
}

// AddProxy puts a proxy made elsewhere under the API's control. The caller
// keeps running it (Start/Close, and Server.Close leaves it alone); a
// DELETE through the API closes it, as Toxiproxy's does.
func (s *Server) AddProxy(p *tcpfault.Proxy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.proxies[p.Name()]; dup {
		return fmt.Errorf("proxy %q already exists", p.Name())
	}
	s.proxies[p.Name()] = p
	return nil
}

// Proxy returns the proxy with this name.
func (s *Server) Proxy(name string) (*tcpfault.Proxy, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.proxies[name]
	return p, ok
}

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /version", s.versionH)
	m.HandleFunc("POST /reset", s.reset)
	m.HandleFunc("GET /proxies", s.proxyIndex)
	m.HandleFunc("POST /proxies", s.proxyCreate)
	m.HandleFunc("POST /populate", s.populate)
	m.HandleFunc("GET /proxies/{proxy}", s.proxyShow)
	m.HandleFunc("POST /proxies/{proxy}", s.proxyUpdate)
	m.HandleFunc("PATCH /proxies/{proxy}", s.proxyUpdate)
	m.HandleFunc("DELETE /proxies/{proxy}", s.proxyDelete)
	m.HandleFunc("GET /proxies/{proxy}/stats", s.proxyStats)
	m.HandleFunc("GET /proxies/{proxy}/toxics", s.toxicIndex)
	m.HandleFunc("POST /proxies/{proxy}/toxics", s.toxicCreate)
	m.HandleFunc("GET /proxies/{proxy}/toxics/{toxic}", s.toxicShow)
	m.HandleFunc("POST /proxies/{proxy}/toxics/{toxic}", s.toxicUpdate)
	m.HandleFunc("PATCH /proxies/{proxy}/toxics/{toxic}", s.toxicUpdate)
	m.HandleFunc("DELETE /proxies/{proxy}/toxics/{toxic}", s.toxicDelete)
	return guard(m)
}

// guard refuses browsers (a web page could otherwise POST to an
// unauthenticated API on loopback) and Host headers that are not loopback
// (DNS rebinding), and bounds request bodies.
func guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.UserAgent(), "Mozilla/") {
			writeError(w, &apiError{"User agent not allowed", http.StatusForbidden})
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.Trim(host, "[]")
		if ip := net.ParseIP(host); host != "" && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			writeError(w, &apiError{"Host " + r.Host + " not allowed: the API answers on loopback only", http.StatusForbidden})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		next.ServeHTTP(w, r)
	})
}

// apiError is Toxiproxy's error body: {"error": "...", "status": 404}.
type apiError struct {
	Message string `json:"error"`
	Status  int    `json:"status"`
}

func (e *apiError) Error() string { return e.Message }

var (
	errBadBody       = &apiError{"bad request body", http.StatusBadRequest}
	errMissingField  = &apiError{"missing required field", http.StatusBadRequest}
	errProxyNotFound = &apiError{"proxy not found", http.StatusNotFound}
	errProxyExists   = &apiError{"proxy already exists", http.StatusConflict}
	errInvalidStream = &apiError{"stream was invalid, can be either upstream or downstream", http.StatusBadRequest}
	errInvalidType   = &apiError{"invalid toxic type", http.StatusBadRequest}
	errToxicExists   = &apiError{"toxic already exists", http.StatusConflict}
	errToxicNotFound = &apiError{"toxic not found", http.StatusNotFound}
)

func join(base *apiError, detail string) *apiError {
	return &apiError{base.Message + ": " + detail, base.Status}
}

// asAPIError maps tcpfault's errors to Toxiproxy's messages and statuses.
func asAPIError(err error) *apiError {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, tcpfault.ErrToxicExists):
		return errToxicExists
	case errors.Is(err, tcpfault.ErrToxicNotFound):
		return errToxicNotFound
	case errors.Is(err, tcpfault.ErrInvalidStream):
		return join(errInvalidStream, err.Error())
	case errors.Is(err, tcpfault.ErrUnknownToxic):
		return join(errInvalidType, err.Error())
	case errors.Is(err, tcpfault.ErrUnknownAttribute), errors.Is(err, tcpfault.ErrInvalidAttribute),
		errors.Is(err, tcpfault.ErrInvalidToxic), errors.Is(err, tcpfault.ErrNotLoopback), errors.Is(err, tcpfault.ErrRemoteUpstream):
		return join(errBadBody, err.Error())
	}
	return &apiError{err.Error(), http.StatusInternalServerError}
}

func writeError(w http.ResponseWriter, err error) {
	ae := asAPIError(err)
	b, _ := json.Marshal(ae)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(ae.Status)
	w.Write(append(b, '\n'))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func decode(r *http.Request, v any) error {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		return join(errBadBody, err.Error())
	}
	return nil
}

// Wire forms.

type proxyJSON struct {
	Name     string      `json:"name"`
	Listen   string      `json:"listen"`
	Upstream string      `json:"upstream"`
	Enabled  bool        `json:"enabled"`
	Toxics   []toxicJSON `json:"toxics"`
}

type proxyInput struct {
	Name     string `json:"name"`
	Listen   string `json:"listen"`
	Upstream string `json:"upstream"`
	Enabled  *bool  `json:"enabled"`
}

type toxicJSON struct {
	Attributes      map[string]any `json:"attributes"`
	Name            string         `json:"name"`
	Type            string         `json:"type"`
	Stream          string         `json:"stream"`
	Toxicity        float64        `json:"toxicity"`
	RequestToxicity float64        `json:"request_toxicity"`
	Stats           statsJSON      `json:"stats"`
}

type toxicInput struct {
	Name            string          `json:"name"`
	Type            string          `json:"type"`
	Stream          string          `json:"stream"`
	Toxicity        *float64        `json:"toxicity"`
	RequestToxicity *float64        `json:"request_toxicity"`
	Attributes      json.RawMessage `json:"attributes"`
}

type statsJSON struct {
	Updates      uint64  `json:"updates"`
	ConnsSeen    uint64  `json:"conns_seen"`
	ConnsDrawn   uint64  `json:"conns_drawn"`
	Conns        uint64  `json:"conns"`
	Requests     uint64  `json:"requests"`
	BytesDelayed uint64  `json:"bytes_delayed"`
	BytesDropped uint64  `json:"bytes_dropped"`
	Closes       uint64  `json:"closes"`
	MaxLagMS     float64 `json:"max_lag_ms"`
	// LagWithin500us is the fraction of precise releases at most 0.5 ms
	// late (1 when there were none).
	LagWithin500us float64 `json:"lag_within_500us"`
}

func statsOf(s tcpfault.ToxicStats) statsJSON {
	return statsJSON{s.Updates, s.ConnsSeen, s.ConnsDrawn, s.Conns, s.Requests, s.BytesDelayed, s.BytesDropped, s.Closes,
		float64(s.Lag.Max) / 1e6, s.Lag.Within(500 * time.Microsecond)}
}

func toxicOf(t tcpfault.ToxicInfo) toxicJSON {
	return toxicJSON{Attributes: t.Attributes, Name: t.Name, Type: t.Type, Stream: t.Stream.String(),
		Toxicity: t.Toxicity, RequestToxicity: t.RequestToxicity, Stats: statsOf(t.Stats)}
}

func proxyOf(p *tcpfault.Proxy) proxyJSON {
	out := proxyJSON{Name: p.Name(), Listen: p.Addr(), Upstream: p.Upstream(), Enabled: p.Enabled(), Toxics: []toxicJSON{}}
	for _, t := range p.Toxics() {
		out.Toxics = append(out.Toxics, toxicOf(t))
	}
	return out
}

// Handlers.

func (s *Server) versionH(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": s.version})
}

func (s *Server) snapshot() []*tcpfault.Proxy {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*tcpfault.Proxy, 0, len(s.proxies))
	for _, p := range s.proxies {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

func (s *Server) reset(w http.ResponseWriter, r *http.Request) {
	for _, p := range s.snapshot() {
		if err := p.SetEnabled(true); err != nil {
			writeError(w, err)
			return
		}
		p.ResetToxics()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) proxyIndex(w http.ResponseWriter, r *http.Request) {
	out := map[string]proxyJSON{}
	for _, p := range s.snapshot() {
		out[p.Name()] = proxyOf(p)
	}
	writeJSON(w, http.StatusOK, out)
}

func (in *proxyInput) check(i int) error {
	at := ""
	if i > 0 {
		at = fmt.Sprintf(" at proxy %d", i)
	}
	if in.Name == "" {
		return join(errMissingField, "name"+at)
	}
	if in.Upstream == "" {
		return join(errMissingField, "upstream"+at)
	}
	if in.Listen == "" {
		in.Listen = "127.0.0.1:0"
	}
	if in.Enabled == nil {
		t := true
		in.Enabled = &t
	}
	if _, err := tcpfault.LoopbackAddr(in.Listen); err != nil {
		return join(errBadBody, err.Error())
	}
	return nil
}

// newProxy creates and starts a proxy; s.mu must be held.
func (s *Server) newProxy(in proxyInput) (*tcpfault.Proxy, error) {
	p, err := tcpfault.New(tcpfault.Config{
		Name: in.Name, Listen: in.Listen, Upstream: in.Upstream, Disabled: !*in.Enabled,
		Rand: rand.New(rand.NewPCG(s.rng.Uint64(), s.rng.Uint64())), Events: s.events, Clock: s.clock,
		AllowRemote: s.allowRemote,
	})
	if err != nil {
		return nil, join(errBadBody, err.Error())
	}
	if err := p.Start(s.ctx); err != nil {
		return nil, err
	}
	s.owned[p] = true
	return p, nil
}

func (s *Server) proxyCreate(w http.ResponseWriter, r *http.Request) {
	var in proxyInput
	if err := decode(r, &in); err != nil {
		writeError(w, err)
		return
	}
	if err := in.check(0); err != nil {
		writeError(w, err)
		return
	}
	s.mu.Lock()
	if _, dup := s.proxies[in.Name]; dup {
		s.mu.Unlock()
		writeError(w, errProxyExists)
		return
	}
	p, err := s.newProxy(in)
	if err == nil {
		s.proxies[in.Name] = p
	}
	s.mu.Unlock()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, proxyOf(p))
}

// populate creates or replaces proxies from a list, as toxiproxy-server
// does: all entries are checked first; an existing proxy with the same
// listen and upstream is kept as it is (toxics included), others are
// replaced. On an error the answer carries the proxies made so far.
func (s *Server) populate(w http.ResponseWriter, r *http.Request) {
	var in []proxyInput
	if err := decode(r, &in); err != nil {
		writeError(w, err)
		return
	}
	for i := range in {
		if err := in[i].check(i + 1); err != nil {
			writeError(w, err)
			return
		}
	}
	done := []proxyJSON{}
	var failure *apiError
	s.mu.Lock()
	for _, pi := range in {
		if old, ok := s.proxies[pi.Name]; ok {
			// Compared as the proxy stores them: a URL upstream is kept
			// as host:port, and "localhost" listens on 127.0.0.1.
			l, _ := tcpfault.LoopbackAddr(pi.Listen)
			u, err := tcpfault.HostPort(pi.Upstream)
			if old.Addr() == l && err == nil && old.Upstream() == u {
				done = append(done, proxyOf(old))
				continue
			}
			old.Close()
			delete(s.proxies, pi.Name)
			delete(s.owned, old)
		}
		p, err := s.newProxy(pi)
		if err != nil {
			failure = asAPIError(err)
			break
		}
		s.proxies[pi.Name] = p
		done = append(done, proxyOf(p))
	}
	s.mu.Unlock()
	if failure != nil {
		writeJSON(w, failure.Status, struct {
			*apiError
			Proxies []proxyJSON `json:"proxies"`
		}{failure, done})
		return
	}
	writeJSON(w, http.StatusCreated, map[string][]proxyJSON{"proxies": done})
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (*tcpfault.Proxy, bool) {
	p, ok := s.Proxy(r.PathValue("proxy"))
	if !ok {
		writeError(w, errProxyNotFound)
	}
	return p, ok
}

func (s *Server) proxyShow(w http.ResponseWriter, r *http.Request) {
	if p, ok := s.lookup(w, r); ok {
		writeJSON(w, http.StatusOK, proxyOf(p))
	}
}

func (s *Server) proxyStats(w http.ResponseWriter, r *http.Request) {
	p, ok := s.lookup(w, r)
	if !ok {
		return
	}
	st := p.Stats()
	toxics := map[string]statsJSON{}
	for n, t := range st.Toxics {
		toxics[n] = statsOf(t)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"toxics_added": st.ToxicsAdded, "toxics_updated": st.ToxicsUpdated, "toxics_removed": st.ToxicsRemoved,
		"accepted": st.Accepted, "dial_failures": st.DialFailures, "open": st.Open,
		"bytes_up": st.BytesUp, "bytes_down": st.BytesDown, "toxics": toxics,
	})
}

func (s *Server) proxyUpdate(w http.ResponseWriter, r *http.Request) {
	p, ok := s.lookup(w, r)
	if !ok {
		return
	}
	on := p.Enabled()
	in := proxyInput{Listen: p.Addr(), Upstream: p.Upstream(), Enabled: &on}
	if err := decode(r, &in); err != nil {
		writeError(w, err)
		return
	}
	if in.Listen != p.Addr() || in.Upstream != p.Upstream() {
		// A malformed address is the client's error (400), as on create;
		// only a failure to bind a well-formed one is the server's (500).
		if _, err := tcpfault.LoopbackAddr(in.Listen); err != nil {
			writeError(w, join(errBadBody, err.Error()))
			return
		}
		if _, err := tcpfault.HostPort(in.Upstream); err != nil {
			writeError(w, join(errBadBody, err.Error()))
			return
		}
		if err := p.SetAddrs(in.Listen, in.Upstream); err != nil {
			writeError(w, err)
			return
		}
	}
	if in.Enabled != nil {
		if err := p.SetEnabled(*in.Enabled); err != nil {
			writeError(w, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, proxyOf(p))
}

func (s *Server) proxyDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("proxy")
	s.mu.Lock()
	p, ok := s.proxies[name]
	delete(s.proxies, name)
	delete(s.owned, p)
	s.mu.Unlock()
	if !ok {
		writeError(w, errProxyNotFound)
		return
	}
	p.Close()
	if s.onDelete != nil {
		s.onDelete(p)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) toxicIndex(w http.ResponseWriter, r *http.Request) {
	p, ok := s.lookup(w, r)
	if !ok {
		return
	}
	out := []toxicJSON{}
	for _, t := range p.Toxics() {
		out = append(out, toxicOf(t))
	}
	writeJSON(w, http.StatusOK, out)
}

func checkProb(name string, v *float64) error {
	if v != nil && !(*v >= 0 && *v <= 1) {
		return join(errBadBody, fmt.Sprintf("%s %v is outside [0, 1]", name, *v))
	}
	return nil
}

func (s *Server) toxicCreate(w http.ResponseWriter, r *http.Request) {
	p, ok := s.lookup(w, r)
	if !ok {
		return
	}
	var in toxicInput
	if err := decode(r, &in); err != nil {
		writeError(w, err)
		return
	}
	if in.Stream == "" {
		in.Stream = "downstream"
	}
	dir, err := tcpfault.ParseDirection(in.Stream)
	if err != nil {
		writeError(w, errInvalidStream)
		return
	}
	spec := tcpfault.ToxicSpec{Name: in.Name, Stream: dir, Toxicity: 1, RequestToxicity: 1}
	if err := errors.Join(checkProb("toxicity", in.Toxicity), checkProb("request_toxicity", in.RequestToxicity)); err != nil {
		writeError(w, err)
		return
	}
	if in.Toxicity != nil {
		spec.Toxicity = *in.Toxicity
	}
	if in.RequestToxicity != nil {
		spec.RequestToxicity = *in.RequestToxicity
	}
	if spec.Name == "" {
		spec.Name = in.Type + "_" + dir.String()
	}
	if _, dup := p.Toxic(spec.Name); dup {
		writeError(w, errToxicExists)
		return
	}
	spec.Toxic, err = tcpfault.NewToxic(in.Type, in.Attributes)
	if err != nil {
		writeError(w, err)
		return
	}
	info, err := p.AddToxic(spec)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, toxicOf(info))
}

func (s *Server) toxicShow(w http.ResponseWriter, r *http.Request) {
	p, ok := s.lookup(w, r)
	if !ok {
		return
	}
	t, ok := p.Toxic(r.PathValue("toxic"))
	if !ok {
		writeError(w, errToxicNotFound)
		return
	}
	writeJSON(w, http.StatusOK, toxicOf(t))
}

func (s *Server) toxicUpdate(w http.ResponseWriter, r *http.Request) {
	p, ok := s.lookup(w, r)
	if !ok {
		return
	}
	cur, ok := p.Toxic(r.PathValue("toxic"))
	if !ok {
		writeError(w, errToxicNotFound)
		return
	}
	var in toxicInput
	if err := decode(r, &in); err != nil {
		writeError(w, err)
		return
	}
	if err := errors.Join(checkProb("toxicity", in.Toxicity), checkProb("request_toxicity", in.RequestToxicity)); err != nil {
		writeError(w, err)
		return
	}
	spec := tcpfault.ToxicSpec{Name: cur.Name, Stream: cur.Stream, Toxicity: cur.Toxicity, RequestToxicity: cur.RequestToxicity}
	if in.Toxicity != nil {
		spec.Toxicity = *in.Toxicity
	}
	if in.RequestToxicity != nil {
		spec.RequestToxicity = *in.RequestToxicity
	}
	var err error
	if spec.Toxic, err = tcpfault.WithAttributes(cur.Toxic, in.Attributes); err != nil {
		writeError(w, err)
		return
	}
	info, err := p.UpdateToxic(spec)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, toxicOf(info))
}

func (s *Server) toxicDelete(w http.ResponseWriter, r *http.Request) {
	p, ok := s.lookup(w, r)
	if !ok {
		return
	}
	if err := p.RemoveToxic(r.PathValue("toxic")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

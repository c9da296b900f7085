// Package plan compiles a decoded scenario file into an immutable Plan: every
// reference resolved, every default filled, every fault's parameters decoded
// by its kind, phases derived from the fault timeline, objectives parsed, and
// the static timeout-cascade lint run. Every problem is reported at its
// file:line:column, all at once.
package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cascadehq/cascade/autoscale"
	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/faults/slowdb"
	"github.com/cascadehq/cascade/gateway"
	"github.com/cascadehq/cascade/internal/yamlfile"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/verdict"
	"github.com/cascadehq/cascade/scenarios"
)

// Limits that keep every run bounded, whatever a file says.
const (
	MaxLoadDuration = 24 * time.Hour
	MaxRequests     = 100_000_000
	DefaultSeed     = 1
	DefaultTimeout  = 30 * time.Second
	RunPhase        = "run"
	// MaxClientTimeout bounds the wait for the last requests after the
	// load ends: a run lasts its stages plus at most this, whatever hangs.
	MaxClientTimeout = time.Hour
)

// Plan is a scenario ready to run. Nothing in it changes during a run.
type Plan struct {
	Name        string
	Description string
	File        string
	Source      []byte
	Hash        string
	Seed        uint64
	// Ladder is set on a rung of the latency ladder, built from this
	// plan's scenario (internal/run.Ladder); the run records it.
	Ladder *results.LadderRung

	Upstreams []faults.UpstreamConfig
	// Gateway is the built-in gateway's config (upstream targets are filled
	// in by the run once replicas listen); nil when External is set.
	Gateway  *gateway.Config
	External string
	// GatewayContainer is nginx or HAProxy in a container in front of one
	// upstream (gateway.container); nil otherwise. Gateway is nil then too.
	GatewayContainer *GatewayContainer

	Load loadgen.Config // Target is filled in by the run
	// LoadAt is where the load is written (file:line:column), for what is
	// refused about it after compiling: a game day of several executors.
	LoadAt   string
	Duration time.Duration // of the load profile
	Timeline []faults.Entry
	// Phases always starts with the whole run.
	Phases     []results.Phase
	Objectives []verdict.Objective
	Warnings   []Warning

	// Aborts are the objectives marked abort: the run stops as soon as one
	// can no longer pass.
	Aborts []verdict.Abortable
	// Layers is the declared timeout cascade, outermost first (client,
	// gateway, per_try, upstream, db): what the dynamic cascade check and
	// the latency ladder test.
	Layers []verdict.Layer
	// Autoscale are the autoscalers, defaults filled in.
	Autoscale []autoscale.Settings
	// Direct is the share of requests sent straight to the upstreams,
	// bypassing the gateway (layer attribution); DirectUpstreams names the
	// upstream each request template goes to when sent directly.
	Direct          float64
	DirectUpstreams []string
	// Gates are the manual phase gates, in order; Safety the live health
	// checks (see gameday.go).
	Gates  []Gate
	Safety []Safety
}

// Warning is a lint finding: the scenario runs, but probably not as meant.
type Warning struct {
	Pos string // file:line:column
	Msg string

	line, col int // to list the warnings in the file's order
}

func (w Warning) String() string { return w.Pos + ": " + w.Msg }

// Options change how a scenario compiles.
type Options struct {
	Seed        *uint64 // overrides the file's seed
	AllowRemote bool    // permit non-loopback targets
	Strict      bool    // lint warnings become errors
	// Offline compiles without reading data and body files, to re-judge a
	// recorded run; such a plan must not be run.
	Offline bool
}

// CompileFile reads, decodes and compiles a scenario file.
func CompileFile(path string, opts Options) (*Plan, error) {
	f, doc, data, err := scenarios.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Compile(f, doc, data, opts)
}

// CompileBytes decodes and compiles scenario source.
func CompileBytes(name string, data []byte, opts Options) (*Plan, error) {
	f, doc, err := scenarios.Parse(name, data)
	if err != nil {
		return nil, err
	}
	return Compile(f, doc, data, opts)
}

type compiler struct {
	// badFaults names faults that failed to compile; objectives on their
	// phases are not reported again as unknown phases.
	badFaults map[string]bool
	f         *scenarios.File
	doc       *yamlfile.Doc
	opts      Options
	errs      yamlfile.Errors
	p         *Plan
	ups       map[string]*faults.UpstreamConfig
	// listens maps each fixed listen address to where it was declared:
	// two sockets on one address would pass validation and fail the run.
	listens map[netip.AddrPort]string
}

// listen registers a fixed listen address declared at path; a second use
// is an error at its path.
func (c *compiler) listen(path, addr string) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return // checkListen reports it
	}
	if c.listens == nil {
		c.listens = map[netip.AddrPort]string{}
	}
	if first, ok := c.listens[ap]; ok {
		c.errorf(path, "listen address %s is already used by %s", addr, displayPath(first))
		return
	}
	c.listens[ap] = path
}

// displayPath turns "$.a.b[0]" into "a.b[0]" for a message.
func displayPath(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, "$"), ".") }

func (c *compiler) errorf(path, format string, args ...any) {
	c.errs = append(c.errs, c.doc.Errorf(path, format, args...))
}

func (c *compiler) warnf(path, format string, args ...any) {
	e := c.doc.Errorf(path, format, args...)
	pos := fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Column)
	if e.Path != "" {
		pos += ": " + e.Path
	}
	c.p.Warnings = append(c.p.Warnings, Warning{Pos: pos, Msg: e.Msg, line: e.Line, col: e.Column})
}

// Compile checks a decoded file and builds its plan.
func Compile(f *scenarios.File, doc *yamlfile.Doc, source []byte, opts Options) (*Plan, error) {
	sum := sha256.Sum256(source)
	c := &compiler{f: f, doc: doc, opts: opts, ups: map[string]*faults.UpstreamConfig{}, badFaults: map[string]bool{}, p: &Plan{
		Name: f.Name, Description: f.Description, File: doc.Name, Source: source,
		Hash: "sha256:" + hex.EncodeToString(sum[:8]), Seed: f.Seed,
	}}
	if c.p.Seed == 0 {
		c.p.Seed = DefaultSeed
	}
	if opts.Seed != nil {
		c.p.Seed = *opts.Seed
	}
	if f.Name == "" {
		c.errorf("$.name", "a scenario needs a name")
	} else if !nameRE.MatchString(f.Name) {
		c.errorf("$.name", "name %q must start with a letter or digit and use only letters, digits, '-', '_' and '.' (it names the run directory)", f.Name)
	}
	c.upstreams()
	c.upstreamKinds()
	c.gateway()
	c.load()
	c.faults()
	c.netFaults()
	c.phases()
	c.direct()
	c.autoscalers()
	c.layers()
	c.gates()
	c.objectives()
	c.safety()
	c.liveLoad()
	c.lint()
	c.cascadeLint()
	c.containerLint()
	c.databaseLint()
	// The checks run by topic, not by line: put the warnings in the
	// file's order, as a reader goes through them.
	sort.SliceStable(c.p.Warnings, func(i, j int) bool {
		a, b := c.p.Warnings[i], c.p.Warnings[j]
		return a.line < b.line || a.line == b.line && a.col < b.col
	})
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	if opts.Strict && len(c.p.Warnings) > 0 {
		for _, w := range c.p.Warnings {
			c.errs = append(c.errs, &yamlfile.Error{Msg: w.String() + " (an error with --strict)"})
		}
		return nil, c.errs
	}
	return c.p, nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func (c *compiler) upstreams() {
	if len(c.f.Upstreams) == 0 && c.f.Gateway.External == "" {
		// With your own gateway (or any target: cascade load), fake
		// upstreams are optional.
		c.errorf("$.upstreams", "at least one upstream is needed (or an external gateway)")
	}
	for i, u := range c.f.Upstreams {
		p := fmt.Sprintf("$.upstreams[%d]", i)
		switch {
		case u.Name == "":
			c.errorf(p, "an upstream needs a name")
			continue
		case !nameRE.MatchString(u.Name):
			c.errorf(p+".name", "name %q must start with a letter or digit and use only letters, digits, '-', '_' and '.'", u.Name)
		case c.ups[u.Name] != nil:
			c.errorf(p+".name", "upstream %q is declared twice", u.Name)
			continue
		}
		if u.Replicas < 0 {
			c.errorf(p+".replicas", "replicas must be at least 1")
		}
		replicas := max(u.Replicas, 1)
		if len(u.Listen) > 0 {
			if u.Replicas != 0 && len(u.Listen) != u.Replicas {
				c.errorf(p+".listen", "%d listen addresses for %d replicas: give one per replica", len(u.Listen), u.Replicas)
			}
			replicas = len(u.Listen)
			for j, a := range u.Listen {
				lp := fmt.Sprintf("%s.listen[%d]", p, j)
				if err := checkListen(a); err != nil {
					c.errorf(lp, "%v", err)
				} else {
					c.listen(lp, a)
				}
			}
		}
		if u.BodySize > faults.MaxBodySize {
			c.errorf(p+".body_size", "%s is too large: at most %s", u.BodySize, faults.MaxBodySize)
		} else if err := u.Behaviour.Validate(); err != nil {
			c.errorf(p, "%v", err)
		}
		if u.Concurrency < 0 {
			c.errorf(p+".concurrency", "concurrency must not be negative (0 is unlimited)")
		}
		cfg := faults.UpstreamConfig{Name: u.Name, Replicas: replicas, Listen: u.Listen, Behaviour: u.Behaviour,
			Concurrency: u.Concurrency, IgnoreCancel: u.IgnoreCancel}
		c.p.Upstreams = append(c.p.Upstreams, cfg)
		c.ups[u.Name] = &c.p.Upstreams[len(c.p.Upstreams)-1]
	}
}

// checkListen allows only loopback listen addresses: fake upstreams never
// face a network.
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: expected host:port such as 127.0.0.1:19001", addr)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q: upstreams listen on loopback only (127.0.0.0/8)", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 {
		return fmt.Errorf("listen address %q: port must be 1-65535", addr)
	}
	if n >= 32768 && n <= 60999 {
		return fmt.Errorf("listen address %q: port %d is in the ephemeral range (32768-60999) where the load generator's own sockets can collide with it; use a port below 32768", addr, n)
	}
	return nil
}

// CheckTarget refuses non-loopback targets unless allowed.
func CheckTarget(raw string, allowRemote bool) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL", raw)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%q has no host: expected e.g. http://127.0.0.1:8080", raw)
	}
	if u.User != nil {
		return fmt.Errorf("%q: credentials in the URL are not sent; give a header instead, e.g. -H 'Authorization: Basic ...'", raw)
	}
	// Every request's path is appended to the target: after a query it
	// became part of the query ("/api?k=1" + "/u" went out as
	// "/api?k=1/u"), and after a fragment it was cut off.
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(raw, "?#") {
		return fmt.Errorf("%q: a base URL takes no query or fragment (each request's path, with its query, is appended to it)", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port %s is not a TCP port (1-65535)", raw, p)
		}
	}
	if allowRemote {
		return nil
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%s is not a loopback address: cascade sends load only to 127.0.0.0/8 unless you pass --allow-remote", host)
}

func (c *compiler) gateway() {
	g := c.f.Gateway
	replicas := map[string]int{}
	for n, u := range c.ups {
		replicas[n] = u.Replicas
	}
	if g.Container != nil {
		c.gatewayContainer()
		return
	}
	if g.External != "" {
		if len(g.Routes) > 0 || g.Listen != "" || len(g.Upstreams) > 0 || g.AdminListen != "" {
			c.errorf("$.gateway.external", "external and routes/listen/upstreams/admin_listen exclude each other: either cascade runs its gateway or yours")
		}
		if err := CheckTarget(g.External, c.opts.AllowRemote); err != nil {
			c.errorf("$.gateway.external", "%v", err)
		}
		c.p.External = strings.TrimSuffix(g.External, "/")
		for i, u := range c.f.Upstreams {
			if len(u.Listen) == 0 && !fixedContainerPort(u) {
				c.errorf(fmt.Sprintf("$.upstreams[%d]", i),
					"upstream %q needs fixed listen addresses when the gateway is external, so your gateway's config can point at them "+
						"(listen: [...], or for a container, an image with a fixed port: container: {image: ..., port: 18080})", u.Name)
			}
		}
		return
	}
	cfg := &gateway.Config{Listen: g.Listen, AdminListen: g.AdminListen, Upstreams: g.Upstreams, Routes: g.Routes}
	if g.Listen != "" {
		if err := checkListen(g.Listen); err != nil {
			c.errorf("$.gateway.listen", "%v", err)
		} else {
			c.listen("$.gateway.listen", g.Listen)
		}
	}
	if g.AdminListen != "" {
		c.listen("$.gateway.admin_listen", g.AdminListen)
	}
	c.errs = append(c.errs, c.doc.Position("$.gateway", cfg.Validate(replicas))...)
	c.p.Gateway = cfg
}

func validMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodTrace, http.MethodConnect:
		return true
	}
	return false
}

var targetRE = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[(\d+|random)\])?$`)

func (c *compiler) faults() {
	seen := map[string]bool{}
	counts := map[string]int{}
	for i, f := range c.f.Faults {
		before := len(c.errs)
		c.fault(i, f, seen, counts)
		if len(c.errs) > before {
			c.badFaults[f.Name] = true
		}
	}
}

// lostPhase reports whether phase name is missing only because a fault
// failed to compile: the fault's own phase, and, once any fault failed,
// the derived before, after and after-<fault>, which exist only around
// faults that compiled. The fault's error is the one to report; an
// "unknown phase" beside it would send the reader after a second mistake
// that is not there.
func (c *compiler) lostPhase(name string) bool {
	if c.badFaults[name] {
		return true
	}
	return len(c.badFaults) > 0 && (name == "before" || name == "after" || strings.HasPrefix(name, "after-"))
}

func (c *compiler) fault(i int, f scenarios.Fault, seen map[string]bool, counts map[string]int) {
	c.faultAt(fmt.Sprintf("$.faults[%d]", i), f, seen, counts)
}

// faultAt compiles one fault found at YAML path p (a live fault document is
// its own root, "$").
func (c *compiler) faultAt(p string, f scenarios.Fault, seen map[string]bool, counts map[string]int) {
	name := f.Name
	counts[f.Kind]++
	if name == "" {
		name = fmt.Sprintf("%s-%d", f.Kind, counts[f.Kind])
	} else if !nameRE.MatchString(name) {
		c.errorf(p+".name", "name %q must start with a letter or digit and use only letters, digits, '-', '_' and '.'", name)
	}
	if seen[name] || name == RunPhase || name == "before" || name == "after" {
		c.errorf(p+".name", "fault name %q is already taken (names must be unique and not run/before/after)", name)
	}
	seen[name] = true
	if f.Kind == "" {
		c.errorf(p, "a fault needs a kind (valid: %s)", strings.Join(faults.Kinds(), ", "))
		return
	}
	spec, err := faults.NewSpec(f.Kind)
	if err != nil {
		c.errorf(p+".kind", "%v", err)
		return
	}
	if f.Params.Node != nil {
		if err := c.doc.DecodeNode(f.Params.Node, spec); err != nil {
			c.errs = append(c.errs, asPositioned(err))
			return
		}
	}
	if err := spec.Validate(); err != nil {
		c.specError(p+".params", f.Kind, err)
	}
	m := targetRE.FindStringSubmatch(f.Target)
	if m == nil {
		c.errorf(p+".target", "target %q must name an upstream (api), one replica (api[0]) or a random one (api[random])", f.Target)
		return
	}
	up := c.ups[m[1]]
	if up == nil {
		c.errorf(p+".target", "unknown upstream %q (declared: %s)", m[1], strings.Join(c.upstreamNames(), ", "))
		return
	}
	if v, ok := spec.(slowdb.TargetValidator); ok && up.Database != nil {
		if err := v.ValidateFor(up.Name, up.Database.Config); err != nil {
			c.specError(p+".params", f.Kind, err)
		}
	}
	replica := -1
	if m[2] == "random" {
		replica = faults.RandomReplica
	} else if m[2] != "" {
		replica, _ = strconv.Atoi(m[2])
		if replica >= up.Replicas {
			c.errorf(p+".target", "upstream %q has %d replica(s): index %d does not exist", m[1], up.Replicas, replica)
			return
		}
	}
	e := faults.Entry{Name: name, Spec: spec, Kind: f.Kind, Upstream: m[1], Replica: replica, Start: f.Start.D(), Duration: f.Duration.D()}
	if c.faultExtras(p, f, up, &e) {
		c.p.Timeline = append(c.p.Timeline, e)
	}
}

func asPositioned(err error) *yamlfile.Error {
	if e, ok := err.(*yamlfile.Error); ok {
		return e
	}
	return &yamlfile.Error{Msg: err.Error()}
}

func (c *compiler) upstreamNames() []string {
	var out []string
	for n := range c.ups {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// phases derives "before", one phase per fault, the gaps after each fault,
// and "after" (DerivePhases), then adds the file's own phases.
func (c *compiler) phases() {
	end := c.p.Duration
	ps := append([]results.Phase{{Name: RunPhase, Start: 0, End: end}}, DerivePhases(c.p.Timeline, end)...)
	names := map[string]bool{}
	for _, p := range ps {
		names[p.Name] = true
	}
	for i, ph := range c.f.Phases {
		p := fmt.Sprintf("$.phases[%d]", i)
		if ph.Gate != "" || ph.MaxHold != 0 {
			continue // a manual gate: gates() compiles it
		}
		if ph.Name == "" {
			c.errorf(p, "a phase needs a name")
			continue
		}
		if names[ph.Name] {
			c.errorf(p+".name", "phase %q already exists (derived phases: %s)", ph.Name, phaseList(ps))
			continue
		}
		e := ph.End.D()
		if e == 0 {
			e = end
		}
		// The start first: with end left out (the end of the load), a
		// start past the load read "the phase ends (10s) before it starts".
		if ph.Start.D() >= end {
			c.errorf(p+".start", "the phase starts at %s, %s the load ends at %s", ph.Start, atOrAfter(ph.Start.D(), end), end)
			continue
		}
		if ph.Start.D() == e {
			c.errorf(p+".end", "the phase ends where it starts (%s): it holds no time; give an end after its start", ph.Start)
			continue
		}
		if ph.Start.D() > e {
			c.errorf(p+".end", "the phase ends (%s) before it starts (%s)", e, ph.Start)
			continue
		}
		names[ph.Name] = true
		ps = append(ps, results.Phase{Name: ph.Name, Start: ph.Start.D(), End: min(e, end)})
	}
	c.p.Phases = ps
}

func phaseList(ps []results.Phase) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return strings.Join(out, ", ")
}

// whyNoDerivedPhase says why a timeline did not make "before" or "after",
// which a file edited from an example (a fault moved to 0s, or made to
// last to the end) still names: the list of phases alone read as a typo.
func whyNoDerivedPhase(name string, timeline []faults.Entry, ps []results.Phase) string {
	if name != "before" && name != "after" {
		return ""
	}
	if len(timeline) == 0 {
		return "; with no fault there is no before or after phase"
	}
	names := map[string]bool{}
	for _, e := range timeline {
		names[e.Name] = true
	}
	var end time.Duration
	for _, p := range ps {
		if p.Name == RunPhase {
			end = p.End
		}
	}
	for _, p := range ps {
		switch {
		case !names[p.Name]:
		case name == "before" && p.Start == 0:
			return fmt.Sprintf("; fault %s starts at 0s, so no phase comes before it", p.Name)
		case name == "after" && p.End >= end:
			return fmt.Sprintf("; fault %s lasts until the load ends (%s), so no phase comes after it", p.Name, end)
		}
	}
	return ""
}

// lint is the static half of the timeout cascade: the misorderings the seed
// articles blame for mystery timeouts.
func (c *compiler) lint() {
	if c.p.Gateway == nil {
		return
	}
	// The ordering of the timeouts (client > gateway > upstream > db) is
	// cascadeLint's, in cascade.go.
	for i, r := range c.p.Gateway.Routes {
		t := r.Timeouts.Effective()
		p := fmt.Sprintf("$.gateway.routes[%d].timeouts", i)
		up := c.ups[r.Upstream]
		if up != nil && !up.Behaviour.Latency.IsZero() {
			if hi := up.Behaviour.Latency.Upper(); t.ResponseHeader.D() < hi {
				c.warnf(p+".response_header", "route %s: response_header timeout %s is below upstream %s's normal p99 latency %s: healthy requests will time out",
					r.Path, t.ResponseHeader, up.Name, hi)
			}
		}
	}
}

// DerivePhases are the phases a fault timeline makes of a load that ends at
// end: "before" the first fault, one per fault (its name, from its start to
// its last end), the gaps with no fault on, named "after-" the fault that
// ended last, and "after" the last. They are in time order (by start; faults
// that start together in the timeline's order): a gap comes after the
// fault it follows and before the next one. A game day derives them again
// from the faults as they ran, so that its phases are the ones its exported
// replay compiles.
func DerivePhases(timeline []faults.Entry, end time.Duration) []results.Phase {
	if len(timeline) == 0 {
		return nil
	}
	var ps []results.Phase
	tl := append([]faults.Entry(nil), timeline...)
	sort.SliceStable(tl, func(i, j int) bool { return tl[i].Start < tl[j].Start })
	if first := tl[0].Start; first > 0 {
		ps = append(ps, results.Phase{Name: "before", Start: 0, End: first})
	}
	// Each fault, then the gap with no fault active that follows it, if
	// any, named after the fault that ended last: the gap ends where the
	// next fault starts, so this is time order.
	var lastEnd time.Duration
	lastName := ""
	for i, e := range tl {
		ps = append(ps, results.Phase{Name: e.Name, Start: e.Start, End: min(e.End(), end)})
		if min(e.End(), end) > lastEnd {
			lastEnd, lastName = min(e.End(), end), e.Name
		}
		next := end
		if i+1 < len(tl) {
			next = tl[i+1].Start
		}
		if lastEnd < next {
			name := "after-" + lastName
			if next == end {
				name = "after"
			}
			ps = append(ps, results.Phase{Name: name, Start: lastEnd, End: next})
		}
	}
	return ps
}

// fixedContainerPort reports whether u runs its one replica in a container
// you name listening on a port you give: an address your gateway can name,
// 127.0.0.1:port, as fixed as listen's.
func fixedContainerPort(u scenarios.Upstream) bool {
	return u.Container != nil && !u.Container.Off && u.Container.Image != "" && u.Container.Port != 0
}

// atOrAfter words where a start lies against the load's end: "when" it
// ends (the start is the end: nothing of the load is left) or "after".
func atOrAfter(start, end time.Duration) string {
	if start == end {
		return "when"
	}
	return "after"
}

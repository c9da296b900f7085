package plan

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode"

	"golang.org/x/net/http/httpguts"

	"github.com/cascadehq/cascade/internal/regfile"
	"github.com/cascadehq/cascade/internal/upstreamheader"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/scenarios"
)

// Executor model names, as a scenario writes them (k6's names).
const (
	ConstantArrivalRate = "constant-arrival-rate"
	RampingArrivalRate  = "ramping-arrival-rate"
	ConstantVUs         = "constant-vus"
	RampingVUs          = "ramping-vus"
)

// MaxVUs bounds a closed-model executor's virtual users (one goroutine and
// one connection each).
const MaxVUs = 50_000

// MaxWeight bounds a request's weight. Weights are relative shares, so a
// million covers any mix; the generator draws from their sum, and two
// weights near 2^63 wrapped it negative and panicked the run mid-load.
const MaxWeight = 1_000_000

// load compiles the load: the single form into one executor, the list form
// into several side by side.
func (c *compiler) load() {
	l := c.f.Load
	execs := l.Executors()
	list := l.List != nil
	if e := c.doc.Errorf("$.load", ""); e.File != "" || e.Line > 0 {
		c.p.LoadAt = fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Column)
	}
	cfg := loadgen.Config{Seed: c.p.Seed}
	names := map[string]bool{}
	var end time.Duration
	var total float64
	for i, x := range execs {
		path := "$.load"
		if list {
			path = fmt.Sprintf("$.load[%d]", i)
		}
		ec := c.executor(path, x, list, i)
		if list && x.Direct != 0 {
			c.errorf(path+".direct", "direct (layer attribution) applies to a single-executor load, written as a mapping")
		}
		if names[ec.Name] {
			c.errorf(path+".name", "executor name %q is used twice", ec.Name)
		}
		names[ec.Name] = true
		p := loadgen.NewPacer(ec.Stages)
		end = max(end, ec.Start+p.Duration())
		if ec.Kind == loadgen.ArrivalRate {
			total += p.Total()
		}
		cfg.ClientTimeout = max(cfg.ClientTimeout, ec.ClientTimeout)
		cfg.Executors = append(cfg.Executors, ec)
	}
	c.p.Duration = end
	if end > MaxLoadDuration {
		c.errorf("$.load", "the load lasts %s; the limit is %s", end, MaxLoadDuration)
	}
	if total > MaxRequests {
		c.errorf("$.load", "the load schedules %.0f requests; the limit is %d", total, MaxRequests)
	}
	if !list && len(cfg.Executors) == 1 {
		// The single form stays a plain Config: code that reads p.Load's
		// stages and requests keeps working.
		one := cfg.Executors[0]
		c.p.Load = one
		return
	}
	c.p.Load = cfg
}

// ScheduledRequests is how many requests the open-model executors schedule
// (closed-model executors send as fast as their VUs go).
func (p *Plan) ScheduledRequests() float64 {
	var n float64
	execs := p.Load.Executors
	if len(execs) == 0 {
		execs = []loadgen.Config{p.Load}
	}
	for _, e := range execs {
		if e.Kind != loadgen.VUs {
			n += loadgen.NewPacer(e.Stages).Total()
		}
	}
	return n
}

func (c *compiler) executor(path string, x scenarios.Executor, list bool, i int) loadgen.Config {
	ec := loadgen.Config{
		Name: x.Name, Start: x.Start.D(), ClientTimeout: x.ClientTimeout.D(), MaxInFlight: x.MaxInFlight,
		MaxConns: x.MaxConnections, KeepAlive: true, InsecureSkipVerify: x.InsecureSkipVerify, Seed: c.p.Seed,
		MaxRequests: MaxRequests,
	}
	if i > 0 {
		ec.Seed = 0 // the generator derives a distinct seed per executor
	}
	switch {
	case x.Name == "" && list:
		c.errorf(path, "an executor in a list needs a name")
		ec.Name = fmt.Sprintf("exec-%d", i)
	case x.Name == "":
		ec.Name = "load"
	case !nameRE.MatchString(x.Name):
		c.errorf(path+".name", "name %q must start with a letter or digit and use only letters, digits, '-', '_' and '.'", x.Name)
	}
	switch {
	case ec.ClientTimeout == 0:
		ec.ClientTimeout = DefaultTimeout
	case ec.ClientTimeout < 0:
		c.errorf(path+".client_timeout", "client_timeout %s is negative", ec.ClientTimeout)
	case ec.ClientTimeout > MaxClientTimeout:
		c.errorf(path+".client_timeout", "client_timeout %s is above the %s limit: after the load ends, a run waits this long for its last requests, and every run must end by itself",
			ec.ClientTimeout, MaxClientTimeout)
	}
	if x.KeepAlive != nil {
		ec.KeepAlive = *x.KeepAlive
	}
	if x.MaxInFlight < 0 {
		c.errorf(path+".max_in_flight", "max_in_flight must be positive")
	}
	if x.MaxConnections < 0 {
		c.errorf(path+".max_connections", "max_connections must be positive")
	}
	c.model(path, x, &ec)
	c.transport(path, x, &ec)
	dataOK := c.data(path, x, &ec)
	c.requests(path, x, &ec, dataOK)
	return ec
}

// model infers or checks the executor model and builds its stages.
func (c *compiler) model(path string, x scenarios.Executor, ec *loadgen.Config) {
	rateStages, vuStages := 0, 0
	for _, s := range x.Stages {
		if s.Rate != nil || s.RampTo != nil {
			rateStages++
		}
		if s.VUs != nil || s.RampToVUs != nil {
			vuStages++
		}
	}
	var model string
	switch {
	case x.Rate != nil:
		model = ConstantArrivalRate
	case x.VUs != 0:
		model = ConstantVUs
	case vuStages > 0:
		model = RampingVUs
	default:
		model = RampingArrivalRate
	}
	if x.Executor != "" && x.Executor != model {
		switch x.Executor {
		case ConstantArrivalRate, RampingArrivalRate, ConstantVUs, RampingVUs:
			c.errorf(path+".executor", "executor %s does not match the fields given, which make a %s (%s)", x.Executor, model, modelHelp)
		default:
			c.errorf(path+".executor", "unknown executor %q (valid: %s, %s, %s, %s)", x.Executor, ConstantArrivalRate, RampingArrivalRate, ConstantVUs, RampingVUs)
		}
		return
	}
	constant := model == ConstantArrivalRate || model == ConstantVUs
	switch {
	case x.Rate != nil && x.VUs != 0:
		c.errorf(path, "rate and vus exclude each other: an executor is open (rate) or closed (vus)")
		return
	case constant && len(x.Stages) > 0:
		c.errorf(path+".stages", "%s takes %s and duration, not stages (%s)", model, map[bool]string{true: "rate", false: "vus"}[model == ConstantArrivalRate], modelHelp)
		return
	case !constant && x.Duration != 0:
		c.errorf(path+".duration", "duration goes with rate or vus; a %s's stages give its length", model)
		return
	case rateStages > 0 && vuStages > 0:
		c.errorf(path+".stages", "stages mix rates and VUs: an executor is open (rate, ramp_to) or closed (vus, ramp_to_vus)")
		return
	}
	switch {
	case x.StartRate != nil && model != RampingArrivalRate:
		c.errorf(path+".start_rate", "start_rate is where a ramping-arrival-rate's first ramp_to starts; this executor is a %s (%s)", model, modelHelp)
		return
	case x.StartVUs != nil && model != RampingVUs:
		c.errorf(path+".start_vus", "start_vus is where a ramping-vus's first ramp_to_vus starts; this executor is a %s (%s)", model, modelHelp)
		return
	}
	switch {
	case x.MaxRequests < 0 || x.MaxRequests > MaxRequests:
		c.errorf(path+".max_requests", "max_requests must be 1..%d", MaxRequests)
	case x.MaxRequests > 0 && (model == ConstantArrivalRate || model == RampingArrivalRate):
		c.errorf(path+".max_requests", "max_requests bounds a VU executor; an arrival-rate executor sends its rate × duration")
	case x.MaxRequests > 0:
		ec.MaxRequests = uint64(x.MaxRequests)
	}
	if x.Start.D() > MaxLoadDuration {
		c.errorf(path+".start", "start %s is beyond the %s limit", x.Start, MaxLoadDuration)
	}
	closed := model == ConstantVUs || model == RampingVUs
	ec.Kind = loadgen.ArrivalRate
	if closed {
		ec.Kind = loadgen.VUs
	}
	switch x.Arrivals {
	case "", "uniform":
	case "poisson":
		if closed {
			c.errorf(path+".arrivals", "arrivals: poisson applies to arrival-rate executors; VUs send when their previous answer is in")
		}
		ec.Poisson = true
	default:
		c.errorf(path+".arrivals", "arrivals must be uniform or poisson, not %q", x.Arrivals)
	}
	if x.Think != nil {
		if !closed {
			c.errorf(path+".think", "think time applies to VU executors; an arrival-rate executor sends at its rate whatever the answers")
		}
		ec.Think = *x.Think
	}
	if closed && x.MaxInFlight != 0 {
		c.errorf(path+".max_in_flight", "max_in_flight applies to arrival-rate executors; the VU count bounds a closed model's concurrency")
	}
	if constant {
		if x.Duration == 0 {
			c.errorf(path+".duration", "%s needs a duration greater than 0", model)
			return
		}
		if closed {
			if x.VUs < 0 || x.VUs > MaxVUs {
				c.errorf(path+".vus", "vus must be 1..%d", MaxVUs)
			}
			n := float64(x.VUs)
			ec.Stages = []loadgen.Stage{{Duration: x.Duration.D(), From: n, To: n}}
		} else {
			r := x.Rate.PerSecond()
			ec.Stages = []loadgen.Stage{{Duration: x.Duration.D(), From: r, To: r}}
		}
	} else {
		ec.Stages = c.stages(path, x.Stages, closed, c.start(path, x, closed))
	}
	p := loadgen.NewPacer(ec.Stages)
	// An open model sends its first request at 0 as soon as the profile
	// holds any (10/s for 100ms is one request): only a profile of none is
	// empty.
	if len(ec.Stages) > 0 && (closed && !runsAVU(ec.Stages) || !closed && p.Total() <= 1e-9) {
		if closed {
			c.errorf(path+".stages", "the stages run no VUs: give a count, e.g. vus: 10")
		} else {
			c.errorf(path+".stages", "the stages schedule no requests: give a rate, e.g. rate: 100/s")
		}
	}
}

// runsAVU reports whether VU stages ever run a VU. Not the pacer's Total,
// which is VU-seconds for VU stages: 1 VU for 500ms is 0.5 and runs. A
// stage runs one if it starts with one, or ramps past 1 before its end (a
// ramp reaches its count only at the end of its stage: a lone ramp to 1
// runs none).
func runsAVU(stages []loadgen.Stage) bool {
	for _, s := range stages {
		if s.From >= 1 || s.To > 1 {
			return true
		}
	}
	return false
}

const modelHelp = "rate+duration: constant-arrival-rate; stages with rate/ramp_to: ramping-arrival-rate; vus+duration: constant-vus; stages with vus/ramp_to_vus: ramping-vus"

// start is the rate or VU count the first ramp starts from.
func (c *compiler) start(path string, x scenarios.Executor, closed bool) float64 {
	switch {
	case closed && x.StartVUs != nil:
		if n := *x.StartVUs; n < 0 || n > MaxVUs {
			c.errorf(path+".start_vus", "a VU count must be 0..%d", MaxVUs)
			return 0
		}
		return float64(*x.StartVUs)
	case !closed && x.StartRate != nil:
		return x.StartRate.PerSecond()
	}
	return 0
}

func (c *compiler) stages(path string, ss []scenarios.Stage, closed bool, start float64) []loadgen.Stage {
	if len(ss) == 0 {
		c.errorf(path+".stages", "at least one stage is needed, e.g. {duration: 10s, rate: 100/s}, or give rate and duration")
		return nil
	}
	var out []loadgen.Stage
	prev := start
	for i, s := range ss {
		p := fmt.Sprintf("%s.stages[%d]", path, i)
		if s.Duration == 0 {
			c.errorf(p+".duration", "a stage needs a duration greater than 0")
		}
		hold, ramp := s.Rate, s.RampTo
		var vhold, vramp *int = s.VUs, s.RampToVUs
		if closed {
			if (vhold == nil) == (vramp == nil) {
				c.errorf(p, "give either vus (hold a number of VUs) or ramp_to_vus (ramp from the previous stage's), exactly one")
				continue
			}
			n := vhold
			if n == nil {
				n = vramp
			}
			if *n < 0 || *n > MaxVUs {
				c.errorf(p, "a VU count must be 0..%d", MaxVUs)
				continue
			}
			to := float64(*n)
			from := to
			if vramp != nil {
				from = prev
			}
			out = append(out, loadgen.Stage{Duration: s.Duration.D(), From: from, To: to})
			prev = to
			continue
		}
		switch {
		case (hold == nil) == (ramp == nil):
			c.errorf(p, "give either rate (hold a rate) or ramp_to (ramp from the previous stage's rate), exactly one")
		case ramp != nil:
			to := ramp.PerSecond()
			out = append(out, loadgen.Stage{Duration: s.Duration.D(), From: prev, To: to})
			prev = to
		default:
			r := hold.PerSecond()
			out = append(out, loadgen.Stage{Duration: s.Duration.D(), From: r, To: r})
			prev = r
		}
	}
	return out
}

func (c *compiler) transport(path string, x scenarios.Executor, ec *loadgen.Config) {
	switch x.Protocol {
	case "":
	case "http1", "h2", "h2c":
		ec.Protocol = loadgen.Protocol(x.Protocol)
	default:
		c.errorf(path+".protocol", "unknown protocol %q (valid: http1, h2, h2c; omit for HTTP/1.1 on http:// and ALPN on https://)", x.Protocol)
		return
	}
	secure := false
	if c.p.External != "" {
		if u, err := url.Parse(c.p.External); err == nil {
			secure = u.Scheme == "https"
		}
	}
	switch {
	case x.Protocol == "h2" && !secure:
		c.errorf(path+".protocol", "h2 is HTTP/2 over TLS and needs an https:// target (the built-in gateway serves http://); use h2c for HTTP/2 over cleartext")
	case x.Protocol == "h2c" && secure:
		c.errorf(path+".protocol", "h2c is HTTP/2 over cleartext and needs an http:// target; use h2 for https://")
	}
	if x.InsecureSkipVerify && c.p.External != "" && !secure {
		c.warnf(path+".insecure_skip_verify", "insecure_skip_verify has no effect on an http:// target")
	}
}

// data reads the executor's data sets, relative to the scenario file. It
// reports whether every one was read.
func (c *compiler) data(path string, x scenarios.Executor, ec *loadgen.Config) (ok bool) {
	ok = true
	names := make([]string, 0, len(x.Data))
	for n := range x.Data {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d := x.Data[n]
		p := path + ".data." + n
		if !nameRE.MatchString(n) || strings.Contains(n, ".") {
			c.errorf(p, "data set name %q may use only letters, digits, '-' and '_'", n)
			ok = false
			continue
		}
		if d.File == "" {
			c.errorf(p, "data set %q needs a file (.csv or .json)", n)
			ok = false
			continue
		}
		random := false
		switch d.Order {
		case "", "sequential":
		case "random":
			random = true
		default:
			c.errorf(p+".order", "order must be sequential or random, not %q", d.Order)
			ok = false
			continue
		}
		if c.opts.Offline {
			// Re-judging a recorded run reads no files: a placeholder with the
			// columns unknown would reject templates, so keep any column.
			ec.Data = append(ec.Data, &loadgen.Dataset{Name: n, Random: random})
			continue
		}
		ds, err := loadgen.ReadDataset(n, c.relative(d.File), random)
		if err != nil {
			c.errorf(p, "%v", err)
			ok = false
			continue
		}
		ec.Data = append(ec.Data, ds)
	}
	return ok
}

func (c *compiler) relative(file string) string {
	if filepath.IsAbs(file) || c.doc == nil {
		return file
	}
	return filepath.Join(filepath.Dir(c.doc.Name), file)
}

// dataOK: every data set was read; if not, the templates are not checked
// (each use of a data set that failed would be a second, wrong error:
// "unknown data set ... (no data sets declared)").
func (c *compiler) requests(path string, x scenarios.Executor, ec *loadgen.Config, dataOK bool) {
	if len(x.Requests) == 0 {
		c.errorf(path+".requests", "at least one request is needed, e.g. {path: /}")
	}
	for i, r := range x.Requests {
		p := fmt.Sprintf("%s.requests[%d]", path, i)
		if !strings.HasPrefix(r.Path, "/") {
			c.errorf(p+".path", "path %q must start with /", r.Path)
		} else if err := checkPath(r.Path); err != nil {
			c.errorf(p+".path", "%v", err)
		}
		method := strings.ToUpper(r.Method)
		if method == "" {
			method = http.MethodGet
		}
		if !validMethod(method) {
			c.errorf(p+".method", "unknown HTTP method %q", r.Method)
		}
		if r.Weight < 0 {
			c.errorf(p+".weight", "weight must not be negative")
		} else if r.Weight > MaxWeight {
			c.errorf(p+".weight", "weight must be 1..%d (a relative share), got %d", MaxWeight, r.Weight)
		}
		name := r.Name
		if name == "" {
			name = method + " " + r.Path
		} else if strings.ContainsFunc(name, unicode.IsControl) && !strings.ContainsFunc(r.Path, unicode.IsControl) {
			// The name heads its row in the report's tables: a line break
			// split the row, a tab shifted its columns, and an escape
			// sequence went to the terminal as it was. (A name cascade
			// load made of a path with one is the path's error, above.)
			c.errorf(p+".name", "name %q has a control character (a tab or a line break?): it tags the request's row in the report", name)
		}
		h := http.Header{}
		for k, v := range r.Headers {
			if !httpguts.ValidHeaderFieldName(k) {
				c.errorf(p+".headers."+k, "header name %q is not a token (letters, digits and !#$%%&'*+-.^_`|~, no spaces)", k)
			} else if why := reservedHeader(k); why != "" {
				c.errorf(p+".headers."+k, "header %s %s", k, why)
			} else if strings.IndexFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) >= 0 {
				c.errorf(p+".headers."+k, "header %s: the value has a control character (a line break?); no client sends it", k)
			}
			h.Set(k, v)
		}
		var body []byte
		switch {
		case r.Body != "" && r.BodyFile != "":
			c.errorf(p+".body_file", "body and body_file exclude each other")
		case r.Body != "":
			body = []byte(r.Body)
		case r.BodyFile != "" && !c.opts.Offline:
			b, err := readBody(c.relative(r.BodyFile))
			if err != nil {
				c.errorf(p+".body_file", "%v", err)
			}
			body = b
		}
		if !c.opts.Offline && dataOK {
			c.checkTemplates(p, ec.Data, r, body)
		}
		if r.RawBody && r.Body == "" && r.BodyFile == "" {
			c.errorf(p+".raw_body", "raw_body: true, but there is no body or body_file to send byte for byte")
		}
		ec.Requests = append(ec.Requests, loadgen.Request{Name: name, Method: method, Path: r.Path, Header: h, Body: body,
			RawBody: r.RawBody, Weight: max(r.Weight, 1), Expect: c.expect(p+".expect", r.Expect)})
	}
}

// MaxBody bounds a request body read from a file: every request is built
// from it in memory (a typo naming /dev/zero read until the process died).
const MaxBody = 64 << 20

// readBody reads a body file: a regular file of at most MaxBody bytes.
func readBody(path string) ([]byte, error) {
	return regfile.Read(path, MaxBody)
}

// checkPath checks a path that has no template variables as the request
// target it will be: what the client would refuse at every request is an
// error at the field instead (exit 2, not a run that fails to start).
func checkPath(path string) error {
	if strings.Contains(path, "{{") {
		return nil // rendered per request; the template is checked on its own
	}
	if _, err := url.ParseRequestURI(path); err != nil {
		return fmt.Errorf("path %q is not a valid request target: %v", path, errors.Unwrap(err))
	}
	return loadgen.CheckPath(path)
}

// reservedHeader says why a request may not set a header, or "" if it
// may: the client frames and manages the connection itself. Host is
// allowed (a virtual host behind the target's address).
func reservedHeader(name string) string {
	switch strings.ToLower(name) {
	case "content-length", "transfer-encoding", "trailer", "te":
		return "is set by the client itself (from the body)"
	case "connection", "keep-alive", "proxy-connection", "upgrade":
		return "is set by the client itself (for keep-alive off, use keep_alive: false or --keep-alive=false)"
	case strings.ToLower(upstreamheader.HealthCheck), strings.ToLower(upstreamheader.Direct):
		// The upstreams leave requests with these marks out of the
		// counts the verdicts judge (amplification, retries, orphans).
		return "is cascade's own mark (health checks, direct load): the upstreams would leave these requests out of their counts"
	}
	return ""
}

// checkTemplates parses each template field so a typo is an error at its
// line, not at request 10 000.
func (c *compiler) checkTemplates(p string, data []*loadgen.Dataset, r scenarios.Request, body []byte) {
	if _, err := loadgen.ParseTemplate(r.Path, data); err != nil {
		c.errorf(p+".path", "%v", err)
	}
	keys := make([]string, 0, len(r.Headers))
	for k := range r.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, err := loadgen.ParseTemplate(r.Headers[k], data); err != nil {
			c.errorf(p+".headers."+k, "%v", err)
		}
	}
	if body != nil && !r.RawBody {
		if _, err := loadgen.ParseTemplate(string(body), data); err != nil {
			if r.BodyFile != "" {
				// The message locates the spot in the file, not in the scenario.
				c.errorf(p+".body_file", "%s (a body file is a template: {{ starts a variable; raw_body: true sends it byte for byte): %v", r.BodyFile, err)
			} else {
				c.errorf(p+".body", "%v", err)
			}
		}
	}
}

// liveLoad: a game day (gates, safety checks) scripts one open-model load
// (it cuts and holds its stages at the gates); several executors or virtual
// users are not something it can hold at a gate.
func (c *compiler) liveLoad() {
	if len(c.p.Gates) == 0 && len(c.p.Safety) == 0 {
		return
	}
	if len(c.p.Load.Executors) > 0 || c.p.Load.Kind == loadgen.VUs {
		c.errorf("$.load", "gates and safety checks steer a single open-model load (rate, or stages of rates); this load has several executors or virtual users")
	}
}

// clientTimeout is the timeout the lints hold the gateway to: with several
// executors the shortest, the first client to give up. (p.Load's own is the
// longest: how long the run waits for a late request.)
func (c *compiler) clientTimeout() time.Duration {
	client := c.p.Load.ClientTimeout
	for _, e := range c.p.Load.Executors {
		client = min(client, e.ClientTimeout)
	}
	return client
}

// expect compiles a request's expect:, refusing one that checks nothing.
func (c *compiler) expect(path string, e *scenarios.Expect) *loadgen.Expect {
	if e == nil {
		return nil
	}
	out := &loadgen.Expect{Status: e.Status}
	if e.BodyContains != nil {
		if *e.BodyContains == "" {
			c.errorf(path+".body_contains", "body_contains is empty, and every body contains that: give the text the answer must hold")
		} else if len(*e.BodyContains) > loadgen.MaxCheckedBody {
			c.errorf(path+".body_contains", "body_contains is %d bytes, more than the %d of the body that are checked", len(*e.BodyContains), loadgen.MaxCheckedBody)
		}
		out.BodyContains = []byte(*e.BodyContains)
	}
	if len(out.Status) == 0 && out.BodyContains == nil {
		c.errorf(path, "expect checks nothing: give status (e.g. [200, 404] or 2xx) or body_contains")
	}
	return out
}

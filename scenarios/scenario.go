// Package scenarios defines the scenario file — topology, gateway, load,
// fault timeline and SLOs in one YAML document — and decodes it strictly:
// an unknown field, a bad duration or percentage is an error naming
// file:line:column and the field. Turning a decoded file into something that
// can run (references resolved, defaults filled, lint) is scenarios/plan's job.
package scenarios

import (
	"fmt"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/invopop/jsonschema"

	"github.com/cascadehq/cascade/autoscale"
	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/gateway"
	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/regfile"
	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
	"github.com/cascadehq/cascade/loadgen"
)

// File is a scenario file.
type File struct {
	// Name identifies the scenario in reports and run directories.
	Name string `yaml:"name" json:"name" jsonschema:"required"`
	// Description says what the scenario rehearses.
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Seed fixes every random choice (latency draws, fault probabilities,
	// request mix), so the same file repeats. Default 1.
	Seed uint64 `yaml:"seed,omitempty" json:"seed,omitempty"`
	// Upstreams are the fake services behind the gateway.
	Upstreams []Upstream `yaml:"upstreams" json:"upstreams"`
	// Gateway is cascade's built-in gateway (routes) or the URL of your own.
	Gateway Gateway `yaml:"gateway" json:"gateway" jsonschema:"required"`
	// Load is the traffic the load generator sends.
	Load Load `yaml:"load" json:"load" jsonschema:"required"`
	// Faults is the fault timeline.
	Faults []Fault `yaml:"faults,omitempty" json:"faults,omitempty"`
	// Phases are extra named time windows for SLOs. Phases named after each
	// fault, "before" and "after" are derived from the timeline.
	Phases []Phase `yaml:"phases,omitempty" json:"phases,omitempty"`
	// SLO lists the objectives that decide the exit code.
	SLO []Objective `yaml:"slo,omitempty" json:"slo,omitempty"`
	// Autoscale runs a Kubernetes-style horizontal autoscaler on upstreams
	// (or, in oracle mode, computes what one would have done).
	Autoscale []autoscale.Spec `yaml:"autoscale,omitempty" json:"autoscale,omitempty"`
	// Safety lists health checks watched while the run goes on: when one
	// breaks, every fault is removed at once (auto-halt) and the run
	// continues or stops as declared.
	Safety []Safety `yaml:"safety,omitempty" json:"safety,omitempty"`
}

// Upstream is a fake upstream: one or more replicas with one behaviour.
type Upstream struct {
	Name string `yaml:"name" json:"name" jsonschema:"required"`
	// Replicas is the number of instances (default 1), each on its own
	// loopback listener.
	Replicas int `yaml:"replicas,omitempty" json:"replicas,omitempty" zero:"default"`
	// Listen gives fixed host:port addresses, one per replica. Needed when
	// the gateway is your own, so its config can point at them.
	Listen []string `yaml:"listen,omitempty" json:"listen,omitempty"`
	// Latency, status and body size of a healthy answer.
	faults.Behaviour `yaml:",inline"`
	// Concurrency is each replica's worker pool: at most this many requests
	// are worked on at once, the rest queue (default 0: unlimited). Latency
	// then grows with load, as a real service's does.
	Concurrency int `yaml:"concurrency,omitempty" json:"concurrency,omitempty"`
	// IgnoreCancel keeps working on a request after its caller left (a
	// handler that does not watch its context): the orphaned work that
	// outlives a gateway timeout.
	IgnoreCancel bool `yaml:"ignore_cancel,omitempty" json:"ignore_cancel,omitempty"`
	// Kind is http (default: a fake service answering with the behaviour
	// above) or database (an order-history service on a real database,
	// configured by database).
	Kind string `yaml:"kind,omitempty" json:"kind,omitempty" jsonschema:"enum=http,enum=database"`
	// Database configures an upstream of kind database: driver (sqlite,
	// embedded; or postgres with dsn, or container: true), pool_size,
	// statement_timeout, upstream_timeout...
	Database *faults.DatabaseConfig `yaml:"database,omitempty" json:"database,omitempty"`
	// Container runs each replica in a container (needs Docker): true for
	// cascade's own binary serving the behaviour above, or {image, port}.
	Container *Container `yaml:"container,omitempty" json:"container,omitempty"`
}

// Gateway is cascade's gateway (Routes), yours (External), or nginx or
// HAProxy in a container cascade starts (Container).
type Gateway struct {
	// External is the base URL of a gateway you run (nginx, Envoy,
	// HAProxy...) on loopback. cascade then does not start its own.
	External string `yaml:"external,omitempty" json:"external,omitempty"`
	// Container runs nginx or HAProxy in a container (needs Docker) in
	// front of one upstream's replicas, instead of cascade's gateway.
	Container *GatewayContainer `yaml:"container,omitempty" json:"container,omitempty"`
	// Listen is the built-in gateway's address (default 127.0.0.1:0).
	Listen string `yaml:"listen,omitempty" json:"listen,omitempty"`
	// Routes of the built-in gateway.
	Routes []gateway.Route `yaml:"routes,omitempty" json:"routes,omitempty"`
	// Upstreams configure, per scenario upstream, what the built-in gateway
	// does in front of it: balancing, breaker, limits, health checks,
	// outlier ejection (targets are its replicas).
	Upstreams []gateway.Upstream `yaml:"upstreams,omitempty" json:"upstreams,omitempty"`
	// AdminListen serves the built-in gateway's Prometheus /metrics on a
	// loopback address.
	AdminListen string `yaml:"admin_listen,omitempty" json:"admin_listen,omitempty"`
}

// GatewayContainer is `gateway.container`: a third-party proxy that cascade
// starts in a container (assembled from this machine's Debian binary; host
// networking, 127.0.0.1 only), configured to balance round-robin over the
// replicas of one upstream, and removes at the end of the run (see the
// README, "nginx or HAProxy in a container").
type GatewayContainer struct {
	// Kind is the proxy: nginx or haproxy.
	Kind string `yaml:"kind" json:"kind" jsonschema:"required,enum=nginx,enum=haproxy"`
	// Port it listens on at 127.0.0.1, 1-32767 (default: a free port cascade
	// picks).
	Port int `yaml:"port,omitempty" json:"port,omitempty" zero:"default"`
	// Upstream is the scenario upstream whose replicas it proxies to
	// (default: the only one).
	Upstream string `yaml:"upstream,omitempty" json:"upstream,omitempty"`
	// Timeout bounds connecting to a replica and each read of its answer:
	// nginx's proxy_connect_timeout and proxy_read_timeout (and
	// proxy_send_timeout), HAProxy's timeout connect and timeout server.
	// Default 30s.
	Timeout units.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty" zero:"default"`
	// Config is a configuration file of your own, relative to the scenario
	// file, used instead of the generated one. Placeholders: {{listen}}
	// (127.0.0.1:port), {{port}}, {{servers}} (one server line per replica,
	// in the proxy's syntax; {{servers max_fails=0}} ends each with
	// parameters), {{addrs}} (the replicas' host:port, space separated),
	// {{timeout}} (timeout in ms, e.g. 1000ms) and {{ready}}. It must listen
	// on {{listen}} and answer GET {{ready}} below 400.
	Config string `yaml:"config,omitempty" json:"config,omitempty"`
	// Ready is the path polled until the proxy answers (default
	// /cascade-health, which the generated configuration serves itself).
	Ready string `yaml:"ready,omitempty" json:"ready,omitempty"`
}

// Load is the traffic: one executor written as a mapping (the fields of
// Executor), or several side by side written as a list of named executors,
// e.g. a background load plus a burst.
type Load struct {
	// Executor is the single form (and, in the list form, the first item).
	Executor
	// List holds every executor of the list form; nil for the single form.
	List []Executor `yaml:"-" json:"-"`
}

// Executor is one load model with its requests and transport. Give one of:
//
//	rate + duration            constant-arrival-rate (open model)
//	stages with rate/ramp_to   ramping-arrival-rate (open model)
//	vus + duration             constant-vus (closed model)
//	stages with vus/ramp_to_vus ramping-vus (closed model)
//
// `executor:` may name the model explicitly; it must match the fields.
type Executor struct {
	// Name labels the executor in stats and the live view (required in the
	// list form, unique).
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Executor is the load model (inferred from the fields when omitted).
	Executor string `yaml:"executor,omitempty" json:"executor,omitempty" jsonschema:"enum=constant-arrival-rate,enum=ramping-arrival-rate,enum=constant-vus,enum=ramping-vus"`
	// Start delays this executor from the start of the load (default 0).
	Start units.Duration `yaml:"start,omitempty" json:"start,omitempty"`
	// Rate and Duration: a constant arrival rate.
	Rate *units.Rate `yaml:"rate,omitempty" json:"rate,omitempty"`
	// VUs and Duration: a constant number of virtual users (closed model).
	VUs int `yaml:"vus,omitempty" json:"vus,omitempty" zero:"runs no VUs"`
	// Duration of a constant executor.
	Duration units.Duration `yaml:"duration,omitempty" json:"duration,omitempty"`
	// Stages in order; each holds a rate or ramps to one (or, for VUs,
	// holds or ramps a number of VUs).
	Stages []Stage `yaml:"stages,omitempty" json:"stages,omitempty"`
	// StartRate is where a ramping-arrival-rate's first ramp_to starts
	// (default 0), as k6's startRate.
	StartRate *units.Rate `yaml:"start_rate,omitempty" json:"start_rate,omitempty"`
	// StartVUs is where a ramping-vus's first ramp_to_vus starts (default
	// 0), as k6's startVUs.
	StartVUs *int `yaml:"start_vus,omitempty" json:"start_vus,omitempty"`
	// MaxRequests ends a VU executor once its VUs have sent this many
	// requests in all (hey's -n, k6's shared-iterations); its duration or
	// stages still bound it in time. Default: only the time bounds it.
	MaxRequests int `yaml:"max_requests,omitempty" json:"max_requests,omitempty" zero:"default"`
	// Arrivals spaces an open model's requests evenly (default) or as a
	// seeded Poisson process (exponential gaps) at the same rate.
	Arrivals string `yaml:"arrivals,omitempty" json:"arrivals,omitempty" jsonschema:"enum=uniform,enum=poisson"`
	// Think is a VU's pause after each answer: a duration or a
	// distribution such as {dist: uniform, min: 50ms, max: 150ms}.
	Think *dist.Latency `yaml:"think,omitempty" json:"think,omitempty"`
	// ClientTimeout is when the client gives up on a request (default 30s):
	// the outermost layer of the timeout cascade.
	ClientTimeout units.Duration `yaml:"client_timeout,omitempty" json:"client_timeout,omitempty" zero:"default"`
	// MaxInFlight caps concurrent requests of an open model (default
	// 10000); requests due when the cap is reached are counted as dropped.
	MaxInFlight int `yaml:"max_in_flight,omitempty" json:"max_in_flight,omitempty" zero:"default"`
	// MaxConnections caps the open connections (default: no cap beyond
	// max_in_flight or the VUs); a request waits for a free one, and the
	// wait counts in its latency.
	MaxConnections int `yaml:"max_connections,omitempty" json:"max_connections,omitempty" zero:"default"`
	// KeepAlive reuses connections (default true).
	KeepAlive *bool `yaml:"keep_alive,omitempty" json:"keep_alive,omitempty"`
	// Protocol: http1, h2 (HTTP/2 over TLS) or h2c (HTTP/2 cleartext, prior
	// knowledge). Default: HTTP/1.1 for http://, ALPN for https://.
	Protocol string `yaml:"protocol,omitempty" json:"protocol,omitempty" jsonschema:"enum=http1,enum=h2,enum=h2c"`
	// InsecureSkipVerify accepts any TLS certificate (self-signed test servers).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify,omitempty" json:"insecure_skip_verify,omitempty"`
	// Data names data sets (CSV with a header row, or a JSON array of
	// objects) that request templates read as {{name.column}}.
	Data map[string]DataFile `yaml:"data,omitempty" json:"data,omitempty"`
	// Requests is the weighted request mix.
	Requests []Request `yaml:"requests" json:"requests"`
	// Direct is the share of requests sent straight to the upstream,
	// bypassing the gateway, interleaved with the rest (layer attribution:
	// what latency and errors the gateway adds). Default 0.
	Direct units.Percent `yaml:"direct,omitempty" json:"direct,omitempty"`
}

type executorFields Executor

// UnmarshalYAML accepts a mapping (one executor) or a list of executors.
func (l *Load) UnmarshalYAML(node ast.Node) error {
	if seq, ok := node.(*ast.SequenceNode); ok {
		var list []Executor
		if err := yamlfile.DecodeNode(seq, &list); err != nil {
			return err
		}
		if len(list) == 0 {
			return yamlfile.NodeError(node, "the load list is empty: give at least one executor")
		}
		*l = Load{Executor: list[0], List: list}
		return nil
	}
	if _, ok := node.(*ast.MappingNode); !ok {
		return yamlfile.NodeError(node, "load is a mapping (one executor) or a list of named executors")
	}
	var f executorFields
	if err := yamlfile.DecodeNode(node, &f); err != nil {
		return err
	}
	*l = Load{Executor: Executor(f)}
	return nil
}

// Executors returns the executors in order (one for the single form).
func (l Load) Executors() []Executor {
	if l.List != nil {
		return l.List
	}
	return []Executor{l.Executor}
}

// JSONSchema allows both forms.
func (Load) JSONSchema() *jsonschema.Schema {
	r := jsonschema.Reflector{FieldNameTag: "yaml", DoNotReference: true, ExpandedStruct: true, Anonymous: true}
	one := r.Reflect(&executorFields{})
	one.Version = ""
	item := r.Reflect(&executorFields{})
	item.Version = ""
	item.Required = append(item.Required, "name")
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{one, {Type: "array", Items: item, MinItems: ptr(uint64(1))}}}
}

func ptr[T any](v T) *T { return &v }

// DataFile is a data set: a file path, or {file: ..., order: random}.
type DataFile struct {
	// File is a .csv (header row names the columns) or .json (array of
	// objects) file, relative to the scenario file.
	File string `yaml:"file" json:"file"`
	// Order is how requests take rows: sequential (row = sequence number,
	// wrapping; default) or random (seeded).
	Order string `yaml:"order,omitempty" json:"order,omitempty" jsonschema:"enum=sequential,enum=random"`
}

type dataFileFields DataFile

// UnmarshalYAML accepts the path shorthand.
func (d *DataFile) UnmarshalYAML(node ast.Node) error {
	if s, ok := node.(*ast.StringNode); ok {
		*d = DataFile{File: s.Value}
		return nil
	}
	var f dataFileFields
	if err := yamlfile.DecodeNode(node, &f); err != nil {
		return err
	}
	*d = DataFile(f)
	return nil
}

// JSONSchema allows the path shorthand.
func (DataFile) JSONSchema() *jsonschema.Schema {
	r := jsonschema.Reflector{FieldNameTag: "yaml", DoNotReference: true, ExpandedStruct: true, Anonymous: true}
	m := r.Reflect(&dataFileFields{})
	m.Version = ""
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{{Type: "string", Examples: []any{"users.csv"}}, m}}
}

// Stage is one step of a profile. Give exactly one of Rate (hold it for
// Duration) or RampTo (move linearly from the previous stage's rate, or
// the executor's start_rate for the first); for virtual users, VUs or
// RampToVUs (from start_vus).
type Stage struct {
	Duration  units.Duration `yaml:"duration" json:"duration"`
	Rate      *units.Rate    `yaml:"rate,omitempty" json:"rate,omitempty"`
	RampTo    *units.Rate    `yaml:"ramp_to,omitempty" json:"ramp_to,omitempty"`
	VUs       *int           `yaml:"vus,omitempty" json:"vus,omitempty"`
	RampToVUs *int           `yaml:"ramp_to_vus,omitempty" json:"ramp_to_vus,omitempty"`
}

// Request is one request template. Path, header values and the body may
// hold variables: {{seq}}, {{rand_int MIN MAX}}, {{rand_id}}, {{uuid}} and
// {{<data set>.<column>}}, also as {{urlencode <set>.<column>}} and
// {{json <set>.<column>}}.
type Request struct {
	// Name tags the request's stats (default "METHOD path").
	Name    string            `yaml:"name,omitempty" json:"name,omitempty"`
	Method  string            `yaml:"method,omitempty" json:"method,omitempty"` // default GET
	Path    string            `yaml:"path" json:"path"`
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	Body    string            `yaml:"body,omitempty" json:"body,omitempty"`
	// BodyFile reads the body from a file, relative to the scenario file.
	BodyFile string `yaml:"body_file,omitempty" json:"body_file,omitempty"`
	// RawBody sends Body or BodyFile byte for byte, without variables: a
	// binary file (an image, a protobuf) holds "{{" here and there, which a
	// template would take for a variable.
	RawBody bool `yaml:"raw_body,omitempty" json:"raw_body,omitempty"`
	Weight  int  `yaml:"weight,omitempty" json:"weight,omitempty" zero:"default"` // default 1
	// Expect decides which answers count as successes (default: a status
	// below 400). An answer that fails it counts as unexpected_response.
	Expect *Expect `yaml:"expect,omitempty" json:"expect,omitempty"`
}

// Expect is a request's check of its answers, as k6 users write
// expectedStatuses and checks.
//
//	expect: {status: [200, 404], body_contains: '"items"'}
type Expect struct {
	// Status lists the statuses that succeed: codes, or classes such as
	// 2xx. A listed status succeeds even where it would be an error (a
	// 404 the test asks for); any other fails.
	Status StatusList `yaml:"status,omitempty" json:"status,omitempty"`
	// BodyContains is text the body must hold, within its first 64 KiB
	// (loadgen.MaxCheckedBody).
	BodyContains *string `yaml:"body_contains,omitempty" json:"body_contains,omitempty"`
}

// StatusList is one status or a list of them: 200, "2xx", [200, 404].
type StatusList []loadgen.StatusRange

// UnmarshalYAML reads a scalar or a sequence, each item a code or a class,
// and names the item at fault.
func (l *StatusList) UnmarshalYAML(node ast.Node) error {
	items := []ast.Node{node}
	if seq, ok := node.(*ast.SequenceNode); ok {
		items = seq.Values
	}
	out := make(StatusList, 0, len(items))
	for _, it := range items {
		var s string
		switch n := it.(type) {
		case *ast.IntegerNode:
			s = n.GetToken().Value
		case *ast.StringNode:
			s = n.Value
		default:
			return yamlfile.NodeError(it, "expected a status such as 200 or a class such as 2xx")
		}
		r, err := loadgen.ParseStatus(s)
		if err != nil {
			return yamlfile.NodeError(it, "%v", err)
		}
		out = append(out, r)
	}
	*l = out
	return nil
}

// JSONSchema allows one status or a list.
func (StatusList) JSONSchema() *jsonschema.Schema {
	one := &jsonschema.Schema{OneOf: []*jsonschema.Schema{
		{Type: "integer", Minimum: "100", Maximum: "599"},
		{Type: "string", Pattern: `^[1-5][xX][xX]$`},
	}}
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{one, {Type: "array", Items: one}}, Examples: []any{200, "2xx", []any{200, 404}}}
}

// Fault is one entry of the fault timeline.
type Fault struct {
	// Name identifies the fault in events, phases and reports (default: kind-N).
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Kind is a registered fault kind (latency, error, reset, hang, down, ...).
	Kind string `yaml:"kind" json:"kind" jsonschema:"required"`
	// Target is an upstream ("api"), one replica ("api[1]"), or one replica
	// drawn from the seed at each onset ("api[random]").
	Target string `yaml:"target" json:"target" jsonschema:"required"`
	// Start is the offset from the start of the load.
	Start units.Duration `yaml:"start" json:"start"`
	// Duration of the fault (default: until the load ends). A written 0
	// would read as left out: the longest fault, not none.
	Duration units.Duration `yaml:"duration,omitempty" json:"duration,omitempty" zero:"would read as duration left out (until the load ends; a live fault, until removed)"`
	// Params are the kind's parameters, decoded strictly by the kind.
	Params Params `yaml:"params,omitempty" json:"params,omitempty"`
	// Ramp grows the fault from nothing to full strength over this long
	// after each onset (the kind's delay or probability; see the README).
	Ramp units.Duration `yaml:"ramp,omitempty" json:"ramp,omitempty"`
	// Repeat runs the fault several times: {every: 10s, times: 3}; each
	// occurrence lasts duration.
	Repeat *Repeat `yaml:"repeat,omitempty" json:"repeat,omitempty"`
}

// Repeat is a fault that comes back: Times occurrences, Every apart.
type Repeat struct {
	Every units.Duration `yaml:"every" json:"every"`
	Times int            `yaml:"times" json:"times"`
}

// Params keeps a fault's parameters as YAML until the kind is known.
type Params struct{ Node ast.Node }

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (p *Params) UnmarshalYAML(node ast.Node) error {
	if _, ok := node.(*ast.MappingNode); !ok {
		if _, null := node.(*ast.NullNode); !null {
			return yamlfile.NodeError(node, "params must be a mapping such as {delay: 200ms}")
		}
	}
	p.Node = node
	return nil
}

// JSONSchema describes params as an object; each kind documents its own.
func (Params) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "object", Description: "parameters of the fault kind"}
}

// Container is an upstream's `container:` setting: true (cascade's own
// binary in a FROM scratch image) or the mapping of faults.ContainerConfig.
type Container struct {
	faults.ContainerConfig `yaml:",inline"`
	// Off is set by `container: false`.
	Off bool `yaml:"-" json:"-"`
}

type containerFields Container

// UnmarshalYAML accepts true, false or a mapping.
func (c *Container) UnmarshalYAML(node ast.Node) error {
	if b, ok := node.(*ast.BoolNode); ok {
		*c = Container{Off: !b.Value}
		return nil
	}
	if _, ok := node.(*ast.MappingNode); !ok {
		return yamlfile.NodeError(node, "container is true (cascade's own image) or a mapping such as {image: my/api:1, port: 18080}")
	}
	var f containerFields
	if err := yamlfile.DecodeNode(node, &f); err != nil {
		return err
	}
	*c = Container(f)
	return nil
}

// JSONSchema allows the boolean shorthand.
func (Container) JSONSchema() *jsonschema.Schema {
	r := jsonschema.Reflector{FieldNameTag: "yaml", DoNotReference: true, ExpandedStruct: true, Anonymous: true}
	m := r.Reflect(&faults.ContainerConfig{})
	m.Version = ""
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{{Type: "boolean"}, m},
		Description: "true runs cascade's own binary in a container; or {image, port | port_env, cmd, env, ready}"}
}

// Phase is a named window of the load, for SLOs.
type Phase struct {
	Name  string         `yaml:"name" json:"name"`
	Start units.Duration `yaml:"start,omitempty" json:"start,omitempty"`
	// End of the window (default: the end of the load). A written 0 would
	// read as left out: the whole load, not no time.
	End units.Duration `yaml:"end,omitempty" json:"end,omitempty" zero:"would read as end left out (the end of the load)"`
	// Gate "manual" pauses the scenario at start until a person opens the
	// gate (cascade phase next): the load holds its rate, the fault timeline
	// waits, and the phase lasts as long as the gate is held.
	Gate string `yaml:"gate,omitempty" json:"gate,omitempty" jsonschema:"enum=manual"`
	// MaxHold bounds a manual gate: it opens by itself after this long
	// (default 10m, at most 1h).
	MaxHold units.Duration `yaml:"max_hold,omitempty" json:"max_hold,omitempty" zero:"default"`
}

// Objective is an SLO: "p99 < 300ms" over the whole run, or a mapping. A
// mapping has exactly one of the keys that say what it judges (objective,
// recovers_within, breaker, outlier, autoscale, cascade, gateway_adds) and
// the fields that qualify it:
//
//	{phase: slow-api, objective: "gateway_timeout_rate < 1%"}
//	{objective: "p99 < 300ms", every: 10s, abort: true}
//	{recovers_within: 5s, after: slow-api}
//	{breaker: payments, opens_within: 2s, closes_within: 5s, after: outage}
//	{outlier: "api[0]", ejects_within: 1s, blocks_while_ejected: true}
//	{autoscale: api, scales_up_within: 5s, after: "stage[1]"}
//	{cascade: innermost, tolerance: 50ms}
//	{gateway_adds: "p99 < 5ms"}
type Objective struct {
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Phase limits a threshold (or a cascade check) to a named phase.
	Phase string `yaml:"phase,omitempty" json:"phase,omitempty"`
	// Objective is a threshold: "<metric> <op> <value>".
	Objective string `yaml:"objective,omitempty" json:"objective,omitempty"`
	// Upstream limits upstream metrics (amplification, orphans...) and
	// event counts (breaker_opens, ejections) to one upstream.
	Upstream string `yaml:"upstream,omitempty" json:"upstream,omitempty"`
	// Every judges the threshold in every rolling window of this length.
	Every units.Duration `yaml:"every,omitempty" json:"every,omitempty" zero:"default"`
	// Abort stops the run as soon as the objective can no longer pass.
	Abort bool `yaml:"abort,omitempty" json:"abort,omitempty"`

	// After anchors a timing: a fault's name (its onset for opens_within,
	// ejects_within and scales_up_within; its end for closes_within,
	// returns_within and recovers_within), a load stage "stage[N]" (its
	// start), or a phase (its start; its end for recovers_within).
	After string `yaml:"after,omitempty" json:"after,omitempty"`

	// RecoversWithin bounds the time until the p99 and the error rate are
	// back within the baseline's band, and stay there for Hold.
	RecoversWithin units.Duration `yaml:"recovers_within,omitempty" json:"recovers_within,omitempty"`
	// Baseline is the phase that defines normal (default: the time before
	// the disturbance began).
	Baseline string `yaml:"baseline,omitempty" json:"baseline,omitempty"`
	// Band: the p99 counts as back when at most the baseline p99 × band
	// (default 1.5).
	Band *float64 `yaml:"band,omitempty" json:"band,omitempty"`
	// ErrorBand is how many points above the baseline error rate count as
	// back (default 1%).
	ErrorBand *units.Percent `yaml:"error_band,omitempty" json:"error_band,omitempty"`
	// Hold is how long it must stay back (default 3s).
	Hold units.Duration `yaml:"hold,omitempty" json:"hold,omitempty" zero:"default"`

	// Breaker names the upstream whose circuit breaker is judged.
	Breaker         string         `yaml:"breaker,omitempty" json:"breaker,omitempty"`
	OpensWithin     units.Duration `yaml:"opens_within,omitempty" json:"opens_within,omitempty"`
	ClosesWithin    units.Duration `yaml:"closes_within,omitempty" json:"closes_within,omitempty"`
	HalfOpenProbes  *int           `yaml:"half_open_probes,omitempty" json:"half_open_probes,omitempty"`
	BlocksWhileOpen bool           `yaml:"blocks_while_open,omitempty" json:"blocks_while_open,omitempty"`

	// Outlier names the upstream ("api") or replica ("api[0]") whose
	// outlier ejection is judged.
	Outlier            string         `yaml:"outlier,omitempty" json:"outlier,omitempty"`
	EjectsWithin       units.Duration `yaml:"ejects_within,omitempty" json:"ejects_within,omitempty"`
	ReturnsWithin      units.Duration `yaml:"returns_within,omitempty" json:"returns_within,omitempty"`
	BlocksWhileEjected bool           `yaml:"blocks_while_ejected,omitempty" json:"blocks_while_ejected,omitempty"`

	// Autoscale names the upstream whose autoscaler is judged.
	Autoscale      string         `yaml:"autoscale,omitempty" json:"autoscale,omitempty"`
	ScalesUpWithin units.Duration `yaml:"scales_up_within,omitempty" json:"scales_up_within,omitempty"`
	// Reaches is a replica count, or "max" for the autoscaler's max_replicas.
	Reaches string `yaml:"reaches,omitempty" json:"reaches,omitempty" jsonschema:"oneof_type=integer;string"`
	// DirectionChanges bounds flapping: scale-ups and scale-downs may
	// alternate at most this many times.
	DirectionChanges *int `yaml:"direction_changes,omitempty" json:"direction_changes,omitempty"`
	// NoDeadBand fails when the metric sat above target but inside the
	// tolerance (an autoscaler that never acts).
	NoDeadBand bool `yaml:"no_dead_band,omitempty" json:"no_dead_band,omitempty"`

	// Cascade is the layer expected to answer every timeout: innermost (the
	// innermost layer that declares one), client, gateway, per_try,
	// upstream or db.
	Cascade string `yaml:"cascade,omitempty" json:"cascade,omitempty"`
	// Tolerance is how far from its timeout a layer may answer (default 100ms).
	Tolerance units.Duration `yaml:"tolerance,omitempty" json:"tolerance,omitempty" zero:"default"`

	// GatewayAdds bounds what the gateway adds over the direct path (needs
	// load.direct): "p99 < 5ms", "error_rate < 0.1%".
	GatewayAdds string `yaml:"gateway_adds,omitempty" json:"gateway_adds,omitempty"`
}

type objectiveFields Objective

// UnmarshalYAML accepts the string shorthand.
func (o *Objective) UnmarshalYAML(node ast.Node) error {
	if s, ok := node.(*ast.StringNode); ok {
		*o = Objective{Objective: s.Value}
		return nil
	}
	m, ok := node.(*ast.MappingNode)
	if !ok {
		return yamlfile.NodeError(node, "an objective is a string such as \"p99 < 300ms\" or a mapping {phase: ..., objective: ...}")
	}
	if len(m.Values) == 1 {
		// "- p99: < 250ms" is a mapping by its colon: its "unknown field
		// p99" listed every key of an objective and left the colon unseen.
		kv := m.Values[0]
		key, val := strings.TrimSpace(kv.Key.String()), strings.TrimSpace(kv.Value.String())
		if sv, ok := kv.Value.(*ast.StringNode); ok {
			val = strings.TrimSpace(sv.Value) // "<= 1%" without its quotes
		}
		if strings.ContainsAny(val[:min(len(val), 1)], "<>=!") && !strings.Contains(key, " ") {
			return yamlfile.NodeError(kv.Key, "%q reads as a mapping (the colon after %s): write the objective as one string, - %q", key+": "+val, key, key+" "+val)
		}
	}
	var f objectiveFields
	if err := yamlfile.DecodeNode(node, &f); err != nil {
		return err
	}
	*o = Objective(f)
	return nil
}

// JSONSchema allows the string shorthand.
func (Objective) JSONSchema() *jsonschema.Schema {
	r := jsonschema.Reflector{FieldNameTag: "yaml", DoNotReference: true, ExpandedStruct: true, Anonymous: true}
	m := r.Reflect(&objectiveFields{})
	m.Version = ""
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{{Type: "string", Examples: []any{"p99 < 300ms"}}, m}}
}

// Parse decodes a scenario strictly. name labels errors (usually the path).
func Parse(name string, data []byte) (*File, *yamlfile.Doc, error) {
	var f File
	doc, err := yamlfile.Decode(name, data, &f)
	if err != nil {
		return nil, doc, err
	}
	return &f, doc, nil
}

// ReadFile reads and decodes a scenario file.
func ReadFile(path string) (*File, *yamlfile.Doc, []byte, error) {
	data, err := regfile.Read(path, regfile.MaxConfig)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read scenario: %w", err)
	}
	f, doc, err := Parse(path, data)
	return f, doc, data, err
}

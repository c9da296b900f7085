package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cascadehq/cascade/internal/run"
	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/report"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// loadFlags are cascade load's options. The command turns them into a
// scenario (an external target, one executor, objectives from --threshold)
// and runs it with the same engine as cascade run, so the run directory,
// the summary, `cascade report` and the exit codes are the same.
type loadFlags struct {
	rate, ramp                            string
	duration, think, timeout              time.Duration
	vus, conns, maxInFlight               int
	requests                              int
	thresholds, aborts, headers           []string
	method, body, out, progress           string
	protocol, name                        string
	keepAlive, insecure, poisson, rawBody bool
	expectStatus                          []string
	expectBody                            string
	allowRemote, benchResult, latency     bool
	netHTTP                               bool
	cpuProfile                            string
	seed                                  uint64
	threads                               int
	engine                                string
	targets                               string         // --targets FILE (Vegeta's http format)
	base                                  string         // scheme://host:port, once scenario has run
	targetLines                           []vegetaTarget // the targets read, for errors by line
}

func newLoadCmd(stdout, stderr io.Writer) *cobra.Command {
	var f loadFlags
	cmd := &cobra.Command{
		Use:   "load URL | --targets FILE",
		Short: "Load-test one URL: open model (--rate, --ramp) or closed (--vus, --conns), with thresholds",
		Long: `Load sends requests to URL with cascade's load generator and prints the same summary as
'cascade run': latency from the intended send time (no coordinated omission) beside the
service time a closed loop would report, the scheduling lag, outcomes by termination cause,
and each --threshold as an objective (exit 0 all pass, 1 one fails, 2 usage, 3 the run
failed, 130 interrupted). Results go to a run directory (summary.json, intervals.jsonl,
latency.hlog, scenario.yaml) that 'cascade report' re-judges.

Models:
  --rate R --duration D          open model, constant arrival rate (add --poisson for Poisson arrivals)
  --ramp FROM:TO:DUR,TO:DUR,...  open model, linear ramps (rates); with --vus N, ramps of VUs from N (0 too)
  --vus N --duration D           closed model: N virtual users, each waits for its answer (+ --think)
  --conns N --duration D         closed loop at maximum rate over N connections (wrk -c N);
                                 with --rate or --vus, a cap of N connections instead

The URL's path may hold variables: {{seq}}, {{rand_int 1 100}}, {{rand_id}}, {{uuid}}.
--targets FILE sends a mix instead of one URL: Vegeta's targets file ("METHOD URL" lines,
then headers, then @BODYFILE; a blank line or the next METHOD URL line starts the next
target), all on one host, each request picked at random (seeded) in equal shares.
Only loopback targets unless --allow-remote.`,
		Example: `  cascade load http://127.0.0.1:8080/ --rate 2000/s --duration 30s --threshold 'p99<300ms'
  cascade load http://127.0.0.1:8080/api --ramp 0:2000/s:10s,2000/s:20s --threshold 'error_rate<1%'
  cascade load 'http://127.0.0.1:8080/items/{{rand_int 1 1000}}' --vus 50 --think 100ms --duration 1m
  cascade load http://127.0.0.1:8080/ --conns 50 --duration 10s --bench-result
  cascade load --targets targets.txt --rate 500/s --duration 30s`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rawURL := ""
			if len(args) == 1 {
				rawURL = args[0]
			}
			src, err := f.scenario(cmd, rawURL)
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			opts := plan.Options{AllowRemote: f.allowRemote}
			if cmd.Flags().Changed("seed") {
				opts.Seed = &f.seed
			}
			p, err := plan.CompileBytes("cascade-load.yaml", src, opts)
			if err != nil {
				return exitWith(ExitUsage, f.flagErrors(err))
			}
			p.Load.NetHTTP = f.netHTTP
			flagWarnings(p.Warnings)
			if cmd.Flags().Changed("threads") && (f.threads < 1 || f.threads > maxThreads) {
				return exitWith(ExitUsage, fmt.Errorf("--threads must be 1-%d", maxThreads))
			}
			switch f.engine {
			case "loop", "goroutines":
			default:
				return exitWith(ExitUsage, fmt.Errorf("--engine must be loop or goroutines, got %q", f.engine))
			}
			threads := f.threads
			if f.engine == "loop" && closedModel(p.Load) {
				// The closed model runs on event loops, wrk's design: one
				// per thread, each waiting in epoll for all its
				// connections (internal/evloop says why that is cheaper). A loop
				// keeps its P while it waits, so GOMAXPROCS gets one more
				// for the rest of the process (display, signals, timers).
				if threads == 0 {
					threads = defaultLoops(f.base, runtime.GOMAXPROCS(0))
				}
				p.Load.Loops = threads
				runtime.GOMAXPROCS(threads + 1)
			} else if cmd.Flags().Changed("threads") {
				// Goroutines: --threads is GOMAXPROCS. The default stays
				// every CPU: one thread measured 6-11% faster than two on
				// a quiet 2-core machine, but 20% slower, with a scheduling
				// lag p99 of 3.5 ms at 5,000 req/s, once other work shared
				// the CPUs (bench/LOADGEN.md).
				runtime.GOMAXPROCS(threads)
			}
			if f.cpuProfile != "" {
				pf, err := os.Create(f.cpuProfile)
				if err != nil {
					return exitWith(ExitUsage, err)
				}
				defer pf.Close()
				if err := pprof.StartCPUProfile(pf); err != nil {
					return exitWith(ExitUsage, err)
				}
				defer pprof.StopCPUProfile()
			}
			mode := run.ProgressMode(f.progress)
			switch mode {
			case run.ProgressAuto, run.ProgressBars, run.ProgressPlain, run.ProgressOff:
			default:
				return exitWith(ExitUsage, fmt.Errorf("--progress must be auto, bars, plain or off"))
			}
			o, err := run.Run(cmd.Context(), p, run.Options{OutDir: f.out, Progress: mode, Stdout: stdout, Stderr: stderr, AllowRemote: f.allowRemote})
			if err != nil {
				return exitWith(ExitRunFailed, err)
			}
			if f.benchResult {
				fmt.Fprintln(stdout, BenchResult(o.Summary))
			}
			if f.latency && o.Summary != nil {
				// wrk2's --latency: the spectrum after the summary, the
				// text cascade report --hgrm writes.
				fmt.Fprintln(stdout)
				if err := report.HGRM(stdout, o.Summary, "latency", ""); err != nil {
					fmt.Fprintf(stderr, "cascade: --latency: %v\n", err)
				}
			}
			switch {
			case o.Interrupted:
				fmt.Fprintln(stderr, "cascade: interrupted; partial results in", o.Dir)
				return exitWith(ExitInterrupted, nil)
			case !o.Pass:
				return exitWith(ExitFail, nil)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.rate, "rate", "", "constant arrival rate, e.g. 2000/s (open model)")
	fl.StringVar(&f.ramp, "ramp", "", "stages FROM:TO:DURATION or TO:DURATION, comma-separated (rates, or VU counts with --vus)")
	fl.DurationVar(&f.duration, "duration", 0, "how long to send (with --rate, --vus or --conns)")
	fl.IntVar(&f.vus, "vus", 0, "closed model: this many virtual users, each waiting for its answer")
	fl.IntVar(&f.requests, "requests", 0, "closed model: stop after this many requests in all, as hey -n (without --duration, at most 10m)")
	fl.IntVar(&f.conns, "conns", 0, "closed loop at maximum rate over this many connections; with --rate or --vus, a connection cap")
	fl.DurationVar(&f.think, "think", 0, "closed model: pause after each answer")
	fl.DurationVar(&f.timeout, "timeout", plan.DefaultTimeout, "client timeout per request")
	fl.IntVar(&f.maxInFlight, "max-in-flight", 0, "open model: cap on concurrent requests; requests due beyond it are dropped (default 10000)")
	fl.BoolVar(&f.poisson, "poisson", false, "open model: Poisson arrivals (seeded) instead of evenly spaced")
	fl.StringArrayVar(&f.thresholds, "threshold", nil, "objective such as 'p99<300ms' or 'error_rate<1%' (repeatable)")
	fl.StringArrayVar(&f.aborts, "abort-threshold", nil, "a --threshold that also stops the run as soon as it can no longer pass, as k6's abortOnFail (repeatable)")
	fl.StringVar(&f.method, "method", "GET", "HTTP method")
	fl.StringVar(&f.targets, "targets", "", "send the requests of this file (Vegeta's targets format) instead of one URL")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, "request header 'Name: value' (repeatable)")
	fl.StringVar(&f.body, "body", "", "request body, or @FILE to read it from a file; a template ({{seq}}, ...) unless --raw-body")
	fl.BoolVar(&f.rawBody, "raw-body", false, "send --body byte for byte, without variables (a binary file holds {{ here and there)")
	fl.StringSliceVar(&f.expectStatus, "expect-status", nil, "statuses that succeed, e.g. 200,404 or 2xx (as k6's expectedStatuses); any other is unexpected_response")
	fl.StringVar(&f.expectBody, "expect-body", "", "text every answer's body must hold (in its first 64 KiB); one without it is unexpected_response")
	fl.StringVar(&f.protocol, "protocol", "", "http1, h2 (HTTP/2 over TLS) or h2c (HTTP/2 cleartext); default HTTP/1.1, ALPN for https")
	fl.BoolVar(&f.keepAlive, "keep-alive", true, "reuse connections")
	fl.BoolVar(&f.insecure, "insecure", false, "accept any TLS certificate (self-signed test servers)")
	fl.StringVar(&f.out, "out", "", "run directory (default ./cascade-results/load-<timestamp>)")
	fl.StringVar(&f.progress, "progress", "auto", "live display: auto, bars, plain or off")
	fl.StringVar(&f.name, "name", "load", "names the run and its directory")
	fl.Uint64Var(&f.seed, "seed", plan.DefaultSeed, "seed for Poisson arrivals and template variables")
	fl.BoolVar(&f.allowRemote, "allow-remote", false, "permit a non-loopback target (cascade refuses by default)")
	fl.BoolVar(&f.benchResult, "bench-result", false, "also print one line 'BENCH_RESULT rps=... p50_ms=... ...' for benchmark scripts")
	fl.BoolVar(&f.latency, "latency", false, "also print the latency's percentile distribution, as wrk2 --latency (cascade report --hgrm writes it later)")
	fl.BoolVar(&f.netHTTP, "nethttp", false, "send HTTP/1.1 with net/http instead of cascade's own client (for comparison)")
	_ = fl.MarkHidden("nethttp")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	fl.IntVar(&f.threads, "threads", 0, "threads running the generator, as wrk -t: event loops for the closed model (default: half the CPUs but at least two for a target on this machine, every CPU for a remote one), else GOMAXPROCS (default: every CPU)")
	fl.StringVar(&f.engine, "engine", "loop", "closed model over HTTP/1.1: loop (an epoll loop per thread, as wrk) or goroutines (one per VU)")
	_ = fl.MarkHidden("cpuprofile")
	return cmd
}

// scenario writes the flags as a scenario file. YAML's flow style is JSON,
// so every value is JSON-encoded: no quoting mistakes.
func (f *loadFlags) scenario(cmd *cobra.Command, rawURL string) ([]byte, error) {
	given := func(flag string) bool { return cmd != nil && cmd.Flags().Changed(flag) } // nil: flags set by a test
	hdr, err := parseHeaders(f.headers)
	if err != nil {
		return nil, err
	}
	var reqs []any
	switch {
	case f.targets != "" && rawURL != "":
		return nil, errors.New("give a URL or --targets FILE, not both")
	case f.targets != "" && (given("method") || f.body != "" || f.rawBody):
		return nil, errors.New("--method, --body and --raw-body do not apply with --targets: each target gives its own (-H and --expect-* apply to every one)")
	case f.targets != "":
		ts, err := loadTargets(f.targets)
		if err != nil {
			return nil, err
		}
		if f.base, reqs, err = targetRequests(ts, hdr, f.targets); err != nil {
			return nil, fmt.Errorf("--targets: %w", err)
		}
		f.targetLines = ts
	case rawURL == "":
		return nil, errors.New("give the URL to load, or --targets FILE")
	default:
		base, path, err := splitURL(rawURL)
		if err != nil {
			return nil, err
		}
		f.base = base
		req := map[string]any{"name": strings.ToUpper(f.method) + " " + path, "method": f.method, "path": path}
		if len(hdr) > 0 {
			req["headers"] = joinHeaders(hdr)
		}
		if file, ok := strings.CutPrefix(f.body, "@"); ok {
			abs, err := filepath.Abs(file)
			if err != nil {
				return nil, fmt.Errorf("--body: %w", err)
			}
			req["body_file"] = abs
		} else if f.body != "" {
			req["body"] = f.body
		}
		if f.rawBody {
			req["raw_body"] = true
		}
		reqs = []any{req}
	}
	if f.duration < 0 || f.think < 0 || f.timeout <= 0 || f.vus < 0 || f.conns < 0 || f.maxInFlight < 0 {
		return nil, errors.New("durations, counts and --timeout must be positive")
	}
	if f.timeout > plan.MaxClientTimeout {
		return nil, fmt.Errorf("--timeout %s is above the %s limit: after the load ends, the run waits this long for its last requests", f.timeout, plan.MaxClientTimeout)
	}
	// --vus given makes the closed model, --vus 0 included: with a ramp it
	// is the VU count the ramp starts from, the only way to ramp VUs up
	// from none. Read as "not given", it turned the ramp's VU counts into
	// rates and ran an open model.
	vus := f.vus > 0 || given("vus")
	closed := vus || (f.conns > 0 && f.rate == "" && f.ramp == "")
	ex := map[string]any{
		"client_timeout": units.Duration(f.timeout).String(),
		"keep_alive":     f.keepAlive,
	}
	connVUs := 0 // --conns alone gives the VU count; as a cap it has no bound
	if closed && !vus {
		connVUs = f.conns
	}
	// Bounds the scenario compiler checks too, said here with the flag the
	// user typed: "vus must be 1..50000" for --conns named a field of a
	// file they never wrote.
	for _, b := range []struct {
		flag string
		n    int
		max  int
	}{{"--vus", f.vus, plan.MaxVUs}, {"--conns", connVUs, plan.MaxVUs}, {"--requests", f.requests, plan.MaxRequests}} {
		if b.n > b.max {
			return nil, fmt.Errorf("%s %d: at most %d", b.flag, b.n, b.max)
		}
	}
	switch {
	case f.requests < 0:
		return nil, errors.New("--requests must be positive")
	case f.requests == 0 && given("requests"):
		// As max_requests: 0 in a scenario, and --max-in-flight 0: a
		// written 0 ran with no bound at all.
		return nil, errors.New("--requests 0 would send nothing: leave it out for no bound on the count, or give a count above 0")
	case f.requests > 0 && !closed:
		return nil, errors.New("--requests bounds the closed model (--vus or --conns); an open model sends its rate × duration")
	case f.requests > 0 && f.ramp == "" && f.duration == 0:
		// hey -n: the count ends the run, and a time limit still bounds it
		// (k6's maxDuration for its iteration executors, 10 minutes).
		f.duration = defaultRequestsDuration
	}
	switch {
	case f.rate != "" && f.ramp != "":
		return nil, errors.New("--rate and --ramp exclude each other: a ramp gives the rates")
	case f.rate != "" && vus:
		return nil, errors.New("--rate and --vus exclude each other: an open model (rate) or a closed one (vus)")
	case vus && f.vus == 0 && f.ramp == "":
		return nil, errors.New("--vus 0 runs no virtual users: give --vus N above 0, or --vus 0 with a --ramp of VUs that starts from none")
	case f.ramp == "" && f.duration == 0:
		return nil, errors.New("give --duration (or --ramp)")
	case f.ramp != "" && f.duration != 0:
		return nil, errors.New("--duration and --ramp exclude each other: the ramp's stages give the length")
	case f.rate == "" && f.ramp == "" && f.vus == 0 && f.conns == 0:
		return nil, errors.New("give a load: --rate R, --ramp ..., --vus N or --conns N")
	}
	if f.think > 0 && !closed {
		return nil, errors.New("--think applies to the closed model (--vus or --conns)")
	}
	if f.poisson && closed {
		return nil, errors.New("--poisson applies to the open model (--rate or --ramp)")
	}
	// Like --think and --poisson, a flag the model has no use for is an
	// error, not a value quietly dropped: --max-in-flight on VUs capped
	// nothing, --max-in-flight 0 ran with the default 10000, and --engine
	// on an open model changed nothing.
	if given("max-in-flight") {
		switch {
		case closed:
			return nil, errors.New("--max-in-flight applies to the open model (--rate or --ramp): in a closed one each VU has one request in flight")
		case f.maxInFlight == 0:
			return nil, errors.New("--max-in-flight 0 would drop every request: leave it out for the default (10000), or give a value above 0")
		}
	}
	if given("engine") && !closed {
		return nil, errors.New("--engine applies to the closed model (--vus or --conns): the open model sends from goroutines paced by a timerfd")
	}
	if f.ramp != "" {
		ramp := f.ramp
		if vus {
			// --vus N with a ramp of VUs is where the ramp starts (k6's
			// startVUs): a first item without FROM starts at N, and one
			// with a FROM must say the same, or one of the two flags
			// would be ignored.
			first := strings.Split(strings.SplitN(ramp, ",", 2)[0], ":")
			switch len(first) {
			case 2:
				ramp = strconv.Itoa(f.vus) + ":" + ramp
			case 3:
				if from, err := strconv.Atoi(strings.TrimSpace(first[0])); err == nil && from != f.vus {
					return nil, fmt.Errorf("--vus %d and --ramp's first FROM %d disagree: with a ramp, --vus is the VU count it starts from; give one of the two", f.vus, from)
				}
			}
		}
		stages, start, err := parseRamp(ramp, closed)
		if err != nil {
			return nil, err
		}
		ex["stages"] = stages
		if start > 0 && closed {
			ex["start_vus"] = int(start)
		} else if start > 0 {
			ex["start_rate"] = units.Rate(start).String()
		}
	}
	switch {
	case closed:
		// --conns alone is N VUs over N connections (wrk -c N); beside
		// --vus it only caps the connections: --vus 2 --conns 5 ran 5 VUs.
		n := f.conns
		if vus {
			n = f.vus
		}
		if f.ramp == "" {
			ex["vus"] = n
			ex["duration"] = units.Duration(f.duration).String()
		}
		if f.requests > 0 {
			ex["max_requests"] = f.requests
		}
		// One connection per VU: --conns 50 is wrk -c 50.
		if f.conns > 0 {
			ex["max_connections"] = f.conns
		}
		if f.think > 0 {
			ex["think"] = units.Duration(f.think).String()
		}
	default:
		if f.rate != "" {
			r, err := units.ParseRate(f.rate)
			if err != nil {
				return nil, fmt.Errorf("--rate: %w", err)
			}
			if r == 0 {
				return nil, errors.New("--rate 0 sends nothing; for the maximum rate use --conns N")
			}
			ex["rate"] = r.String()
			ex["duration"] = units.Duration(f.duration).String()
		}
		if f.conns > 0 {
			ex["max_connections"] = f.conns
		}
		if f.maxInFlight > 0 {
			ex["max_in_flight"] = f.maxInFlight
		}
		if f.poisson {
			ex["arrivals"] = "poisson"
		}
	}
	if f.protocol != "" {
		ex["protocol"] = f.protocol
	}
	if f.insecure {
		ex["insecure_skip_verify"] = true
	}
	if len(f.expectStatus) > 0 || f.expectBody != "" {
		exp := map[string]any{}
		if len(f.expectStatus) > 0 {
			var sts []string
			for _, s := range f.expectStatus {
				if _, err := loadgen.ParseStatus(s); err != nil {
					return nil, fmt.Errorf("--expect-status: %w", err)
				}
				sts = append(sts, strings.TrimSpace(s))
			}
			exp["status"] = sts
		}
		if f.expectBody != "" {
			exp["body_contains"] = f.expectBody
		}
		for _, r := range reqs {
			r.(map[string]any)["expect"] = exp
		}
	}
	ex["requests"] = reqs

	var b strings.Builder
	if f.targets != "" {
		fmt.Fprintf(&b, "# written by: cascade load --targets %s\n", strconv.Quote(f.targets))
	} else {
		fmt.Fprintf(&b, "# written by: cascade load %s\n", strconv.Quote(rawURL))
	}
	line := func(key string, v any) {
		fmt.Fprintf(&b, "%s: ", key)
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // keep "p99<300ms" readable in scenario.yaml
		_ = enc.Encode(v)        // maps, strings and numbers: cannot fail
	}
	line("name", f.name)
	line("seed", f.seed)
	line("gateway", map[string]string{"external": f.base})
	line("load", ex)
	for _, x := range [][]string{f.thresholds, f.aborts} {
		for _, t := range x {
			if strings.TrimSpace(t) == "" {
				// The compiler's word for an empty one listed the keys
				// of a scenario's slo: entry ("recovers_within, breaker,
				// ...") to someone who typed a flag.
				return nil, errors.New("--threshold and --abort-threshold take an objective such as 'p99<300ms' or 'error_rate<1%', not an empty string")
			}
		}
	}
	if len(f.thresholds)+len(f.aborts) > 0 {
		slo := make([]any, 0, len(f.thresholds)+len(f.aborts))
		for _, t := range f.thresholds {
			slo = append(slo, t)
		}
		for _, t := range f.aborts {
			slo = append(slo, map[string]any{"objective": t, "abort": true})
		}
		line("slo", slo)
	}
	return []byte(b.String()), nil
}

// splitURL cuts a URL into its base (scheme://host:port) and the path with
// query, kept as typed so template variables survive.
func splitURL(raw string) (base, path string, err error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	scheme = strings.ToLower(scheme) // schemes are case-insensitive (RFC 3986 3.1): curl takes HTTP://
	if !ok || (scheme != "http" && scheme != "https") {
		if !ok && raw != "" {
			// curl takes host:port/path; wrk and hey do not, and neither
			// does this, but it says what to type.
			return "", "", fmt.Errorf("%q: expected an http:// or https:// URL, e.g. http://%s", raw, raw)
		}
		return "", "", fmt.Errorf("%q: expected an http:// or https:// URL", raw)
	}
	host, path := rest, "/"
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		host, path = rest[:i], rest[i:]
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
	}
	if host == "" {
		return "", "", fmt.Errorf("%q: the URL has no host", raw)
	}
	return scheme + "://" + host, path, nil
}

// defaultRequestsDuration bounds a --requests run given no --duration.
const defaultRequestsDuration = 10 * time.Minute

// flagErrors words the scenario compiler's errors for flags: the user wrote
// no cascade-load.yaml, so a line and column in it would point nowhere.
func (f *loadFlags) flagErrors(err error) error {
	var es yamlfile.Errors
	if !errors.As(err, &es) {
		return err
	}
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Msg
		// Name the flag the field came from where the message does not:
		// "stat order.json: no such file or directory" left the user to
		// guess that --body @order.json was meant.
		if at := f.targetAt(e.Path); at != "" {
			msgs[i] = at + ": " + e.Msg
		} else if flag := fieldFlag(e.Path); flag != "" {
			msgs[i] = strings.NewReplacer("raw_body: true", "--raw-body", "body or body_file", "--body").Replace(e.Msg)
			if !strings.Contains(msgs[i], flag) {
				msgs[i] = flag + ": " + msgs[i]
			}
		}
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// flagWarnings words the compiler's warnings for flags, as flagErrors does
// its errors: "cascade-load.yaml:5:70: load.insecure_skip_verify:
// insecure_skip_verify has no effect on an http:// target" pointed into a
// file the user never wrote, at a field they never typed.
func flagWarnings(ws []plan.Warning) {
	for i, w := range ws {
		_, path, _ := strings.Cut(w.Pos, ": ")
		switch path {
		case "load.insecure_skip_verify":
			ws[i] = plan.Warning{Pos: "--insecure", Msg: "no effect on an http:// target (no TLS, no certificate to accept)"}
		}
	}
}

// targetAt names the targets file and line a request's field came from
// ("" when the field is not a target's): the scenario's requests are the
// file's targets in order.
func (f *loadFlags) targetAt(path string) string {
	if f.targetLines == nil {
		return ""
	}
	var i int
	if _, err := fmt.Sscanf(path, "load.requests[%d]", &i); err != nil || i < 0 || i >= len(f.targetLines) {
		return ""
	}
	return fmt.Sprintf("--targets %s:%d", f.targets, f.targetLines[i].line)
}

// parseHeaders reads -H 'Name: value' flags.
func parseHeaders(flags []string) (http.Header, error) {
	h := http.Header{}
	for _, kv := range flags {
		k, v, ok := strings.Cut(kv, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--header %q: expected 'Name: value'", kv)
		}
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return h, nil
}

// joinHeaders writes each header as one line of its values, which HTTP
// defines as the same message (RFC 9110 5.3; cookies with "; "): curl
// sends every -H, and the last must not win silently. Names differing
// only in case are one header.
func joinHeaders(h http.Header) map[string]string {
	out := make(map[string]string, len(h))
	for k, vs := range h {
		sep := ", "
		if k == "Cookie" {
			sep = "; "
		}
		out[k] = strings.Join(vs, sep)
	}
	return out
}

// fieldFlag is the flag of cascade load that wrote a field of the request
// in its scenario ("" for others, whose messages name their field).
func fieldFlag(path string) string {
	field, ok := strings.CutPrefix(path, "load.requests[0].")
	if !ok {
		return ""
	}
	field, _, _ = strings.Cut(field, ".")
	switch field {
	case "body", "body_file":
		return "--body"
	case "raw_body":
		return "--raw-body"
	case "method":
		return "--method"
	case "headers":
		return "--header"
	case "path":
		return "URL"
	}
	return ""
}

// parseRamp reads FROM:TO:DURATION or TO:DURATION items into scenario
// stages: a hold when FROM equals TO, otherwise a ramp from the previous
// item's end (which FROM, when given, must equal). The first item's FROM
// may be anything: it is returned as start, the executor's start_rate or
// start_vus (0 when the first ramp starts from nothing).
func parseRamp(s string, vus bool) (stages []map[string]any, start float64, err error) {
	prev := 0.0
	for i, item := range strings.Split(s, ",") {
		parts := strings.Split(strings.TrimSpace(item), ":")
		if len(parts) != 2 && len(parts) != 3 {
			return nil, 0, fmt.Errorf("--ramp item %d %q: expected FROM:TO:DURATION or TO:DURATION", i+1, item)
		}
		d, err := units.ParseDuration(parts[len(parts)-1])
		if err != nil || d == 0 {
			if err == nil {
				err = errors.New("a stage needs a duration greater than 0")
			}
			return nil, 0, fmt.Errorf("--ramp item %d %q: bad duration: %v", i+1, item, err)
		}
		parse := func(x string) (float64, error) {
			if vus {
				n, err := strconv.Atoi(strings.TrimSpace(x))
				if err != nil || n < 0 {
					return 0, fmt.Errorf("--ramp item %d %q: %q is not a VU count", i+1, item, x)
				}
				if n > plan.MaxVUs {
					return 0, fmt.Errorf("--ramp item %d %q: %d VUs, at most %d", i+1, item, n, plan.MaxVUs)
				}
				return float64(n), nil
			}
			r, err := units.ParseRate(x)
			if err != nil {
				return 0, fmt.Errorf("--ramp item %d %q: %v", i+1, item, err)
			}
			return r.PerSecond(), nil
		}
		to, err := parse(parts[len(parts)-2])
		if err != nil {
			return nil, 0, err
		}
		from := prev
		if len(parts) == 3 {
			if from, err = parse(parts[0]); err != nil {
				return nil, 0, err
			}
		}
		if i == 0 && from != to {
			start, prev = from, from
		}
		st := map[string]any{"duration": d.String()}
		key := map[bool][2]string{false: {"rate", "ramp_to"}, true: {"vus", "ramp_to_vus"}}[vus]
		value := func(x float64) any {
			if vus {
				return int(x)
			}
			return units.Rate(x).String()
		}
		switch {
		case i > 0 && from != prev:
			// A hold too: the rule is the README's, a later FROM equals
			// the previous TO, and a silent step is not a ramp.
			return nil, 0, fmt.Errorf("--ramp item %d %q starts at %g but the previous stage ends at %g", i+1, item, from, prev)
		case from == to:
			st[key[0]] = value(to)
		default:
			st[key[1]] = value(to)
		}
		stages = append(stages, st)
		prev = to
	}
	return stages, start, nil
}

// BenchResult is the one line bench/peers.sh reads: the achieved rate and
// the latency percentiles (from the intended send time) in milliseconds.
func BenchResult(s *results.Summary) string {
	st := s.Run.Stats
	l := st.Latency
	return fmt.Sprintf("BENCH_RESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f min_ms=%.3f max_ms=%.3f errors=%d",
		st.AchievedRate, l.P50, l.P90, l.P99, l.P999, l.Min, l.Max, st.Errors)
}

// maxThreads bounds --threads (and the gateway's --loops): a thread each,
// and past a few per CPU only switching grows; Go aborts the process at
// 10,000 threads.
const maxThreads = 256

// defaultLoops is how many event loops drive a closed model when --threads
// is not given. A target on this machine (every target without
// --allow-remote) shares its CPUs with the generator, and a loop costs far
// less than the server it measures (~11 µs of CPU per request, ~80k
// requests/s on one core): one loop per CPU would take CPUs the server
// needs. So half of them, but at least two: a single loop is one queue that
// every response waits in whenever the host runs something else on its CPU.
// On 2 vCPUs against a hello server one loop spent 0.86-0.95× wrk -t2's CPU
// per request and two 1.00-1.08×, at the same rate on a quiet host; when the
// host stole 25-38 % of the time, one loop fell to 0.63-0.86× wrk's rate
// (bench/LOADGEN.md). More loops than CPUs did not pay either: three on 2
// vCPUs left the CPUs idle less (4 % against 7 %) but cost more per request
// (1.09× wrk's CPU, 0.95× its rate, where two got 1.01× at 1.00×). A remote
// target gets every CPU.
func defaultLoops(target string, cpus int) int {
	if plan.CheckTarget(target, false) != nil {
		return cpus
	}
	return min(cpus, max(2, cpus/2))
}

// closedModel reports whether the load has a VU executor, which event
// loops would run.
func closedModel(cfg loadgen.Config) bool {
	if cfg.Kind == loadgen.VUs {
		return true
	}
	for _, e := range cfg.Executors {
		if e.Kind == loadgen.VUs {
			return true
		}
	}
	return false
}

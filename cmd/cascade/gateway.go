package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/cascadehq/cascade/gateway"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/interrupt"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

type gatewayFlags struct {
	config, listen, admin, accessLog, events string
	upstream, enable, propagate              []string
	allowRemote                              bool
	seed                                     uint64
	loops                                    int
	drainTimeout                             time.Duration
}

func newGatewayCmd(stdout, stderr io.Writer) *cobra.Command {
	var f gatewayFlags
	cmd := &cobra.Command{
		Use:   "gateway (--config FILE | --upstream URL)",
		Short: "Run cascade's gateway on its own, in front of your services",
		Long: `Gateway runs the same reverse proxy that 'cascade run' uses, from a config file with
upstreams (targets, balancing, breaker, limits, health checks, outlier ejection) and routes
(path prefix, upstream, timeouts, retries, rate limit, fallback), or in front of one URL with
--upstream. It serves until interrupted.

On SIGTERM or Ctrl-C it drains, as nginx on SIGQUIT or a Kubernetes pod in
its grace period: it stops accepting (new connections are refused), closes
idle keep-alive connections, and answers the requests in flight, each with
Connection: close; it exits when none is left or after --drain-timeout
(default 5s; 0 stops at once), cutting what is left. A second signal stops
at once. It says on stderr how many requests were in flight, finished and cut.

--enable switches features on with their defaults (breaker, retries, limits, outlier, cache,
p2c), to measure what each costs. --access-log writes one JSON line per request, --events
every decision as JSON lines ("-" is stdout); --admin-listen serves Prometheus /metrics on a
loopback address.

Plain HTTP/1.1 is served on one event loop per CPU, a thread each, as nginx runs its workers
(--loops N; --loops 0 serves each connection on a goroutine, as 'cascade run' does).`,
		Example: `  cascade gateway --upstream http://127.0.0.1:9001 --listen 127.0.0.1:8080
  cascade gateway --upstream http://127.0.0.1:9001 --enable breaker,retries,limits --access-log -
  cascade gateway --config gateway.yaml --admin-listen 127.0.0.1:9901
  # gateway.yaml:
  #   listen: 127.0.0.1:8080
  #   upstreams:
  #     - name: api
  #       targets: [http://127.0.0.1:9001, http://127.0.0.1:9002]
  #       breaker: {minimum_calls: 20, failure_rate_threshold: 50%, wait_duration_in_open: 10s}
  #   routes:
  #     - path: /
  #       upstream: api
  #       timeouts: {connect: 1s, response_header: 5s, total: 10s, per_try: 2s}
  #       retries: {retry_on: [gateway_error], max_attempts: 3}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, loops, err := f.build()
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			opts := gateway.Options{Sink: event.Discard, Seed: f.seed, Loops: loops}
			if loops > 0 {
				// A loop keeps its P while it waits (internal/evloop): one
				// more P runs everything else (health checks, metrics,
				// requests handed to net/http).
				runtime.GOMAXPROCS(loops + 1)
			}
			var closers []io.Closer
			defer func() {
				for _, c := range closers {
					c.Close()
				}
			}()
			open := func(path string) (io.Writer, error) {
				if path == "-" {
					return stdout, nil
				}
				file, err := openLog(path)
				if err != nil {
					return nil, err
				}
				closers = append(closers, file)
				return file, nil
			}
			if f.accessLog != "" {
				if opts.AccessLog, err = open(f.accessLog); err != nil {
					return exitWith(ExitUsage, err)
				}
			}
			if f.events != "" {
				w, err := open(f.events)
				if err != nil {
					return exitWith(ExitUsage, err)
				}
				opts.Sink = jsonSink(w)
			}
			g, err := gateway.New(cfg, opts)
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			if err := g.Start(); err != nil {
				return exitWith(ExitRunFailed, err)
			}
			defer g.Close()
			fmt.Fprintf(stderr, "cascade gateway listening on %s\n", g.URL())
			if a := g.AdminAddr(); a != "" {
				fmt.Fprintf(stderr, "metrics on http://%s/metrics\n", a)
			}
			<-cmd.Context().Done() // the first stop signal (main)
			drainGateway(cmd.Context(), g, f.drainTimeout, stderr)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "gateway config file (YAML)")
	fl.BoolVar(&f.allowRemote, "allow-remote", false, "permit non-loopback targets and listen address (cascade refuses them by default)")
	fl.StringArrayVar(&f.upstream, "upstream", nil, "shorthand for a config with one route / to this URL (repeat to balance over several)")
	fl.StringVar(&f.listen, "listen", "", "listen address (overrides the config's; default 127.0.0.1:0, a kernel-chosen port, printed at start)")
	fl.StringVar(&f.admin, "admin-listen", "", "serve Prometheus /metrics on this loopback address")
	fl.StringVar(&f.accessLog, "access-log", "", `append a JSON access log to FILE ("-": stdout)`)
	fl.StringVar(&f.events, "events", "", `append every gateway decision as JSON lines to FILE ("-": stdout)`)
	fl.StringSliceVar(&f.enable, "enable", nil, "switch features on with their defaults: "+strings.Join(gateway.Features, ", "))
	fl.StringSliceVar(&f.propagate, "propagate", nil, "headers added upstream on every route: none, or any of request_id, forwarded_for, attempt, deadline (default all)")
	fl.Uint64Var(&f.seed, "seed", 1, "seed for balancing, retry jitter and request IDs")
	fl.DurationVar(&f.drainTimeout, "drain-timeout", 5*time.Second, "on SIGTERM or Ctrl-C, answer the requests in flight for up to this long before cutting them (0: stop at once)")
	fl.IntVar(&f.loops, "loops", -1, "serve HTTP/1.1 on N event loops, a thread each, as nginx's workers (0: a goroutine per connection; default one per CPU on Linux, else 0)")
	return cmd
}

// drainGateway stops g after the first stop signal: it drains for up to
// timeout, less if a second signal hurries the stop (package interrupt),
// and says what happened to the requests in flight.
func drainGateway(ctx context.Context, g *gateway.Gateway, timeout time.Duration, stderr io.Writer) {
	dctx, cancel := interrupt.TeardownContext(ctx) // ends on a second signal
	defer cancel()
	if timeout > 0 {
		fmt.Fprintf(stderr, "cascade gateway: draining %d requests in flight: no new connections, answering for up to %s; "+
			"signal again to stop at once\n", g.InFlight(), timeout)
		var stop context.CancelFunc
		dctx, stop = context.WithTimeout(dctx, timeout)
		defer stop()
	} else {
		cancel() // --drain-timeout 0
	}
	st, err := g.Shutdown(dctx)
	why := ""
	switch {
	case st.Cut == 0:
	case timeout == 0:
		why = " (--drain-timeout 0)"
	case errors.Is(dctx.Err(), context.DeadlineExceeded):
		why = fmt.Sprintf(" at the drain timeout (%s)", timeout)
	default:
		why = " by a second signal"
	}
	fmt.Fprintf(stderr, "cascade gateway: stopped in %s: %d requests in flight at the signal, %d finished during the drain, %d cut%s\n",
		st.Elapsed.Round(time.Millisecond), st.InFlight, st.Ended, st.Cut, why)
	if err != nil {
		fmt.Fprintf(stderr, "cascade gateway: %v\n", err)
	}
}

// eventLoops resolves --loops: by default one loop per CPU where there are
// event loops (Linux), as nginx's "worker_processes auto". A loop gave a
// lower added latency than nginx where a goroutine per connection gave a
// higher one (bench/GATEWAY.md, run 10).
func (f *gatewayFlags) eventLoops() (int, error) {
	switch {
	case f.loops < -1 || f.loops > maxThreads:
		return 0, fmt.Errorf("--loops %d: expected 0 (a goroutine per connection) to %d", f.loops, maxThreads)
	case f.loops >= 0:
		return f.loops, nil
	case runtime.GOOS == "linux":
		return runtime.NumCPU(), nil
	}
	return 0, nil
}

// build maps the flags to a gateway config and the number of event loops.
// Every problem of the config file and of the flags comes in one report,
// the file's with file:line:column, so that fixing them takes one round.
func (f *gatewayFlags) build() (gateway.Config, int, error) {
	var cfg gateway.Config
	var doc *yamlfile.Doc          // nil: no file, or one that did not decode
	var fileErrs, flagErrs []error // reported in this order
	switch {
	case f.config != "" && len(f.upstream) > 0:
		return cfg, 0, errors.New("--config and --upstream exclude each other")
	case f.config != "":
		c, d, err := gateway.ReadConfig(f.config)
		if err != nil {
			// Its values are unknown: the flags are still checked.
			fileErrs = append(fileErrs, err)
		} else {
			cfg, doc = c, d
		}
	case len(f.upstream) > 0:
		cfg = gateway.Single("", f.upstream...)
	default:
		return cfg, 0, errors.New("give --config FILE or --upstream URL")
	}
	if f.listen != "" {
		cfg.Listen = f.listen
	}
	if f.admin != "" {
		cfg.AdminListen = f.admin
	}
	for _, feat := range f.enable {
		if err := cfg.Enable(strings.TrimSpace(feat)); err != nil {
			flagErrs = append(flagErrs, fmt.Errorf("--enable: %w", err))
		}
	}
	if f.propagate != nil {
		for i := range cfg.Routes {
			cfg.Routes[i].Propagate = f.propagate
		}
	}
	loops, err := f.eventLoops()
	if err != nil {
		flagErrs = append(flagErrs, err)
	}
	if f.drainTimeout < 0 {
		flagErrs = append(flagErrs, fmt.Errorf("--drain-timeout %s: expected 0 (stop at once) or more", f.drainTimeout))
	}
	check, decoded := cfg, f.config == "" || doc != nil
	if !decoded {
		// The file's values are unknown: check what the flags set alone.
		check = gateway.Config{Listen: f.listen, AdminListen: f.admin, Routes: []gateway.Route{{Propagate: f.propagate}}}
	}
	fes := check.Validate(nil)
	if !f.allowRemote {
		fes = append(fes, check.CheckLocal()...)
	}
	var fromFile []yamlfile.FieldError
	seen := map[string]bool{}
	for _, fe := range fes {
		flag := f.flagOf(fe.Path)
		switch {
		case flag == "" && decoded:
			fromFile = append(fromFile, fe)
		case flag == "":
			// A field of the file that did not decode: its error is there.
		case !seen[flag+fe.Msg]: // --propagate: the same error on every route
			seen[flag+fe.Msg] = true
			flagErrs = append(flagErrs, fmt.Errorf("%s: %s", flag, fe.Msg))
		}
	}
	if doc != nil {
		for _, e := range doc.Position("$", fromFile) {
			fileErrs = append(fileErrs, e)
		}
	} else {
		for _, fe := range fromFile {
			fileErrs = append(fileErrs, fe)
		}
	}
	if errs := append(fileErrs, flagErrs...); len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return cfg, 0, errors.New(strings.Join(msgs, "\n"))
	}
	return cfg, loops, nil
}

// flagOf names the flag that set the config field at path, or "" when the
// field came from the config file.
func (f *gatewayFlags) flagOf(path string) string {
	switch {
	case f.listen != "" && path == "listen":
		return "--listen"
	case f.admin != "" && path == "admin_listen":
		return "--admin-listen"
	case f.propagate != nil && strings.HasPrefix(path, "routes[") && strings.Contains(path, ".propagate"):
		return "--propagate"
	case len(f.upstream) > 0 && strings.HasPrefix(path, "upstreams[0].targets"):
		return "--upstream"
	}
	return ""
}

// openLog opens a log file for appending, creating it if need be. Logs
// are appended, as nginx, Envoy and HAProxy do: a restart, or a start that
// fails because its port is taken, must not erase what an earlier run
// wrote there (rotation is the user's, e.g. logrotate's).
func openLog(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

// jsonSink writes events as JSON lines.
func jsonSink(w io.Writer) event.Sink {
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	return event.SinkFunc(func(e event.Event) {
		mu.Lock()
		_ = enc.Encode(e)
		mu.Unlock()
	})
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cascadehq/cascade/faults/packet"
	"github.com/cascadehq/cascade/faults/tcpfault"
	"github.com/cascadehq/cascade/faults/tcpfault/toxiapi"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/regfile"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// The fault proxy as a tool: `cascade faultproxy` puts one tcpfault proxy
// with fixed toxics in front of a service (and optionally the Toxiproxy API
// over it); `cascade toxiproxy` is a Toxiproxy-compatible server that
// Toxiproxy's clients and toxiproxy-cli drive unchanged.

type faultProxyFlags struct {
	listen, upstream, api, events, name string
	latency, jitter                     time.Duration
	toxics                              []string
	seed                                uint64
	allowRemote                         bool
}

func newFaultProxyCmd(stdout, stderr io.Writer) *cobra.Command {
	var f faultProxyFlags
	cmd := &cobra.Command{
		Use:   "faultproxy --listen 127.0.0.1:PORT --upstream HOST:PORT|URL [--latency D] [--toxic SPEC]...",
		Short: "Run a TCP fault proxy (Toxiproxy's toxics) in front of a service",
		Long: `Faultproxy accepts connections on --listen (a loopback address) and forwards each to
--upstream through connection faults ("toxics", as in Toxiproxy): --latency and --jitter add
a latency toxic to the answers; --toxic adds any toxic, repeatable:

  TYPE[:ATTR=VALUE,...]   with TYPE one of latency, bandwidth, slow_close, timeout,
                          reset_peer, slicer, limit_data, blackhole; attributes in Toxiproxy's
                          units (latency=100 is 100 ms) or as durations (latency=100ms); and
                          stream=upstream|downstream (default downstream), toxicity=0.5,
                          request_toxicity=0.2, name=NAME.

--api also serves Toxiproxy's HTTP API on a loopback address, with this proxy in it, so a
Toxiproxy client can change the toxics while it runs. It serves until interrupted (SIGINT,
SIGTERM), then prints what each toxic did. A latency toxic waits precisely: 100 ms means
100 ms plus tens of microseconds, never less.`,
		Example: `  cascade faultproxy --listen 127.0.0.1:18087 --upstream 127.0.0.1:18080 --latency 100ms
  cascade faultproxy --listen 127.0.0.1:9000 --upstream http://127.0.0.1:8080 \
      --toxic 'bandwidth:rate=100' --toxic 'reset_peer:timeout=0,request_toxicity=0.01,stream=upstream'
  cascade faultproxy --listen 127.0.0.1:9000 --upstream 127.0.0.1:8080 --api 127.0.0.1:8474
  toxiproxy-cli -h 127.0.0.1:8474 toxic add -t latency -a latency=300 faultproxy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			specs, err := f.specs()
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			sink := event.Discard
			if f.events != "" {
				w := stdout
				if f.events != "-" {
					file, err := openLog(f.events)
					if err != nil {
						return exitWith(ExitUsage, err)
					}
					defer file.Close()
					w = file
				}
				sink = jsonSink(w)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rng := rand.New(rand.NewPCG(f.seed, 0x666175))
			p, err := tcpfault.New(tcpfault.Config{Name: f.name, Listen: f.listen, Upstream: f.upstream, Rand: rng, Events: sink, AllowRemote: f.allowRemote})
			if err != nil {
				return exitWith(ExitUsage, err)
			}
			for _, s := range specs {
				if _, err := p.AddToxic(s); err != nil {
					return exitWith(ExitUsage, fmt.Errorf("--toxic: %w", err))
				}
			}
			if err := p.Start(ctx); err != nil {
				return exitWith(ExitRunFailed, err)
			}
			defer p.Close()
			fmt.Fprintf(stderr, "cascade faultproxy listening on %s → %s (%s)\n", p.Addr(), p.Upstream(), describeToxics(p.Toxics()))
			if f.api != "" {
				// Deleting this proxy through the API closes it, as
				// toxiproxy-server does; the API goes on serving (a test
				// suite may delete and create its proxies again), so the
				// terminal says what happened rather than going quiet.
				deleted := func(q *tcpfault.Proxy) {
					if q == p {
						fmt.Fprintf(stderr, "proxy %q deleted through the Toxiproxy API: %s no longer listens; the API still serves (POST /proxies creates proxies); Ctrl-C stops\n", p.Name(), p.Addr())
					}
				}
				s, err := toxiapi.New(ctx, toxiapi.Config{Rand: rand.New(rand.NewPCG(f.seed, 0x617069)), Events: sink, AllowRemote: f.allowRemote, OnDelete: deleted})
				if err != nil {
					return exitWith(ExitRunFailed, err)
				}
				if err := s.AddProxy(p); err != nil {
					return exitWith(ExitRunFailed, err)
				}
				addr, err := s.Start(f.api)
				if err != nil {
					return exitWith(ExitUsage, fmt.Errorf("--api: %w", err))
				}
				defer s.Close()
				fmt.Fprintf(stderr, "Toxiproxy API on http://%s (proxy %q)\n", addr, p.Name())
			}
			<-ctx.Done()
			printToxicStats(stderr, p)
			// The toxics still in place end with the proxy: closed first, so
			// that nothing a toxic holds goes out on the way, then removed, so
			// that --events has a fault.stop, with what it did, for each.
			p.Close()
			p.ResetToxics()
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:0", "loopback address to accept connections on")
	fl.StringVar(&f.upstream, "upstream", "", "the service: host:port or a URL (required; loopback unless --allow-remote)")
	fl.BoolVar(&f.allowRemote, "allow-remote", false, "permit an upstream off loopback (cascade refuses one by default)")
	fl.DurationVar(&f.latency, "latency", 0, "add this latency to every answer (a downstream latency toxic)")
	fl.DurationVar(&f.jitter, "jitter", 0, "spread --latency uniformly by up to ± this")
	fl.StringArrayVar(&f.toxics, "toxic", nil, "add a toxic: TYPE[:ATTR=VALUE,...] (repeatable; see above)")
	fl.StringVar(&f.api, "api", "", "also serve Toxiproxy's HTTP API on this loopback address")
	fl.StringVar(&f.name, "name", "faultproxy", "the proxy's name in the API and in events")
	fl.StringVar(&f.events, "events", "", `append every toxic's start, stop and effect as JSON lines to FILE ("-": stdout)`)
	fl.Uint64Var(&f.seed, "seed", 1, "seed of every probability and jitter draw")
	_ = cmd.MarkFlagRequired("upstream")
	return cmd
}

// specs maps the flags to toxics, in the order given.
func (f *faultProxyFlags) specs() ([]tcpfault.ToxicSpec, error) {
	var out []tcpfault.ToxicSpec
	if f.jitter != 0 && f.latency == 0 {
		return nil, errors.New("--jitter spreads --latency: give --latency too")
	}
	if f.latency < 0 || f.jitter < 0 {
		return nil, errors.New("--latency and --jitter must not be negative")
	}
	if f.latency > 0 {
		out = append(out, tcpfault.NewSpec("latency_downstream", tcpfault.Downstream, &tcpfault.Latency{Latency: f.latency, Jitter: f.jitter}))
	}
	for _, t := range f.toxics {
		s, err := parseToxicFlag(t)
		if err != nil {
			return nil, fmt.Errorf("--toxic %q: %w", t, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// parseToxicFlag reads TYPE[:ATTR=VALUE,...]. Values that parse as numbers
// or booleans are passed as such (Toxiproxy's units); others as strings,
// which the attribute codec reads as durations where it expects one.
func parseToxicFlag(s string) (tcpfault.ToxicSpec, error) {
	typ, rest, _ := strings.Cut(strings.TrimSpace(s), ":")
	spec := tcpfault.ToxicSpec{Stream: tcpfault.Downstream, Toxicity: 1, RequestToxicity: 1}
	attrs := map[string]any{}
	if rest != "" {
		for _, kv := range strings.Split(rest, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || k == "" {
				return spec, fmt.Errorf("%q is not ATTR=VALUE", kv)
			}
			prob := func() (float64, error) {
				x, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
				if err == nil && strings.HasSuffix(v, "%") {
					x /= 100
				}
				if err != nil || x < 0 || x > 1 {
					return 0, fmt.Errorf("%s=%s: expected a probability such as 0.5 or 50%%", k, v)
				}
				return x, nil
			}
			var err error
			switch k {
			case "stream":
				spec.Stream, err = tcpfault.ParseDirection(v)
			case "toxicity":
				spec.Toxicity, err = prob()
			case "request_toxicity":
				spec.RequestToxicity, err = prob()
			case "name":
				spec.Name = v
			default:
				if n, e := strconv.ParseInt(v, 10, 64); e == nil {
					attrs[k] = n
				} else if b, e := strconv.ParseBool(v); e == nil {
					attrs[k] = b
				} else {
					attrs[k] = v
				}
			}
			if err != nil {
				return spec, err
			}
		}
	}
	raw, err := json.Marshal(attrs)
	if err != nil {
		return spec, err
	}
	if spec.Toxic, err = tcpfault.NewToxic(typ, raw); err != nil {
		return spec, err
	}
	return spec, nil
}

func describeToxics(ts []tcpfault.ToxicInfo) string {
	if len(ts) == 0 {
		return "no toxics"
	}
	parts := make([]string, len(ts))
	for i, t := range ts {
		keys := make([]string, 0, len(t.Attributes))
		for k := range t.Attributes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var kv []string
		for _, k := range keys {
			kv = append(kv, fmt.Sprintf("%s=%v", k, t.Attributes[k]))
		}
		parts[i] = fmt.Sprintf("%s %s %s", t.Name, t.Stream, strings.Join(kv, ","))
		if t.Toxicity < 1 || t.RequestToxicity < 1 {
			parts[i] += fmt.Sprintf(" toxicity=%g request_toxicity=%g", t.Toxicity, t.RequestToxicity)
		}
	}
	return "toxics: " + strings.Join(parts, "; ")
}

func printToxicStats(w io.Writer, p *tcpfault.Proxy) {
	st := p.Stats()
	fmt.Fprintf(w, "cascade faultproxy: %d connections, %d bytes up, %d bytes down\n", st.Accepted, st.BytesUp, st.BytesDown)
	names := make([]string, 0, len(st.Toxics))
	for n := range st.Toxics {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t := st.Toxics[n]
		fmt.Fprintf(w, "  %s: acted on %d of %d connections, %d messages; max lateness %s, %.1f%% of timed releases within 500µs\n",
			n, t.Conns, t.ConnsSeen, t.Requests, t.Lag.Max, 100*t.Lag.Within(500*time.Microsecond))
	}
}

func newToxiproxyCmd(stdout, stderr io.Writer) *cobra.Command {
	var listen, config string
	var allowRemote bool
	var seed uint64
	cmd := &cobra.Command{
		Use:   "toxiproxy [--listen 127.0.0.1:8474] [--config proxies.json]",
		Short: "Run a Toxiproxy-compatible server (its clients and toxiproxy-cli drive it)",
		Long: `Toxiproxy serves Toxiproxy's HTTP API (v2: /proxies, /proxies/{name}/toxics, /populate,
/reset, /version) over cascade's fault proxies, so existing Toxiproxy clients, toxiproxy-cli
and test libraries built on them work unchanged. Differences: everything listens on loopback
only and dials upstreams on loopback only (unless --allow-remote), attributes are checked strictly (an unknown one is a 400 naming the valid ones), a
toxic also takes request_toxicity (a share of requests rather than of connections), and
GET /proxies/{name}/stats returns counters. --config loads proxies as toxiproxy-server's
-config does (a JSON list of {name, listen, upstream, enabled}). Serves until interrupted.`,
		Example: `  cascade toxiproxy --listen 127.0.0.1:8474
  toxiproxy-cli -h 127.0.0.1:8474 create -l 127.0.0.1:26379 -u 127.0.0.1:6379 redis
  toxiproxy-cli -h 127.0.0.1:8474 toxic add -t latency -a latency=1000 redis`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var populate []byte
			if config != "" {
				b, err := regfile.Read(config, regfile.MaxConfig)
				if err != nil {
					return exitWith(ExitUsage, err)
				}
				populate = b
			}
			s, err := toxiapi.New(ctx, toxiapi.Config{Rand: rand.New(rand.NewPCG(seed, 0x746f78)), AllowRemote: allowRemote})
			if err != nil {
				return exitWith(ExitRunFailed, err)
			}
			addr, err := s.Start(listen)
			if err != nil {
				return exitWith(ExitUsage, fmt.Errorf("--listen: %w", err))
			}
			defer s.Close()
			if populate != nil {
				if err := postPopulate(ctx, addr.String(), populate); err != nil {
					return exitWith(ExitUsage, fmt.Errorf("--config %s: %w", config, err))
				}
			}
			fmt.Fprintf(stderr, "cascade toxiproxy: Toxiproxy API on http://%s\n", addr)
			<-ctx.Done()
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8474", "loopback address of the API (Toxiproxy's default port is 8474)")
	cmd.Flags().StringVar(&config, "config", "", "create these proxies at start (toxiproxy-server's -config JSON)")
	cmd.Flags().BoolVar(&allowRemote, "allow-remote", false, "permit proxies to upstreams off loopback (refused by default)")
	cmd.Flags().Uint64Var(&seed, "seed", 1, "seed of every probability and jitter draw")
	return cmd
}

// postPopulate loads a toxiproxy-server config through the API itself, so
// it is checked exactly as a client's POST /populate would be.
func postPopulate(ctx context.Context, addr string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/populate", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return fmt.Errorf("%s: %s", res.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// packetNote tells validate's user that the scenario needs root, and with
// check fails when this process lacks it (as the run would, at its start).
func packetNote(stderr io.Writer, p *plan.Plan, check bool) error {
	ups := p.PacketUpstreams()
	if len(ups) == 0 {
		return nil
	}
	fmt.Fprintf(stderr, "note: packet faults on %s need root (CAP_NET_ADMIN, CAP_SYS_ADMIN and /dev/net/tun) to run\n", strings.Join(ups, ", "))
	if !check {
		return nil
	}
	if err := packet.CheckPrivileges(); err != nil {
		return fmt.Errorf("--check-privileges: %w", err)
	}
	return nil
}

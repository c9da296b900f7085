package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/internal/dist"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/run"
	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

func newUpstreamCmd(stdout, stderr io.Writer) *cobra.Command {
	var listen, name, latency string
	var status, index int
	var bodySize string
	var seed uint64
	cmd := &cobra.Command{
		Use:   "upstream --listen 127.0.0.1:PORT",
		Short: "Serve one fake upstream replica (what a containerised replica runs)",
		Long: `Upstream serves one replica of a fake upstream, as 'cascade run' does in its own
process: a fixed or distributed latency, a status and a body size. A scenario whose
upstream has 'container: true' runs this command as PID 1 of a FROM scratch image, so
instance faults (kill, restart, pause) act on a real process. It stops on SIGTERM or
Ctrl-C. It listens on loopback only.`,
		Example: `  cascade upstream --listen 127.0.0.1:19001
  cascade upstream --listen 127.0.0.1:19001 --latency 20ms --status 200 --body-size 512
  cascade upstream --listen 127.0.0.1:19001 --latency '{dist: lognormal, p50: 4ms, p99: 20ms}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if listen == "" {
				return exitWith(ExitUsage, errors.New("--listen is required, e.g. --listen 127.0.0.1:19001"))
			}
			b := faults.Behaviour{Status: status}
			if latency != "" {
				// The flag's value is decoded as a document of its own, so
				// an error's column is the column in what was typed.
				var l dist.Latency
				if _, err := yamlfile.Decode("--latency", []byte(latency), &l); err != nil {
					return exitWith(ExitUsage, err)
				}
				b.Latency = l
			}
			if bodySize != "" {
				sz, err := units.ParseSize(bodySize)
				if err != nil {
					return exitWith(ExitUsage, fmt.Errorf("--body-size: %w", err))
				}
				b.BodySize = sz
			}
			if err := b.Validate(); err != nil {
				return exitWith(ExitUsage, err)
			}
			if err := checkLoopbackListen(listen); err != nil {
				return exitWith(ExitUsage, err)
			}
			up := faults.NewUpstream(faults.UpstreamConfig{Name: name, Replicas: 1, Listen: []string{listen}, Behaviour: b, FirstIndex: index},
				faults.Options{Seed: seed, Sink: event.Discard})
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := up.StartContext(ctx); err != nil {
				return exitWith(ExitRunFailed, err)
			}
			defer up.Close()
			r := up.Replicas()[0]
			fmt.Fprintf(stdout, "%s %s on %s\n", run.UpstreamReadyLine, r.Name(), r.Addr())
			<-ctx.Done()
			fmt.Fprintf(stderr, "cascade upstream: %s stopping (%d requests served)\n", r.Name(), r.Received.Load())
			if l := r.Lateness(); l.Releases() > 0 {
				// The wait's own precision, which a client's latency mixes
				// with the loopback path's (bench/faults.sh reads this line).
				fmt.Fprintf(stderr, "cascade upstream: latency: %s\n", l)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "", "host:port to serve on (loopback)")
	f.StringVar(&name, "name", "upstream", "upstream name, in the X-Cascade-Upstream header")
	f.IntVar(&index, "index", 0, "replica index, in the X-Cascade-Replica header (name[index])")
	f.StringVar(&latency, "latency", "", "latency before answering: 20ms, or a distribution such as '{dist: uniform, min: 5ms, max: 50ms}'")
	f.IntVar(&status, "status", 0, "status of the answer (default 200)")
	f.StringVar(&bodySize, "body-size", "", "body size of the answer, e.g. 512 or 4KiB (default 64)")
	f.Uint64Var(&seed, "seed", 1, "seed of the latency draws")
	return cmd
}

// checkLoopbackListen keeps a fake upstream off every network but loopback.
func checkLoopbackListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: expected host:port such as 127.0.0.1:19001", addr)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--listen %q: a fake upstream listens on loopback only (127.0.0.0/8)", addr)
	}
	return nil
}

package run

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/internal/containers"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/proxyconf"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// A scenario's gateway.container: nginx or HAProxy, assembled from this
// machine's Debian binary (internal/containers), started once the replicas
// listen, with a configuration that names their addresses. The load goes to
// it; env.close removes it with the run's other containers (and `cascade
// cleanup` finds it by label after a SIGKILL).
//
//	replicas listen ─▶ addrs ─▶ config (generated, or yours rendered) ─▶ image ─▶ container ─▶ ready ─▶ target

// GatewayConfigFile is the configuration the containerised proxy ran
// with, kept in the run directory: <kind>.conf.
func GatewayConfigFile(kind string) string { return kind + ".conf" }

// startProxy starts p.GatewayContainer in front of its upstream's replicas
// and returns the gateway's base URL. The rendered configuration is kept in
// the run directory.
func (e *upstreamEnv) startProxy(ctx context.Context, p *plan.Plan, ups []*faults.Upstream, w *results.Writer) (string, error) {
	gc := p.GatewayContainer
	var addrs []string
	for _, u := range ups {
		if u.Name() != gc.Upstream {
			continue
		}
		for _, r := range u.Replicas() {
			addrs = append(addrs, r.Addr())
		}
	}
	if len(addrs) == 0 {
		return "", fmt.Errorf("upstream %q has no replica to proxy to", gc.Upstream)
	}
	d, err := e.connect(ctx)
	if err != nil {
		return "", err
	}
	port := gc.Port
	if port == 0 {
		if port, err = e.freePort(); err != nil {
			return "", err
		}
	}
	spec := containers.GatewaySpec{Name: gc.Kind, Port: port, Upstreams: addrs, UpstreamTimeout: gc.Timeout,
		HealthPath: gc.Ready, StartupTimeout: containerStartTimeout}
	if gc.Config != "" {
		spec.Config, err = proxyconf.Render(gc.Config, proxyconf.Values{Kind: gc.Kind, Port: port, Addrs: addrs, Timeout: gc.Timeout, Ready: gc.Ready})
		if err != nil {
			return "", fmt.Errorf("%s: %w", gc.ConfigFile, err)
		}
	}
	conf, run := containers.NginxConfig, d.RunNginx
	if gc.Kind == proxyconf.HAProxy {
		conf, run = containers.HAProxyConfig, d.RunHAProxy
	}
	text, err := conf(spec)
	if err != nil {
		return "", err
	}
	if err := w.WriteFile(GatewayConfigFile(gc.Kind), []byte(text)); err != nil {
		return "", err
	}
	var c *containers.Container
	err = e.step(fmt.Sprintf("starting %s in a container on 127.0.0.1:%d", gc.Kind, port), func() (err error) {
		c, err = run(ctx, e.runID, spec)
		return err
	})
	if errors.Is(err, containers.ErrGatewayNotInstalled) {
		// The error names the package (containers.ErrGatewayNotInstalled).
		return "", fmt.Errorf("its image is assembled from this machine's own %s binary (Debian package %s): %w", gc.Kind, proxyconf.Package(gc.Kind), err)
	}
	if err != nil {
		return "", err
	}
	e.onClose(c.Terminate)
	e.sink.Emit(event.Event{T: e.clock.Now(), Source: "run", Type: "gateway.container", Target: c.Name, Attrs: map[string]any{
		"kind": gc.Kind, "addr": c.Addr, "upstream": gc.Upstream, "servers": strings.Join(addrs, " "),
		"timeout_ms": gc.Timeout.Milliseconds(), "ready_ms": float64(c.Ready.Microseconds()) / 1000, "config": GatewayConfigFile(gc.Kind)}})
	return "http://" + c.Addr, nil
}

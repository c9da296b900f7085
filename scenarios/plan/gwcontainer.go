package plan

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cascadehq/cascade/internal/proxyconf"
	"github.com/cascadehq/cascade/internal/regfile"
	"github.com/cascadehq/cascade/scenarios"
)

// GatewayContainer is gateway.container compiled: nginx or HAProxy, in a
// container the run starts in front of one upstream's replicas.
type GatewayContainer struct {
	// Kind is proxyconf.Nginx or proxyconf.HAProxy.
	Kind string
	// Port on 127.0.0.1; zero: the run picks a free one.
	Port int
	// Upstream is the scenario upstream whose replicas it balances over.
	Upstream string
	// Replicas is that upstream's replica count.
	Replicas int
	// Timeout is the proxy's upstream connect and read timeout.
	Timeout time.Duration
	// Declared is true when Timeout is the proxy's: the generated
	// configuration, or a timeout the scenario gives (a config of your own
	// renders it with {{timeout}}). Only then is it a layer of the
	// cascade. It depends on the scenario alone, so a run re-judged
	// offline, without the config file, has the same layers.
	Declared bool
	// Config is the text of your configuration file, placeholders not yet
	// filled (proxyconf.Render); empty: cascade generates one.
	Config string
	// ConfigFile is where Config was read from.
	ConfigFile string
	// FixedTimeout is true when Config was read and does not render
	// {{timeout}}: the proxy keeps the timeout written in it, whatever
	// a ladder rung asks. False offline, where the file is not read.
	FixedTimeout bool
	// Ready is the path polled for readiness.
	Ready string
}

// DefaultGatewayContainerTimeout is gateway.container's timeout when the
// file gives none.
const DefaultGatewayContainerTimeout = 30 * time.Second

// DefaultGatewayReady is the path the generated configurations answer
// themselves (containers.GatewayHealthPath).
const DefaultGatewayReady = "/cascade-health"

// Attempts is how many replicas one request may try before the client
// sees the proxy's 504: nginx passes a GET that timed out on to the next
// server (proxy_next_upstream error timeout, its default) until each was
// tried, so with n replicas that all hang the client waits n × timeout;
// HAProxy retries connects only. A configuration of your own may differ.
func (g *GatewayContainer) Attempts() int {
	if g.Kind == proxyconf.Nginx && g.Config == "" {
		return max(g.Replicas, 1)
	}
	return 1
}

// gatewayContainer compiles gateway.container.
func (c *compiler) gatewayContainer() {
	g := c.f.Gateway
	gc := g.Container
	const p = "$.gateway.container"
	if g.External != "" {
		c.errorf(p, "container and external exclude each other: either cascade starts nginx or HAProxy, or you run your gateway")
	}
	if len(g.Routes) > 0 || g.Listen != "" || len(g.Upstreams) > 0 || g.AdminListen != "" {
		c.errorf(p, "container and routes/listen/upstreams/admin_listen exclude each other: those configure cascade's own gateway; "+
			"the proxy's are its timeout and, for everything else, a config file of your own")
	}
	out := &GatewayContainer{Kind: gc.Kind, Port: gc.Port, Upstream: gc.Upstream, Timeout: gc.Timeout.D(), Ready: gc.Ready}
	switch gc.Kind {
	case proxyconf.Nginx, proxyconf.HAProxy:
	case "":
		c.errorf(p, "a gateway container needs a kind (valid: %s)", strings.Join(proxyconf.Kinds(), ", "))
	default:
		c.errorf(p+".kind", "unknown kind %q (valid: %s)", gc.Kind, strings.Join(proxyconf.Kinds(), ", "))
	}
	if gc.Port != 0 {
		switch {
		case gc.Port < 1 || gc.Port > 32767:
			c.errorf(p+".port", "port %d: give 1024-32767 (ports from 32768 are the load generator's ephemeral range), or leave it out for a free one", gc.Port)
		case gc.Port < 1024:
			// The image runs the proxy as an unprivileged user on the
			// host's network: the bind failed only at run time, as a
			// readiness timeout after the replicas had started.
			c.errorf(p+".port", "port %d: the proxy runs as an unprivileged user, which cannot bind below 1024: give 1024-32767, or leave it out for a free one", gc.Port)
		default:
			c.listen(p+".port", "127.0.0.1:"+strconv.Itoa(gc.Port))
		}
	}
	switch {
	case gc.Upstream != "":
		up := c.ups[gc.Upstream]
		if up == nil {
			c.errorf(p+".upstream", "unknown upstream %q (declared: %s)", gc.Upstream, strings.Join(c.upstreamNames(), ", "))
		} else {
			out.Replicas = up.Replicas
		}
	case len(c.p.Upstreams) == 1:
		out.Upstream, out.Replicas = c.p.Upstreams[0].Name, c.p.Upstreams[0].Replicas
	case len(c.p.Upstreams) > 1:
		c.errorf(p, "name the upstream the %s container proxies to: upstream: one of %s", gc.Kind, strings.Join(c.upstreamNames(), ", "))
	}
	if out.Timeout == 0 {
		out.Timeout = DefaultGatewayContainerTimeout
	} else if out.Timeout < time.Millisecond {
		c.errorf(p+".timeout", "timeout %s is below 1ms (nginx and HAProxy count in milliseconds)", gc.Timeout)
	}
	if out.Ready == "" {
		out.Ready = DefaultGatewayReady
	} else if !strings.HasPrefix(out.Ready, "/") {
		c.errorf(p+".ready", "ready %q must be a path starting with /", out.Ready)
	}
	out.Declared = gc.Config == "" || gc.Timeout != 0
	if gc.Config == "" {
		if gc.Ready != "" && gc.Ready != DefaultGatewayReady {
			c.errorf(p+".ready", "the generated configuration answers %s; ready is for a config file of your own", DefaultGatewayReady)
		}
	} else {
		c.gatewayConfig(p, gc, out)
	}
	c.p.GatewayContainer = out
}

// gatewayConfig reads and checks a configuration file of your own: its
// placeholders, and that it says where it listens.
func (c *compiler) gatewayConfig(p string, gc *scenarios.GatewayContainer, out *GatewayContainer) {
	out.ConfigFile = c.relative(gc.Config)
	if c.opts.Offline {
		out.Config = "# not read: offline\n"
		return
	}
	b, err := regfile.Read(out.ConfigFile, regfile.MaxConfig)
	if err != nil {
		c.errorf(p+".config", "%v", err)
		return
	}
	text := string(b)
	if err := proxyconf.Check(text); err != nil {
		c.errorf(p+".config", "%s: %v", gc.Config, err)
		return
	}
	if strings.TrimSpace(text) == "" {
		c.errorf(p+".config", "%s is empty", gc.Config)
		return
	}
	out.Config = text
	out.FixedTimeout = !proxyconf.Uses(text, "timeout")
	if !c.opts.AllowRemote {
		// The proxy runs on the host's network: what it listens on and
		// sends to is cascade's traffic too, and the generated
		// configuration is checked the same way.
		for _, pr := range proxyconf.NotLoopback(gc.Kind, text) {
			c.errorf(p+".config", "%s %s (cascade keeps its traffic on loopback unless you pass --allow-remote)", gc.Config, pr)
		}
	}
	if gc.Port == 0 && !proxyconf.Uses(text, "listen") && !proxyconf.Uses(text, "port") {
		c.errorf(p+".config", "%s names no place to listen: bind or listen on {{listen}} (or 127.0.0.1:{{port}}), or give the port it listens on (port: ...)", gc.Config)
	}
	if gc.Timeout != 0 && !proxyconf.Uses(text, "timeout") {
		c.warnf(p+".timeout", "%s does not use {{timeout}}: the timeout here is what cascade judges the gateway layer by, not what %s was told", gc.Config, gc.Kind)
	}
	if up := c.ups[out.Upstream]; up != nil && len(up.Listen) == 0 && !proxyconf.Uses(text, "servers") && !proxyconf.Uses(text, "addrs") {
		c.warnf(p+".config", "%s names none of upstream %s's replicas, which listen on ports chosen at run time: use {{servers}} or {{addrs}} (or give the upstream fixed listen addresses)",
			gc.Config, out.Upstream)
	}
}

// containerTimeouts is the containerised proxy's timeout as the client may
// see it: once per attempt (GatewayContainer.Attempts).
func (c *compiler) containerTimeouts() []layerTimeout {
	g := c.p.GatewayContainer
	if g == nil || !g.Declared {
		return nil // a config of your own that says nothing of its timeout
	}
	const path = "$.gateway.container.timeout"
	out := []layerTimeout{{layer: "gateway", what: g.Kind + " timeout", d: g.Timeout, path: path, rung: true}}
	for k := 2; k <= g.Attempts(); k++ {
		out = append(out, layerTimeout{layer: "gateway", what: fmt.Sprintf("%d × %s timeout", k, g.Kind), d: time.Duration(k) * g.Timeout, path: path})
	}
	return out
}

// containerLint is the static timeout cascade for a containerised proxy:
// its timeout against the client's, and against the upstream's normal
// latency.
func (c *compiler) containerLint() {
	g := c.p.GatewayContainer
	ts := c.containerTimeouts()
	if g == nil || len(ts) == 0 {
		return
	}
	const path = "$.gateway.container.timeout"
	worst := ts[len(ts)-1]
	if client := c.clientTimeout(); worst.d >= client {
		what := worst.what
		if worst.d != g.Timeout {
			what += fmt.Sprintf(" (%s passes a timed-out request on to each of %d replicas in turn)", g.Kind, g.Attempts())
		}
		c.warnf(path, "%s %s is not shorter than the client timeout %s: the client gives up first and never sees %s's 504",
			what, worst.d, client, g.Kind)
	}
	if up := c.ups[g.Upstream]; up != nil && !up.Behaviour.Latency.IsZero() {
		if hi := up.Behaviour.Latency.Upper(); g.Timeout < hi {
			c.warnf(path, "%s timeout %s is below upstream %s's normal p99 latency %s: healthy requests will time out", g.Kind, g.Timeout, up.Name, hi)
		}
	}
}

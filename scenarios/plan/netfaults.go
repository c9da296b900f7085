package plan

import (
	"fmt"
	"time"

	"github.com/cascadehq/cascade/faults"
)

// netFaults prepares the upstreams that connection and packet faults act
// on: a fault proxy in front of each replica for the first, a packet link
// (root only) for the second. It refuses what cannot work: packet faults
// behind your own gateway (it cannot dial into the run's namespace), both
// layers on one upstream, a packet fault on one replica of several (the
// link is the upstream's), and packet faults that overlap on one upstream
// (the link holds one impairment at a time).
func (c *compiler) netFaults() {
	byName := map[string]faults.Entry{}
	for _, e := range c.p.Timeline {
		byName[e.Name] = e
	}
	type placed struct {
		e    faults.Entry
		path string
	}
	packets := map[string][]placed{} // upstream → its packet faults
	layers := map[string]map[faults.Layer]string{}
	counts := map[string]int{}
	for i, f := range c.f.Faults {
		counts[f.Kind]++
		name := f.Name
		if name == "" {
			name = fmt.Sprintf("%s-%d", f.Kind, counts[f.Kind])
		}
		e, ok := byName[name]
		if !ok {
			continue // did not compile: already reported
		}
		k, err := faults.LookupKind(e.Kind)
		if err != nil || (k.Layer != faults.LayerConnection && k.Layer != faults.LayerPacket) {
			continue
		}
		p := fmt.Sprintf("$.faults[%d]", i)
		up := c.ups[e.Upstream]
		if layers[e.Upstream] == nil {
			layers[e.Upstream] = map[faults.Layer]string{}
		}
		if other, ok := layers[e.Upstream][otherLayer(k.Layer)]; ok {
			c.errorf(p+".kind", "upstream %s has %s faults (%s) and %s faults (%s): one upstream takes one of the two layers (the fault proxy listens on loopback, outside the packet link)",
				e.Upstream, otherLayer(k.Layer), other, k.Layer, e.Name)
			continue
		}
		layers[e.Upstream][k.Layer] = e.Name
		if k.Layer == faults.LayerConnection {
			if c.p.External != "" && up.Container != nil {
				// The fault proxy would take the address your gateway dials,
				// but the container listens on that port itself.
				c.errorf(p+".kind", "connection faults act in a fault proxy in front of each replica; upstream %s runs in a container "+
					"your gateway dials directly at its fixed port, so the proxy has nowhere to stand (take instance faults: kill, restart, pause, down; "+
					"or use cascade's gateway, which dials the proxy)", e.Upstream)
				continue
			}
			up.FaultProxy = true
			continue
		}
		switch {
		case c.p.External != "":
			c.errorf(p+".kind", "packet faults need cascade's built-in gateway: the link's upstream side is a network namespace of the run, "+
				"which your gateway cannot dial into (use connection faults, kind tcp_*, with an external gateway)")
			continue
		case c.p.GatewayContainer != nil:
			c.errorf(p+".kind", "packet faults need cascade's built-in gateway: the link's upstream side is a network namespace of the run, "+
				"which the %s container is given no address in (use connection faults, kind tcp_*, which act in a fault proxy it dials)", c.p.GatewayContainer.Kind)
			continue
		case e.Replica != -1 && up.Replicas > 1:
			c.errorf(p+".target", "a packet fault acts on the link of the whole upstream %s (shared by its %d replicas): target %s, "+
				"and narrow it to one replica's traffic with params.filter.port if needed", e.Upstream, up.Replicas, e.Upstream)
			continue
		}
		up.PacketFaults = true
		for _, o := range packets[e.Upstream] {
			if overlap(o.e, e) {
				c.errorf(p+".start", "packet faults %s and %s overlap on upstream %s: its link holds one impairment at a time (put both impairments in one fault)",
					o.e.Name, e.Name, e.Upstream)
			}
		}
		packets[e.Upstream] = append(packets[e.Upstream], placed{e, p})
	}
	// c.ups points into c.p.Upstreams: the flags are in the plan.
}

func otherLayer(l faults.Layer) faults.Layer {
	if l == faults.LayerPacket {
		return faults.LayerConnection
	}
	return faults.LayerPacket
}

// overlap reports whether two entries are ever active at once.
func overlap(a, b faults.Entry) bool {
	for _, x := range windows(a) {
		for _, y := range windows(b) {
			if x[0] < y[1] && y[0] < x[1] {
				return true
			}
		}
	}
	return false
}

func windows(e faults.Entry) [][2]time.Duration {
	end := func(start time.Duration) time.Duration {
		if e.Duration == 0 {
			return 1<<63 - 1
		}
		return start + e.Duration
	}
	var out [][2]time.Duration
	for i := 0; i < e.Occurrences(); i++ {
		s := e.Start + time.Duration(i)*e.Every
		out = append(out, [2]time.Duration{s, end(s)})
	}
	return out
}

// PacketUpstreams names the upstreams whose traffic crosses a packet link
// in this plan: running it needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
func (p *Plan) PacketUpstreams() []string {
	var out []string
	for _, u := range p.Upstreams {
		if u.PacketFaults {
			out = append(out, u.Name)
		}
	}
	return out
}

package plan

import (
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/faults/packet"
)

// netScenario is a scenario with the given faults (and gateway section).
func netScenario(gw, faultsYAML string) string {
	return `name: net
upstreams:
  - {name: api, replicas: 2, listen: ["127.0.0.1:19001", "127.0.0.1:19002"]}
  - {name: db}
` + gw + `
load:
  stages:
    - {duration: 20s, rate: 10/s}
  requests:
    - {path: /}
faults:
` + faultsYAML
}

const builtin = `gateway:
  routes:
    - {path: /, upstream: api}
    - {path: /db, upstream: db}`

func TestConnectionAndPacketFaultsCompile(t *testing.T) {
	p, err := CompileBytes("net.yaml", []byte(netScenario(builtin, `
  - {name: slow, kind: tcp_latency, target: "api[1]", start: 1s, duration: 2s, ramp: 1s, params: {latency: 100ms, jitter: 5ms, stream: upstream, toxicity: 50%, request_toxicity: 20%}}
  - {name: narrow, kind: tcp_bandwidth, target: api, start: 3s, params: {rate: 800kbit}}
  - {name: gone, kind: tcp_down, target: api, start: 4s, duration: 1s}
  - {name: lossy, kind: packet, target: db, start: 2s, duration: 5s, ramp: 2s, params: {loss: 5%, delay: 10ms, direction: to_upstream}}
  - {name: bursty, kind: packet, target: db, start: 8s, duration: 2s, params: {loss: {gemodel: {p: 1%, r: 30%}}, syn_blackhole: true}}
`)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	api, db := p.Upstreams[0], p.Upstreams[1]
	if !api.FaultProxy || api.PacketFaults || db.FaultProxy || !db.PacketFaults {
		t.Errorf("api proxy %v packet %v; db proxy %v packet %v", api.FaultProxy, api.PacketFaults, db.FaultProxy, db.PacketFaults)
	}
	if got := p.PacketUpstreams(); len(got) != 1 || got[0] != "db" {
		t.Errorf("packet upstreams %v", got)
	}
	slow := p.Timeline[0].Spec.(*faults.TCPLatencySpec)
	if slow.Latency.D() != 100*time.Millisecond || slow.Jitter.D() != 5*time.Millisecond || slow.Toxicity != 0.5 || slow.RequestToxicity != 0.2 || slow.Stream.String() != "upstream" {
		t.Errorf("tcp_latency params %+v", slow)
	}
	if bw := p.Timeline[1].Spec.(*faults.TCPBandwidthSpec); bw.Rate.BytesPerSecond() != 100_000 || bw.Toxicity != 1 || bw.RequestToxicity != 1 || bw.Stream.String() != "downstream" {
		t.Errorf("tcp_bandwidth params and defaults %+v", bw)
	}
	lossy := p.Timeline[3].Spec.(*faults.PacketSpec)
	if lossy.Direction != packet.ToUpstream || lossy.Loss.Percent != 0.05 || lossy.Delay.D() != 10*time.Millisecond {
		t.Errorf("packet params %+v", lossy)
	}
	if b := p.Timeline[4].Spec.(*faults.PacketSpec); b.Loss.GEModel.P != 0.01 || !b.SYNBlackhole || b.Direction != packet.Both {
		t.Errorf("bursty params %+v", b)
	}
}

// Every mistake is reported at its line, with what would be right.
func TestNetFaultErrors(t *testing.T) {
	for _, tc := range []struct {
		gw, fault string
		want      []string // substrings of the error, position included
	}{
		{builtin, `  - {kind: tcp_latency, target: api, start: 1s, params: {latency: 100ms, latncy: 5ms}}`,
			[]string{"net.yaml:15:", "latncy"}},
		{builtin, `  - {kind: tcp_latency, target: api, start: 1s, params: {jitter: 5ms}}`,
			[]string{"net.yaml:15:", "faults[0].params.latency", "latency is required"}},
		{builtin, `  - {kind: tcp_latency, target: api, start: 1s, params: {latency: 10ms, jitter: 50ms}}`,
			[]string{"faults[0].params.jitter", "larger than latency"}},
		{builtin, `  - {kind: tcp_latency, target: api, start: 1s, params: {latency: 10ms, stream: sideways}}`,
			[]string{"net.yaml:15:", "unknown stream \"sideways\""}},
		{builtin, `  - {kind: tcp_latency, target: api, start: 1s, params: {latency: 10ms, toxicity: 0%}}`,
			[]string{"faults[0].params.toxicity", "does nothing"}},
		{builtin, `  - {kind: tcp_bandwidth, target: api, start: 1s, params: {rate: 1kbit}}`,
			[]string{"faults[0].params.rate", "resolution"}},
		{builtin, `  - {kind: tcp_bandwidth, target: api, start: 1s, params: {rate: 100kbps}}`,
			[]string{"net.yaml:15:"}},
		{builtin, `  - {kind: tcp_slicer, target: api, start: 1s, params: {average_size: 10, size_variation: 20}}`,
			[]string{"faults[0].params.size_variation", "smaller than average_size"}},
		{builtin, `  - {kind: tcp_blackhole, target: api, start: 1s, params: {no_accept: true, toxicity: 50%}}`,
			[]string{"faults[0].params.no_accept", "must be 100%"}},
		{builtin, `  - {kind: tcp_blackhole, target: api, start: 1s, ramp: 1s}`,
			[]string{"faults[0].ramp", "does not ramp"}},
		{builtin, `  - {kind: tcp_toxic, target: api, start: 1s}`,
			[]string{"faults[0].kind", "unknown fault kind", "tcp_latency"}},
		{builtin, `  - {kind: packet, target: db, start: 1s, params: {}}`,
			[]string{"faults[0].params", "at least one impairment"}},
		{builtin, `  - {kind: packet, target: db, start: 1s, params: {loss: 5%, direction: sideways}}`,
			[]string{"net.yaml:15:", "unknown direction"}},
		{builtin, `  - {kind: packet, target: db, start: 1s, params: {reorder: {gap: 3}}}`,
			[]string{"faults[0].params.reorder", "percent is not set"}},
		{builtin, `  - {kind: packet, target: db, start: 1s, params: {jitter: 1ms, correlation: 100%}}`,
			[]string{"faults[0].params.correlation"}},
		{builtin, `  - {kind: packet, target: "api[0]", start: 1s, params: {loss: 1%}}`,
			[]string{"faults[0].target", "shared by its 2 replicas"}},
		{builtin, `  - {kind: packet, target: db, start: 1s, duration: 5s, params: {loss: 1%}}
  - {kind: packet, target: db, start: 4s, params: {delay: 1ms}}`,
			[]string{"faults[1].start", "overlap"}},
		{builtin, `  - {kind: packet, target: db, start: 1s, params: {loss: 1%}}
  - {kind: tcp_latency, target: db, start: 1s, params: {latency: 1ms}}`,
			[]string{"faults[1].kind", "one upstream takes one of the two layers"}},
		{"gateway: {external: \"http://127.0.0.1:8080\"}", `  - {kind: packet, target: api, start: 1s, params: {loss: 1%}}`,
			[]string{"faults[0].kind", "built-in gateway"}},
	} {
		gw := tc.gw
		src := netScenario(gw, tc.fault+"\n")
		if strings.Contains(gw, "external") {
			src = strings.Replace(src, "  - {name: db}\n", "", 1)
		}
		_, err := CompileBytes("net.yaml", []byte(src), Options{})
		if err == nil {
			t.Errorf("%s: compiled", tc.fault)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s:\nerror %q\nlacks %q", tc.fault, err, w)
			}
		}
	}
}

// With your own gateway, connection faults are fine: the listen addresses
// become the proxies'.
func TestConnectionFaultsWithExternalGateway(t *testing.T) {
	src := strings.Replace(netScenario("gateway: {external: \"http://127.0.0.1:8080\"}",
		"  - {kind: tcp_reset_peer, target: api, start: 1s, params: {timeout: 100ms}}\n"), "  - {name: db}\n", "", 1)
	p, err := CompileBytes("net.yaml", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Upstreams[0].FaultProxy || len(p.Upstreams[0].Listen) != 2 {
		t.Errorf("api %+v", p.Upstreams[0])
	}
}

func TestOverlap(t *testing.T) {
	s := time.Second
	a := faults.Entry{Start: 1 * s, Duration: 2 * s}
	for _, tc := range []struct {
		b    faults.Entry
		want bool
	}{
		{faults.Entry{Start: 3 * s, Duration: s}, false}, // back to back
		{faults.Entry{Start: 2 * s, Duration: s}, true},
		{faults.Entry{Start: 0, Duration: s}, false},
		{faults.Entry{Start: 0}, true},                                          // until the end
		{faults.Entry{Start: 0, Duration: s / 2, Every: 2 * s, Times: 3}, true}, // the second occurrence, at 2s
		{faults.Entry{Start: 4 * s, Duration: s, Every: 2 * s, Times: 3}, false},
	} {
		if got := overlap(a, tc.b); got != tc.want {
			t.Errorf("overlap(%+v, %+v) = %v", a, tc.b, got)
		}
	}
}

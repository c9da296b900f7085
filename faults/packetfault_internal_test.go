package faults

import (
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/faults/packet"
	"github.com/cascadehq/cascade/internal/units"
)

// A ramp scales the rates and delays, keeps what does not scale, and never
// produces an impairment the link would refuse.
func TestScaleImpairment(t *testing.T) {
	imp := packet.Impairment{
		Loss: packet.Loss{Percent: 0.1}, Delay: units.Duration(40 * time.Millisecond), Jitter: units.Duration(4 * time.Millisecond),
		Correlation: 0.5, Distribution: "normal", Duplicate: 0.02, Corrupt: 0.01,
		Reorder: packet.Reorder{Percent: 0.2, Gap: 3}, SYNBlackhole: true, Filter: packet.Filter{Port: 80},
	}
	half := scaleImpairment(imp, 0.5)
	if half.Loss.Percent != 0.05 || half.Delay.D() != 20*time.Millisecond || half.Jitter.D() != 2*time.Millisecond ||
		half.Duplicate != 0.01 || half.Reorder.Percent != 0.1 || half.Reorder.Gap != 3 || !half.SYNBlackhole || half.Filter.Port != 80 {
		t.Errorf("at 50%%: %+v", half)
	}
	if full := scaleImpairment(imp, 1); full != imp {
		t.Errorf("at 100%%: %+v", full)
	}
	for _, x := range []float64{0, 0.001, 0.3} {
		for _, in := range []packet.Impairment{imp, {Loss: packet.Loss{GEModel: packet.GilbertElliott{P: 0.01, R: 0.3}}}} {
			if err := scaleImpairment(in, x).Validate(); err != nil {
				t.Errorf("at %v: %v", x, err)
			}
		}
	}
	if z := scaleImpairment(packet.Impairment{Loss: packet.Loss{Percent: 0.1}}, 0); !z.IsZero() {
		t.Errorf("loss at 0%%: %+v", z)
	}
}

// A fault that never took effect says why: a SYN blackhole alone acts on
// new connections only, not on random draws.
func TestPacketNoEffectReasons(t *testing.T) {
	crossed := &PacketEffects{ToUpstream: PacketDirEffects{Packets: 40}, FromUpstream: PacketDirEffects{Packets: 38}}
	for _, tc := range []struct {
		imp  packet.Impairment
		want string
	}{
		{packet.Impairment{SYNBlackhole: true}, "78 packets crossed the link, but no new connection was opened while it was active"},
		{packet.Impairment{SYNBlackhole: true, Filter: packet.Filter{Port: 8080}}, "filtered to port 8080"},
		{packet.Impairment{Loss: packet.Loss{Percent: packet.Percent(0.01)}}, "the random draws spared every one"},
	} {
		f := &packetFault{spec: PacketSpec{Impairment: tc.imp}, final: crossed}
		if got := f.NoEffect(EffectStats{}); !strings.Contains(got, tc.want) {
			t.Errorf("%+v: %q, want %q", tc.imp, got, tc.want)
		}
	}
	if err := (&PacketSpec{Impairment: packet.Impairment{Filter: packet.Filter{Port: 8080}}}).Validate(); err == nil {
		t.Error("a filter alone was accepted: it impairs nothing")
	}
}

package faults

import (
	"fmt"

	"github.com/cascadehq/cascade/faults/packet"
	"github.com/cascadehq/cascade/internal/precise"
)

// Link is the packet link the upstream's traffic crosses, or nil.
func (u *Upstream) Link() *packet.Link { return u.cfg.Link }

// EffectReporter is implemented by faults whose effect has more to it than
// a count of firings: the connections a connection fault acted on, the
// packets a packet fault dropped and the retransmissions that followed,
// how punctually a delay ended. The timeline sums each occurrence's
// Effects into the fault's Report.
type EffectReporter interface {
	Effects() Effects
}

// Effects is what a fault did beyond firing. At most one of Connection and
// Packet is set.
type Effects struct {
	Connection *ConnectionEffects `json:"connection,omitempty"`
	Packet     *PacketEffects     `json:"packet,omitempty"`
	// Lateness is how late past its deadline each timed release was: the
	// end of each delay of a latency or spike fault, each timed write of a
	// connection fault's toxic. The fault's own precision, which the
	// client's latency mixes with the loopback path's. Nil for faults that
	// time nothing.
	Lateness *precise.Lateness `json:"lateness,omitempty"`
}

func (e *Effects) add(o Effects) {
	if o.Lateness != nil {
		if e.Lateness == nil {
			e.Lateness = &precise.Lateness{}
		}
		e.Lateness.Add(*o.Lateness)
	}
	if o.Connection != nil {
		if e.Connection == nil {
			e.Connection = &ConnectionEffects{}
		}
		e.Connection.add(*o.Connection)
	}
	if o.Packet != nil {
		if e.Packet == nil {
			e.Packet = &PacketEffects{Direction: o.Packet.Direction}
		}
		e.Packet.add(*o.Packet)
	}
}

func (e Effects) clone() Effects {
	var out Effects
	out.add(e)
	return out
}

// ready says why an upstream cannot take faults of kind k in this run: a
// connection fault needs the fault proxies and a packet fault the link,
// which the run sets up only for upstreams whose timeline has such faults.
func (u *Upstream) ready(k Kind) error {
	switch {
	case k.Layer == LayerConnection && !u.cfg.FaultProxy:
		return fmt.Errorf("%s is a connection fault and upstream %s has no fault proxy in front: "+
			"the run puts one there only when the scenario's timeline has connection faults on it", k.Name, u.cfg.Name)
	case k.Layer == LayerPacket && u.cfg.Link == nil:
		return fmt.Errorf("%s is a packet fault and upstream %s's traffic does not cross a packet link: "+
			"the run makes one only when the scenario's timeline has packet faults on it (and it runs as root)", k.Name, u.cfg.Name)
	}
	return nil
}

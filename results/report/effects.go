package report

import (
	"fmt"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/cascadehq/cascade/results"
)

// writeWithEffects writes the aligned fault lines, each followed by its
// effect lines (outside the table, so they do not widen its columns).
func writeWithEffects(b *strings.Builder, table string, fs []results.FaultSummary) {
	lines := strings.SplitAfter(table, "\n")
	for i, l := range lines {
		b.WriteString(l)
		if i < len(fs) {
			for _, d := range effectLines(fs[i]) {
				b.WriteString("      " + d + "\n")
			}
		}
	}
}

// effectLines says what a connection or packet fault did, under its line
// in the Faults block: the evidence that a loss or a toxic bit, and how;
// and for a fault that times its releases, how punctual they were.
func effectLines(f results.FaultSummary) []string {
	var out []string
	if l := f.Lateness; l != nil && l.Releases() > 0 {
		out = append(out, "timing: "+l.String())
	}
	if c := f.Connection; c != nil && f.Started {
		s := fmt.Sprintf("connections: %d carried traffic, %d drawn, %d acted on · %d messages", c.ConnsSeen, c.ConnsDrawn, c.Conns, c.Messages)
		if c.BytesDelayed > 0 {
			s += " · " + humanize.IBytes(c.BytesDelayed) + " delayed"
		}
		if c.BytesDropped > 0 {
			s += " · " + humanize.IBytes(c.BytesDropped) + " dropped"
		}
		if c.Closes > 0 {
			s += fmt.Sprintf(" · %d closed or reset", c.Closes)
		}
		out = append(out, s)
	}
	if p := f.Packet; p != nil && f.Started {
		out = append(out, "packets to upstream: "+packetDir(p.ToUpstream)+" · from upstream: "+packetDir(p.FromUpstream))
		r := fmt.Sprintf("TCP retransmits: %d (engine), %d (capture)",
			p.ToUpstream.Retransmits+p.FromUpstream.Retransmits, p.ToUpstream.CapturedRetransmits+p.FromUpstream.CapturedRetransmits)
		if p.KernelRetransmits != nil {
			r += fmt.Sprintf(", %d (kernel)", *p.KernelRetransmits)
		}
		out = append(out, r)
		// Drops the fault did not ask for: the engine could not keep up.
		// Without this line they would pass for the impairment's doing
		// (retransmits with no loss to explain them).
		if k := p.ToUpstream.KernelDropped + p.FromUpstream.KernelDropped; k > 0 {
			out = append(out, fmt.Sprintf("WARNING: %d packets (to upstream %d, from upstream %d) dropped by the kernel before the packet engine "+
				"could read them: the engine's throughput ceiling, not the fault; lower the load or the response sizes",
				k, p.ToUpstream.KernelDropped, p.FromUpstream.KernelDropped))
		}
	}
	return out
}

func packetDir(d results.PacketDirection) string {
	parts := []string{fmt.Sprintf("%d", d.Packets)}
	add := func(n uint64, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(d.Lost, "lost")
	add(d.Blackholed, "SYNs blackholed")
	add(d.Overflow, "overflowed")
	add(d.Delayed, "delayed")
	add(d.Duplicated, "duplicated")
	add(d.Reordered, "reordered")
	add(d.Corrupted, "corrupted")
	return strings.Join(parts, ", ")
}

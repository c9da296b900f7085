package run

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/faults/packet"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// The packet layer's part of a run: one Link (two network namespaces and
// the userspace packet engine) per upstream whose timeline has packet
// faults. Its replicas listen in the link's upstream namespace and the
// built-in gateway dials them from the other side. Links are named from
// the run's id, so `cascade cleanup` finds what a killed run left:
//
//	cz<8 chars of hash(run id)>u<2-digit upstream index>-g / -u

// checkPacketPrivileges refuses, before anything starts, a plan with packet
// faults in a process that cannot create namespaces and TUN devices; the
// message names the missing capabilities.
func checkPacketPrivileges(p *plan.Plan) error {
	ups := p.PacketUpstreams()
	if len(ups) == 0 {
		return nil
	}
	if err := packet.CheckPrivileges(); err != nil {
		return fmt.Errorf("scenario %s has packet faults on %s: %w", p.Name, strings.Join(ups, ", "), err)
	}
	return nil
}

// linkSet is the run's links by upstream name.
type linkSet map[string]*packet.Link

// close removes every link's namespaces and devices.
func (s linkSet) close() error {
	var errs []error
	for _, l := range s {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// linkPrefix names upstream i's link in run runID.
func linkPrefix(runID string, i int) string {
	return runLinkPrefix(runID) + "u" + fmt.Sprintf("%02d", i%100)
}

// runLinkPrefix is what every link of run runID is named from.
func runLinkPrefix(runID string) string {
	h := fnv.New64a()
	h.Write([]byte(runID))
	s := strconv.FormatUint(h.Sum64(), 36)
	s = strings.Repeat("0", max(0, 8-len(s))) + s
	return "cz" + s[len(s)-8:]
}

// linkName matches the namespaces (and devices) of run links.
var linkName = regexp.MustCompile(`^(cz[0-9a-z]{8}u[0-9]{2})-[gu]$`)

// startLinks makes the links of p's packet upstreams. They live until
// closed, not until the run's context ends: on Ctrl-C the timeline must
// still clear its impairments before the namespaces go. A ctx that ends
// while they are being made (Ctrl-C during the setup) stops making them:
// each takes a few tens of milliseconds, and a run with several packet
// upstreams would otherwise finish its setup and start its load first.
func startLinks(ctx context.Context, p *plan.Plan, runID string, sink event.Sink, clock *event.Clock) (linkSet, error) {
	s := linkSet{}
	for i, u := range p.Upstreams {
		if !u.PacketFaults {
			continue
		}
		if err := ctx.Err(); err != nil {
			_ = s.close()
			return nil, err
		}
		l, err := packet.NewLink(context.Background(), packet.Config{Prefix: linkPrefix(runID, i), Name: u.Name,
			Seed: p.Seed ^ hash("packet", u.Name), Sink: sink, Clock: clock, Capture: true})
		if err != nil {
			_ = s.close()
			return nil, fmt.Errorf("upstream %s: packet link: %w", u.Name, err)
		}
		s[u.Name] = l
		sink.Emit(event.Event{T: clock.Now(), Source: "run", Type: "packet.link", Target: u.Name,
			Attrs: map[string]any{"gateway_netns": l.GatewayNetns(), "upstream_netns": l.UpstreamNetns(), "run_id": runID}})
	}
	return s, nil
}

// effectSummaries copies a fault's connection and packet effects into the
// summary's form.
func effectSummaries(e faults.Effects) (*results.ConnectionEffect, *results.PacketEffect) {
	var c *results.ConnectionEffect
	var p *results.PacketEffect
	if x := e.Connection; x != nil {
		c = &results.ConnectionEffect{ConnsSeen: x.ConnsSeen, ConnsDrawn: x.ConnsDrawn, Conns: x.Conns, Messages: x.Messages,
			BytesDelayed: x.BytesDelayed, BytesDropped: x.BytesDropped, Closes: x.Closes}
	}
	if x := e.Packet; x != nil {
		dir := func(d faults.PacketDirEffects) results.PacketDirection {
			return results.PacketDirection{Packets: d.Packets, Dropped: d.Dropped, Lost: d.Lost, Blackholed: d.Blackholed,
				Overflow: d.Overflow, Delayed: d.Delayed, Duplicated: d.Duplicated, Reordered: d.Reordered, Corrupted: d.Corrupted,
				Retransmits: d.Retransmits, CapturedRetransmits: d.CapturedRetransmits, KernelDropped: d.KernelDropped}
		}
		p = &results.PacketEffect{Direction: x.Direction, ToUpstream: dir(x.ToUpstream), FromUpstream: dir(x.FromUpstream)}
		if x.KernelCounted {
			k := x.KernelRetransmits
			p.KernelRetransmits = &k
		}
	}
	return c, p
}

// netnsCleaner removes the namespaces (and devices) of links whose run was
// killed before it could remove them. Its zero value works on /run/netns
// with this process's privileges. Tests set dir (where it looks) with a
// failing privileged, so as to check what an unprivileged user is told;
// removal always goes through packet.Cleanup, on /run/netns.
type netnsCleaner struct {
	dir        string       // default /run/netns
	privileged func() error // default packet.CheckPrivileges
}

func (netnsCleaner) Name() string { return "namespaces" }

func (c netnsCleaner) Clean(ctx context.Context, o CleanupOptions) (Cleaned, error) {
	dir, privileged := cmp.Or(c.dir, "/run/netns"), c.privileged
	if privileged == nil {
		privileged = packet.CheckPrivileges
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return Cleaned{}, nil
	}
	if err != nil {
		return Cleaned{}, err
	}
	want := ""
	if o.RunID != "" {
		want = runLinkPrefix(o.RunID)
	}
	stems := map[string][]string{}
	var names []string
	for _, e := range entries {
		m := linkName.FindStringSubmatch(e.Name())
		if m == nil || !strings.HasPrefix(m[1], want) {
			continue
		}
		stems[m[1]] = append(stems[m[1]], e.Name())
		names = append(names, e.Name())
	}
	// Anyone may list /run/netns, only root may remove what is there: a
	// root run that was killed leaves namespaces that an unprivileged
	// cleanup can see but not remove, and must not call "nothing to clean".
	if perr := privileged(); perr != nil {
		if len(names) == 0 {
			return Cleaned{}, fmt.Errorf("%w: no namespace of a cascade run is left", ErrNothingToClean)
		}
		sort.Strings(names)
		return Cleaned{}, fmt.Errorf("%d namespaces left by killed runs (%s); removing them needs root: %w",
			len(names), strings.Join(names, ", "), perr)
	}
	var removed []string
	var errs []error
	keys := make([]string, 0, len(stems))
	for k := range stems {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var kept []string
	for _, stem := range keys {
		if ctx.Err() != nil {
			break
		}
		if !o.Force {
			if why := heldNetns(stems[stem]); why != "" {
				for _, n := range stems[stem] {
					kept = append(kept, "netns "+n+" ("+why+")")
				}
				continue
			}
		}
		// The stem is exact (fixed width), so Cleanup's prefix match
		// cannot reach another run's link.
		if err := packet.Cleanup(stem); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, n := range stems[stem] {
			removed = append(removed, "netns "+n)
		}
	}
	return Cleaned{Removed: removed, Kept: kept}, errors.Join(errs...)
}

// heldNetns says why a link's namespaces must stay: a process holds one of
// them (a live run holds both open; a process may also run inside one).
// Both go together or neither: the link is one run's.
func heldNetns(names []string) string {
	for _, n := range names {
		pids, err := packet.Holders(n)
		if err != nil {
			return fmt.Sprintf("cannot tell whether it is in use: %v", err)
		}
		if len(pids) > 0 {
			ids := make([]string, len(pids))
			for i, p := range pids {
				ids[i] = strconv.Itoa(p)
			}
			return "in use by process " + strings.Join(ids, ", ")
		}
	}
	return ""
}

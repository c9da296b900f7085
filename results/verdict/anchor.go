package verdict

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/results"
)

// Edge says which end of a fault an Anchor is.
type Edge int

// Edges.
const (
	Onset Edge = iota // the fault's fault.start event
	End               // the fault's fault.stop event
)

// Anchor is a point on the run's clock an objective measures from: a
// fault's onset or end, as the injector itself stamped it (fault.start,
// fault.stop events: the evidence is the injector's own clock, not the
// plan), or a fixed offset such as the start of a load stage.
type Anchor struct {
	Fault string        // a fault's name; "" for a fixed offset
	Edge  Edge          // for a fault
	At    time.Duration // the fixed offset
	Label string        // how evidence names it: "stage[1] (2000/s)"
}

// FaultOnset anchors at a fault's start.
func FaultOnset(name string) Anchor { return Anchor{Fault: name, Edge: Onset} }

// FaultEnd anchors at a fault's end.
func FaultEnd(name string) Anchor { return Anchor{Fault: name, Edge: End} }

// Offset anchors at a fixed offset, e.g. a load stage's start.
func Offset(at time.Duration, label string) Anchor { return Anchor{At: at, Label: label} }

// String names the anchor as evidence does.
func (a Anchor) String() string {
	if a.Fault == "" {
		if a.Label != "" {
			return a.Label
		}
		return "t=" + secs(a.At)
	}
	if a.Edge == Onset {
		return "the onset of fault " + a.Fault
	}
	return "the end of fault " + a.Fault
}

// Resolve finds the anchor on the run's clock; evidence says where from.
func (a Anchor) Resolve(in *Input) (time.Duration, string, bool) {
	if a.Fault == "" {
		return a.At, a.String() + " at " + secs(a.At), true
	}
	typ := "fault.start"
	if a.Edge == End {
		typ = "fault.stop"
	}
	for _, e := range in.Events {
		if e.Type == typ && e.Attr("fault") == a.Fault {
			return e.T, fmt.Sprintf("fault %s %s at %s (%s)", a.Fault, map[Edge]string{Onset: "started", End: "ended"}[a.Edge], secs(e.T), typ), true
		}
	}
	return 0, fmt.Sprintf("no %s event for fault %s was recorded", typ, a.Fault), false
}

// secs prints an offset on the run's clock, to the millisecond.
func secs(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) + "s"
}

// within prints a duration compactly ("732ms", "1.204s").
func within(d time.Duration) string {
	if d < 0 {
		return "-" + within(-d)
	}
	return FormatDuration(d)
}

// targets reports whether an event is about the named thing: an upstream
// ("api") matches its own events and its replicas' ("api[0]",
// "api[127.0.0.1:4001]"), and events that carry it as an "upstream" attr.
func targets(e event.Event, name string) bool {
	if e.Target == name || e.Attr("upstream") == name {
		return true
	}
	return strings.HasPrefix(e.Target, name+"[")
}

// eventsOf returns the events of the given types about target, in time order.
func eventsOf(in *Input, target string, types ...string) []event.Event {
	var out []event.Event
	for _, e := range in.Events {
		for _, t := range types {
			if e.Type == t && (target == "" || targets(e, target)) {
				out = append(out, e)
				break
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].T < out[j].T })
	return out
}

// runEnd is when the recorded run ends: the load's stop event, or the
// summary's elapsed time, or the last interval.
func runEnd(in *Input) time.Duration {
	for _, e := range in.Events {
		if e.Type == "load.stop" {
			return e.T
		}
	}
	if in.Summary != nil && in.Summary.Elapsed > 0 {
		return in.Summary.Elapsed.D()
	}
	if in.Now > 0 {
		return in.Now
	}
	var end time.Duration
	for _, iv := range in.Intervals {
		end = max(end, (iv.Start + iv.Width).D())
	}
	return end
}

// upstreamArrivals counts the requests that reached upstream (every
// upstream when ""), or one replica of it, in [from, to), to the
// millisecond, from the upstreams' own records. replica is a replica name
// ("api[1]") or address; "" counts them all. mode is results.Starting,
// Inside or Overlapping.
func upstreamArrivals(in *Input, upstream, replica string, from, to time.Duration, mode int) int64 {
	var n int64
	for _, r := range in.Upstreams {
		if upstream != "" && r.Upstream != upstream {
			continue
		}
		if s, e := r.Start.D(), (r.Start + r.Width).D(); e <= from || s >= to {
			continue
		}
		for _, rr := range r.PerReplica {
			if replica != "" && rr.Replica != replica && rr.Addr != replica {
				continue
			}
			n += rr.ArrivalsIn(r.Start, from, to, mode)
		}
	}
	return n
}

// replicaAddr maps a replica name to the address the gateway names it by.
func replicaAddr(in *Input, replica string) string {
	for _, r := range in.Upstreams {
		for _, rr := range r.PerReplica {
			if rr.Replica == replica {
				return rr.Addr
			}
		}
	}
	return ""
}

// hasUpstreamRecords says whether the run recorded what upstreams saw.
func hasUpstreamRecords(in *Input) bool { return len(in.Upstreams) > 0 }

// noUpstreamRecords is the evidence when they are missing.
const noUpstreamRecords = "the run recorded no upstream arrivals (upstreams.jsonl): only cascade's own fake upstreams record them"

// sumRecords adds up the upstream records of upstream ("" for all) whose
// interval starts in [from, to).
func sumRecords(in *Input, upstream string, from, to time.Duration) (results.UpstreamRecord, int) {
	var sum results.UpstreamRecord
	n := 0
	for _, r := range in.Upstreams {
		if upstream != "" && r.Upstream != upstream {
			continue
		}
		if s := r.Start.D(); s < from.Truncate(r.Width.D()) || s >= to {
			continue
		}
		n++
		sum.Arrivals += r.Arrivals
		sum.DirectArrivals += r.DirectArrivals
		sum.Finished += r.Finished
		sum.Retries += r.Retries
		sum.NonIdempotentRetries += r.NonIdempotentRetries
		sum.LateArrivals += r.LateArrivals
		sum.WithBudget += r.WithBudget
		sum.Orphans += r.Orphans
		sum.OrphanMS += r.OrphanMS
		sum.OrphansRunning += r.OrphansRunning
	}
	return sum, n
}

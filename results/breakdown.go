package results

import (
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/cascadehq/cascade/loadgen"
)

// Option configures a Collector.
type Option func(*Collector)

// Breakdown names what a Collector keeps whole-run stats for besides
// phases: the load's executors and its request tags.
type Breakdown struct {
	// Executors are the executors' names, indexed by Sample.Executor.
	Executors []string
	// Tags are the distinct request names (two executors may share one).
	Tags []string
	// TagOf maps [executor][request index] to an index into Tags.
	TagOf [][]int
	// Closed marks the closed-model (VU) executors, indexed like
	// Executors: they have no target rate, so a phase counts their sent
	// requests apart (PhaseClosedSent) to leave them out of the rate
	// judged against the target.
	Closed []bool
}

// WithBreakdown keeps stats per executor and per tag (each only when there
// are at least two: one executor's stats are the whole run's), and a live
// rolling p99 per executor.
func WithBreakdown(b Breakdown) Option { return func(c *Collector) { c.bd = b } }

func (c *Collector) tagOf(s *loadgen.Sample) int {
	if s.Executor >= len(c.bd.TagOf) || s.Request >= len(c.bd.TagOf[s.Executor]) {
		return -1
	}
	return c.bd.TagOf[s.Executor][s.Request]
}

// ExecutorStats merges the shards' stats per executor, or returns nil when
// the load has a single executor.
func (c *Collector) ExecutorStats() []*Stats {
	if !c.byExec {
		return nil
	}
	return c.mergeGroup(len(c.bd.Executors), true, func(sh *shard, i int) *Stats { return sh.execs[i] })
}

// TagStats merges the shards' stats per tag, or returns nil when the
// requests have a single tag.
func (c *Collector) TagStats() []*Stats {
	if !c.byTag {
		return nil
	}
	return c.mergeGroup(len(c.bd.Tags), false, func(sh *shard, i int) *Stats { return sh.tags[i] })
}

// PhaseSentByTag counts, per phase, the requests of each tag that were sent
// (not dropped), or returns nil when the requests have a single tag. It says
// how many client requests went where: an upstream metric such as
// amplification divides by the requests routed to that upstream.
func (c *Collector) PhaseSentByTag() []map[string]int64 {
	if !c.byTag {
		return nil
	}
	out := make([]map[string]int64, c.phaseCount())
	for i := range out {
		out[i] = map[string]int64{}
	}
	for _, sh := range c.shards {
		sh.mu.Lock()
		c.drain(sh)
		for i, counts := range sh.phaseTags {
			for tag, n := range counts {
				if n > 0 && i < len(out) {
					out[i][c.bd.Tags[tag]] += n
				}
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// PhaseClosedSent counts, per phase, the closed-model executors' sent
// requests, or returns nil when the load mixes no closed executor with an
// open one (then a phase's achieved rate is all open or has no target).
func (c *Collector) PhaseClosedSent() []int64 {
	if !c.mixed {
		return nil
	}
	out := make([]int64, c.phaseCount())
	for _, sh := range c.shards {
		sh.mu.Lock()
		c.drain(sh)
		for i, n := range sh.phaseClosed {
			if i < len(out) {
				out[i] += n
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// countTag counts a sent request of tag in phase. The caller holds sh.mu.
func (sh *shard) countTag(phase, tag, tags int) {
	for len(sh.phaseTags) <= phase {
		sh.phaseTags = append(sh.phaseTags, make([]int64, tags))
	}
	sh.phaseTags[phase][tag]++
}

func (c *Collector) mergeGroup(n int, lag bool, get func(*shard, int) *Stats) []*Stats {
	out := make([]*Stats, n)
	for i := range out {
		out[i] = newStats(lag)
		for _, sh := range c.shards {
			sh.mu.Lock()
			c.drain(sh)
			out[i].merge(get(sh, i))
			sh.mu.Unlock()
		}
	}
	return out
}

// Live view: per executor, a small ring of one-second histograms by
// completion time, at two significant digits (24 KiB each instead of 170):
// enough for a progress bar's rolling p99, and it does not wait for the
// client timeout to pass as the recorded intervals must.
const liveSlots = 4

type liveSlot struct {
	sec int64
	h   *hdr.Histogram
}

func (sh *shard) recordLive(exec int, end time.Duration, lat int64) {
	sec := int64(end / time.Second)
	slot := &sh.live[exec][sec%liveSlots]
	if slot.h == nil {
		slot.h = hdr.New(histMin, histMax, 2)
	}
	if slot.sec != sec {
		slot.h.Reset()
		slot.sec = sec
	}
	_ = slot.h.RecordValue(lat) // value() clamped it to the range
}

// LiveP99 is the p99 latency (from intended send) of executor exec's
// requests that completed in the last full second before now, on the
// run's clock; false when none did.
func (c *Collector) LiveP99(exec int, now time.Duration) (time.Duration, bool) {
	if exec < 0 || exec >= len(c.bd.Executors) {
		return 0, false
	}
	sec := int64(now/time.Second) - 1
	m := hdr.New(histMin, histMax, 2)
	for _, sh := range c.shards {
		sh.mu.Lock()
		c.drain(sh)
		if slot := sh.live[exec][((sec%liveSlots)+liveSlots)%liveSlots]; slot.h != nil && slot.sec == sec {
			m.Merge(slot.h)
		}
		sh.mu.Unlock()
	}
	if m.TotalCount() == 0 {
		return 0, false
	}
	return Quantile(m, 99), true
}

// TagName is the name of tag i.
func (c *Collector) TagName(i int) string { return c.bd.Tags[i] }

// Package results turns samples and events into the record of a run: per
// phase and per 1 s interval HDR histograms and cause counts, written to a run
// directory (summary.json, intervals.jsonl, events.jsonl) from which reports
// and verdicts can be recomputed offline.
//
//	loadgen ─Sample─▶ Collector (sharded, no shared lock on the hot path)
//	                     ├─ phases ───▶ Summary ─▶ summary.json ─▶ verdict, report
//	                     └─ intervals ─▶ intervals.jsonl (flushed every second: memory stays flat)
package results

import (
	"sort"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/loadgen"
)

// Histogram range: 1 µs to 10 minutes at 3 significant digits (0.1%).
const (
	histMin     = 1
	histMax     = int64(10 * time.Minute / time.Microsecond)
	histSigFigs = 3
)

// NewHistogram returns an empty latency histogram in microseconds.
func NewHistogram() *hdr.Histogram { return hdr.New(histMin, histMax, histSigFigs) }

func recordDuration(h *hdr.Histogram, d time.Duration) { _ = h.RecordValue(value(d)) } // cannot fail: clamped

// value is what a histogram records for d: microseconds, clamped to the range.
func value(d time.Duration) int64 { return min(max(d.Microseconds(), histMin), histMax) }

// Phase is a named window of the run, by intended send time.
type Phase struct {
	Name       string
	Start, End time.Duration
}

// Stats aggregates samples.
//
// A collector's shards defer two kinds of records, which a closed model
// (VUs) makes for every sample and which are most of the measuring cost per
// request: a Service value equal to the Latency one (intended send is the
// actual send), and a lag at the histogram's minimum (a closed model's is
// zero), counted instead. Every Stats the package hands out is settled, its
// histograms whole.
type Stats struct {
	Latency *hdr.Histogram // from intended send (corrected), µs
	Service *hdr.Histogram // from actual send (uncorrected), µs
	Lag     *hdr.Histogram // scheduling lag, µs; nil for intervals
	Causes  [cause.Count]int64
	// ByCause is the service time (from the actual send) of the failed
	// requests of each cause, made on the first one; phases only (nil for
	// intervals). It says at what time each layer of the timeout cascade
	// answered.
	ByCause *[cause.Count]*hdr.Histogram

	// svcSame: the Service record is deferred. Histograms hold counts only
	// (no min, max or order), so the whole histograms are sums:
	//
	//	Latency (whole) = Latency + diffLat
	//	Service (whole) = Latency + Service
	//
	// Latency holds the samples whose two values are equal; a sample whose
	// service time differs (a closed model's first request on a connection,
	// which waited for the dial) puts its service time in Service and its
	// latency in diffLat. Without diffLat the first dial of a run would end
	// the deferral for good.
	svcSame bool
	diffLat []int64 // at most maxDiff
	// lagMin counts lags recorded as histMin but not yet in Lag.
	lagMin int64
	// closedN counts, in an interval of a load that mixes models, the
	// samples of its closed-model executors: Recorded leaves them out.
	closedN int64
}

// maxDiff bounds the samples a deferred Stats keeps aside; past it (a model
// in which most samples differ: open, keep-alive off) Service is recorded
// as it comes.
const maxDiff = 256

func newStats(withLag bool) *Stats {
	s := &Stats{Latency: NewHistogram(), Service: NewHistogram()}
	if withLag {
		s.Lag = NewHistogram()
		s.ByCause = &[cause.Count]*hdr.Histogram{}
	}
	return s
}

// newShardStats returns stats whose Service is deferred; add defers lags
// too. add is for a shard's stats only, which leave the package settled.
func newShardStats(withLag bool) *Stats {
	s := newStats(withLag)
	s.svcSame = true
	return s
}

// point is a sample as the histograms record it, converted once for all
// the stats it lands in.
type point struct {
	lat, svc, lag int64
	cause         cause.Cause
	// noLag: a closed-model sample of a load that mixes models, whose lag
	// (zero by construction: a VU's request is due when it is sent) stays
	// out of the lag histograms; in a phase's, it diluted the open-model
	// executors' lag, and lag_p99 passed on it.
	noLag bool
}

func pointOf(x *loadgen.Sample) point {
	return point{lat: value(x.Latency), svc: value(x.Service), lag: value(x.Lag), cause: x.Cause}
}

func (s *Stats) add(x *point) {
	s.Causes[x.cause]++
	if x.cause == cause.Dropped || x.cause == cause.Aborted {
		// No latency to record: a dropped request was never sent, and
		// an aborted one was cut short by the run's own stop, so its
		// "latency" is only the time until then, not an answer's (every
		// answer took 2 s, yet an interrupted run's p50 read 1.5 s).
		return
	}
	switch {
	case !s.svcSame:
		_ = s.Latency.RecordValue(x.lat) // cannot fail: clamped to the range
		_ = s.Service.RecordValue(x.svc)
	case x.svc == x.lat:
		_ = s.Latency.RecordValue(x.lat)
	case len(s.diffLat) < maxDiff:
		s.diffLat = append(s.diffLat, x.lat)
		_ = s.Service.RecordValue(x.svc)
	default:
		s.splitService()
		_ = s.Latency.RecordValue(x.lat)
		_ = s.Service.RecordValue(x.svc)
	}
	if s.Lag != nil && !x.noLag {
		if x.lag == histMin {
			s.lagMin++
		} else {
			_ = s.Lag.RecordValue(x.lag)
		}
	}
	if s.ByCause != nil && x.cause.IsError() {
		h := s.ByCause[x.cause]
		if h == nil {
			h = NewHistogram()
			s.ByCause[x.cause] = h
		}
		// Service time: from the actual send, as the layer's own timer ran.
		_ = h.RecordValue(x.svc)
	}
}

// splitService ends svcSame: both histograms become whole (see Stats).
func (s *Stats) splitService() {
	s.Service.Merge(s.Latency)
	for _, v := range s.diffLat {
		_ = s.Latency.RecordValue(v)
	}
	s.diffLat = s.diffLat[:0]
	s.svcSame = false
}

// settle makes the histograms whole: what recording every value would have
// built.
func (s *Stats) settle() {
	if s.svcSame {
		s.splitService()
	}
	if s.lagMin > 0 {
		_ = s.Lag.RecordValues(histMin, s.lagMin)
		s.lagMin = 0
	}
}

// merge adds o's samples and counts to s, which it settles. It does not
// change o: a shard's stats stay deferred when a run reads its phases.
func (s *Stats) merge(o *Stats) {
	s.settle()
	s.Latency.Merge(o.Latency)
	s.Service.Merge(o.Service)
	if o.svcSame {
		s.Service.Merge(o.Latency)
		for _, v := range o.diffLat {
			_ = s.Latency.RecordValue(v)
		}
	}
	if s.Lag != nil && o.Lag != nil {
		s.Lag.Merge(o.Lag)
		_ = s.Lag.RecordValues(histMin, o.lagMin)
	}
	for i, n := range o.Causes {
		s.Causes[i] += n
	}
	s.closedN += o.closedN
	if s.ByCause != nil && o.ByCause != nil {
		for c, h := range o.ByCause {
			if h == nil {
				continue
			}
			if s.ByCause[c] == nil {
				s.ByCause[c] = NewHistogram()
			}
			s.ByCause[c].Merge(h)
		}
	}
}

// Scheduled counts every request the profile asked for in the window.
func (s *Stats) Scheduled() int64 {
	var n int64
	for _, c := range s.Causes {
		n += c
	}
	return n
}

// Judged counts the requests whose outcome says something about the system:
// everything scheduled except those aborted by an interrupted run. Rates
// (error rate, cause rates) are over this.
func (s *Stats) Judged() int64 { return s.Scheduled() - s.Causes[cause.Aborted] }

// Sent counts the requests that were actually sent (not dropped).
func (s *Stats) Sent() int64 { return s.Scheduled() - s.Causes[cause.Dropped] }

// Errors counts outcomes that are errors (dropped included: a request the
// generator could not send on time is a failure of the run to measure).
func (s *Stats) Errors() int64 {
	var n int64
	for c, k := range s.Causes {
		if cause.Cause(c).IsError() {
			n += k
		}
	}
	return n
}

// Interval is the stats of requests intended in [Start, Start+width).
type Interval struct {
	Index int64
	Start time.Duration
	Stats *Stats
}

// Collector implements loadgen.Recorder.
type Collector struct {
	phases []Phase
	width  time.Duration
	shards []*shard
	bd     Breakdown
	free   struct {
		sync.Mutex
		s []*Stats // interval stats to reuse: the histograms are 170 KiB each
	}
	byExec bool // more than one executor: keep stats per executor
	byTag  bool // more than one tag: keep stats per tag
	mixed  bool // open and closed executors: count the closed ones' sent per phase
}

type shard struct {
	mu          sync.Mutex
	pend        []pending // recorded, not yet placed: at most pendMax
	phases      []*Stats
	intervals   map[int64]*Stats
	lastIdx     int64  // the interval most samples land in, to skip the map
	last        *Stats // ... and its stats (nil: none yet)
	execs       []*Stats
	tags        []*Stats
	phaseTags   [][]int64             // [phase][tag]: requests sent, when there are tags
	phaseClosed []int64               // [phase]: closed-model requests sent, when the load mixes models
	live        [][liveSlots]liveSlot // per executor
	_           [64]byte              // keep shards on separate cache lines
}

// NewCollector records into the given phases (a sample may fall in several)
// and into intervals of the given width. shards spreads workers over locks.
func NewCollector(phases []Phase, width time.Duration, shards int, opts ...Option) *Collector {
	if shards <= 0 {
		shards = 1
	}
	c := &Collector{phases: append([]Phase(nil), phases...), width: width} // own copy: SetPhases moves windows
	for _, o := range opts {
		o(c)
	}
	if len(c.bd.Executors) == 0 {
		c.bd.Executors = []string{""}
	}
	c.byExec = len(c.bd.Executors) > 1
	c.byTag = len(c.bd.Tags) > 1
	closed := 0
	for _, x := range c.bd.Closed {
		if x {
			closed++
		}
	}
	c.mixed = closed > 0 && closed < len(c.bd.Executors)
	for i := 0; i < shards; i++ {
		sh := &shard{intervals: map[int64]*Stats{}, lastIdx: -1, pend: make([]pending, 0, pendMax)}
		for range phases {
			sh.phases = append(sh.phases, newShardStats(true))
		}
		if c.byExec {
			for range c.bd.Executors {
				sh.execs = append(sh.execs, newShardStats(true))
			}
		}
		if c.byTag {
			for range c.bd.Tags {
				sh.tags = append(sh.tags, newShardStats(false))
			}
		}
		sh.live = make([][liveSlots]liveSlot, len(c.bd.Executors))
		c.shards = append(c.shards, sh)
	}
	return c
}

// Record implements loadgen.Recorder. The sample waits in its shard with
// up to pendMax others and is placed with them (see pending); every reader
// of a shard places what waits there first, so nothing it returns lacks a
// sample recorded before the call.
func (c *Collector) Record(worker int, s *loadgen.Sample) {
	sh := c.shards[worker%len(c.shards)]
	tag := -1
	if c.byTag {
		tag = c.tagOf(s)
	}
	sh.mu.Lock()
	n := len(sh.pend)
	sh.pend = sh.pend[:n+1] // cap is pendMax: drained below at the last slot
	p := &sh.pend[n]
	p.pt = pointOf(s)
	p.intended, p.end, p.exec, p.tag = s.Intended, s.Intended+s.Latency, s.Executor, tag
	if n+1 == pendMax {
		c.drain(sh)
	}
	sh.mu.Unlock()
}

// pending is a sample as Record keeps it until its shard is drained.
//
// Placing samples a batch at a time is for the CPU caches: a sample lands
// in three to five histograms of 24-170 KiB, and between two requests of a
// load generator the kernel's network path has evicted their lines, so
// placed one by one each record was a cache miss (about 0.1 µs each, the
// largest user-space cost per request after the system calls). A batch
// finds the lines its first samples brought in.
type pending struct {
	pt        point
	intended  time.Duration
	end       time.Duration // completion, on the run's clock: the live view's second
	exec, tag int           // tag -1: none
}

// pendMax is how many samples a shard keeps waiting: enough that a batch
// reuses the lines it touches, small enough to stay in L1 itself (64 × 64
// bytes).
const pendMax = 64

// drain places the samples waiting in sh. The caller holds sh.mu.
func (c *Collector) drain(sh *shard) {
	for i := range sh.pend {
		c.place(sh, &sh.pend[i])
	}
	sh.pend = sh.pend[:0]
}

// place records one sample into every stats it belongs to.
func (c *Collector) place(sh *shard, p *pending) {
	closed := c.mixed && p.exec < len(c.bd.Closed) && c.bd.Closed[p.exec]
	p.pt.noLag = closed
	for i, ph := range c.phases {
		if p.intended >= ph.Start && p.intended < ph.End {
			sh.phases[i].add(&p.pt)
			if p.tag >= 0 && p.pt.cause != cause.Dropped {
				sh.countTag(i, p.tag, len(c.bd.Tags))
			}
			if closed {
				for len(sh.phaseClosed) <= i {
					sh.phaseClosed = append(sh.phaseClosed, 0)
				}
				sh.phaseClosed[i]++ // a closed model drops nothing
			}
		}
	}
	idx := int64(p.intended / c.width)
	iv := sh.last
	if idx != sh.lastIdx || iv == nil {
		iv = sh.intervals[idx]
		if iv == nil {
			iv = c.spare()
			sh.intervals[idx] = iv
		}
		sh.lastIdx, sh.last = idx, iv
	}
	iv.add(&p.pt)
	if closed {
		iv.closedN++
	}
	if c.byExec && p.exec < len(sh.execs) {
		sh.execs[p.exec].add(&p.pt)
	}
	if c.byTag && p.tag >= 0 {
		sh.tags[p.tag].add(&p.pt)
	}
	if p.exec < len(sh.live) && p.pt.cause != cause.Dropped {
		sh.recordLive(p.exec, p.end, p.pt.lat)
	}
}

// TakeIntervals removes and returns, merged across shards and in order, every
// interval that ends at or before `before`. The run calls it every second
// with `before` one client timeout in the past, when no request intended in
// those intervals can still be in flight; at the end it takes them all.
func (c *Collector) TakeIntervals(before time.Duration) []Interval {
	limit := int64(before / c.width) // intervals with index < limit end by `before`
	merged := map[int64]*Stats{}
	for _, sh := range c.shards {
		sh.mu.Lock()
		c.drain(sh)
		if sh.lastIdx < limit {
			sh.lastIdx, sh.last = -1, nil
		}
		for idx, st := range sh.intervals {
			if idx < limit {
				if m := merged[idx]; m != nil {
					m.merge(st)
					c.Recycle([]Interval{{Stats: st}})
				} else {
					merged[idx] = st
				}
				delete(sh.intervals, idx)
			}
		}
		sh.mu.Unlock()
	}
	out := make([]Interval, 0, len(merged))
	for idx, st := range merged {
		st.settle() // one shard's stats, unmerged, are still deferred
		out = append(out, Interval{Index: idx, Start: time.Duration(idx) * c.width, Stats: st})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// Recorded counts the samples recorded in interval idx that TakeIntervals
// has not taken (0 for one taken or never recorded in), without merging
// any histogram: the run compares it with the requests the schedule
// intends in the interval to write it as soon as it is whole. Only the
// open-model executors have a schedule, so in a load that mixes models
// (Breakdown.Closed marks some executors, not all) the closed-model
// executors' samples are left out; a load of one model counts them all.
func (c *Collector) Recorded(idx int64) int64 {
	var n int64
	for _, sh := range c.shards {
		sh.mu.Lock()
		c.drain(sh)
		if st := sh.intervals[idx]; st != nil {
			n += st.Scheduled() - st.closedN
		}
		sh.mu.Unlock()
	}
	return n
}

// PeekIntervals returns, merged across shards and in order, copies of the
// intervals TakeIntervals has not taken: still open, requests intended in
// them may yet end. That is enough for what only grows (counts, the
// maximum), which is what an abort objective judges while the run goes on;
// waiting for the intervals to close would lose a client timeout and more.
func (c *Collector) PeekIntervals() []Interval {
	merged := map[int64]*Stats{}
	for _, sh := range c.shards {
		sh.mu.Lock()
		c.drain(sh)
		for idx, st := range sh.intervals {
			m := merged[idx]
			if m == nil {
				m = newStats(false)
				merged[idx] = m
			}
			m.merge(st)
		}
		sh.mu.Unlock()
	}
	out := make([]Interval, 0, len(merged))
	for idx, st := range merged {
		out = append(out, Interval{Index: idx, Start: time.Duration(idx) * c.width, Stats: st})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// PhaseStats merges the shards' stats for each phase, in the order given.
func (c *Collector) PhaseStats() []*Stats {
	out := make([]*Stats, c.phaseCount())
	for i := range out {
		m := newStats(true)
		for _, sh := range c.shards {
			sh.mu.Lock()
			c.drain(sh)
			m.merge(sh.phases[i])
			sh.mu.Unlock()
		}
		out[i] = m
	}
	return out
}

// phaseCount is how many phases there are: SetPhases may add some, under
// every shard's lock.
func (c *Collector) phaseCount() int {
	sh := c.shards[0]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return len(c.phases)
}

// spare returns empty interval stats, reused when there are any.
func (c *Collector) spare() *Stats {
	c.free.Lock()
	defer c.free.Unlock()
	if n := len(c.free.s); n > 0 {
		st := c.free.s[n-1]
		c.free.s = c.free.s[:n-1]
		return st
	}
	return newShardStats(false)
}

// Recycle hands back intervals the caller has written and no longer reads,
// so their histograms are reused instead of garbage: a long run allocates
// nothing per second for its time series.
func (c *Collector) Recycle(ivs []Interval) {
	c.free.Lock()
	defer c.free.Unlock()
	for _, iv := range ivs {
		if iv.Stats == nil || iv.Stats.Lag != nil || len(c.free.s) >= maxSpare {
			continue
		}
		iv.Stats.Latency.Reset()
		iv.Stats.Service.Reset()
		iv.Stats.Causes = [cause.Count]int64{}
		iv.Stats.closedN = 0
		iv.Stats.svcSame = true // back to a shard: both empty
		iv.Stats.diffLat = iv.Stats.diffLat[:0]
		c.free.s = append(c.free.s, iv.Stats)
	}
}

// maxSpare bounds the reuse list (a burst of late intervals must not pin
// memory for the rest of the run).
const maxSpare = 64

// ShardsFor is how many shards a run's collector takes on procs CPUs: two
// per CPU, so that workers rarely share a lock, up to maxShards. Every
// shard keeps its own histograms for each phase and for each interval
// still open (a client timeout long), 340 KiB a set: uncapped, a 64-CPU
// run with a slow upstream held 128 shards × 31 intervals of them, 1.3 GiB.
// Capped, the locks are shared by more workers, but a worker takes one
// only to append a sample to a batch.
func ShardsFor(procs int) int { return max(1, min(2*procs, maxShards)) }

const maxShards = 8

package gameday

import (
	"math"
	"sort"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
)

// Live keeps what the live views need, beside the run's own collector
// (which it forwards every sample to): per second of intended send time,
// the numbers the charts draw, and per quarter second of completion, what
// the safety checks judge over their windows. The run's collector cannot
// serve either: it hands out an interval only once no request can still
// land in it (a client timeout later), and a health check must see a
// request fail when it fails.
//
// Its histograms are coarser than the collector's (2 significant digits,
// 1% error): they are for watching, and the verdict comes from the
// collector.
type Live struct {
	next   loadgen.Recorder
	clock  *event.Clock
	settle time.Duration
	shards []*liveShard

	mu        sync.Mutex
	final     []results.IntervalRecord // in order; no request can still land in them
	lastFinal int64                    // index of the last final interval; -1 before any
}

// Widths of the live buckets.
const (
	IntervalWidth = time.Second            // the charts' resolution, as the report's
	endWidth      = 250 * time.Millisecond // the safety windows' resolution
	keepEnded     = 5*time.Minute + 2*time.Second
)

type liveShard struct {
	mu       sync.Mutex
	intended map[int64]*bucket
	ended    map[int64]*bucket
	_        [64]byte
}

type bucket struct {
	lat    *hdr.Histogram // µs from the intended send time
	causes [cause.Count]int64
}

func newBucket() *bucket { return &bucket{lat: hdr.New(1, int64(10*time.Minute/time.Microsecond), 2)} }

func (b *bucket) add(s *loadgen.Sample) {
	b.causes[s.Cause]++
	if s.Cause == cause.Dropped {
		return
	}
	us := min(max(s.Latency.Microseconds(), 1), b.lat.HighestTrackableValue())
	_ = b.lat.RecordValue(us)
}

func (b *bucket) merge(o *bucket) {
	b.lat.Merge(o.lat)
	for i, n := range o.causes {
		b.causes[i] += n
	}
}

// NewLive records into next and keeps the live views; clientTimeout bounds
// how late a request can land in its interval.
func NewLive(next loadgen.Recorder, clock *event.Clock, clientTimeout time.Duration, shards int) *Live {
	l := &Live{next: next, clock: clock, settle: clientTimeout + IntervalWidth, lastFinal: -1}
	for range max(shards, 1) {
		l.shards = append(l.shards, &liveShard{intended: map[int64]*bucket{}, ended: map[int64]*bucket{}})
	}
	return l
}

// Record implements loadgen.Recorder.
func (l *Live) Record(worker int, s *loadgen.Sample) {
	l.next.Record(worker, s)
	sh := l.shards[worker%len(l.shards)]
	iv := int64(s.Intended / IntervalWidth)
	ev := int64((s.Intended + s.Latency) / endWidth)
	sh.mu.Lock()
	b := sh.intended[iv]
	if b == nil {
		b = newBucket()
		sh.intended[iv] = b
	}
	b.add(s)
	e := sh.ended[ev]
	if e == nil {
		e = newBucket()
		sh.ended[ev] = e
	}
	e.add(s)
	sh.mu.Unlock()
}

// Intervals is the time series so far, one record per second of intended
// send time, in the form the report draws (no histograms). The last few
// seconds can still change as their slowest requests end.
func (l *Live) Intervals() []results.IntervalRecord {
	now := l.clock.Now()
	limit := int64((now - l.settle) / IntervalWidth) // intervals before this are final
	merged := map[int64]*bucket{}
	for _, sh := range l.shards {
		sh.mu.Lock()
		for idx, b := range sh.intended {
			m := merged[idx]
			if m == nil {
				m = newBucket()
				merged[idx] = m
			}
			m.merge(b)
			if idx < limit {
				delete(sh.intended, idx)
			}
		}
		sh.mu.Unlock()
	}
	idxs := make([]int64, 0, len(merged))
	for idx := range merged {
		idxs = append(idxs, idx)
	}
	sort.Slice(idxs, func(i, j int) bool { return idxs[i] < idxs[j] })
	l.mu.Lock()
	defer l.mu.Unlock()
	var open []results.IntervalRecord
	for _, idx := range idxs {
		rec := record(idx, merged[idx])
		switch {
		case idx <= l.lastFinal:
			// A request later than the client timeout allows (a stalled
			// generator): its interval is settled already; the run's own
			// collector still counts it.
		case idx < limit:
			l.final = append(l.final, rec)
			l.lastFinal = idx
		default:
			open = append(open, rec)
		}
	}
	// Final records are never changed once made: the slice can be shared.
	return append(l.final[:len(l.final):len(l.final)], open...)
}

func record(idx int64, b *bucket) results.IntervalRecord {
	st := &results.Stats{Causes: b.causes}
	ss := results.StatsSummary{Scheduled: st.Scheduled(), Sent: st.Sent(), Errors: st.Errors(), Causes: map[string]int64{}}
	if j := st.Judged(); j > 0 {
		ss.ErrorRate = float64(ss.Errors) / float64(j)
	}
	for c, n := range b.causes {
		if n > 0 {
			ss.Causes[cause.Cause(c).String()] = n
		}
	}
	if b.lat.TotalCount() > 0 {
		ms := func(us int64) float64 { return math.Round(float64(us)) / 1000 }
		q := b.lat.ValueAtPercentiles([]float64{50, 90, 99, 99.9})
		ss.Latency = results.Percentiles{Min: ms(b.lat.Min()), P50: ms(q[50]), P90: ms(q[90]), P99: ms(q[99]), P999: ms(q[99.9]),
			Max: ms(b.lat.Max()), Mean: math.Round(b.lat.Mean()) / 1000}
	}
	w := results.Sec(IntervalWidth)
	ss.AchievedRate = float64(ss.Sent) / float64(w)
	return results.IntervalRecord{Start: results.Sec(time.Duration(idx) * IntervalWidth), Width: w, Stats: ss}
}

// Window merges the requests that ended in the last d (rounded up to a
// whole quarter second: at most 250 ms more): what a safety check judges.
// Latency only: the service and lag series are not kept live.
func (l *Live) Window(d time.Duration) *results.Stats {
	now := l.clock.Now()
	hi := int64(now / endWidth)
	lo := int64((now - d) / endWidth)
	m := newBucket()
	drop := int64((now - keepEnded) / endWidth)
	for _, sh := range l.shards {
		sh.mu.Lock()
		for idx, b := range sh.ended {
			switch {
			case idx < drop:
				delete(sh.ended, idx)
			case idx >= lo && idx <= hi:
				m.merge(b)
			}
		}
		sh.mu.Unlock()
	}
	return &results.Stats{Latency: m.lat, Causes: m.causes}
}

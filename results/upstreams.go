package results

import (
	"bufio"
	"encoding/json"
	"errors"

	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// UpstreamsFile holds what the upstreams saw, one line per upstream per
// interval (see UpstreamRecord).
const UpstreamsFile = "upstreams.jsonl"

// OrphanSlack is how long after its caller gave up a request may still be
// finishing before it counts as orphaned work: the time a well-behaved
// upstream takes to notice the cancellation and stop, on a busy machine.
const OrphanSlack = 50 * time.Millisecond

// Arrival is one request as a replica saw it. It has the fields of
// faults.Arrival (the run converts one into the other: results may not
// import faults).
type Arrival struct {
	Upstream  string
	Replica   string
	Addr      string
	Method    string
	Attempt   int
	Direct    bool
	Budget    time.Duration
	HasBudget bool
	At        time.Duration
	Finished  time.Duration
	Left      time.Duration
	HasLeft   bool
}

// UpstreamRecord is one line of upstreams.jsonl: what one upstream's
// replicas received and did in one interval, counted where it happened (at
// the upstream), on the run's clock. Arrivals and finishes are counted in
// the interval they happened in.
type UpstreamRecord struct {
	Start    Seconds `json:"t"`
	Width    Seconds `json:"width_s"`
	Upstream string  `json:"upstream"`
	// Replicas is how many replicas were sampled in the interval (it moves
	// with autoscaling).
	Replicas int `json:"replicas"`
	// Arrivals are the requests the gateway sent (its attempts); the
	// load's requests that bypassed it (load.direct) are DirectArrivals,
	// in neither Arrivals nor ArrivalsMS. Finished counts both.
	Arrivals       int64 `json:"arrivals"`
	DirectArrivals int64 `json:"direct_arrivals,omitempty"`
	Finished       int64 `json:"finished"`
	// Retries are arrivals whose attempt header said 2 or more;
	// NonIdempotentRetries those of them with a method that is not
	// idempotent (POST, PATCH, CONNECT).
	Retries              int64 `json:"retries,omitempty"`
	NonIdempotentRetries int64 `json:"non_idempotent_retries,omitempty"`
	// LateArrivals arrived with no budget left: the caller's deadline had
	// passed when the attempt was sent.
	LateArrivals int64 `json:"late_arrivals,omitempty"`
	// WithBudget counts the requests that arrived in the interval with a
	// deadline header; Orphans those of the interval's arrivals that were
	// still being worked on more than OrphanSlack after their caller gave
	// up, and OrphanMS the work they did after it, summed. The caller gave
	// up when it closed the connection (exact, whatever its timers did),
	// or, if it never did, at its deadline. An orphan counts where it
	// arrived, however late it finished; OrphansRunning of them had not
	// finished when the run ended (their work is counted until then: the
	// caller of every request still running then had given up, since the
	// load was over).
	WithBudget     int64   `json:"with_budget,omitempty"`
	Orphans        int64   `json:"orphans,omitempty"`
	OrphanMS       float64 `json:"orphan_ms,omitempty"`
	OrphansRunning int64   `json:"orphans_running,omitempty"`
	// ServiceP95MS is the 95th percentile of the time the replicas took per
	// request finished in the interval (what the service's own metrics would
	// say), 0 when none finished.
	ServiceP95MS float64 `json:"service_p95_ms,omitempty"`
	// InFlightMean is the mean number of requests being handled (or queued
	// for a worker), summed over replicas; InFlightMax the largest sample
	// of that sum.
	InFlightMean float64 `json:"in_flight_mean"`
	InFlightMax  int64   `json:"in_flight_max"`
	// HealthChecks are the gateway's active health checks, which are not
	// in Arrivals: probes are not traffic, and an ejected replica keeps
	// being probed.
	HealthChecks int64           `json:"health_checks,omitempty"`
	PerReplica   []ReplicaRecord `json:"per_replica,omitempty"`
}

// ReplicaRecord is one replica's share of an UpstreamRecord.
type ReplicaRecord struct {
	Replica      string  `json:"replica"`
	Addr         string  `json:"addr"` // how the gateway's events name it
	Arrivals     int64   `json:"arrivals"`
	InFlightMean float64 `json:"in_flight_mean"`
	HealthChecks int64   `json:"health_checks,omitempty"` // not in Arrivals nor ArrivalsMS
	// ArrivalsMS are the arrivals by millisecond within the interval, as
	// flattened pairs [offset_ms, count, offset_ms, count, ...] for the
	// milliseconds that saw any: exact to 1 ms, and bounded in size whatever
	// the rate.
	ArrivalsMS []int32 `json:"arrivals_ms,omitempty"`
}

// Count modes for ArrivalsIn: arrivals are known to the millisecond, so a
// window edge that falls inside a millisecond is ambiguous, and each use
// resolves it its own way.
const (
	// Starting counts the milliseconds that start in the window (for
	// totals: every arrival is counted in exactly one of adjacent windows).
	Starting = iota
	// Inside counts only the milliseconds wholly inside the window (to
	// claim "this reached the upstream while it should not" only when
	// certain).
	Inside
	// Overlapping counts every millisecond that touches the window (to
	// miss none of what arrived in it).
	Overlapping
)

// ArrivalsIn counts the replica's arrivals in [from, to), to 1 ms; mode
// says how the milliseconds at the window's edges count.
func (r ReplicaRecord) ArrivalsIn(start Seconds, from, to time.Duration, mode int) int64 {
	var n int64
	base := start.D()
	for i := 0; i+1 < len(r.ArrivalsMS); i += 2 {
		at := base + time.Duration(r.ArrivalsMS[i])*time.Millisecond
		end := at + time.Millisecond
		var in bool
		switch mode {
		case Inside:
			in = at >= from && end <= to
		case Overlapping:
			in = end > from && at < to
		default:
			in = at >= from && at < to
		}
		if in {
			n += int64(r.ArrivalsMS[i+1])
		}
	}
	return n
}

// HoldUnfinished is how long after its end the Ledger keeps an interval
// whose arrivals have not all finished: an orphan counts where it arrived,
// and its work is known when it ends. A fake upstream stops orphaned work
// after a minute (faults.MaxOrphanWork), so the hold rarely runs out.
const HoldUnfinished = 70 * time.Second

// Ledger implements the run's upstream observer: it counts per interval
// what each upstream's replicas received and did. Safe for concurrent use.
type Ledger struct {
	width time.Duration

	mu  sync.Mutex
	ivs map[int64]map[string]*upstreamAcc // interval index → upstream
}

type upstreamAcc struct {
	rec      UpstreamRecord
	service  *hdr.Histogram
	replicas map[string]*replicaAcc
	// running are the interval's arrivals not finished yet, by deadline
	// (noDeadline without one); unfinished counts them.
	running    map[time.Duration]int64
	unfinished int64
	// sampleAt and sampleSum add up the replicas sampled at one instant:
	// InFlightMax is the largest such sum, as InFlightMean sums the
	// replicas' means (the largest replica's alone came out below the
	// mean: mean 8.5, max 5).
	sampleAt  time.Duration
	sampleSum int64
}

// noDeadline keys the running arrivals that carried no deadline header.
const noDeadline = time.Duration(-1 << 63)

// deadline is when the arrival's caller gives up at the latest.
func (a Arrival) deadline() time.Duration {
	if !a.HasBudget {
		return noDeadline
	}
	return a.At + a.Budget
}

type replicaAcc struct {
	addr         string
	arrivals     int64
	healthChecks int64
	inFlightSum  int64
	inFlightN    int64
	ms           map[int32]int32
}

// NewLedger records into intervals of the given width.
func NewLedger(width time.Duration) *Ledger {
	return &Ledger{width: width, ivs: map[int64]map[string]*upstreamAcc{}}
}

func (l *Ledger) index(t time.Duration) int64 {
	if t < 0 {
		return 0 // setup requests (health checks before load start) count in the first interval
	}
	return int64(t / l.width)
}

func (l *Ledger) accLocked(t time.Duration, upstream string) (*upstreamAcc, int64) {
	idx := l.index(t)
	m := l.ivs[idx]
	if m == nil {
		m = map[string]*upstreamAcc{}
		l.ivs[idx] = m
	}
	a := m[upstream]
	if a == nil {
		a = &upstreamAcc{rec: UpstreamRecord{Upstream: upstream}, replicas: map[string]*replicaAcc{}}
		m[upstream] = a
	}
	return a, idx
}

func (a *upstreamAcc) replica(name, addr string) *replicaAcc {
	r := a.replicas[name]
	if r == nil {
		r = &replicaAcc{addr: addr}
		a.replicas[name] = r
	}
	return r
}

// Arrive records a request reaching a replica.
func (l *Ledger) Arrive(a Arrival) {
	l.mu.Lock()
	defer l.mu.Unlock()
	acc, idx := l.accLocked(a.At, a.Upstream)
	if acc.running == nil {
		acc.running = map[time.Duration]int64{}
	}
	acc.running[a.deadline()]++
	acc.unfinished++
	if a.Direct {
		acc.rec.DirectArrivals++
		return
	}
	acc.rec.Arrivals++
	if a.HasBudget {
		acc.rec.WithBudget++
	}
	if a.Attempt >= 2 {
		acc.rec.Retries++
		if !idempotent(a.Method) {
			acc.rec.NonIdempotentRetries++
		}
	}
	if a.HasBudget && a.Budget <= 0 {
		acc.rec.LateArrivals++
	}
	r := acc.replica(a.Replica, a.Addr)
	r.arrivals++
	if r.ms == nil {
		r.ms = map[int32]int32{}
	}
	off := max(a.At-time.Duration(idx)*l.width, 0)
	r.ms[int32(off/time.Millisecond)]++
}

// HealthCheck records one of the gateway's health checks reaching a
// replica, apart from the arrivals.
func (l *Ledger) HealthCheck(a Arrival) {
	l.mu.Lock()
	defer l.mu.Unlock()
	acc, _ := l.accLocked(a.At, a.Upstream)
	acc.rec.HealthChecks++
	acc.replica(a.Replica, a.Addr).healthChecks++
}

// Finish records a replica being done with a request.
func (l *Ledger) Finish(a Arrival) {
	l.mu.Lock()
	defer l.mu.Unlock()
	acc, _ := l.accLocked(a.Finished, a.Upstream)
	acc.rec.Finished++
	if acc.service == nil {
		acc.service = NewHistogram()
	}
	recordDuration(acc.service, a.Finished-a.At)
	// Orphaned work counts where it arrived. An arrival whose interval is
	// gone was settled when it was taken (HoldUnfinished ran out).
	arr, dl := l.ivs[l.index(a.At)][a.Upstream], a.deadline()
	if arr == nil || arr.running[dl] == 0 {
		return
	}
	if arr.running[dl]--; arr.running[dl] == 0 {
		delete(arr.running, dl)
	}
	arr.unfinished--
	if a.HasBudget || a.HasLeft {
		gaveUp := a.At + a.Budget
		if a.HasLeft {
			gaveUp = a.Left
		}
		arr.orphan(a.Finished-gaveUp, false)
	}
}

// orphan counts work that went on late after its caller gave up, if that
// is past the slack.
func (a *upstreamAcc) orphan(late time.Duration, running bool) {
	if late <= OrphanSlack {
		return
	}
	a.rec.Orphans++
	a.rec.OrphanMS += float64(late) / float64(time.Millisecond)
	if running {
		a.rec.OrphansRunning++
	}
}

// settle decides the interval's unfinished arrivals as of now: those whose
// caller had given up (its deadline, or loadEnd when the load is over; 0
// while it goes on) more than OrphanSlack ago are orphans, counted with the
// work done so far.
func (a *upstreamAcc) settle(now, loadEnd time.Duration) {
	for dl, n := range a.running {
		gaveUp := dl
		if loadEnd > 0 && (dl == noDeadline || dl > loadEnd) {
			gaveUp = loadEnd
		}
		if gaveUp == noDeadline {
			continue // a caller that may still be waiting: not known to be an orphan
		}
		for range n {
			a.orphan(now-gaveUp, true)
		}
	}
	a.running, a.unfinished = nil, 0
}

// Running reports whether some arrival has not finished yet.
func (l *Ledger) Running() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.ivs {
		if unfinished(m) {
			return true
		}
	}
	return false
}

// Settle decides every arrival not finished yet once the load is over
// (loadEnd): nobody waits for it any more, so work still running more
// than OrphanSlack after its deadline or the load's end, whichever came
// first, is orphaned, counted in its arrival's interval with the work done
// until now. Call it before the last Take.
func (l *Ledger) Settle(now, loadEnd time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.ivs {
		for _, acc := range m {
			acc.settle(now, loadEnd)
		}
	}
}

// Sample records a replica's in-flight count at t; the run samples every
// replica a few times per interval, each replica of an upstream at the
// same t.
func (l *Ledger) Sample(t time.Duration, upstream, replica, addr string, inFlight int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	acc, _ := l.accLocked(t, upstream)
	r := acc.replica(replica, addr)
	r.inFlightSum += inFlight
	r.inFlightN++
	if t != acc.sampleAt {
		acc.sampleAt, acc.sampleSum = t, 0
	}
	acc.sampleSum += inFlight
	acc.rec.InFlightMax = max(acc.rec.InFlightMax, acc.sampleSum)
}

// Take removes and returns, in order, the records of every interval that
// ended at or before `before`, up to the first one that still has
// unfinished arrivals (its orphans are not known yet) unless it ended
// HoldUnfinished before `before`: then those are settled as of `before`.
func (l *Ledger) Take(before time.Duration) []UpstreamRecord {
	limit := int64(before / l.width)
	l.mu.Lock()
	var idxs []int64
	for idx := range l.ivs {
		if idx < limit {
			idxs = append(idxs, idx)
		}
	}
	sort.Slice(idxs, func(i, j int) bool { return idxs[i] < idxs[j] })
	var out []UpstreamRecord
	for _, idx := range idxs {
		m := l.ivs[idx]
		if overdue := time.Duration(idx+1)*l.width+HoldUnfinished <= before; !overdue && unfinished(m) {
			break // later intervals wait too: the file stays in order
		}
		for _, acc := range m {
			acc.settle(before, 0)
		}
		delete(l.ivs, idx)
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			out = append(out, m[n].finish(time.Duration(idx)*l.width, l.width))
		}
	}
	l.mu.Unlock()
	return out
}

func unfinished(m map[string]*upstreamAcc) bool {
	for _, acc := range m {
		if acc.unfinished > 0 {
			return true
		}
	}
	return false
}

func (a *upstreamAcc) finish(start, width time.Duration) UpstreamRecord {
	rec := a.rec
	rec.Start, rec.Width = Sec(start), Sec(width)
	if a.service != nil && a.service.TotalCount() > 0 {
		rec.ServiceP95MS = round(float64(a.service.ValueAtQuantile(95))/1000, 3)
	}
	names := make([]string, 0, len(a.replicas))
	for n := range a.replicas {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		r := a.replicas[n]
		rr := ReplicaRecord{Replica: n, Addr: r.addr, Arrivals: r.arrivals, HealthChecks: r.healthChecks}
		if r.inFlightN > 0 {
			rr.InFlightMean = round(float64(r.inFlightSum)/float64(r.inFlightN), 3)
			rec.Replicas++
		}
		rec.InFlightMean += rr.InFlightMean
		ms := make([]int32, 0, len(r.ms))
		for k := range r.ms {
			ms = append(ms, k)
		}
		sort.Slice(ms, func(i, j int) bool { return ms[i] < ms[j] })
		for _, k := range ms {
			rr.ArrivalsMS = append(rr.ArrivalsMS, k, r.ms[k])
		}
		rec.PerReplica = append(rec.PerReplica, rr)
	}
	rec.InFlightMean = round(rec.InFlightMean, 3)
	rec.OrphanMS = round(rec.OrphanMS, 3)
	return rec
}

// idempotent follows RFC 9110 §9.2.2: POST, PATCH and CONNECT are not.
func idempotent(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPatch, http.MethodConnect:
		return false
	}
	return true
}

// JSONLWriter appends JSON lines to a file; the run streams upstream records
// through one so an interrupted run keeps what it saw.
type JSONLWriter struct {
	mu  sync.Mutex
	f   *os.File
	buf *bufio.Writer
	enc *json.Encoder
	err error
}

// CreateJSONL creates (truncates) dir/name.
func CreateJSONL(dir, name string) (*JSONLWriter, error) {
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	b := bufio.NewWriterSize(f, 64<<10)
	return &JSONLWriter{f: f, buf: b, enc: json.NewEncoder(b)}, nil
}

// Write appends v as one line.
func (w *JSONLWriter) Write(v any) {
	w.mu.Lock()
	if err := w.enc.Encode(v); err != nil && w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

// Flush pushes buffered lines to disk.
func (w *JSONLWriter) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return errors.Join(w.err, w.buf.Flush())
}

// Close flushes and closes the file.
func (w *JSONLWriter) Close() error {
	return errors.Join(w.Flush(), w.f.Close())
}

// LoadUpstreams reads dir/upstreams.jsonl; a run without one (an older run,
// or an external gateway with no fake upstream) has none.
func LoadUpstreams(dir string) ([]UpstreamRecord, error) {
	return readLines[UpstreamRecord](filepath.Join(dir, UpstreamsFile))
}

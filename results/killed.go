package results

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/owner"
)

// Rebuilt marks a summary that no run wrote: the run was killed (SIGKILL,
// a crash, a third Ctrl-C, a CI timeout, the OOM killer) before its end,
// and `cascade report` rebuilt what it could from the records the run
// streamed. Such a summary is never written into the run's directory by
// default: the directory is the evidence that the run was killed.
type Rebuilt struct {
	// Through is where the rebuilt numbers end on the run's clock: the end
	// of the last interval written whole to intervals.jsonl. A run holds an
	// interval until no request intended in it can still end (one client
	// timeout), so what came after it died with the run.
	Through Seconds `json:"through_s"`
	// LastEvent is the time of the last event written, about when the run
	// was killed (the events are flushed every second).
	LastEvent Seconds `json:"last_event_s"`
	// Files are the records read, in the order they count.
	Files []string `json:"files"`
	// Rule says how intervals were put in phases.
	Rule string `json:"rule"`
}

// IntervalRule is how a rebuilt summary (and the rolling windows, which
// read intervals.jsonl the same way) puts 1 s intervals in phases: a phase
// boundary inside an interval cannot be split, as its samples are merged.
const IntervalRule = "an interval counts in the phase that holds its start"

// KilledRun is a run directory without summary.json, read back as far as
// its streams were written whole.
type KilledRun struct {
	Dir       string
	Events    []event.Event
	Intervals []IntervalRecord // whole lines only, up to Through
	Upstreams []UpstreamRecord // whole lines only, up to Through
	// Partial says which records were cut where ("" when every line read
	// was whole), as Run.Partial.
	Partial string
	// Load is what the run's load.start event said.
	Scenario string
	Seed     uint64
	Target   string
	Planned  time.Duration
	// Ladder names the ladder's rung the run was (nil for any other run,
	// and for a rung run before load.start said so): its plan is the
	// scenario copy's rebuilt as the ladder built it, not the copy's own.
	Ladder *LadderRung
	// Owner is the process that ran it (load.start's owner; zero when the
	// run predates it): a run whose process still lives is not killed.
	Owner owner.Process
	// Started is the wall time of the run clock's zero, from latency.hlog
	// (zero when it has none).
	Started time.Time
	// Through is the end of the last interval written whole; UpstreamsThrough
	// the end of the last upstream record (0 with none).
	Through, UpstreamsThrough time.Duration
	// Hlog says how latency.hlog compared with intervals.jsonl: "" when it
	// agreed, else why it could not be used as a check.
	Hlog string
}

// IsKilled reports whether dir holds a run's streams without the summary
// its run writes at the end: the run was killed before it could.
func IsKilled(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, SummaryFile)); !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, IntervalsFile))
	return err == nil
}

// LoadKilled reads a killed run's directory: its streams up to their first
// line that was not written whole (the kill cuts a write anywhere), the
// load.start event (the seed the plan is rebuilt with), and latency.hlog
// as a check of intervals.jsonl.
func LoadKilled(dir string) (*KilledRun, error) {
	k := &KilledRun{Dir: dir}
	var err error
	if k.Events, k.Intervals, k.Upstreams, k.Partial, err = LoadPartialRecords(dir); err != nil {
		return nil, err
	}
	if err := k.readLoadStart(); err != nil {
		return nil, err
	}
	if k.Owner.PID != 0 && k.Owner.Alive() {
		// No summary yet because the run has not ended: a report rebuilt
		// now would call it killed, and its --html be overwritten.
		return nil, fmt.Errorf("%s: the run is still going (process %d): it writes its summary when it ends; report it then, or end it sooner with cascade stop or Ctrl-C", dir, k.Owner.PID)
	}
	if len(k.Intervals) == 0 && k.Partial != "" {
		// Nothing whole before a line that does not decode: that line is
		// the news, not "killed before its first interval".
		return nil, fmt.Errorf("%s: no interval could be read: %s", dir, k.Partial)
	}
	if len(k.Intervals) == 0 {
		return nil, fmt.Errorf("%s: the run was killed before it wrote its first interval to %s: nothing was recorded to report "+
			"(an interval is written once no request intended in it can still land in it: a second or two after it, "+
			"one client timeout after it in a game day with gates)", dir, IntervalsFile)
	}
	for _, r := range k.Intervals {
		k.Through = max(k.Through, (r.Start + r.Width).D())
	}
	// Upstream records past the client's last interval count arrivals of
	// requests whose client side was not written: a ratio of the two
	// (amplification) would be wrong, so they are left out.
	ups := k.Upstreams[:0]
	for _, r := range k.Upstreams {
		if r.Start.D() < k.Through {
			ups = append(ups, r)
			k.UpstreamsThrough = max(k.UpstreamsThrough, (r.Start + r.Width).D())
		}
	}
	k.Upstreams = ups
	k.checkHlog()
	return k, nil
}

// readLoadStart finds the load.start event, whose seed is read as written
// (a JSON number decoded as a float64 loses a seed above 2^53).
func (k *KilledRun) readLoadStart() error {
	path := filepath.Join(k.Dir, EventsFile)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		line, rerr := br.ReadBytes('\n')
		if bytes.Contains(line, []byte(`"load.start"`)) {
			var e struct {
				Type   string         `json:"type"`
				Target string         `json:"target"`
				Attrs  map[string]any `json:"attrs"`
			}
			d := json.NewDecoder(bytes.NewReader(line))
			d.UseNumber()
			if d.Decode(&e) == nil && e.Type == "load.start" {
				k.Target = e.Target
				k.Scenario, _ = e.Attrs["scenario"].(string)
				if n, ok := e.Attrs["seed"].(json.Number); ok {
					k.Seed, _ = strconv.ParseUint(n.String(), 10, 64)
				}
				if n, ok := e.Attrs["planned_s"].(json.Number); ok {
					s, _ := n.Float64()
					k.Planned = Seconds(s).D()
				}
				if o, ok := e.Attrs["owner"].(string); ok {
					k.Owner, _ = owner.Parse(o)
				}
				if _, ok := e.Attrs["ladder"]; ok {
					var l struct {
						Attrs struct {
							Ladder *LadderRung `json:"ladder"`
						} `json:"attrs"`
					}
					if err := json.Unmarshal(line, &l); err != nil || l.Attrs.Ladder == nil || l.Attrs.Ladder.Rung == "" {
						return fmt.Errorf("%s: the load.start event's ladder rung does not decode", path)
					}
					k.Ladder = l.Attrs.Ladder
				}
				return nil
			}
		}
		if rerr != nil {
			break
		}
	}
	return fmt.Errorf("%s: the run was killed before its load started (%s has no load.start event): nothing was measured", k.Dir, EventsFile)
}

// checkHlog reads latency.hlog and compares it with intervals.jsonl, which
// hold the same histograms: the run writes both in one step. The numbers
// come from intervals.jsonl, whose histograms are the very ones (in µs) a
// summary merges; the log holds them converted to ns, its format's unit,
// which moves a percentile by up to a bucket (0.1%). So the log serves as
// the check that the two agree, and gives the run's wall-clock start.
func (k *KilledRun) checkHlog() {
	path := filepath.Join(k.Dir, HlogFile)
	log, err := ReadHlog(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		k.Hlog = HlogFile + " is missing: the percentiles were not checked against it"
		return
	case err != nil && log == nil:
		k.Hlog = err.Error()
		return
	}
	k.Started = log.Start
	// By interval start, in ms: an overloaded run can write an interval
	// twice (samples that landed after it was written), in both files.
	inLog, inIvs := map[int64]int64{}, map[int64]int64{}
	var starts []int64
	for _, iv := range log.Intervals {
		inLog[iv.Start.Milliseconds()] += iv.Latency.TotalCount()
	}
	for _, r := range k.Intervals {
		if r.Start.D() >= log.Through {
			break
		}
		ms := r.Start.D().Milliseconds()
		if _, ok := inIvs[ms]; !ok {
			starts = append(starts, ms)
		}
		inIvs[ms] += r.Stats.Answered()
	}
	var diffs []string
	for _, ms := range starts {
		if got, want := inLog[ms], inIvs[ms]; got != want {
			diffs = append(diffs, fmt.Sprintf("at %.0fs %d latencies in %s, %d answered in %s", float64(ms)/1000, got, HlogFile, want, IntervalsFile))
		}
	}
	switch {
	case len(diffs) > 0:
		if len(diffs) > 3 {
			diffs = append(diffs[:3], "...")
		}
		k.Hlog = HlogFile + " disagrees with " + IntervalsFile + " (" + strings.Join(diffs, "; ") + ")"
	case err != nil:
		k.Hlog = err.Error() // cut: checked up to there
	}
}

// Hlog is latency.hlog read back.
type Hlog struct {
	Start     time.Time // the run clock's zero (#[StartTime])
	Intervals []HlogInterval
	// Through is the end of the last interval both of whose histograms
	// (latency and service) were read.
	Through time.Duration
}

// HlogInterval is one interval of latency.hlog, its histograms in ns.
type HlogInterval struct {
	Start, End       time.Duration // on the run's clock
	Latency, Service *hdr.Histogram
}

// ReadHlog reads a latency.hlog written by HlogWriter with hdrhistogram-go's
// log reader, one line at a time so that an error names its line. A file
// cut short by a kill ends mid-line: the intervals before the first line
// that does not decode are returned together with the error, which names
// the file and the line; a file that is not an interval log at all is an
// error with no intervals.
func ReadHlog(path string) (*Hlog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := &Hlog{}
	br := bufio.NewReaderSize(f, 256<<10)
	var ended struct{ latency, service time.Duration }
	sawHeader := false
	for n := 1; ; n++ {
		line, rerr := br.ReadString('\n')
		if rerr != nil && rerr != io.EOF {
			return nil, fmt.Errorf("%s: %w", path, rerr)
		}
		if line == "" && rerr == io.EOF {
			break
		}
		lineErr := func(msg string, args ...any) (*Hlog, error) {
			err := fmt.Errorf("%s:%d: %s", path, n, fmt.Sprintf(msg, args...))
			if !sawHeader {
				return nil, err
			}
			out.trim(ended.latency, ended.service)
			return out, err
		}
		if !strings.HasSuffix(line, "\n") {
			// The writer ends every line: this one was cut by the kill.
			return lineErr("cut short (%d bytes, no line end): the log is read up to the line before", len(line))
		}
		text := strings.TrimRight(line, "\r\n")
		switch {
		case n == 1:
			if !strings.HasPrefix(text, "#[Histogram log format version") {
				return nil, fmt.Errorf("%s:1: not an HdrHistogram interval log (it starts %q)", path, clip(text))
			}
			sawHeader = true
			continue
		case strings.HasPrefix(text, "#[StartTime: "):
			secs, _, _ := strings.Cut(strings.TrimPrefix(text, "#[StartTime: "), " ")
			s, err := strconv.ParseFloat(secs, 64)
			if err != nil || s < 0 || s > 1e11 {
				return lineErr("StartTime %q is not seconds since the epoch", secs)
			}
			out.Start = time.UnixMilli(int64(math.Round(s * 1000)))
			continue
		case text == "" || strings.HasPrefix(text, "#") || strings.HasPrefix(text, `"StartTimestamp"`):
			continue
		}
		// The library's reader, on this line alone: with no BaseTime of
		// its own it takes the timestamps as they are, which are seconds
		// on the run's clock (the writer writes them relative to its
		// BaseTime, the run's start).
		h, err := readHlogLine(text)
		if err != nil {
			return lineErr("%v", err)
		}
		if h == nil {
			return lineErr("not an interval histogram line (%q)", clip(text))
		}
		iv := HlogInterval{Start: time.Duration(h.StartTimeMs()) * time.Millisecond, End: time.Duration(h.EndTimeMs()) * time.Millisecond}
		switch h.Tag() {
		case "":
			iv.Latency = h
			out.Intervals = append(out.Intervals, iv)
			ended.latency = max(ended.latency, iv.End)
		case HlogTagService:
			// Written right after its interval's latency line.
			last := len(out.Intervals) - 1
			if last < 0 || out.Intervals[last].Start != iv.Start || out.Intervals[last].Service != nil {
				return lineErr("a service histogram at %s without the latency one before it", iv.Start)
			}
			out.Intervals[last].Service = h
			ended.service = max(ended.service, iv.End)
		default:
			return lineErr("unknown tag %q", h.Tag())
		}
	}
	if !sawHeader {
		return nil, fmt.Errorf("%s: empty: not an HdrHistogram interval log", path)
	}
	out.trim(ended.latency, ended.service)
	return out, nil
}

// trim ends the log at its last interval with both histograms: a kill
// between an interval's two lines leaves the latency one alone.
func (h *Hlog) trim(latency, service time.Duration) {
	h.Through = min(latency, service)
	if n := len(h.Intervals); n > 0 && h.Intervals[n-1].Service == nil {
		h.Intervals = h.Intervals[:n-1]
	}
}

// readHlogLine decodes one interval line with the library's reader,
// turning its panics (it trusts its input) into errors.
func readHlogLine(text string) (h *hdr.Histogram, err error) {
	defer func() {
		if p := recover(); p != nil {
			h, err = nil, fmt.Errorf("does not decode: %v", p)
		}
	}()
	h, err = hdr.NewHistogramLogReader(strings.NewReader(text + "\n")).NextIntervalHistogram()
	if err != nil {
		return nil, fmt.Errorf("does not decode: %w", err)
	}
	return h, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Unrecorded names the phases no whole interval of the records starts
// in, each with why: a rebuilt summary counts an interval in the phase
// that holds its start, so such a phase holds nothing recorded, and an
// objective on it has nothing to be judged on. It read "no requests were
// sent in phase after (...; the run stopped before it began)", a FAIL,
// of a phase the run went on into for as long as it ran past its records.
func (k *KilledRun) Unrecorded(phases []Phase) map[string]string {
	out := map[string]string{}
	for _, ph := range phases {
		held := false
		for _, r := range k.Intervals {
			if r.Start.D() >= ph.Start && r.Start.D() < ph.End {
				held = true
				break
			}
		}
		switch {
		case held:
		case ph.Start >= k.Through:
			out[ph.Name] = fmt.Sprintf("phase %s [%.1fs, %.1fs) is not recorded: the records end at %.1fs", ph.Name, ph.Start.Seconds(), ph.End.Seconds(), k.Through.Seconds())
		default:
			out[ph.Name] = fmt.Sprintf("no interval of the records starts in phase %s [%.3fs, %.3fs) (%s)", ph.Name, ph.Start.Seconds(), ph.End.Seconds(), IntervalRule)
		}
	}
	return out
}

// RebuildSummary makes the summary the run did not write, from the records
// it streamed: phases (the plan's, run first, as the collector had them)
// get the intervals that start in them, up to Through. The histograms are
// those of intervals.jsonl, merged: the run's own merge of the same
// samples, so percentiles are exact for a phase whose bounds fall on
// interval bounds. What only the final summary holds (the scheduling lag,
// failed requests' latency by cause, per-executor and per-tag stats, the
// gateway's counts) is absent, never estimated.
func (k *KilledRun) RebuildSummary(phases []Phase) (*Summary, error) {
	if len(phases) == 0 {
		return nil, errors.New("rebuild: no phases")
	}
	type acc struct {
		st     *Stats
		window Seconds
		target float64 // requests the profile expected in the intervals
	}
	accs := make([]acc, len(phases))
	for i := range accs {
		accs[i].st = newStats(false)
	}
	for _, r := range k.Intervals {
		st, err := r.Stats.Stats()
		if err != nil {
			return nil, fmt.Errorf("%s: interval at %.1fs: %w", filepath.Join(k.Dir, IntervalsFile), float64(r.Start), err)
		}
		for i, ph := range phases {
			if r.Start.D() >= ph.Start && r.Start.D() < ph.End {
				accs[i].st.merge(st)
				accs[i].window += r.Width
				accs[i].target += r.Stats.TargetRate * float64(r.Width)
			}
		}
	}
	s := &Summary{
		Scenario: k.Scenario, Seed: k.Seed, Started: k.Started, Target: k.Target,
		Elapsed: Sec(k.Through), Planned: Sec(k.Planned), Verdict: VerdictError,
	}
	for i, ph := range phases {
		end := min(ph.End, max(k.Through, ph.Start))
		ps := PhaseSummary{Name: ph.Name, Start: Sec(ph.Start), End: Sec(end),
			Stats: Summarize(accs[i].st, accs[i].window.D(), accs[i].target)}
		if end < ph.End {
			ps.PlannedEnd = Sec(ph.End)
		}
		if i == 0 {
			s.Run = ps
		} else {
			s.Phases = append(s.Phases, ps)
		}
	}
	SortPhases(s.Phases)
	var on []string
	s.Faults, on = k.faults()
	if len(on) > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("fault %s was still on when the run was killed: how often it took effect is written only when it stops, so it is not in the table (its start is in %s)",
			strings.Join(on, ", "), EventsFile))
	}
	files := []string{IntervalsFile, EventsFile}
	if len(k.Upstreams) > 0 {
		files = append(files, UpstreamsFile)
	}
	if k.Hlog == "" {
		files = append(files, HlogFile+" (as a check)")
	}
	s.Rebuilt = &Rebuilt{Through: Sec(k.Through), Files: files, Rule: IntervalRule}
	if n := len(k.Events); n > 0 {
		s.Rebuilt.LastEvent = Sec(k.Events[n-1].T)
	}
	s.Error = fmt.Sprintf("the run was killed before it wrote its summary; rebuilt from its records up to %.0fs of the planned %.0fs",
		float64(s.Elapsed), float64(s.Planned))
	if k.Partial != "" {
		s.Warnings = append(s.Warnings, "the records were cut short by the kill: "+k.Partial)
	}
	if k.Hlog != "" {
		s.Warnings = append(s.Warnings, k.Hlog)
	}
	return s, nil
}

// faults rebuilds the timeline's faults from their start and stop events.
// A fault still on at the kill is left out of the table and named in on:
// how often it took effect is counted only when it stops.
func (k *KilledRun) faults() (faults []FaultSummary, on []string) {
	var out []FaultSummary
	index := map[string]int{}
	active := map[string]bool{}
	for _, e := range k.Events {
		if e.Source != "timeline" || (e.Type != "fault.start" && e.Type != "fault.stop") {
			continue
		}
		name, _ := e.Attrs["fault"].(string)
		i, ok := index[name]
		if !ok {
			kind, _ := e.Attrs["kind"].(string)
			out = append(out, FaultSummary{Name: name, Kind: kind, Target: e.Target, Start: Sec(e.T), Started: true})
			i = len(out) - 1
			index[name] = i
		}
		f := &out[i]
		if e.Type == "fault.start" {
			active[name] = true
			f.Occurrences++
			continue
		}
		active[name] = false
		f.End = Sec(e.T)
		if n, ok := e.Attrs["fired"].(float64); ok {
			f.Fired += int64(n)
		}
	}
	kept := out[:0]
	for _, f := range out {
		if active[f.Name] {
			on = append(on, f.Name)
			continue
		}
		if f.Occurrences == 1 {
			f.Occurrences = 0 // as a run's summary: set for a repeated fault only
		}
		kept = append(kept, f)
	}
	return kept, on
}

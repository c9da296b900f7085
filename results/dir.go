package results

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/regfile"
)

// Files in a run directory.
const (
	SummaryFile   = "summary.json"
	EventsFile    = "events.jsonl"
	IntervalsFile = "intervals.jsonl"
	ScenarioFile  = "scenario.yaml"
)

// Writer writes a run directory as the run goes: events and intervals are
// streamed (so an interrupted run keeps what it saw), the summary at the end.
type Writer struct {
	dir string

	mu        sync.Mutex // guards the streams below; held only for a buffered write
	events    *os.File
	eventsBuf *bufio.Writer
	eventsEnc *json.Encoder
	ivals     *os.File
	ivalsBuf  *bufio.Writer
	ivalsEnc  *json.Encoder
	hlogFile  *os.File
	hlog      *HlogWriter // created at the first interval, from start
	start     time.Time   // the run clock's zero (SetStart)
	err       error
	// expected is the profile's request count over [a, b), for each
	// interval's target rate (SetExpected); nil: unknown.
	expected func(a, b time.Duration) float64
}

// SetExpected gives the profile, so that each interval written carries its
// target rate. Call it before the first interval.
func (w *Writer) SetExpected(f func(a, b time.Duration) float64) {
	w.mu.Lock()
	w.expected = f
	w.mu.Unlock()
}

// ErrDirInUse is a run directory that already holds files: a usage error
// (the user named it), found before anything runs.
var ErrDirInUse = errors.New("a run does not write over earlier results")

// Create makes dir (and parents) and opens its streams.
func Create(dir string) (*Writer, error) {
	// An earlier run's results are not written over: they would be lost,
	// or, where this run writes fewer files, mixed with its own.
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%s already holds files (%s, ...): %w; choose a new directory or remove it", dir, ents[0].Name(), ErrDirInUse)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	w := &Writer{dir: dir}
	var err error
	if w.events, err = os.Create(filepath.Join(dir, EventsFile)); err != nil {
		return nil, err
	}
	if w.ivals, err = os.Create(filepath.Join(dir, IntervalsFile)); err != nil {
		w.events.Close()
		return nil, err
	}
	if w.hlogFile, err = os.Create(filepath.Join(dir, HlogFile)); err != nil {
		w.events.Close()
		w.ivals.Close()
		return nil, err
	}
	w.eventsBuf = bufio.NewWriterSize(w.events, 64<<10)
	w.eventsEnc = json.NewEncoder(w.eventsBuf)
	w.ivalsBuf = bufio.NewWriterSize(w.ivals, 64<<10)
	w.ivalsEnc = json.NewEncoder(w.ivalsBuf)
	return w, nil
}

// SetStart gives the run clock's zero, the base time of latency.hlog.
func (w *Writer) SetStart(t time.Time) {
	w.mu.Lock()
	w.start = t
	w.mu.Unlock()
}

// Dir is the run directory.
func (w *Writer) Dir() string { return w.dir }

// Emit implements event.Sink: it appends to events.jsonl.
func (w *Writer) Emit(e event.Event) {
	w.mu.Lock()
	if err := w.eventsEnc.Encode(e); err != nil && w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

// IntervalRecord is one line of intervals.jsonl.
type IntervalRecord struct {
	Start Seconds      `json:"t"` // start of the interval
	Width Seconds      `json:"width_s"`
	Stats StatsSummary `json:"stats"`
}

// RecordOf is iv as intervals.jsonl holds it; expected is the profile's
// request count over it (0: unknown or a closed model).
func RecordOf(iv Interval, width Seconds, expected float64) IntervalRecord {
	return IntervalRecord{Start: Sec(iv.Start), Width: width, Stats: Summarize(iv.Stats, width.D(), expected)}
}

// WriteIntervalsUntil is WriteIntervals for a run's last intervals: the
// one holding end is as wide as the part of it the load ran (at least a
// millisecond), so its rate is the rate over that part.
func (w *Writer) WriteIntervalsUntil(ivs []Interval, width Seconds, end time.Duration) []IntervalRecord {
	var out []IntervalRecord
	for _, iv := range ivs {
		wd := width
		if iv.Start < end && end < iv.Start+width.D() {
			wd = Sec(max(end-iv.Start, time.Millisecond))
		}
		out = append(out, w.WriteIntervals([]Interval{iv}, wd)...)
	}
	return out
}

// WriteIntervals appends intervals of the given width, and returns the
// records written (the run keeps them for verdicts on windows).
func (w *Writer) WriteIntervals(ivs []Interval, width Seconds) []IntervalRecord {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]IntervalRecord, 0, len(ivs))
	for _, iv := range ivs {
		var exp float64
		if w.expected != nil {
			exp = w.expected(iv.Start, iv.Start+width.D())
		}
		rec := RecordOf(iv, width, exp)
		if err := w.ivalsEnc.Encode(rec); err != nil && w.err == nil {
			w.err = err
		}
		if w.hlog == nil {
			if w.start.IsZero() {
				w.start = time.Now().Add(-iv.Start)
			}
			w.hlog = NewHlogWriter(w.hlogFile, w.start)
		}
		w.hlog.Write(iv, width.D())
		out = append(out, rec)
	}
	return out
}

// Flush pushes buffered events and intervals to disk.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var herr error
	if w.hlog != nil {
		herr = w.hlog.Flush()
	}
	return errors.Join(w.err, w.eventsBuf.Flush(), w.ivalsBuf.Flush(), herr)
}

// WriteFile writes a whole file into the run directory.
func (w *Writer) WriteFile(name string, data []byte) error {
	return os.WriteFile(filepath.Join(w.dir, name), data, 0o644)
}

// WriteSummary writes summary.json.
func (w *Writer) WriteSummary(s *Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return w.WriteFile(SummaryFile, append(b, '\n'))
}

// Close flushes and closes the streams.
func (w *Writer) Close() error {
	err := w.Flush()
	return errors.Join(err, w.events.Close(), w.ivals.Close(), w.hlogFile.Close())
}

// Run is a run directory read back.
type Run struct {
	Dir       string
	Summary   Summary
	Events    []event.Event
	Intervals []IntervalRecord
	Upstreams []UpstreamRecord // what the fake upstreams saw (upstreams.jsonl)
}

// MaxSummary bounds summary.json: a directory given to report or compare
// may be anything, and its summary.json a link to /dev/zero.
const MaxSummary = 1 << 30

// Load reads a run directory written by Writer.
func Load(dir string) (*Run, error) {
	r := &Run{Dir: dir}
	b, err := regfile.Read(filepath.Join(dir, SummaryFile), MaxSummary)
	if err != nil {
		return nil, fmt.Errorf("%s is not a cascade run directory: %w", dir, err)
	}
	if err := json.Unmarshal(b, &r.Summary); err != nil {
		return nil, JSONError(filepath.Join(dir, SummaryFile), b, err)
	}
	// Every run writes these: without them the file is not a summary (a
	// "{}" was judged as a run of nothing, and compared as one).
	if r.Summary.Scenario == "" || r.Summary.PlanHash == "" {
		return nil, fmt.Errorf("%s is not a cascade summary: it has no scenario name or plan hash", filepath.Join(dir, SummaryFile))
	}
	if r.Events, r.Intervals, r.Upstreams, err = LoadRecords(dir); err != nil {
		return nil, err
	}
	return r, nil
}

// LoadRecords reads the streams a run writes as it goes: events.jsonl,
// intervals.jsonl and upstreams.jsonl. The run judges its own verdict from
// them once they are flushed, exactly as `cascade report` does later.
func LoadRecords(dir string) (events []event.Event, intervals []IntervalRecord, upstreams []UpstreamRecord, err error) {
	// A run creates both files before its first request: one missing is a
	// damaged directory, not a run without events (a report of it had no
	// time series and said nothing).
	for _, name := range []string{EventsFile, IntervalsFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return nil, nil, nil, fmt.Errorf("%s: the run directory is incomplete: %w", dir, err)
		}
	}
	if events, err = readLines[event.Event](filepath.Join(dir, EventsFile)); err != nil {
		return nil, nil, nil, err
	}
	if intervals, err = readLines[IntervalRecord](filepath.Join(dir, IntervalsFile)); err != nil {
		return nil, nil, nil, err
	}
	if upstreams, err = LoadUpstreams(dir); err != nil {
		return nil, nil, nil, err
	}
	return events, intervals, upstreams, nil
}

// readLines decodes a JSON-lines file, one value a line; a missing file has
// none. An error names the line and column: a run killed mid-write leaves
// its last line cut, and "unexpected EOF" alone did not say where.
func readLines[T any](path string) ([]T, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []T
	br := bufio.NewReaderSize(f, 256<<10)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if line := bytes.TrimRight(line, "\r\n"); len(bytes.TrimSpace(line)) > 0 {
			var v T
			if jerr := json.Unmarshal(line, &v); jerr != nil {
				return nil, JSONLineError(path, n, jerr)
			}
			out = append(out, v)
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
}

// JSONError locates a decoding error of data, read from path, as
// path:line:column, as the scenario's errors are located.
func JSONError(path string, data []byte, err error) error {
	off := jsonOffset(err)
	if off < 0 {
		return fmt.Errorf("%s: %w", path, err)
	}
	off = min(off, len(data))
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	// The offset counts the offending byte: its column on its line.
	col := max(off-bytes.LastIndexByte(data[:off], '\n')-1, 1)
	return fmt.Errorf("%s:%d:%d: %w", path, line, col, err)
}

// JSONLineError locates a decoding error of line n of a JSON-lines file as
// path:line:column.
func JSONLineError(path string, n int, err error) error {
	return fmt.Errorf("%s:%d:%d: %w", path, n, max(jsonOffset(err), 1), err)
}

// jsonOffset is the byte offset encoding/json reports, or -1.
func jsonOffset(err error) int {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return int(se.Offset)
	case errors.As(err, &te):
		return int(te.Offset)
	}
	return -1
}

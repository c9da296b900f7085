package results

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cascadehq/cascade/internal/atomicfile"
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
	dir  string
	made []string // the directories Create made, deepest first

	mu        sync.Mutex // guards the streams below and own; held only for a buffered write
	own       []string   // the files this run writes into dir, by name (Track)
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

// CheckFree refuses a directory that already holds files (ErrDirInUse):
// an earlier run's results are not written over (they would be lost, or,
// where this run writes fewer files, mixed with its own), nor mixed with
// files of the user's. A directory that does not exist yet, or is empty,
// is free. Commands that write several runs under one directory (--repeat,
// ladder) check it before the first one starts.
func CheckFree(dir string) error {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		// A usage error as a full directory is (exit 2): the run failed
		// its setup on "not a directory", exit 3, as if broken.
		return fmt.Errorf("%s is a file, not a directory: %w; choose a directory for the results", dir, ErrDirInUse)
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("%s already holds files (%s, ...): %w; choose a new directory or remove it", dir, ents[0].Name(), ErrDirInUse)
	}
	return nil
}

// Create makes dir (and parents) and opens its streams. A dir that holds
// files is refused (CheckFree).
func Create(dir string) (*Writer, error) {
	if err := CheckFree(dir); err != nil {
		return nil, err
	}
	made, err := mkdirs(dir)
	if err != nil {
		return nil, err
	}
	w := &Writer{dir: dir, made: made}
	w.Track(EventsFile, IntervalsFile, HlogFile)
	if w.events, err = os.Create(filepath.Join(dir, EventsFile)); err == nil {
		if w.ivals, err = os.Create(filepath.Join(dir, IntervalsFile)); err == nil {
			w.hlogFile, err = os.Create(filepath.Join(dir, HlogFile))
		}
	}
	if err != nil {
		_, _ = w.Discard()
		return nil, err
	}
	w.eventsBuf = bufio.NewWriterSize(w.events, 64<<10)
	w.eventsEnc = json.NewEncoder(w.eventsBuf)
	w.ivalsBuf = bufio.NewWriterSize(w.ivals, 64<<10)
	w.ivalsEnc = json.NewEncoder(w.ivalsBuf)
	return w, nil
}

// mkdirs is os.MkdirAll(dir) that says which directories it made, deepest
// first: only those are Discard's to remove. One made meanwhile by
// someone else is not counted.
func mkdirs(dir string) ([]string, error) {
	var missing []string
	for d := filepath.Clean(dir); ; {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	var made []string
	for i := len(missing) - 1; i >= 0; i-- {
		err := os.Mkdir(missing[i], 0o755)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			for _, d := range made {
				_ = os.Remove(d)
			}
			return nil, err
		}
		made = append([]string{missing[i]}, made...)
	}
	return made, nil
}

// Track names files this run writes into the directory by other means
// than the Writer (the access log, a game day's journal...), before they
// are created: Discard removes them. The directory was empty when the run
// began, so a file of that name there is this run's.
func (w *Writer) Track(names ...string) {
	w.mu.Lock()
	w.own = append(w.own, names...)
	w.mu.Unlock()
}

// Discard undoes Create, for a run that ends before its load started (its
// setup failed, or was interrupted): nothing was measured, and a directory
// left with a few files in it would refuse the next run into it. It closes
// the streams and removes the files the run wrote (the Writer's own, and
// those named to Track), then the directories Create made, each if it is
// empty by then. Whatever else is there (a directory that existed before,
// files someone else put in it) is left as it was. removed is the
// outermost directory it removed (the run directory, or a parent Create
// made for it), "" when the run directory is still there.
func (w *Writer) Discard() (removed string, err error) {
	w.mu.Lock()
	own := append([]string(nil), w.own...)
	w.mu.Unlock()
	for _, f := range []*os.File{w.events, w.ivals, w.hlogFile} {
		if f != nil {
			_ = f.Close() // the contents are thrown away: a flush error does not matter
		}
	}
	var errs []error
	for _, name := range own {
		if err := os.Remove(filepath.Join(w.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for i, d := range w.made {
		err := os.Remove(d)
		if err == nil {
			removed = d
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			if i == 0 {
				// Made by this run, yet not empty: say what is in it, which
				// this run did not write (or did not Track).
				if ents, rerr := os.ReadDir(d); rerr == nil && len(ents) > 0 {
					err = fmt.Errorf("%s was kept: it holds %s, which this run did not write", d, ents[0].Name())
				}
				errs = append(errs, err)
			}
			break // a parent that holds something else: not this run's to remove
		}
	}
	return removed, errors.Join(errs...)
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

// WriteFile writes a whole file into the run directory, whole or not at
// all: a summary.json cut short by a full disk would read as a damaged
// run, and one rewritten (a run that fails after writing it) would lose
// the first.
func (w *Writer) WriteFile(name string, data []byte) error {
	w.Track(name)
	return atomicfile.WriteFile(filepath.Join(w.dir, name), data, 0o644)
}

// Kept lists what the run directory holds, with each file's size, for an
// error that must say what a run that could not write its summary left.
func (w *Writer) Kept() string {
	ents, err := os.ReadDir(w.dir)
	if err != nil {
		return "nothing that can be read (" + err.Error() + ")"
	}
	var parts []string
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			parts = append(parts, fmt.Sprintf("%s (%d bytes)", e.Name(), info.Size()))
		}
	}
	if len(parts) == 0 {
		return "no file"
	}
	return strings.Join(parts, ", ")
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
	// Partial says which records of a run stopped by an error could not
	// be read whole (its last lines cut short), and are read up to there;
	// "" when every record was read.
	Partial string
}

// MaxSummary bounds summary.json: a directory given to report or compare
// may be anything, and its summary.json a link to /dev/zero.
const MaxSummary = 1 << 30

// Load reads a run directory written by Writer.
func Load(dir string) (*Run, error) {
	r := &Run{Dir: dir}
	b, err := regfile.Read(filepath.Join(dir, SummaryFile), MaxSummary)
	if err != nil {
		return nil, fmt.Errorf("%s is not a cascade run directory: %w%s", dir, err, whatDirHolds(dir, err))
	}
	if err := json.Unmarshal(b, &r.Summary); err != nil {
		return nil, JSONError(filepath.Join(dir, SummaryFile), b, err)
	}
	SortPhases(r.Summary.Phases)
	// Every run writes these: without them the file is not a summary (a
	// "{}" was judged as a run of nothing, and compared as one).
	if r.Summary.Scenario == "" || r.Summary.PlanHash == "" {
		return nil, fmt.Errorf("%s is not a cascade summary: it has no scenario name or plan hash", filepath.Join(dir, SummaryFile))
	}
	if r.Summary.Error != "" {
		// A run stopped by an error (a full disk) may have had its last
		// lines cut: what is whole before them is read, and Partial says
		// what was not.
		r.Events, r.Intervals, r.Upstreams, r.Partial, err = LoadPartialRecords(dir)
	} else {
		r.Events, r.Intervals, r.Upstreams, err = LoadRecords(dir)
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// whatDirHolds says what a directory without a summary.json holds, when
// cascade made it: the runs of a --repeat or the rungs of a ladder (their
// parent was given instead of one of them), or the records of a run that
// was killed before it could write its summary.
func whatDirHolds(dir string, err error) string {
	if !errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if _, err := os.Stat(filepath.Join(dir, IntervalsFile)); err == nil {
		return fmt.Sprintf("; it holds a run's records (%s, %s) without its summary: the run is still going, or was killed before it could write one "+
			"(a third Ctrl-C, SIGKILL, a crash); 'cascade report %s' rebuilds a partial report of a killed one", IntervalsFile, EventsFile, dir)
	}
	entries, _ := os.ReadDir(dir)
	var runs []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), SummaryFile)); e.IsDir() && err == nil {
			runs = append(runs, filepath.Join(dir, e.Name()))
		}
	}
	switch {
	case len(runs) == 0:
		return ""
	case len(runs) > 3:
		runs = append(runs[:3], "...")
	}
	return fmt.Sprintf("; it holds the run directories of a --repeat or a ladder: give one of them (%s)", strings.Join(runs, ", "))
}

// LoadRecords reads the streams a run writes as it goes: events.jsonl,
// intervals.jsonl and upstreams.jsonl. The run judges its own verdict from
// them once they are flushed, exactly as `cascade report` does later.
func LoadRecords(dir string) (events []event.Event, intervals []IntervalRecord, upstreams []UpstreamRecord, err error) {
	events, intervals, upstreams, _, err = loadRecords(dir, false)
	return events, intervals, upstreams, err
}

// LoadPartialRecords is LoadRecords for a run stopped by an error while it
// wrote them (a full disk cuts a file at a block, mid-line): each file is
// read up to its first line that does not decode, and partial says which
// files were cut where. A file missing is still an error.
func LoadPartialRecords(dir string) (events []event.Event, intervals []IntervalRecord, upstreams []UpstreamRecord, partial string, err error) {
	return loadRecords(dir, true)
}

func loadRecords(dir string, lenient bool) (events []event.Event, intervals []IntervalRecord, upstreams []UpstreamRecord, partial string, err error) {
	// A run creates both files before its first request: one missing is a
	// damaged directory, not a run without events (a report of it had no
	// time series and said nothing).
	for _, name := range []string{EventsFile, IntervalsFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return nil, nil, nil, "", fmt.Errorf("%s: the run directory is incomplete: %w", dir, err)
		}
	}
	var cuts []string
	var cut error
	if events, cut, err = readLinesUpTo[event.Event](filepath.Join(dir, EventsFile), lenient); err != nil {
		return nil, nil, nil, "", err
	}
	if cut != nil {
		cuts = append(cuts, cut.Error())
	}
	if intervals, cut, err = readLinesUpTo[IntervalRecord](filepath.Join(dir, IntervalsFile), lenient); err != nil {
		return nil, nil, nil, "", err
	}
	if cut != nil {
		cuts = append(cuts, cut.Error())
	}
	if upstreams, cut, err = readLinesUpTo[UpstreamRecord](filepath.Join(dir, UpstreamsFile), lenient); err != nil {
		return nil, nil, nil, "", err
	}
	if cut != nil {
		cuts = append(cuts, cut.Error())
	}
	if len(cuts) > 0 {
		partial = "read up to a line that was not written whole: " + strings.Join(cuts, "; ")
	}
	return events, intervals, upstreams, partial, nil
}

// readLines decodes a JSON-lines file, one value a line; a missing file has
// none. An error names the line and column: a run killed mid-write leaves
// its last line cut, and "unexpected EOF" alone did not say where.
func readLines[T any](path string) ([]T, error) {
	out, _, err := readLinesUpTo[T](path, false)
	return out, err
}

// readLinesUpTo is readLines that, when lenient, stops at the first line
// that does not decode instead of failing: the lines before it are
// returned, and cut is that line's error.
func readLinesUpTo[T any](path string, lenient bool) (out []T, cut error, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 256<<10)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if line := bytes.TrimRight(line, "\r\n"); len(bytes.TrimSpace(line)) > 0 {
			var v T
			if jerr := json.Unmarshal(line, &v); jerr != nil {
				if lenient {
					return out, JSONLineError(path, n, jerr), nil
				}
				return nil, nil, JSONLineError(path, n, jerr)
			}
			out = append(out, v)
		}
		if err == io.EOF {
			return out, nil, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
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

package report

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/regfile"
	"github.com/cascadehq/cascade/results"
)

// perRequest are event types emitted once per affected request. The report
// neither draws nor lists them (the summary counts them per fault), and a
// long run has millions.
var perRequest = map[string]bool{"fault.apply": true}

// Load reads a run directory for the report: like results.Load, but it
// streams events.jsonl and keeps only the events the report uses, so the
// report of a long run with a fault on every request does not hold every
// firing in memory. Verdicts need results.Load.
func Load(dir string) (*results.Run, error) {
	r := &results.Run{Dir: dir}
	b, err := regfile.Read(filepath.Join(dir, results.SummaryFile), results.MaxSummary)
	if err != nil {
		return nil, fmt.Errorf("%s is not a cascade run directory: %w", dir, err)
	}
	if err := json.Unmarshal(b, &r.Summary); err != nil {
		return nil, results.JSONError(filepath.Join(dir, results.SummaryFile), b, err)
	}
	results.SortPhases(r.Summary.Phases)
	// A run stopped by an error (a full disk) may have had its last lines
	// cut: read up to them, as results.Load does.
	lenient := r.Summary.Error != ""
	err = eachLine(filepath.Join(dir, results.EventsFile), lenient, func(line []byte) error {
		// Skip per-request events before decoding them in full.
		var head struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(line, &head); err != nil {
			return err
		}
		if perRequest[head.Type] {
			return nil
		}
		var e event.Event
		if err := json.Unmarshal(line, &e); err != nil {
			return err
		}
		r.Events = append(r.Events, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = eachLine(filepath.Join(dir, results.IntervalsFile), lenient, func(line []byte) error {
		var iv results.IntervalRecord
		if err := json.Unmarshal(line, &iv); err != nil {
			return err
		}
		r.Intervals = append(r.Intervals, iv)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// eachLine calls fn for each non-empty line; a missing file has none (an
// interrupted run may not have written one). When lenient, a line fn
// refuses ends the file instead of failing it.
func eachLine(path string, lenient bool, fn func([]byte) error) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 256<<10)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && !(len(line) == 1 && line[0] == '\n') {
			if perr := fn(line); perr != nil {
				if lenient {
					return nil
				}
				return results.JSONLineError(path, n, perr)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
}

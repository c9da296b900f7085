package gameday

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cascadehq/cascade/loadgen"
)

// Files a game day adds to its run directory.
const (
	JournalFile = "journal.jsonl" // everything done by hand, one action a line
	ControlFile = "control.json"  // how to reach the control API (0600; removed when the run ends)
	StateFile   = "gameday.json"  // the gates, halts and load profile as they ran, for export
)

// Actions in the journal.
const (
	ActFaultAdd  = "fault.add"
	ActFaultRm   = "fault.rm"
	ActPhaseNext = "phase.next"
	ActStop      = "stop"
	ActHalt      = "halt" // not by hand: a safety check broke (who is "safety")
)

// Entry is one line of the journal: who did what, when on the run's clock.
// Refused actions are kept too, with the reason.
type Entry struct {
	T      float64   `json:"t"` // seconds on the run's clock
	Wall   time.Time `json:"wall"`
	Who    string    `json:"who"`
	Action string    `json:"action"`
	Fault  string    `json:"fault,omitempty"`  // the fault's name
	Kind   string    `json:"kind,omitempty"`   // fault.add
	Target string    `json:"target,omitempty"` // fault.add
	Spec   string    `json:"spec,omitempty"`   // fault.add: the fault as sent (YAML or JSON)
	Phase  string    `json:"phase,omitempty"`  // phase.next: the gate opened
	Detail string    `json:"detail,omitempty"` // halt: the objective and value
	Error  string    `json:"error,omitempty"`  // the action was refused: why
}

// Journal appends entries to journal.jsonl as they happen (each line is
// written through at once: a crash keeps what was done) and keeps them.
type Journal struct {
	mu      sync.Mutex
	f       *os.File
	entries []Entry
	err     error
}

// CreateJournal opens dir/journal.jsonl.
func CreateJournal(dir string) (*Journal, error) {
	f, err := os.OpenFile(filepath.Join(dir, JournalFile), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return &Journal{f: f}, nil
}

// Add records e.
func (j *Journal) Add(e Entry) {
	e.T = math.Round(e.T*1e6) / 1e6
	b, err := json.Marshal(e)
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, e)
	if err == nil && j.f != nil {
		_, err = j.f.Write(append(b, '\n'))
	}
	if err != nil && j.err == nil {
		j.err = err
	}
}

// Entries returns what was recorded so far.
func (j *Journal) Entries() []Entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]Entry(nil), j.entries...)
}

// Close closes the file and reports the first write error.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return j.err
	}
	err := j.f.Close()
	j.f = nil
	return errors.Join(j.err, err)
}

// ReadJournal reads a run directory's journal (none: no entries).
func ReadJournal(dir string) ([]Entry, error) {
	out, _, err := readJournal(dir, false)
	return out, err
}

// ReadKilledJournal reads the journal of a run killed outright: a last line
// that does not decode and has no newline is where the kill (or a crash, a
// full disk) cut a write, so the entries before it are returned and cut
// names it ("journal.jsonl:11"); a bad line anywhere else is an error.
func ReadKilledJournal(dir string) (entries []Entry, cut string, err error) {
	return readJournal(dir, true)
}

func readJournal(dir string, killed bool) ([]Entry, string, error) {
	f, err := os.Open(filepath.Join(dir, JournalFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	var out []Entry
	br := bufio.NewReader(f)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(line) > 1 {
			var e Entry
			if jerr := json.Unmarshal(line, &e); jerr != nil {
				if killed && err == io.EOF && line[len(line)-1] != '\n' {
					return out, fmt.Sprintf("%s:%d", f.Name(), n), nil
				}
				return nil, "", fmt.Errorf("%s:%d: %w", f.Name(), n, jerr)
			}
			out = append(out, e)
		}
		if err == io.EOF {
			return out, "", nil
		}
		if err != nil {
			return nil, "", err
		}
	}
}

// RanStages reads the load profile a game day followed (gate holds
// included) from its run directory; false when dir is not a game day's.
func RanStages(dir string) ([]loadgen.Stage, bool) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, false
	}
	var st State
	if json.Unmarshal(b, &st) != nil || len(st.Stages) == 0 {
		return nil, false
	}
	out := make([]loadgen.Stage, 0, len(st.Stages))
	for _, s := range st.Stages {
		out = append(out, loadgen.Stage{Duration: secs(s.Duration), From: s.From, To: s.To})
	}
	return out, true
}

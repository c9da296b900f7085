package results

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/loadgen"
)

// killedPhases are a plan's phases as the collector has them, the whole
// run first: a boundary inside an interval (2.5 s) and one on a bound (6 s).
var killedPhases = []Phase{{Name: "run", Start: 0, End: 10 * time.Second},
	{Name: "before", Start: 0, End: 2500 * time.Millisecond},
	{Name: "slow", Start: 2500 * time.Millisecond, End: 6 * time.Second},
	{Name: "after", Start: 6 * time.Second, End: 10 * time.Second}}

// writeKilledRun writes what a run killed 8 s into a 10 s plan leaves: the
// streams of its first `written` seconds, and no summary. Second i has 10
// requests, answered in (i+1)·10 ms, and one 503 in second 4. It returns
// the collector's own phase stats of those seconds, as a whole run would
// have summarized them.
func writeKilledRun(t testing.TB, dir string, written int) []*Stats {
	t.Helper()
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	start := time.UnixMilli(1763770500123)
	w.SetStart(start)
	w.Emit(event.Event{T: 0, Source: "run", Type: "load.start", Target: "http://127.0.0.1:1",
		Attrs: map[string]any{"scenario": "killme", "seed": uint64(1<<60 + 3), "planned_s": 10.0}})
	w.Emit(event.Event{T: 2500 * time.Millisecond, Source: "timeline", Type: "fault.start", Target: "api", Attrs: map[string]any{"fault": "slow", "kind": "latency"}})
	w.Emit(event.Event{T: 6 * time.Second, Source: "timeline", Type: "fault.stop", Target: "api", Attrs: map[string]any{"fault": "slow", "kind": "latency", "fired": 35}})
	w.Emit(event.Event{T: 7 * time.Second, Source: "timeline", Type: "fault.start", Target: "db", Attrs: map[string]any{"fault": "still-on", "kind": "latency"}})
	c := NewCollector(killedPhases[:1], time.Second, 1)
	whole := NewCollector(killedPhases, time.Second, 1)
	for i := range written {
		for j := range 10 {
			lat := time.Duration(i+1) * 10 * time.Millisecond
			s := loadgen.Sample{Intended: time.Duration(i)*time.Second + time.Duration(j)*100*time.Millisecond, Latency: lat, Service: lat, Cause: cause.OK}
			if i == 4 && j == 0 {
				s.Cause = cause.GatewayTimeout
			}
			c.Record(0, &s)
			whole.Record(0, &s)
		}
	}
	w.WriteIntervals(c.TakeIntervals(time.Duration(written)*time.Second), Sec(time.Second))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ScenarioFile), []byte("name: killme\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return whole.PhaseStats()
}

func TestRebuildKilledRun(t *testing.T) {
	dir := t.TempDir()
	want := writeKilledRun(t, dir, 8)
	if !IsKilled(dir) {
		t.Fatal("a directory with streams and no summary is not seen as a killed run")
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "cascade report "+dir+"' rebuilds a partial report") {
		t.Fatalf("Load of a killed run: %v", err)
	}
	k, err := LoadKilled(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k.Seed != 1<<60+3 || k.Scenario != "killme" || k.Planned != 10*time.Second || k.Through != 8*time.Second ||
		!k.Started.Equal(time.UnixMilli(1763770500123)) || k.Hlog != "" || k.Partial != "" {
		t.Fatalf("read back: seed %d, scenario %q, planned %s, through %s, started %s, hlog %q, partial %q",
			k.Seed, k.Scenario, k.Planned, k.Through, k.Started, k.Hlog, k.Partial)
	}
	s, err := k.RebuildSummary(killedPhases)
	if err != nil {
		t.Fatal(err)
	}
	if s.Verdict != VerdictError || !strings.Contains(s.Error, "killed before it wrote its summary") ||
		s.Rebuilt == nil || s.Rebuilt.Through != 8 || s.Rebuilt.LastEvent != 7 || s.Rebuilt.Rule != IntervalRule || s.Elapsed != 8 {
		t.Fatalf("summary: verdict %q, error %q, rebuilt %+v, elapsed %v", s.Verdict, s.Error, s.Rebuilt, s.Elapsed)
	}
	// The whole run: the collector's own numbers, histograms and all.
	run := Summarize(want[0], 8*time.Second, 0)
	if s.Run.Stats.Sent != 80 || s.Run.Stats.Errors != 1 || s.Run.Stats.Latency != run.Latency || s.Run.Stats.Histograms.Latency != run.Histograms.Latency {
		t.Fatalf("run: %+v, want %+v", s.Run.Stats, run)
	}
	if s.Run.Stats.AchievedRate != 10 || s.Run.End != 8 || s.Run.PlannedEnd != 10 {
		t.Fatalf("run: %v/s over [%v, %v) planned to %v", s.Run.Stats.AchievedRate, s.Run.Start, s.Run.End, s.Run.PlannedEnd)
	}
	// An interval counts in the phase that holds its start: the one at
	// 2 s (whose requests are at 2.0-2.9 s) is before's, 3-5 s slow's,
	// 6-7 s after's, which the kill cut at 8 s.
	byName := map[string]PhaseSummary{}
	for _, p := range s.Phases {
		byName[p.Name] = p
	}
	for _, c := range []struct {
		name      string
		sent      int64
		p50, max  float64
		end, plan Seconds
	}{
		{"before", 30, 20, 30, 2.5, 0},
		{"slow", 30, 50, 60, 6, 0},
		{"after", 20, 70, 80, 8, 10},
	} {
		p := byName[c.name]
		near := func(got, want float64) bool { return got >= want && got < want*1.001 } // HdrHistogram's 3 digits
		if p.Stats.Sent != c.sent || !near(p.Stats.Latency.P50, c.p50) || !near(p.Stats.Latency.Max, c.max) || p.End != c.end || p.PlannedEnd != c.plan {
			t.Errorf("phase %s: %d sent, p50 %v, max %v, [%v, %v) planned to %v; want %d, %v, %v, end %v planned %v",
				c.name, p.Stats.Sent, p.Stats.Latency.P50, p.Stats.Latency.Max, p.Start, p.End, p.PlannedEnd, c.sent, c.p50, c.max, c.end, c.plan)
		}
	}
	if byName["slow"].Stats.Causes[cause.GatewayTimeout.String()] != 1 || byName["slow"].Stats.AchievedRate != 10 {
		t.Errorf("slow: causes %v, %v/s", byName["slow"].Stats.Causes, byName["slow"].Stats.AchievedRate)
	}
	if s.Run.Stats.Lag != nil || s.Run.Stats.CauseLatency != nil {
		t.Error("the rebuilt summary has a scheduling lag or cause latencies, which only the run's own summary holds")
	}
	// The fault that stopped is in the table; the one still on is said.
	if len(s.Faults) != 1 || s.Faults[0].Name != "slow" || s.Faults[0].Fired != 35 || s.Faults[0].Start != 2.5 || s.Faults[0].End != 6 {
		t.Errorf("faults: %+v", s.Faults)
	}
	if !strings.Contains(strings.Join(s.Warnings, "\n"), "fault still-on was still on when the run was killed") {
		t.Errorf("warnings: %q", s.Warnings)
	}
	if _, err := os.Stat(filepath.Join(dir, SummaryFile)); err == nil {
		t.Error("rebuilding wrote summary.json into the killed run's directory")
	}
}

// The kill cuts a write anywhere: each stream is read up to its last whole
// line, the cut named by file and line; what the hlog cannot check is said.
func TestRebuildKilledRunCutLines(t *testing.T) {
	dir := t.TempDir()
	writeKilledRun(t, dir, 8)
	cut := func(name string, keep int) {
		t.Helper()
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b[:len(b)-keep], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cut(IntervalsFile, 40) // the 8th line loses its end
	cut(HlogFile, 5)       // so does the log's last service line
	k, err := LoadKilled(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k.Through != 7*time.Second || !strings.Contains(k.Partial, IntervalsFile+":8:") {
		t.Fatalf("through %s, partial %q", k.Through, k.Partial)
	}
	// The log's line 5 onwards: header (4 lines), then two a second.
	if !strings.Contains(k.Hlog, HlogFile+":20: cut short") {
		t.Fatalf("hlog: %q", k.Hlog)
	}
	s, err := k.RebuildSummary(killedPhases)
	if err != nil {
		t.Fatal(err)
	}
	if s.Run.Stats.Sent != 70 || !strings.Contains(strings.Join(s.Warnings, "\n"), "cut short by the kill: read up to a line") {
		t.Fatalf("%d sent; warnings %q", s.Run.Stats.Sent, s.Warnings)
	}

	// Without latency.hlog the numbers are the same (intervals.jsonl holds
	// the histograms): only the check is missing, and said.
	if err := os.Remove(filepath.Join(dir, HlogFile)); err != nil {
		t.Fatal(err)
	}
	k, err = LoadKilled(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err = k.RebuildSummary(killedPhases)
	if err != nil {
		t.Fatal(err)
	}
	if p50 := s.Run.Stats.Latency.P50; s.Run.Stats.Sent != 70 || !strings.Contains(strings.Join(s.Warnings, "\n"), HlogFile+" is missing") || p50 < 40 || p50 > 40.04 {
		t.Fatalf("without the hlog: %d sent, p50 %v; warnings %q", s.Run.Stats.Sent, s.Run.Stats.Latency.P50, s.Warnings)
	}
}

// A log that disagrees with intervals.jsonl is said, not trusted silently.
func TestRebuildKilledRunHlogDisagrees(t *testing.T) {
	dir := t.TempDir()
	writeKilledRun(t, dir, 3)
	// Second 2's latency histogram (line 9) emptied.
	path := filepath.Join(dir, HlogFile)
	b, _ := os.ReadFile(path)
	lines := strings.Split(string(b), "\n")
	at := strings.LastIndex(lines[8], ",")
	lines[8] = lines[8][:at+1] + encode(NewHistogram())
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := LoadKilled(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(k.Hlog, "disagrees with "+IntervalsFile) || !strings.Contains(k.Hlog, "at 2s 0 latencies in "+HlogFile+", 10 answered") {
		t.Fatalf("hlog: %q", k.Hlog)
	}
}

func TestLoadKilledRefusesWhatHoldsNothing(t *testing.T) {
	dir := t.TempDir()
	writeKilledRun(t, dir, 0)
	if _, err := LoadKilled(dir); err == nil || !strings.Contains(err.Error(), "before it wrote its first interval") {
		t.Fatalf("no interval: %v", err)
	}
	// Garbage where the intervals should be: the error names the line.
	if err := os.WriteFile(filepath.Join(dir, IntervalsFile), []byte("{\"t\":0,\"width_s\":1,\"st\x00\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKilled(dir); err == nil || !strings.Contains(err.Error(), "no interval could be read") || !strings.Contains(err.Error(), filepath.Join(dir, IntervalsFile)+":1:") {
		t.Fatalf("garbage intervals: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, EventsFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKilled(dir); err == nil || !strings.Contains(err.Error(), "before its load started") {
		t.Fatalf("no load.start: %v", err)
	}
}

// A log that is not one, or is damaged, is an error naming the file and
// the line, never a panic; a log cut short keeps what came before.
func TestReadHlogErrors(t *testing.T) {
	dir := t.TempDir()
	writeKilledRun(t, dir, 2)
	good, err := os.ReadFile(filepath.Join(dir, HlogFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(good), "\n")
	for _, c := range []struct {
		name, text string
		want       string
		kept       int // intervals read before the error
	}{
		{"not a log", "{\"t\":0}\n", ":1: not an HdrHistogram interval log", -1},
		{"empty", "", "empty: not an HdrHistogram interval log", -1},
		{"garbage line", strings.Join(lines[:6], "") + "garbage\n" + strings.Join(lines[6:], ""), ":7: not an interval histogram line", 1},
		{"bad payload", strings.Join(lines[:6], "") + "1.000,1.000,0.010,HISTFAAAAQ==\n", ":7: does not decode", 1},
		{"service first", strings.Join(lines[:4], "") + lines[5], ":5: a service histogram at 0s without the latency one", 0},
		{"cut", strings.Join(lines[:7], "") + lines[7][:20], ":8: cut short", 1},
		{"bad start time", lines[0] + "#[StartTime: x (seconds since epoch)]\n", ":2: StartTime", 0},
	} {
		path := filepath.Join(dir, "t.hlog")
		if err := os.WriteFile(path, []byte(c.text), 0o644); err != nil {
			t.Fatal(err)
		}
		h, err := ReadHlog(path)
		if err == nil || !strings.HasPrefix(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %s...%s", c.name, err, path, c.want)
			continue
		}
		switch {
		case c.kept < 0 && h != nil:
			t.Errorf("%s: intervals returned with the error", c.name)
		case c.kept >= 0 && (h == nil || len(h.Intervals) != c.kept):
			t.Errorf("%s: %v, want %d intervals kept", c.name, h, c.kept)
		}
	}
}

// Whatever the files hold, reading a killed run is an error or a summary,
// never a panic.
func FuzzLoadKilled(f *testing.F) {
	dir := f.TempDir()
	writeKilledRun(f, dir, 3)
	hlog, _ := os.ReadFile(filepath.Join(dir, HlogFile))
	ivs, _ := os.ReadFile(filepath.Join(dir, IntervalsFile))
	f.Add(hlog, ivs)
	f.Add(hlog[:len(hlog)/2], ivs[:len(ivs)/2])
	f.Add([]byte("#[Histogram log format version 1.3]\nTag=,1,1,1,HISTFAAA\n"), []byte(`{"t":0,"width_s":1,"stats":{"histograms":{"latency":"x"}}}`+"\n"))
	f.Add([]byte("#[Histogram log format version 1.3]\nTag=service\n1,,\n"), []byte(`{"t":-1e300,"width_s":1e300,"stats":{"causes":{"nope":1}}}`+"\n"))
	f.Fuzz(func(t *testing.T, hlog, ivs []byte) {
		run := t.TempDir()
		events, _ := os.ReadFile(filepath.Join(dir, EventsFile))
		for name, b := range map[string][]byte{HlogFile: hlog, IntervalsFile: ivs, EventsFile: events} {
			if err := os.WriteFile(filepath.Join(run, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		k, err := LoadKilled(run)
		if err != nil {
			if !strings.Contains(err.Error(), run) {
				t.Fatalf("an error that does not name the run's files: %v", err)
			}
			return
		}
		if _, err := k.RebuildSummary(killedPhases); err != nil && !strings.Contains(err.Error(), IntervalsFile) {
			t.Fatalf("an error that does not name the file: %v", err)
		}
		if _, err := ReadHlog(filepath.Join(run, HlogFile)); err != nil && !strings.HasPrefix(err.Error(), filepath.Join(run, HlogFile)) {
			t.Fatalf("an hlog error that does not start with the file: %v", err)
		}
	})
}

// A ladder's rung names itself in its load.start event: a killed rung is
// rebuilt on the rung's plan. A rung that does not decode is an error, not
// a rung rebuilt on the scenario as written.
func TestLoadKilledReadsTheLadderRung(t *testing.T) {
	dir := t.TempDir()
	writeKilledRun(t, dir, 3)
	path := filepath.Join(dir, EventsFile)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	with := func(ladder string) {
		t.Helper()
		b := bytes.Replace(orig, []byte(`"attrs":{`), []byte(`"attrs":{"ladder":`+ladder+`,`), 1)
		if bytes.Equal(b, orig) {
			t.Fatalf("no attrs in %s", orig)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k, err := LoadKilled(dir)
	if err != nil || k.Ladder != nil {
		t.Fatalf("a run that is no rung: %+v, %v", k.Ladder, err)
	}
	with(`{"rung":"gateway","rate":20,"duration_s":6}`)
	k, err = LoadKilled(dir)
	if err != nil || k.Ladder == nil || *k.Ladder != (LadderRung{Rung: "gateway", Rate: 20, Duration: 6}) {
		t.Fatalf("rung: %+v, %v", k.Ladder, err)
	}
	for _, bad := range []string{`"gateway"`, `{"rate":20}`, `null`} {
		with(bad)
		if _, err := LoadKilled(dir); err == nil || !strings.Contains(err.Error(), "ladder rung does not decode") {
			t.Errorf("ladder %s: %v", bad, err)
		}
	}
}

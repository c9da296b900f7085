package gameday

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/yamlfile"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/report"
	"github.com/cascadehq/cascade/scenarios"
	"github.com/cascadehq/cascade/scenarios/plan"
)

// exportTolerance is how far a scripted fault may have strayed from its
// script and still be exported as written (timer jitter, not a change).
const exportTolerance = 50 * time.Millisecond

// occurrence is one window a fault was active, from the run's events.
type occurrence struct {
	start, stop time.Duration // stop < 0: still active when the load ended
	target      string        // the entry's target ("api", "api[1]", "api[random]")
	replicas    []string
	kind        string
}

// Export turns a game day's run directory into a scenario that replays
// it: the scenario that ran, its comments kept, with
//
//   - the load profile as it ran (each gate's hold a stage at the rate it
//     held; cut where the run was stopped),
//   - each gate a phase with the times it closed and opened, and the other
//     phases moved as the gates moved them,
//   - every fault as it happened: scripted ones that ran as written are
//     kept as written; the others (moved by a gate, cut by a halt, a stop
//     or a person) and every manual fault become entries with their real
//     start and duration, a comment saying who added them,
//   - safety checks kept, unless one halted the run: the halt is in the
//     fault windows already, and a replay must not halt at another time.
//
// The result is compiled before it is returned, so it always runs.
func Export(dir string) ([]byte, error) {
	src, err := os.ReadFile(filepath.Join(dir, results.ScenarioFile))
	if err != nil {
		return nil, fmt.Errorf("%s is not a run directory: %w", dir, err)
	}
	var st State
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, fmt.Errorf("%s is not a game day's run (no %s: run it with cascade gameday): %w", dir, StateFile, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, StateFile), err)
	}
	run, err := report.Load(dir)
	if err != nil {
		return nil, err
	}
	journal, err := ReadJournal(dir)
	if err != nil {
		return nil, err
	}
	// Positions point into the run's copy; data and body files still
	// resolve against the scenario's own directory, as when it ran.
	copyPath := filepath.Join(dir, results.ScenarioFile)
	file, _, err := scenarios.Parse(copyPath, src)
	if err != nil {
		return nil, fmt.Errorf("the run's scenario: %w", err)
	}
	seed := run.Summary.Seed
	p, err := plan.CompileBytes(run.Summary.File, src, plan.Options{Seed: &seed, AllowRemote: true})
	if err != nil {
		return nil, fmt.Errorf("the run's scenario (copied in %s from %s) no longer compiles: %w", copyPath, run.Summary.File, err)
	}
	x := &exporter{dir: dir, src: src, st: st, p: p, file: file, journal: journal}
	x.end = stagesDuration(st.Stages)
	if st.StoppedAt > 0 {
		x.end = min(x.end, secs(st.StoppedAt))
	}
	x.occurrences(run.Events)
	return x.build()
}

type exporter struct {
	dir     string
	src     []byte
	st      State
	p       *plan.Plan
	file    *scenarios.File
	journal []Entry
	end     time.Duration // where the exported load ends
	occ     map[string][]occurrence
	order   []string // fault names by first onset
	notes   []string // for the header
}

func secs(s float64) time.Duration { return time.Duration(math.Round(s * 1e9)) }

func stagesDuration(ss []StageState) time.Duration {
	var d time.Duration
	for _, s := range ss {
		d += secs(s.Duration)
	}
	return d
}

// occurrences pairs the run's fault.start and fault.stop events by fault.
func (x *exporter) occurrences(evs []event.Event) {
	x.occ = map[string][]occurrence{}
	for _, e := range evs {
		name := e.Attr("fault")
		switch e.Type {
		case "fault.start":
			if _, ok := x.occ[name]; !ok {
				x.order = append(x.order, name)
			}
			var reps []string
			if rs, ok := e.Attrs["replicas"].([]any); ok {
				for _, r := range rs {
					if s, ok := r.(string); ok {
						reps = append(reps, s)
					}
				}
			}
			x.occ[name] = append(x.occ[name], occurrence{start: e.T, stop: -1, target: e.Target, replicas: reps, kind: e.Attr("kind")})
		case "fault.stop":
			os := x.occ[name]
			if n := len(os); n > 0 && os[n-1].stop < 0 {
				os[n-1].stop = e.T
			}
		}
	}
}

// asScripted says whether a scripted fault ran as written.
func (x *exporter) asScripted(i int) bool {
	e := x.p.Timeline[i]
	os := x.occ[e.Name]
	if len(os) != e.Occurrences() {
		return false
	}
	near := func(a, b time.Duration) bool { return (a - b).Abs() <= exportTolerance }
	for k, o := range os {
		on := e.Start + time.Duration(k)*e.Every
		if !near(o.start, on) {
			return false
		}
		if o.stop >= 0 && !near(o.stop, on+e.Duration) {
			return false
		}
		if o.stop < 0 && on+e.Duration < x.end-exportTolerance {
			return false
		}
	}
	return true
}

// faultSource is where an exported fault's params and ramp come from.
type faultSource struct {
	params ast.Node
	ramp   time.Duration
	who    string // manual: who added it
	at     float64
}

func (x *exporter) sources() map[string]faultSource {
	out := map[string]faultSource{}
	for i, e := range x.p.Timeline {
		if i < len(x.file.Faults) {
			out[e.Name] = faultSource{params: x.file.Faults[i].Params.Node, ramp: x.file.Faults[i].Ramp.D()}
		}
	}
	for _, j := range x.journal {
		if j.Action != ActFaultAdd || j.Error != "" || j.Fault == "" {
			continue
		}
		var f scenarios.Fault
		if _, err := yamlfile.Decode("journal", []byte(j.Spec), &f); err != nil {
			continue
		}
		out[j.Fault] = faultSource{params: f.Params.Node, ramp: f.Ramp.D(), who: j.Who, at: j.T}
	}
	return out
}

func dur(d time.Duration) string {
	d = d.Round(time.Millisecond)
	if d <= 0 {
		d = time.Millisecond
	}
	return d.String()
}

// flow renders a params node as one-line JSON, which YAML reads as is.
func flow(n ast.Node) (string, error) {
	if n == nil {
		return "", nil
	}
	if _, null := n.(*ast.NullNode); null {
		return "", nil
	}
	var v any
	if err := yaml.NodeToValue(n, &v); err != nil {
		return "", err
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// faultsYAML writes the faults list and the phases that keep a repeated
// fault's objectives meaning what they meant (its whole span).
func (x *exporter) faultsYAML() (string, []string, error) {
	var b strings.Builder
	var spans []string
	srcs := x.sources()
	verbatim := map[string]int{}
	for i, e := range x.p.Timeline {
		if x.asScripted(i) && len(x.p.Gates) == 0 {
			verbatim[e.Name] = i
		}
	}
	b.WriteString("faults:\n")
	n := 0
	for _, name := range x.order {
		os := x.occ[name]
		if i, ok := verbatim[name]; ok {
			node, err := nodeText(x.src, fmt.Sprintf("$.faults[%d]", i))
			if err != nil {
				return "", nil, err
			}
			b.WriteString("  # as scripted\n")
			b.WriteString(indentItem(node))
			n++
			continue
		}
		sc := srcs[name]
		params, err := flow(sc.params)
		if err != nil {
			return "", nil, fmt.Errorf("fault %s: params: %w", name, err)
		}
		var first, last time.Duration
		written := 0
		for k, o := range os {
			if o.start >= x.end {
				x.notes = append(x.notes, fmt.Sprintf("fault %s started at %s, after the exported load ends at %s: left out", name, dur(o.start), dur(x.end)))
				continue
			}
			entry := name
			if len(os) > 1 {
				entry = fmt.Sprintf("%s-%d", name, k+1)
			}
			target := o.target
			if strings.HasSuffix(target, "[random]") && len(o.replicas) == 1 {
				target = o.replicas[0] // the replica the seed drew, so the replay hits the same one
			}
			switch {
			case sc.who != "":
				fmt.Fprintf(&b, "  # added by hand by %s at %.3fs\n", sc.who, sc.at)
			case len(x.p.Gates) > 0:
				b.WriteString("  # scripted; moved by the gates as they were held\n")
			default:
				b.WriteString("  # scripted; cut short (halt, stop or by hand)\n")
			}
			fmt.Fprintf(&b, "  - name: %s\n    kind: %s\n    target: %s\n    start: %s\n", strconv.Quote(entry), strconv.Quote(o.kind), strconv.Quote(target), dur(o.start))
			if o.stop >= 0 && o.stop < x.end {
				fmt.Fprintf(&b, "    duration: %s\n", dur(o.stop-o.start))
			}
			if params != "" && params != "null" {
				fmt.Fprintf(&b, "    params: %s\n", params)
			}
			if sc.ramp > 0 {
				fmt.Fprintf(&b, "    ramp: %s\n", dur(sc.ramp))
			}
			if written == 0 {
				first = o.start
			}
			last = o.stop
			if last < 0 || last > x.end {
				last = x.end
			}
			written++
			n++
		}
		if len(os) > 1 && written > 0 {
			spans = append(spans, fmt.Sprintf("  - {name: %s, start: %s, end: %s}   # the span of %s's occurrences\n", strconv.Quote(name), dur(first), dur(last), name))
		}
	}
	for i, e := range x.p.Timeline {
		if _, ran := x.occ[e.Name]; !ran && i < len(x.file.Faults) {
			x.notes = append(x.notes, fmt.Sprintf("scripted fault %s never started (halted or stopped before it): left out", e.Name))
		}
	}
	if n == 0 {
		return "faults: []\n", spans, nil
	}
	return b.String(), spans, nil
}

// nodeText is the YAML of the node at path, as written.
func nodeText(src []byte, path string) (string, error) {
	f, err := parser.ParseBytes(src, parser.ParseComments)
	if err != nil {
		return "", err
	}
	p, err := yaml.PathString(path)
	if err != nil {
		return "", err
	}
	n, err := p.FilterFile(f)
	if err != nil {
		return "", err
	}
	return n.String(), nil
}

// indentItem renders a sequence item's node (as written, at whatever
// indentation it had) as a block item at indent 2.
func indentItem(node string) string {
	lines := strings.Split(strings.TrimRight(node, "\n"), "\n")
	cut := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if n := len(l) - len(strings.TrimLeft(l, " ")); cut < 0 || n < cut {
			cut = n
		}
	}
	var b strings.Builder
	for i, l := range lines {
		if len(l) >= cut && cut > 0 {
			l = l[cut:]
		}
		if i == 0 {
			b.WriteString("  - " + l + "\n")
		} else {
			b.WriteString("    " + l + "\n")
		}
	}
	return b.String()
}

// mapT moves a scenario-clock boundary as the gates moved it: a start at a
// gate's instant comes after the hold, an end before it.
func (x *exporter) mapT(t time.Duration, start bool) time.Duration {
	shift := time.Duration(0)
	for _, g := range x.st.Gates {
		at := secs(g.ScriptAt)
		if at < t || (start && at == t) {
			shift += max(secs(g.Opened)-secs(g.Closed), 0)
		}
	}
	return t + shift
}

func (x *exporter) phasesYAML(spans []string) string {
	var b strings.Builder
	for i, ph := range x.file.Phases {
		if ph.Gate != "" {
			continue
		}
		start := x.mapT(ph.Start.D(), true)
		if start >= x.end {
			x.notes = append(x.notes, fmt.Sprintf("phase %s starts after the exported load ends: left out", ph.Name))
			continue
		}
		fmt.Fprintf(&b, "  - {name: %s, start: %s", strconv.Quote(ph.Name), dur(start))
		if ph.End != 0 {
			if end := x.mapT(ph.End.D(), false); end < x.end {
				fmt.Fprintf(&b, ", end: %s", dur(end))
			}
		}
		b.WriteString("}")
		if len(x.st.Gates) > 0 {
			fmt.Fprintf(&b, "   # phases[%d], moved by the gates", i)
		}
		b.WriteString("\n")
	}
	for _, g := range x.st.Gates {
		c, o := secs(g.Closed), secs(g.Opened)
		if c >= x.end {
			continue
		}
		if o <= c {
			o = c + time.Millisecond
		}
		fmt.Fprintf(&b, "  - {name: %s, start: %s", strconv.Quote(g.Name), dur(c))
		if o < x.end {
			fmt.Fprintf(&b, ", end: %s", dur(o))
		}
		fmt.Fprintf(&b, "}   # was a manual gate: held %.3fs, opened by %s\n", (o - c).Seconds(), g.By)
	}
	for _, s := range spans {
		b.WriteString(s)
	}
	if b.Len() == 0 {
		return ""
	}
	return "phases:\n" + b.String()
}

func (x *exporter) stagesYAML() string {
	var b strings.Builder
	b.WriteString("stages:\n")
	var t time.Duration
	prev := 0.0
	rate := func(v float64) string { return strconv.FormatFloat(math.Round(v*1e6)/1e6, 'f', -1, 64) + "/s" }
	k := 0
	for _, s := range x.st.Stages {
		d := secs(s.Duration)
		if t >= x.end || d <= 0 {
			t += d
			continue
		}
		from, to := s.From, s.To
		if t+d > x.end { // cut where the run was stopped
			to = from + (to-from)*float64(x.end-t)/float64(d)
			d = x.end - t
		}
		note := ""
		for _, g := range x.st.Gates {
			if (secs(g.Closed)-t).Abs() < time.Millisecond && math.Abs(from-g.Rate) < 1e-6 && from == to {
				note = "   # gate " + g.Name + " held"
			}
		}
		switch {
		case from == to:
			fmt.Fprintf(&b, "    - {duration: %s, rate: %s}%s\n", dur(d), rate(from), note)
		case math.Abs(from-prev) < 1e-6:
			fmt.Fprintf(&b, "    - {duration: %s, ramp_to: %s}%s\n", dur(d), rate(to), note)
		default: // a ramp that does not start where the last stage ended: approximate
			fmt.Fprintf(&b, "    - {duration: %s, rate: %s}   # was a ramp %s → %s\n", dur(d), rate((from+to)/2), rate(from), rate(to))
			to = (from + to) / 2
		}
		prev = to
		t += secs(s.Duration)
		k++
	}
	return b.String()
}

// build edits the scenario's YAML: its comments and every section not
// named here are kept as they were.
func (x *exporter) build() ([]byte, error) {
	faultsText, spans, err := x.faultsYAML()
	if err != nil {
		return nil, err
	}
	phasesText := x.phasesYAML(spans)
	edit := func(keepSLO func(ast.Node) bool) ([]byte, error) {
		f, err := parser.ParseBytes(x.src, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		root, ok := f.Docs[0].Body.(*ast.MappingNode)
		if !ok {
			return nil, errors.New("the scenario is not a mapping")
		}
		repl := func(text string) (*ast.MappingValueNode, error) {
			rf, err := parser.ParseBytes([]byte(text), parser.ParseComments)
			if err != nil {
				return nil, fmt.Errorf("export: %w\n%s", err, text)
			}
			return rf.Docs[0].Body.(*ast.MappingNode).Values[0], nil
		}
		fv, err := repl(faultsText)
		if err != nil {
			return nil, err
		}
		var pv *ast.MappingValueNode
		if phasesText != "" {
			if pv, err = repl(phasesText); err != nil {
				return nil, err
			}
		}
		sv, err := repl(x.stagesYAML())
		if err != nil {
			return nil, err
		}
		var out []*ast.MappingValueNode
		haveFaults, havePhases := false, false
		for _, mv := range root.Values {
			switch yamlfile.KeyName(mv.Key) {
			case "faults":
				mv.Value, haveFaults = fv.Value, true
			case "phases":
				havePhases = true
				if pv == nil {
					continue
				}
				mv.Value = pv.Value
			case "safety":
				if len(x.st.Halts) > 0 {
					continue
				}
			case "load":
				if lm, ok := mv.Value.(*ast.MappingNode); ok {
					for _, l := range lm.Values {
						if yamlfile.KeyName(l.Key) == "stages" {
							l.Value = sv.Value
						}
					}
				}
			case "slo":
				if seq, ok := mv.Value.(*ast.SequenceNode); ok && keepSLO != nil {
					var keep []ast.Node
					for _, it := range seq.Values {
						if keepSLO(it) {
							keep = append(keep, it)
						}
					}
					if len(keep) == 0 {
						continue
					}
					seq.Values = keep
				}
			}
			out = append(out, mv)
		}
		if !haveFaults {
			out = append(out, fv)
		}
		if !havePhases && pv != nil {
			out = append(out, pv)
		}
		root.Values = out
		return []byte(f.String() + "\n"), nil
	}
	// First without the objectives whose phase is gone (a fault that never
	// ran), which the compiler would refuse: find which phases exist.
	body, err := edit(func(n ast.Node) bool { return sloPhase(n) == "" })
	if err != nil {
		return nil, err
	}
	p1, err := plan.CompileBytes("export", body, plan.Options{Seed: &x.p.Seed, AllowRemote: true})
	if err != nil {
		return nil, fmt.Errorf("the exported scenario does not compile (please report it): %w\n%s", err, body)
	}
	phases := map[string]bool{}
	for _, ph := range p1.Phases {
		phases[ph.Name] = true
	}
	body, err = edit(func(n ast.Node) bool {
		ph := sloPhase(n)
		if ph != "" && !phases[ph] {
			x.notes = append(x.notes, fmt.Sprintf("objective %q judged phase %s, which no longer exists: left out", sloText(n), ph))
			return false
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if _, err := plan.CompileBytes("export", body, plan.Options{Seed: &x.p.Seed, AllowRemote: true}); err != nil {
		return nil, fmt.Errorf("the exported scenario does not compile (please report it): %w\n%s", err, body)
	}
	return append(x.header(), body...), nil
}

func sloPhase(n ast.Node) string {
	m, ok := n.(*ast.MappingNode)
	if !ok {
		return ""
	}
	for _, v := range m.Values {
		if yamlfile.KeyName(v.Key) == "phase" {
			return strings.Trim(v.Value.String(), `"'`)
		}
	}
	return ""
}

func sloText(n ast.Node) string { return strings.TrimSpace(n.String()) }

func (x *exporter) header() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Exported by `cascade gameday export %s`: a replay of that game day.\n", x.dir)
	b.WriteString("# Faults, phases and the load profile are as they ran, on the run's clock.\n")
	for _, g := range x.st.Gates {
		fmt.Fprintf(&b, "# gate %s: closed at %.3fs, opened at %.3fs by %s\n", g.Name, g.Closed, g.Opened, g.By)
	}
	for _, h := range x.st.Halts {
		fmt.Fprintf(&b, "# auto-halt at %.3fs: %s measured %s over %gs; removed %s\n", h.TS, h.Objective, h.Measured, h.Window, strings.Join(h.Removed, ", "))
	}
	if len(x.st.Halts) > 0 {
		b.WriteString("# safety: left out: the halts above are in the fault windows already.\n")
	}
	if x.st.Stopped != "" {
		fmt.Fprintf(&b, "# stopped at %.3fs by %s: the load ends there\n", x.st.StoppedAt, x.st.Stopped)
	}
	sort.Strings(x.notes)
	for i, n := range x.notes {
		if i > 0 && n == x.notes[i-1] {
			continue
		}
		fmt.Fprintf(&b, "# note: %s\n", n)
	}
	return []byte(b.String())
}

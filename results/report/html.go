package report

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cascadehq/cascade/internal/atomicfile"
	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/verdict"
)

// HTMLFile is the report's name in a run directory.
const HTMLFile = "report.html"

// The chart library, vendored: see assets/README.md for how to update it.
// UPlotVersion must match the banner of the minified file (a test checks).
const UPlotVersion = "1.6.32"

var (
	//go:embed assets/uPlot.iife.min.js
	uplotJS string
	//go:embed assets/uPlot.min.css
	uplotCSS string
	//go:embed assets/report.js
	reportJS string
	//go:embed assets/report.css
	reportCSS string
	//go:embed assets/report.html.tmpl
	pageTemplate string
)

// maxChartPoints bounds the series embedded in the page: a 24 h run has
// 86 400 one-second intervals, which would make a heavy file and a chart
// no one can read; they are merged (histograms, not averages) to at most
// this many windows.
const maxChartPoints = 1200

// maxEventRows bounds the event table; per-request events are left out of
// it anyway.
const maxEventRows = 400

// Chart names, as the page marks them with data-chart: the browser test
// and anyone scripting against the page rely on them.
const (
	ChartLatency  = "latency"
	ChartRate     = "rate"
	ChartOutcomes = "outcomes"
	ChartBreakers = "breakers"
	ChartReplicas = "replicas"
)

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms":  func(v float64) string { return ms(v) },
	"pct": verdict.FormatPercent,
	"sec": func(s results.Seconds) string { return fmt.Sprintf("%.1fs", float64(s)) },
	// over is how long past the planned load a run went on, waiting for
	// its last answers (0 when it stopped within the load).
	// over is how long a run went on past its planned load (0 when no
	// plan is known, as text.go's guard: not "after the 0.0s load").
	"over": func(elapsed, planned results.Seconds) results.Seconds {
		if planned <= 0 {
			return 0
		}
		return max(0, elapsed-planned)
	},
	"fsec":  func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) + "s" },
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"join":  strings.Join,
	"causes": func(st results.StatsSummary) string {
		return causeLine(st.Causes, st.Scheduled)
	},
}).Parse(pageTemplate))

// HTML writes the run's report as one self-contained page: the chart
// library, the styles, the script and the data are all inline, so the file
// opens offline and can be attached to a ticket or a CI artifact as is.
func HTML(w io.Writer, d Data) error {
	m, err := newModel(d)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := page.Execute(&buf, m); err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// WriteHTMLFile writes the report to path, through a temporary file in the
// same directory so a reader never sees half a page.
func WriteHTMLFile(path string, d Data) error {
	return atomicfile.Write(path, 0o644, func(w io.Writer) error { return HTML(w, d) })
}

// model is what the template sees.
type model struct {
	S          *results.Summary
	Started    string
	Passed     int
	Scenario   string
	Repro      string
	Versions   []kv
	Events     []eventRow
	EventsMore int
	EventsAll  int
	Faults     []FaultWindow
	HasBreaker bool
	HasReplica bool
	UPlot      string
	CSS        template.CSS
	JS         template.JS
	Data       template.JS
}

type kv struct{ K, V string }

type eventRow struct {
	T                    string
	Source, Type, Target string
	Attrs                string
}

// chartData is the JSON the page's script draws from.
type chartData struct {
	Start    float64           `json:"start,omitempty"` // where the x axis starts (a live window); 0 otherwise
	Live     bool              `json:"live,omitempty"`  // a run in progress: open fault windows are active now
	End      float64           `json:"end"`
	X        []jnum            `json:"x"`
	Latency  map[string][]jnum `json:"latency"`
	Target   []jnum            `json:"target,omitempty"`
	Achieved []jnum            `json:"achieved"`
	Errors   []jnum            `json:"errorRate"`
	Causes   []causeSeries     `json:"causes"`
	Faults   []FaultWindow     `json:"faults"`
	Breakers *StepSeries       `json:"breakers"`
	States   []string          `json:"breakerStates"`
	Replicas *ReplicaSeries    `json:"replicas"`
	Merged   float64           `json:"mergedWidth,omitempty"` // > 0: intervals were merged to this width
	Meta     map[string]string `json:"meta"`
}

type causeSeries struct {
	Name  string `json:"name"`
	Layer string `json:"layer"`
	Color string `json:"color"`
	Rate  []jnum `json:"rate"` // per second
}

// jnum is a float that encodes NaN as null: a gap in a chart.
type jnum float64

func (x jnum) MarshalJSON() ([]byte, error) {
	f := float64(x)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, math.Round(f*1000)/1000, 'f', -1, 64), nil
}

func newModel(d Data) (*model, error) {
	if d.Run == nil {
		return nil, fmt.Errorf("report: no run data")
	}
	s := &d.Run.Summary
	cd, err := chartDataOf(d, maxChartPoints)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(cd) // escapes <, > and &: safe inside <script>
	if err != nil {
		return nil, err
	}

	m := &model{
		S: s, Scenario: string(d.Scenario), Faults: cd.Faults,
		HasBreaker: cd.Breakers != nil, HasReplica: cd.Replicas != nil, UPlot: UPlotVersion,
		CSS:  template.CSS(uplotCSS + "\n" + reportCSS),
		JS:   template.JS(uplotJS + "\n" + reportJS),
		Data: template.JS(data),
	}
	if !s.Started.IsZero() {
		m.Started = s.Started.Format(time.RFC3339)
	}
	for _, o := range s.Objectives {
		if o.Pass {
			m.Passed++
		}
	}
	m.Repro = fmt.Sprintf("cascade run --seed %d scenario.yaml", s.Seed)
	for k, v := range s.Versions {
		m.Versions = append(m.Versions, kv{k, v})
	}
	m.Versions = append(m.Versions, kv{"uPlot (charts)", UPlotVersion})
	sort.Slice(m.Versions, func(i, j int) bool { return m.Versions[i].K < m.Versions[j].K })
	m.Events, m.EventsMore, m.EventsAll = eventRows(d.Run.Events)
	return m, nil
}

// chartDataOf is what the page's script draws: the run's intervals as
// series (merged to at most maxPoints), fault windows and timelines.
func chartDataOf(d Data, maxPoints int) (chartData, error) {
	s := &d.Run.Summary
	points, err := Series(d.Run.Intervals, d.Stages, maxPoints)
	if err != nil {
		return chartData{}, err
	}
	end := float64(s.Elapsed)
	if n := len(points); n > 0 {
		end = math.Max(end, points[n-1].T+points[n-1].Width)
	}
	points = fillGaps(points, d.Stages)

	cd := chartData{
		End:      end,
		X:        []jnum{},
		Achieved: []jnum{},
		Errors:   []jnum{},
		Causes:   []causeSeries{},
		Latency:  map[string][]jnum{},
		Faults:   faultWindows(d.Run.Events, s, end),
		Breakers: breakers(d.Run.Events, end),
		States:   BreakerStates,
		Replicas: replicas(d.Run.Events, end),
		Meta:     map[string]string{"scenario": s.Scenario, "uplot": UPlotVersion},
	}
	if len(points) > 0 && len(d.Run.Intervals) > 0 && points[0].Width > float64(d.Run.Intervals[0].Width)+1e-9 {
		cd.Merged = points[0].Width
	}
	hasTarget := len(d.Stages) > 0
	for _, p := range points {
		cd.X = append(cd.X, jnum(p.T+p.Width/2)) // the middle of the interval it stands for
		lat := p.Latency
		if p.Measured == 0 {
			nan := math.NaN()
			lat = results.Percentiles{P50: nan, P90: nan, P99: nan, Max: nan}
		}
		cd.Latency["p50"] = append(cd.Latency["p50"], jnum(lat.P50))
		cd.Latency["p90"] = append(cd.Latency["p90"], jnum(lat.P90))
		cd.Latency["p99"] = append(cd.Latency["p99"], jnum(lat.P99))
		cd.Latency["max"] = append(cd.Latency["max"], jnum(lat.Max))
		if hasTarget {
			cd.Target = append(cd.Target, jnum(p.TargetRate))
		}
		cd.Achieved = append(cd.Achieved, jnum(p.AchievedRate))
		er := p.ErrorRate * 100
		if p.Scheduled == 0 {
			er = math.NaN()
		}
		cd.Errors = append(cd.Errors, jnum(er))
	}
	for i, name := range causeOrder(points) {
		cs := causeSeries{Name: name, Layer: layerOf(name), Color: causeColor(name, i)}
		for _, p := range points {
			r := 0.0
			if p.Width > 0 {
				r = float64(p.Causes[name]) / p.Width
			}
			cs.Rate = append(cs.Rate, jnum(r))
		}
		cd.Causes = append(cd.Causes, cs)
	}
	return cd, nil
}

// fillGaps inserts empty intervals where none was recorded (no request was
// intended there, e.g. a zero-rate stage), so lines break instead of
// bridging the gap and the rate chart shows the zero.
func fillGaps(points []Point, stages []loadgen.Stage) []Point {
	if len(points) < 2 {
		return points
	}
	var pacer *loadgen.Pacer
	if len(stages) > 0 {
		pacer = loadgen.NewPacer(stages)
	}
	const maxFill = 20000
	out := make([]Point, 0, len(points))
	filled := 0
	for i, p := range points {
		out = append(out, p)
		if i+1 == len(points) || p.Width <= 0 {
			continue
		}
		for t := p.T + p.Width; t < points[i+1].T-1e-9 && filled < maxFill; t += p.Width {
			r := results.IntervalRecord{Start: results.Seconds(t), Width: results.Seconds(p.Width)}
			out = append(out, point(r, pacer))
			filled++
		}
	}
	return out
}

// eventRows lists the events worth reading in a table: per-request events
// (a fault taking effect on one request) are counted in the fault table
// instead.
func eventRows(evs []event.Event) (rows []eventRow, more, all int) {
	for _, e := range evs {
		if e.Type == "fault.apply" {
			continue
		}
		all++
		if len(rows) >= maxEventRows {
			more++
			continue
		}
		attrs := ""
		if len(e.Attrs) > 0 {
			b, err := json.Marshal(e.Attrs)
			if err == nil {
				attrs = string(b)
			}
		}
		rows = append(rows, eventRow{T: strconv.FormatFloat(e.T.Seconds(), 'f', 3, 64), Source: e.Source,
			Type: e.Type, Target: e.Target, Attrs: attrs})
	}
	return rows, more, all
}

func layerOf(name string) string {
	if c, ok := cause.Parse(name); ok {
		return string(c.Layer())
	}
	return string(cause.LayerUnknown)
}

// Colours by layer, so a glance at the stack says which layer decided:
// green for ok, reds for the client, oranges for the gateway, blues for the
// upstream, browns for the database, greys for inferred causes.
var layerPalette = map[string][]string{
	string(cause.LayerClient):   {"#c92a2a", "#e64980", "#862e9c", "#f03e3e", "#a61e4d", "#ff8787"},
	string(cause.LayerGateway):  {"#e8590c", "#f59f00", "#d9480f", "#fab005", "#ff922b", "#e67700", "#ffa94d", "#f76707", "#ffd43b", "#fd7e14", "#ffc078", "#c2255c"},
	string(cause.LayerUpstream): {"#1971c2", "#4dabf7", "#1864ab", "#74c0fc"},
	string(cause.LayerDB):       {"#8d5524", "#b7791f", "#6f4518", "#d69e2e"},
	string(cause.LayerUnknown):  {"#495057", "#868e96", "#adb5bd", "#343a40"},
}

func causeColor(name string, i int) string {
	if name == cause.OK.String() {
		return "#2f9e44"
	}
	if name == cause.Fallback.String() {
		return "#66a80f"
	}
	pal := layerPalette[layerOf(name)]
	if pal == nil {
		pal = layerPalette[string(cause.LayerUnknown)]
	}
	// Index by the cause's own number so a cause keeps its colour across runs.
	if c, ok := cause.Parse(name); ok {
		return pal[int(c)%len(pal)]
	}
	return pal[i%len(pal)]
}

package results

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/precise"
)

// GatewayContainerPrefix starts Summary.Gateway when the gateway was a
// proxy cascade ran in a container: "container:nginx".
const GatewayContainerPrefix = "container:"

// Summary is everything summary.json holds: enough to reprint the report and
// recompute every verdict without rerunning.
type Summary struct {
	Scenario    string            `json:"scenario"`
	File        string            `json:"file"`
	Seed        uint64            `json:"seed"`
	PlanHash    string            `json:"plan_hash"`
	Started     time.Time         `json:"started"`
	Elapsed     Seconds           `json:"elapsed_s"` // how long the load ran
	Planned     Seconds           `json:"planned_s"` // how long it was meant to run
	Interrupted bool              `json:"interrupted"`
	Target      string            `json:"target"`  // what the load generator hit
	Gateway     string            `json:"gateway"` // "builtin", "container:nginx" / "container:haproxy", or the external gateway's URL
	Run         PhaseSummary      `json:"run"`     // the whole run
	Phases      []PhaseSummary    `json:"phases"`
	Executors   []GroupSummary    `json:"executors,omitempty"` // per executor, when the load has several
	Tags        []GroupSummary    `json:"tags,omitempty"`      // per request tag, when the mix has several
	Faults      []FaultSummary    `json:"faults"`
	Objectives  []ObjectiveResult `json:"objectives"`
	Verdict     string            `json:"verdict"` // pass, fail, interrupted, or error
	// Aborted says why the run stopped early: an objective marked abort
	// could no longer pass. The verdict is then fail.
	Aborted string `json:"aborted,omitempty"`
	// Error says why a run stopped after its load started without
	// finishing: its results could not be written (a full disk), its
	// recording failed. The summary holds what was measured until then,
	// and the verdict is error, whatever the objectives say.
	Error string `json:"error,omitempty"`
	// Direct is the load sent straight to the upstreams, bypassing the
	// gateway, interleaved with the rest (layer attribution).
	Direct   *PhaseSummary     `json:"direct,omitempty"`
	Warnings []string          `json:"warnings,omitempty"`
	Versions map[string]string `json:"versions,omitempty"`
	// GatewayStats are the built-in gateway's counts (absent with your own gateway).
	GatewayStats *GatewayStats `json:"gateway_stats,omitempty"`
	// Ladder marks one rung of `cascade ladder`: the run's scenario copy
	// is the scenario climbed, and the rung (its load, its lifted
	// timeouts, its one objective) is rebuilt from it with these.
	Ladder *LadderRung `json:"ladder,omitempty"`
	// Rebuilt marks a summary `cascade report` rebuilt from the streams of
	// a run killed before it wrote one (see Rebuilt); nil for a run's own.
	Rebuilt *Rebuilt `json:"rebuilt,omitempty"`
}

// LadderRung names a rung of the latency ladder and the load it ran.
type LadderRung struct {
	Rung     string  `json:"rung"`
	Rate     float64 `json:"rate"`
	Duration Seconds `json:"duration_s"`
}

// Verdicts.
const (
	VerdictPass        = "pass"
	VerdictFail        = "fail"
	VerdictInterrupted = "interrupted"
	VerdictError       = "error" // the run stopped on an error: Summary.Error
)

// Seconds is a duration written as fractional seconds in JSON.
type Seconds float64

// Sec converts a duration.
func Sec(d time.Duration) Seconds { return Seconds(math.Round(d.Seconds()*1e6) / 1e6) }

// D converts back.
func (s Seconds) D() time.Duration { return time.Duration(float64(s) * float64(time.Second)) }

// PhaseSummary is one phase's numbers.
type PhaseSummary struct {
	Name  string  `json:"name"`
	Start Seconds `json:"start_s"`
	// End is where the phase's data ends: the plan's end, or where the run
	// stopped when it stopped first (then PlannedEnd is the plan's).
	End        Seconds      `json:"end_s"`
	PlannedEnd Seconds      `json:"planned_end_s,omitempty"`
	Stats      StatsSummary `json:"stats"`
	// SentByTag is how many requests of each tag (request name) were sent
	// in the phase, when the mix has several: which client requests went
	// to which upstream.
	SentByTag map[string]int64 `json:"sent_by_tag,omitempty"`
}

// SortPhases puts phases in time order, by start; phases that start
// together keep their order. summary.json lists them so, and a run
// directory read back is sorted again (one written before was not).
func SortPhases(ps []PhaseSummary) {
	slices.SortStableFunc(ps, func(a, b PhaseSummary) int { return cmp.Compare(a.Start, b.Start) })
}

// Cut reports whether the run stopped before the phase's planned end.
func (p PhaseSummary) Cut() bool { return p.PlannedEnd > p.End }

// GroupSummary is the whole-run stats of one executor or one request tag.
type GroupSummary struct {
	Name string `json:"name"`
	// Kind is an executor's load model: arrival-rate (open) or vus (closed).
	Kind string `json:"kind,omitempty"`
	// Start and End bound an executor's window on the run's clock.
	Start Seconds      `json:"start_s,omitempty"`
	End   Seconds      `json:"end_s,omitempty"`
	Stats StatsSummary `json:"stats"`
}

// StatsSummary is a printable, re-loadable view of Stats.
type StatsSummary struct {
	Scheduled    int64   `json:"scheduled"`
	Sent         int64   `json:"sent"`
	Errors       int64   `json:"errors"`
	ErrorRate    float64 `json:"error_rate"`
	TargetRate   float64 `json:"target_rate"`            // per second, from the profile (a Poisson schedule's seeded arrivals, counted)
	ProfileRate  float64 `json:"profile_rate,omitempty"` // the profile's mean, where the draw differs (Poisson)
	AchievedRate float64 `json:"achieved_rate"`          // per second, sent
	// OpenAchievedRate is the open-model executors' sent per second, when
	// closed-model ones run beside them: TargetRate is theirs alone, and
	// achieved_rate as a share of it compares this (nil: AchievedRate).
	OpenAchievedRate *float64         `json:"open_achieved_rate,omitempty"`
	Latency          Percentiles      `json:"latency_ms"`       // from intended send
	Service          Percentiles      `json:"service_ms"`       // from actual send
	Lag              *Percentiles     `json:"lag_ms,omitempty"` // phases only: intervals keep no lag
	Causes           map[string]int64 `json:"causes"`
	// CauseLatency is the latency of the failed requests, by cause (phases
	// only): at what time each layer answered.
	CauseLatency map[string]Percentiles `json:"cause_latency_ms,omitempty"`
	Histograms   EncodedHists           `json:"histograms"`
}

// EncodedHists are HdrHistogram V2 compressed, base64: the standard form
// HdrHistogram's own tools read.
type EncodedHists struct {
	Latency string `json:"latency"`
	Service string `json:"service"`
	Lag     string `json:"lag,omitempty"`
	// ByCause holds the latency histograms of failed requests by cause.
	ByCause map[string]string `json:"by_cause,omitempty"`
}

// Percentiles in milliseconds.
type Percentiles struct {
	Min  float64 `json:"min"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99.9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// FaultSummary says when a fault ran and how often it took effect.
type FaultSummary struct {
	Name    string  `json:"name"`
	Kind    string  `json:"kind"`
	Target  string  `json:"target"`
	Start   Seconds `json:"start_s"`
	End     Seconds `json:"end_s"`
	Started bool    `json:"started"`
	Fired   int64   `json:"fired"`
	// Occurrences is how often a repeated fault started.
	Occurrences int `json:"occurrences,omitempty"`
	// Reason says why a fault that started never took effect.
	Reason string `json:"reason,omitempty"`
	// Connection is what a connection fault (tcp_*) did in the fault
	// proxies; Packet what a packet fault did to the upstream's packets.
	Connection *ConnectionEffect `json:"connection,omitempty"`
	Packet     *PacketEffect     `json:"packet,omitempty"`
	// Lateness is how late past its deadline each timed release of the
	// fault was (a latency fault's delays, a latency toxic's writes): the
	// fault's own precision, apart from the client's view of it.
	Lateness *precise.Lateness `json:"lateness,omitempty"`
}

// ConnectionEffect counts what a connection fault's toxic did, summed over
// the fault proxies of the replicas it targeted.
type ConnectionEffect struct {
	ConnsSeen    uint64 `json:"conns_seen"`  // connections that carried bytes while it was on
	ConnsDrawn   uint64 `json:"conns_drawn"` // of those, the ones its toxicity drew
	Conns        uint64 `json:"conns"`       // connections it acted on
	Messages     uint64 `json:"messages"`    // requests or responses it acted on
	BytesDelayed uint64 `json:"bytes_delayed"`
	BytesDropped uint64 `json:"bytes_dropped"`
	Closes       uint64 `json:"closes"` // connections it closed or reset
}

// PacketEffect is what a packet fault did to its upstream's packets while
// it was active, per direction, and the TCP retransmissions that followed.
type PacketEffect struct {
	Direction    string          `json:"direction"`
	ToUpstream   PacketDirection `json:"to_upstream"`
	FromUpstream PacketDirection `json:"from_upstream"`
	// KernelRetransmits is the namespaces' own count (RetransSegs, both
	// sides); absent when it could not be read.
	KernelRetransmits *uint64 `json:"kernel_retransmits,omitempty"`
}

// PacketDirection counts one direction of a packet link.
type PacketDirection struct {
	Packets    uint64 `json:"packets"`
	Dropped    uint64 `json:"dropped"` // lost + blackholed + overflow
	Lost       uint64 `json:"lost"`
	Blackholed uint64 `json:"blackholed,omitempty"`
	Overflow   uint64 `json:"overflow,omitempty"`
	Delayed    uint64 `json:"delayed"`
	Duplicated uint64 `json:"duplicated,omitempty"`
	Reordered  uint64 `json:"reordered,omitempty"`
	Corrupted  uint64 `json:"corrupted,omitempty"`
	// Retransmits the sender made, seen by the engine; CapturedRetransmits
	// the same seen by a capture on the sending side's device.
	Retransmits         uint64 `json:"retransmits"`
	CapturedRetransmits uint64 `json:"captured_retransmits"`
	// KernelDropped: packets the sending side's kernel dropped because the
	// engine had not read them in time: the engine's ceiling, not the
	// fault (not in Packets or Dropped).
	KernelDropped uint64 `json:"kernel_dropped,omitempty"`
}

// ObjectiveResult is one SLO's verdict with its evidence.
type ObjectiveResult struct {
	Name     string  `json:"name"`
	Phase    string  `json:"phase"`
	Expr     string  `json:"objective"`
	Value    float64 `json:"value"`
	Measured string  `json:"measured"` // value with its unit, for people
	Bound    string  `json:"bound"`
	Pass     bool    `json:"pass"`
	// NotJudged says the objective needs data the run directory does not
	// hold (a killed run's rebuilt summary lacks what only the final
	// summary keeps); Pass is then false and Evidence says what is missing.
	NotJudged bool   `json:"not_judged,omitempty"`
	Evidence  string `json:"evidence,omitempty"`
	// Facts are the evidence as data: timestamps (seconds on the run's
	// clock), counts and durations, for tools and tests.
	Facts map[string]float64 `json:"facts,omitempty"`
}

// Answered is how many requests have a latency: those sent, less those
// the run's stop cut short (aborted), which were never answered.
func (s StatsSummary) Answered() int64 { return s.Sent - s.Causes[cause.Aborted.String()] }

// Judged is how many requests the error rate is over: those scheduled,
// less those the run's stop cut short, neither a success nor an error.
func (s StatsSummary) Judged() int64 { return s.Scheduled - s.Causes[cause.Aborted.String()] }

// SetProfileRate records the profile's mean rate, expected requests over
// window, when the schedule's own count (TargetRate) differs from it.
func (s *StatsSummary) SetProfileRate(expected float64, window time.Duration) {
	if window <= 0 || s.TargetRate == 0 {
		return
	}
	if r := round(expected/window.Seconds(), 3); r != s.TargetRate {
		s.ProfileRate = r
	}
}

// Summarize turns Stats into their summary; window is the phase length for
// rates and target the number of requests the profile scheduled in it.
func Summarize(s *Stats, window time.Duration, target float64) StatsSummary {
	out := StatsSummary{
		Scheduled: s.Scheduled(), Sent: s.Sent(), Errors: s.Errors(),
		Latency: percentiles(s.Latency), Service: percentiles(s.Service),
		Causes: map[string]int64{},
	}
	if j := s.Judged(); j > 0 {
		out.ErrorRate = float64(out.Errors) / float64(j)
	}
	if window > 0 {
		out.TargetRate = round(target/window.Seconds(), 3)
		out.AchievedRate = round(float64(out.Sent)/window.Seconds(), 3)
	}
	for c, n := range s.Causes {
		if n > 0 {
			out.Causes[cause.Cause(c).String()] = n
		}
	}
	out.Histograms.Latency = encode(s.Latency)
	out.Histograms.Service = encode(s.Service)
	if s.Lag != nil {
		lag := percentiles(s.Lag)
		out.Lag = &lag
		out.Histograms.Lag = encode(s.Lag)
	}
	if s.ByCause != nil {
		for c, h := range s.ByCause {
			if h == nil || h.TotalCount() == 0 {
				continue
			}
			if out.CauseLatency == nil {
				out.CauseLatency, out.Histograms.ByCause = map[string]Percentiles{}, map[string]string{}
			}
			name := cause.Cause(c).String()
			out.CauseLatency[name] = percentiles(h)
			out.Histograms.ByCause[name] = encode(h)
		}
	}
	return out
}

// Stats decodes the histograms and counts back, for offline verdicts.
func (ss StatsSummary) Stats() (*Stats, error) {
	s := &Stats{}
	var err error
	if s.Latency, err = decode(ss.Histograms.Latency); err != nil {
		return nil, fmt.Errorf("latency histogram: %w", err)
	}
	if s.Service, err = decode(ss.Histograms.Service); err != nil {
		return nil, fmt.Errorf("service histogram: %w", err)
	}
	if ss.Histograms.Lag != "" {
		if s.Lag, err = decode(ss.Histograms.Lag); err != nil {
			return nil, fmt.Errorf("lag histogram: %w", err)
		}
	}
	if len(ss.Histograms.ByCause) > 0 {
		s.ByCause = &[cause.Count]*hdr.Histogram{}
		for name, enc := range ss.Histograms.ByCause {
			c, ok := cause.Parse(name)
			if !ok {
				return nil, fmt.Errorf("unknown cause %q in summary histograms", name)
			}
			if s.ByCause[c], err = decode(enc); err != nil {
				return nil, fmt.Errorf("%s latency histogram: %w", name, err)
			}
		}
	}
	for name, n := range ss.Causes {
		c, ok := cause.Parse(name)
		if !ok {
			return nil, fmt.Errorf("unknown cause %q in summary", name)
		}
		s.Causes[c] = n
	}
	return s, nil
}

func percentiles(h *hdr.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	ms := func(us int64) float64 { return round(float64(us)/1000, 3) }
	return Percentiles{
		Min: ms(h.Min()), P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)),
		P99: ms(h.ValueAtQuantile(99)), P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()),
		Mean: round(h.Mean()/1000, 3),
	}
}

// Quantile returns the latency at quantile q (0..100) of h.
func Quantile(h *hdr.Histogram, q float64) time.Duration {
	return time.Duration(h.ValueAtQuantile(q)) * time.Microsecond
}

func encode(h *hdr.Histogram) string {
	b, err := h.Encode(hdr.V2CompressedEncodingCookieBase)
	if err != nil {
		return ""
	}
	return string(b)
}

func decode(s string) (*hdr.Histogram, error) {
	if s == "" {
		return NewHistogram(), nil
	}
	return hdr.Decode([]byte(s))
}

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

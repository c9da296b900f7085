package plan

import (
	"fmt"
	"sort"
	"time"

	"github.com/cascadehq/cascade/faults"
	"github.com/cascadehq/cascade/internal/yamlfile"
	"github.com/cascadehq/cascade/loadgen"
	"github.com/cascadehq/cascade/results"
	"github.com/cascadehq/cascade/results/verdict"
	"github.com/cascadehq/cascade/scenarios"
)

// Bounds of the live features: a gate cannot hold a run forever, and a
// safety check looks at recent requests, not the whole run.
const (
	DefaultMaxHold    = 10 * time.Minute
	MaxGateHold       = time.Hour
	DefaultSafetyWait = 5 * time.Second
	MinSafetyWindow   = time.Second
	MaxSafetyWindow   = 5 * time.Minute
	GateManual        = "manual"
	OnBreachStop      = "stop"
	OnBreachContinue  = "continue"
)

// Gate is a manual phase gate: at At on the scenario's own clock the script
// pauses (the load holds Rate, the fault timeline waits) until a person
// opens the gate or MaxHold passes. Everything scripted after At happens
// that much later on the run's clock.
type Gate struct {
	Name    string
	At      time.Duration // on the scenario's clock
	MaxHold time.Duration
	Rate    float64 // per second, held while the gate is closed
}

// Safety is a compiled health check: Objective judged over the requests
// that ended in the last Window; Stop ends the run on a breach.
type Safety struct {
	Name      string
	Objective verdict.Objective
	Window    time.Duration
	Stop      bool
}

// Bound is the longest the load can last with every gate held to its
// maximum: the run's hard limit.
func (p *Plan) Bound() time.Duration {
	d := p.Duration
	for _, g := range p.Gates {
		d += g.MaxHold
	}
	return d
}

// RateBefore is the profile's rate just before t: a gate at a stage
// boundary holds the stage that just ran, not the one about to start.
func RateBefore(stages []loadgen.Stage, t time.Duration) float64 {
	var start time.Duration
	for i, s := range stages {
		end := start + s.Duration
		if t <= end || i == len(stages)-1 {
			if t <= start || s.Duration <= 0 {
				return s.From
			}
			f := min(float64(t-start)/float64(s.Duration), 1)
			return s.From + (s.To-s.From)*f
		}
		start = end
	}
	return 0
}

// gates compiles the phases with `gate: manual`; phases() skipped them.
// A gate's phase is the hold itself: it starts when the script reaches
// start and ends when the gate opens, so its window is known only live; in
// the plan it has zero length at At.
func (c *compiler) gates() {
	names := map[string]bool{}
	for _, ph := range c.p.Phases {
		names[ph.Name] = true
	}
	at := map[time.Duration]string{}
	pacer := loadgen.NewPacer(c.p.Load.Stages)
	extraRequests := 0.0
	for i, ph := range c.f.Phases {
		if ph.Gate == "" && ph.MaxHold == 0 {
			continue
		}
		p := fmt.Sprintf("$.phases[%d]", i)
		switch {
		case ph.Gate == "":
			c.errorf(p+".max_hold", "max_hold applies to a gated phase: add gate: manual")
			continue
		case ph.Gate != GateManual:
			c.errorf(p+".gate", "unknown gate %q (valid: manual)", ph.Gate)
			continue
		case ph.Name == "":
			c.errorf(p, "a phase needs a name")
			continue
		case names[ph.Name] || c.badFaults[ph.Name]:
			c.errorf(p+".name", "phase %q already exists (phases: %s)", ph.Name, phaseList(c.p.Phases))
			continue
		case ph.End != 0:
			c.errorf(p+".end", "a gated phase ends when someone opens the gate (cascade phase next) or after max_hold; end does not apply")
			continue
		case c.p.Duration > 0 && ph.Start.D() >= c.p.Duration:
			c.errorf(p+".start", "the gate is at %s, %s the load ends at %s", ph.Start, atOrAfter(ph.Start.D(), c.p.Duration), c.p.Duration)
			continue
		}
		if other, ok := at[ph.Start.D()]; ok {
			c.errorf(p+".start", "gate %q is already at %s: give each gate its own start", other, ph.Start)
			continue
		}
		hold := ph.MaxHold.D()
		if hold == 0 {
			hold = DefaultMaxHold
		}
		if hold > MaxGateHold {
			c.errorf(p+".max_hold", "max_hold %s is above the limit of %s", ph.MaxHold, MaxGateHold)
			continue
		}
		names[ph.Name] = true
		at[ph.Start.D()] = ph.Name
		g := Gate{Name: ph.Name, At: ph.Start.D(), MaxHold: hold, Rate: RateBefore(c.p.Load.Stages, ph.Start.D())}
		extraRequests += g.Rate * hold.Seconds()
		c.p.Gates = append(c.p.Gates, g)
		c.p.Phases = append(c.p.Phases, results.Phase{Name: g.Name, Start: g.At, End: g.At})
	}
	sort.SliceStable(c.p.Gates, func(i, j int) bool { return c.p.Gates[i].At < c.p.Gates[j].At })
	if len(c.p.Gates) == 0 {
		return
	}
	if b := c.p.Bound(); b > MaxLoadDuration {
		c.errorf("$.phases", "with every gate held to its max_hold the load lasts %s; the limit is %s", b, MaxLoadDuration)
	}
	if n := pacer.Total() + extraRequests; n > MaxRequests {
		c.errorf("$.phases", "with every gate held to its max_hold the load schedules %.0f requests; the limit is %d", n, MaxRequests)
	}
}

// safety compiles the live health checks.
func (c *compiler) safety() {
	for i, s := range c.f.Safety {
		p := fmt.Sprintf("$.safety[%d]", i)
		path := p
		if c.doc.Node(p+".objective") != nil {
			path = p + ".objective"
		}
		t, err := verdict.ParseThreshold(s.Objective, "")
		if err != nil {
			c.errorf(path, "%v", err)
			continue
		}
		w := s.Window.D()
		if w == 0 {
			w = DefaultSafetyWait
		}
		if w < MinSafetyWindow || w > MaxSafetyWindow {
			c.errorf(p+".window", "window %s is outside %s–%s", s.Window, MinSafetyWindow, MaxSafetyWindow)
			continue
		}
		stop := true
		switch s.OnBreach {
		case "", OnBreachStop:
		case OnBreachContinue:
			stop = false
		default:
			c.errorf(p+".on_breach", "on_breach is stop or continue, not %q", s.OnBreach)
			continue
		}
		c.p.Safety = append(c.p.Safety, Safety{Name: s.Objective, Objective: t, Window: w, Stop: stop})
	}
}

// CompileFault compiles one fault added while the run goes on: a document
// in the form of one entry of a scenario's faults list (YAML, or JSON, which
// is YAML too), checked against the plan's upstreams by the same code as a
// fault in a file, so a mistake gets the same message. name labels errors
// ("request"); defaultName names a fault that has none. A live fault starts
// when it is added, so start does not apply; without duration it lasts
// until removed.
func (p *Plan) CompileFault(name string, data []byte, defaultName string) (faults.Entry, error) {
	var f scenarios.Fault
	doc, err := yamlfile.Decode(name, data, &f)
	if err != nil {
		return faults.Entry{}, err
	}
	c := &compiler{f: &scenarios.File{}, doc: doc, ups: map[string]*faults.UpstreamConfig{}, badFaults: map[string]bool{},
		p: &Plan{Name: p.Name, Seed: p.Seed}}
	for i := range p.Upstreams {
		u := p.Upstreams[i]
		c.ups[u.Name] = &u
	}
	if f.Start != 0 {
		c.errorf("$.start", "a fault added live starts now: start does not apply (give duration to end it by itself)")
		return faults.Entry{}, c.errs
	}
	if f.Name == "" {
		f.Name = defaultName
	}
	c.faultAt("$", f, map[string]bool{}, map[string]int{})
	if len(c.errs) > 0 {
		return faults.Entry{}, c.errs
	}
	if len(c.p.Timeline) != 1 {
		return faults.Entry{}, fmt.Errorf("%s: the fault did not compile", name)
	}
	e := c.p.Timeline[0]
	// The compiler cuts a file's faults at the end of the load; a live
	// fault has no such end.
	e.Start, e.Duration = 0, f.Duration.D()
	return e, nil
}

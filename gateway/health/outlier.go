package health

import (
	"fmt"
	"sync"
	"time"

	"github.com/cascadehq/cascade/gateway/balance"
	"github.com/cascadehq/cascade/gateway/internal/emit"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

// OutlierConfig is an upstream's passive outlier detection as a scenario
// writes it. Names and defaults are Envoy's.
type OutlierConfig struct {
	// Consecutive5xx ejects an endpoint after this many 5xx answers or local
	// failures (connect failure, reset, timeout) in a row. Default 5.
	Consecutive5xx int `yaml:"consecutive_5xx" zero:"default"`
	// ConsecutiveGatewayFailure ejects after this many 502/503/504 answers or
	// local failures in a row. Zero (the default) turns it off, which is
	// what Envoy's default enforcement (0%) amounts to.
	ConsecutiveGatewayFailure int `yaml:"consecutive_gateway_failure"`
	// BaseEjectionTime is multiplied by the number of times the endpoint has
	// been ejected. Default 30s.
	BaseEjectionTime units.Duration `yaml:"base_ejection_time" zero:"default"`
	// MaxEjectionTime caps one ejection. Default 300s.
	MaxEjectionTime units.Duration `yaml:"max_ejection_time" zero:"default"`
	// MaxEjectionPercent caps the share of endpoints ejected at once; one
	// endpoint may always be ejected, as in Envoy. Default 10%.
	MaxEjectionPercent units.Percent `yaml:"max_ejection_percent" zero:"default"`
	// Interval is the period after which a healthy endpoint's ejection
	// multiplier drops by one, so an endpoint that recovered is not punished
	// forever for old ejections. Default 10s (Envoy's sweep interval).
	Interval units.Duration `yaml:"interval" zero:"default"`
}

// Envoy's defaults.
const (
	DefaultConsecutive5xx     = 5
	DefaultBaseEjectionTime   = 30 * time.Second
	DefaultMaxEjectionTime    = 300 * time.Second
	DefaultMaxEjectionPercent = 0.10
	DefaultOutlierInterval    = 10 * time.Second
)

func (c OutlierConfig) withDefaults() OutlierConfig {
	if c.Consecutive5xx == 0 {
		c.Consecutive5xx = DefaultConsecutive5xx
	}
	if c.BaseEjectionTime == 0 {
		c.BaseEjectionTime = units.Duration(DefaultBaseEjectionTime)
	}
	if c.MaxEjectionTime == 0 {
		c.MaxEjectionTime = units.Duration(max(DefaultMaxEjectionTime, c.BaseEjectionTime.D()))
	}
	if c.MaxEjectionPercent == 0 {
		c.MaxEjectionPercent = DefaultMaxEjectionPercent
	}
	if c.Interval == 0 {
		c.Interval = units.Duration(DefaultOutlierInterval)
	}
	return c
}

// Validate reports every problem at once, each naming its field.
func (c OutlierConfig) Validate() error {
	var errs yamlfile.Errors
	bad := func(field, format string, args ...any) {
		errs = append(errs, &yamlfile.Error{Path: field, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Consecutive5xx < 0 {
		bad("consecutive_5xx", "must be at least 1, got %d", c.Consecutive5xx)
	}
	if c.ConsecutiveGatewayFailure < 0 {
		bad("consecutive_gateway_failure", "must not be negative, got %d", c.ConsecutiveGatewayFailure)
	}
	for _, d := range []struct {
		field string
		v     units.Duration
	}{{"base_ejection_time", c.BaseEjectionTime}, {"max_ejection_time", c.MaxEjectionTime}, {"interval", c.Interval}} {
		if d.v < 0 {
			bad(d.field, "must not be negative, got %v", d.v)
		}
	}
	if d := c.withDefaults(); c.MaxEjectionTime != 0 && d.MaxEjectionTime < d.BaseEjectionTime {
		bad("max_ejection_time", "(%v) is below base_ejection_time (%v)", d.MaxEjectionTime, d.BaseEjectionTime)
	}
	if !(c.MaxEjectionPercent >= 0 && c.MaxEjectionPercent <= 1) {
		bad("max_ejection_percent", "must be within 0%%..100%%, got %v", c.MaxEjectionPercent)
	}
	return errs.Err()
}

// Detector ejects endpoints of a balancer that fail in a row. The proxy
// reports every attempt's outcome with ObserveStatus or ObserveFailure.
type Detector struct {
	cfg OutlierConfig
	set *balance.Balancer
	em  emit.Emitter

	mu     sync.Mutex
	state  map[*balance.Endpoint]*outlierState
	closed bool

	ejections, overflows uint64 // guarded by mu
}

type outlierState struct {
	consec5xx, consecGateway int
	times                    int       // ejection multiplier
	returned                 time.Time // when the last ejection ended
	timer                    *time.Timer
}

// NewDetector returns a detector for the endpoints of set.
func NewDetector(cfg OutlierConfig, set *balance.Balancer, opts ...Option) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return &Detector{cfg: cfg.withDefaults(), set: set, em: emit.New(o.sink, o.clock, o.target),
		state: map[*balance.Endpoint]*outlierState{}}, nil
}

// ObserveStatus reports an HTTP answer from ep.
func (d *Detector) ObserveStatus(ep *balance.Endpoint, status int) {
	d.observe(ep, status >= 500, status == 502 || status == 503 || status == 504)
}

// ObserveFailure reports a local failure on ep: connect failure, reset or
// timeout. Envoy (without split_external_local_origin_errors) counts these
// toward both consecutive 5xx and consecutive gateway failures.
func (d *Detector) ObserveFailure(ep *balance.Endpoint) { d.observe(ep, true, true) }

func (d *Detector) observe(ep *balance.Endpoint, is5xx, isGateway bool) {
	now := time.Now()
	d.mu.Lock()
	if d.closed || ep.Ejected(now) {
		// A response that was in flight when its endpoint was ejected says
		// nothing new.
		d.mu.Unlock()
		return
	}
	st := d.state[ep]
	if st == nil {
		if !is5xx && !isGateway {
			d.mu.Unlock()
			return // the common case: a success from an endpoint with no history
		}
		st = &outlierState{}
		d.state[ep] = st
	}
	if is5xx {
		st.consec5xx++
	} else {
		st.consec5xx = 0
	}
	if isGateway {
		st.consecGateway++
	} else {
		st.consecGateway = 0
	}
	var reason string
	var n int
	switch {
	case st.consec5xx >= d.cfg.Consecutive5xx:
		reason, n = "consecutive_5xx", st.consec5xx
	case d.cfg.ConsecutiveGatewayFailure > 0 && st.consecGateway >= d.cfg.ConsecutiveGatewayFailure:
		reason, n = "consecutive_gateway_failure", st.consecGateway
	default:
		d.mu.Unlock()
		return
	}
	st.consec5xx, st.consecGateway = 0, 0
	ev, ok := d.ejectLocked(now, ep, st, reason, n)
	d.mu.Unlock()
	if ok {
		d.em.Send(ev)
	}
}

// ejectLocked ejects ep unless max_ejection_percent forbids it, and builds
// the event that says which.
func (d *Detector) ejectLocked(now time.Time, ep *balance.Endpoint, st *outlierState, reason string, n int) (event.Event, bool) {
	eps := d.set.Endpoints()
	ejected := 0
	live := make(map[*balance.Endpoint]bool, len(eps))
	for _, e := range eps {
		live[e] = true
		if e.Ejected(now) {
			ejected++
		}
	}
	// Forget endpoints that left the set (autoscaling) and are not waiting
	// for a return; ejections are rare, so this is where pruning is cheap.
	for e, s := range d.state {
		if !live[e] && s.timer == nil {
			delete(d.state, e)
		}
	}
	if !live[ep] {
		return event.Event{}, false // removed while its request was in flight
	}
	target := d.name(ep)
	// Envoy's rule: eject if the share after ejecting stays within the cap,
	// or if nothing is ejected yet.
	total := max(len(eps), 1)
	if ejected > 0 && float64(ejected+1)/float64(total) > d.cfg.MaxEjectionPercent.F() {
		d.overflows++
		return d.em.EventFor(target, "outlier.eject_overflow", map[string]any{"addr": ep.Addr(), "reason": reason,
			"consecutive": n, "ejected": ejected, "endpoints": len(eps)}), true
	}
	// The multiplier decays by one per interval spent back in rotation.
	if st.times > 0 && !st.returned.IsZero() {
		st.times = max(0, st.times-int(now.Sub(st.returned)/d.cfg.Interval.D()))
	}
	st.times++
	dur := min(d.cfg.BaseEjectionTime.D()*time.Duration(st.times), d.cfg.MaxEjectionTime.D())
	ep.Eject(now.Add(dur))
	d.ejections++
	if st.timer != nil {
		st.timer.Stop()
	}
	// One timer per ejection, not a goroutine: it runs only to report the
	// return (Pick already honours the deadline on its own).
	st.timer = time.AfterFunc(dur, func() { d.uneject(ep, st) })
	return d.em.EventFor(target, "outlier.eject", map[string]any{"addr": ep.Addr(), "reason": reason,
		"consecutive": n, "times_ejected": st.times, "ejection_ms": dur.Milliseconds(), "ejected": ejected + 1,
		"endpoints": len(eps), "in_flight": ep.InFlight()}), true // in_flight: sent to it, not over; they may land after
}

func (d *Detector) uneject(ep *balance.Endpoint, st *outlierState) {
	now := time.Now()
	d.mu.Lock()
	if d.closed || d.state[ep] != st {
		d.mu.Unlock()
		return
	}
	ep.Uneject()
	st.returned, st.timer = now, nil
	ev := d.em.EventFor(d.name(ep), "outlier.uneject", map[string]any{"addr": ep.Addr(), "times_ejected": st.times})
	d.mu.Unlock()
	d.em.Send(ev)
}

func (d *Detector) name(ep *balance.Endpoint) string {
	if t := d.em.Target(); t != "" {
		return t + "[" + ep.Addr() + "]"
	}
	return ep.Addr()
}

// Forget drops the history of an endpoint that left the set (autoscaling),
// stopping its timer.
func (d *Detector) Forget(ep *balance.Endpoint) {
	d.mu.Lock()
	if st := d.state[ep]; st != nil && st.timer != nil {
		st.timer.Stop()
	}
	delete(d.state, ep)
	d.mu.Unlock()
}

// Close stops every pending uneject timer; ejected endpoints stay ejected
// until their deadline, which Pick honours without the timer.
func (d *Detector) Close() {
	d.mu.Lock()
	d.closed = true
	for _, st := range d.state {
		if st.timer != nil {
			st.timer.Stop()
		}
	}
	d.mu.Unlock()
}

// OutlierCounters are cumulative counts.
type OutlierCounters struct {
	Ejections uint64 // endpoints ejected
	Overflows uint64 // ejections refused by max_ejection_percent
}

// Counters returns a snapshot.
func (d *Detector) Counters() OutlierCounters {
	d.mu.Lock()
	defer d.mu.Unlock()
	return OutlierCounters{Ejections: d.ejections, Overflows: d.overflows}
}

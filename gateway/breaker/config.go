package breaker

import (
	"fmt"
	"time"

	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

// Window types for Config.SlidingWindowType.
const (
	CountBased = "count" // the last N calls
	TimeBased  = "time"  // the calls of the last D
)

// Config is one upstream's breaker as a scenario writes it. Field names and
// defaults are Resilience4j's (CircuitBreakerConfig), so a user who knows it
// can read a scenario without a manual. Every zero value means the default
// given on its field.
type Config struct {
	// SlidingWindowType is "count" (default) or "time".
	SlidingWindowType string `yaml:"sliding_window_type"`
	// SlidingWindowSize is the number of calls a count-based window keeps.
	// Default 100.
	SlidingWindowSize int `yaml:"sliding_window_size" zero:"default"`
	// SlidingWindowDuration is the span a time-based window covers. Default
	// 100s (Resilience4j's default window size of 100, read as seconds).
	SlidingWindowDuration units.Duration `yaml:"sliding_window_duration" zero:"default"`
	// MinimumCalls is how many calls the window must hold before a rate is
	// computed at all. Default 100. For a count-based window it is capped at
	// the window size, as Resilience4j does: otherwise the breaker could
	// never open.
	MinimumCalls int `yaml:"minimum_calls" zero:"default"`
	// FailureRateThreshold opens the breaker when the failure rate is equal
	// or greater. Default 50%.
	FailureRateThreshold units.Percent `yaml:"failure_rate_threshold" zero:"default"`
	// SlowCallRateThreshold opens the breaker when the share of calls slower
	// than SlowCallDuration is equal or greater. Default 100%.
	SlowCallRateThreshold units.Percent `yaml:"slow_call_rate_threshold" zero:"default"`
	// SlowCallDuration is the duration above which a call counts as slow.
	// Default 60s.
	SlowCallDuration units.Duration `yaml:"slow_call_duration" zero:"default"`
	// WaitDurationInOpen is how long the breaker rejects before it lets
	// probes through. Default 60s.
	WaitDurationInOpen units.Duration `yaml:"wait_duration_in_open" zero:"default"`
	// PermittedCallsInHalfOpen is the number of probes in half-open; their
	// outcomes alone decide between closing and reopening. Default 10.
	PermittedCallsInHalfOpen int `yaml:"permitted_calls_in_half_open" zero:"default"`
	// MaxWaitInHalfOpen reopens the breaker when the probes have not all
	// finished in time. Zero (the default) waits for them however long.
	MaxWaitInHalfOpen units.Duration `yaml:"max_wait_in_half_open"`
}

// Resilience4j's defaults.
const (
	DefaultSlidingWindowSize        = 100
	DefaultSlidingWindowDuration    = 100 * time.Second
	DefaultMinimumCalls             = 100
	DefaultFailureRateThreshold     = 0.5
	DefaultSlowCallRateThreshold    = 1.0
	DefaultSlowCallDuration         = 60 * time.Second
	DefaultWaitDurationInOpen       = 60 * time.Second
	DefaultPermittedCallsInHalfOpen = 10
)

// Limits that keep a typo from allocating gigabytes.
const (
	maxWindowSize  = 1 << 20
	minWindowSpan  = time.Millisecond
	maxTimeBuckets = 600
)

// Validate reports every problem at once, each naming its field.
func (c Config) Validate() error {
	var errs yamlfile.Errors
	bad := func(field, format string, args ...any) {
		errs = append(errs, &yamlfile.Error{Path: field, Msg: fmt.Sprintf(format, args...)})
	}
	switch c.SlidingWindowType {
	case "", CountBased:
		if c.SlidingWindowDuration != 0 {
			bad("sliding_window_duration", "only applies to a time-based window; set sliding_window_type: time or use sliding_window_size")
		}
	case TimeBased:
		if c.SlidingWindowSize != 0 {
			bad("sliding_window_size", "only applies to a count-based window; use sliding_window_duration with sliding_window_type: time")
		}
		if d := c.SlidingWindowDuration.D(); d != 0 && d < minWindowSpan {
			bad("sliding_window_duration", "must be at least %v, got %v", minWindowSpan, d)
		}
	default:
		bad("sliding_window_type", "must be %q or %q, got %q", CountBased, TimeBased, c.SlidingWindowType)
	}
	if c.SlidingWindowSize < 0 || c.SlidingWindowSize > maxWindowSize {
		bad("sliding_window_size", "must be between 1 and %d calls, got %d", maxWindowSize, c.SlidingWindowSize)
	}
	if c.MinimumCalls < 0 {
		bad("minimum_calls", "must not be negative, got %d", c.MinimumCalls)
	}
	if c.PermittedCallsInHalfOpen < 0 || c.PermittedCallsInHalfOpen > maxWindowSize {
		bad("permitted_calls_in_half_open", "must be between 1 and %d, got %d", maxWindowSize, c.PermittedCallsInHalfOpen)
	}
	for _, p := range []struct {
		field string
		v     units.Percent
	}{{"failure_rate_threshold", c.FailureRateThreshold}, {"slow_call_rate_threshold", c.SlowCallRateThreshold}} {
		if !(p.v >= 0 && p.v <= 1) {
			bad(p.field, "must be within 0%%..100%%, got %v", p.v)
		}
	}
	for _, d := range []struct {
		field string
		v     units.Duration
	}{{"slow_call_duration", c.SlowCallDuration}, {"wait_duration_in_open", c.WaitDurationInOpen}, {"max_wait_in_half_open", c.MaxWaitInHalfOpen}, {"sliding_window_duration", c.SlidingWindowDuration}} {
		if d.v < 0 {
			bad(d.field, "must not be negative, got %v", d.v)
		}
	}
	return errs.Err()
}

// settings is a Config with the defaults filled in, in the units the hot
// path wants.
type settings struct {
	timeBased      bool
	windowSize     int
	windowDuration time.Duration
	minCalls       int
	failureRate    float64
	slowRate       float64
	slowCall       time.Duration
	waitOpen       time.Duration
	halfOpenCalls  int
	maxWaitHalf    time.Duration
}

func (c Config) settings() settings {
	s := settings{
		timeBased:      c.SlidingWindowType == TimeBased,
		windowSize:     orInt(c.SlidingWindowSize, DefaultSlidingWindowSize),
		windowDuration: orDur(c.SlidingWindowDuration.D(), DefaultSlidingWindowDuration),
		minCalls:       orInt(c.MinimumCalls, DefaultMinimumCalls),
		failureRate:    orF(c.FailureRateThreshold.F(), DefaultFailureRateThreshold),
		slowRate:       orF(c.SlowCallRateThreshold.F(), DefaultSlowCallRateThreshold),
		slowCall:       orDur(c.SlowCallDuration.D(), DefaultSlowCallDuration),
		waitOpen:       orDur(c.WaitDurationInOpen.D(), DefaultWaitDurationInOpen),
		halfOpenCalls:  orInt(c.PermittedCallsInHalfOpen, DefaultPermittedCallsInHalfOpen),
		maxWaitHalf:    c.MaxWaitInHalfOpen.D(),
	}
	if !s.timeBased && s.minCalls > s.windowSize {
		s.minCalls = s.windowSize
	}
	return s
}

func orInt(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

func orDur(v, d time.Duration) time.Duration {
	if v == 0 {
		return d
	}
	return v
}

func orF(v, d float64) float64 {
	if v == 0 {
		return d
	}
	return v
}

package limit

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/cascadehq/cascade/gateway/internal/emit"
	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

// ErrRateLimited is the refusal of a RateLimiter; the proxy maps it to 429
// with cause rate_limited.
var ErrRateLimited = errors.New("rate limited")

// RateConfig is a route's token bucket as a scenario writes it.
type RateConfig struct {
	// Rate is the sustained rate, such as 100/s. Required.
	Rate units.Rate `yaml:"rate"`
	// Burst is the bucket's size: how many requests may pass at once after a
	// quiet spell. Default: one second's worth of Rate, at least 1.
	Burst int `yaml:"burst" zero:"default"`
}

// Validate reports every problem at once, each naming its field.
func (c RateConfig) Validate() error {
	var errs yamlfile.Errors
	if !(c.Rate > 0) || math.IsInf(float64(c.Rate), 0) {
		errs = append(errs, &yamlfile.Error{Path: "rate", Msg: fmt.Sprintf("must be a positive rate such as 100/s, got %v", c.Rate)})
	}
	if c.Burst < 0 {
		errs = append(errs, &yamlfile.Error{Path: "burst", Msg: fmt.Sprintf("must not be negative, got %d", c.Burst)})
	}
	return errs.Err()
}

// RateLimiter is a route's token bucket (golang.org/x/time/rate). It is safe
// for concurrent use.
type RateLimiter struct {
	lim      *rate.Limiter
	burst    int
	em       emit.Emitter
	throttle emit.Throttle

	allowed, limited atomic.Uint64
}

// NewRate returns a token bucket that starts full.
func NewRate(cfg RateConfig, opts ...Option) (*RateLimiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	burst := cfg.Burst
	if burst == 0 {
		burst = max(1, int(math.Ceil(cfg.Rate.PerSecond())))
	}
	return &RateLimiter{lim: rate.NewLimiter(rate.Limit(cfg.Rate.PerSecond()), burst), burst: burst,
		em: emit.From(opts)}, nil
}

// Burst is the bucket size in use.
func (r *RateLimiter) Burst() int { return r.burst }

// Allow takes a token now, or returns ErrRateLimited.
func (r *RateLimiter) Allow() error { return r.AllowAt(time.Now()) }

// AllowAt takes a token at now, or returns ErrRateLimited.
func (r *RateLimiter) AllowAt(now time.Time) error {
	if r.lim.AllowN(now, 1) {
		r.allowed.Add(1)
		return nil
	}
	r.limited.Add(1)
	if due, n := r.throttle.Hit(now); due {
		r.em.Emit("limit.rate_limited", map[string]any{"count": n, "rate": float64(r.lim.Limit()), "burst": r.burst})
	}
	return ErrRateLimited
}

// RateCounters are cumulative counts.
type RateCounters struct {
	Allowed, Limited uint64
}

// Counters returns a snapshot.
func (r *RateLimiter) Counters() RateCounters {
	return RateCounters{Allowed: r.allowed.Load(), Limited: r.limited.Load()}
}

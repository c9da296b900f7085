package retry

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

// Conditions accepted in Config.RetryOn, besides a status code such as "503".
// They are Envoy's x-envoy-retry-on values with underscores.
const (
	// OnConnectFailure retries when no connection could be made. The
	// request never reached the upstream, so even a POST is retried.
	OnConnectFailure = "connect_failure"
	// OnReset retries when the upstream did not answer at all: a reset or
	// closed connection, a connect failure, or a per-try timeout.
	OnReset = "reset"
	// On5xx retries any 5xx answer and everything OnReset covers.
	On5xx = "5xx"
	// OnGatewayError retries 502, 503 and 504 and everything OnReset covers.
	OnGatewayError = "gateway_error"
)

var conditionNames = []string{OnConnectFailure, OnReset, On5xx, OnGatewayError}

// Config is a route's retry policy as a scenario writes it. Every zero value
// means the default given on its field; the defaults are Envoy's where Envoy
// has one.
type Config struct {
	// RetryOn lists the conditions that make an attempt worth retrying:
	// connect_failure, reset, 5xx, gateway_error, or a status code such as
	// 503. Default: DefaultRetryOn.
	RetryOn []string `yaml:"retry_on"`
	// MaxAttempts counts every attempt, the first included. Default 2 (Envoy's
	// num_retries default of 1). 1 turns retries off.
	MaxAttempts int `yaml:"max_attempts" zero:"default"`
	// PerTryTimeout bounds each attempt. Zero (the default) lets each attempt
	// run until the route's total timeout. It must be shorter than the total
	// timeout (see ValidateTotal).
	PerTryTimeout units.Duration `yaml:"per_try_timeout"`
	// BackoffBase is the base of the exponential backoff. Default 25ms.
	BackoffBase units.Duration `yaml:"backoff_base" zero:"default"`
	// BackoffMax caps one backoff. Default 10 × backoff_base.
	BackoffMax units.Duration `yaml:"backoff_max" zero:"default"`
	// BudgetPercent caps the retries in flight at this share of the
	// upstream's active requests. Default 20%.
	BudgetPercent units.Percent `yaml:"budget_percent" zero:"default"`
	// MinRetryConcurrency is a floor under the budget, so an upstream with
	// little traffic can still retry. Default 3.
	MinRetryConcurrency int `yaml:"min_retry_concurrency" zero:"default"`
	// RetryNonIdempotent allows retrying POST and PATCH after they were sent.
	// Default false: a retried POST may act twice (caddy#1229).
	RetryNonIdempotent bool `yaml:"retry_non_idempotent"`
	// MaxReplayBody is the largest request body kept in memory to be sent
	// again; a larger body is streamed once and never retried. Default 64KiB.
	MaxReplayBody units.Size `yaml:"max_replay_body" zero:"default"`
	// RetryAfterMax bounds the Retry-After a retried 503 or 429 may ask
	// for. Such an answer is retried after the wait it names (seconds or
	// an HTTP date) instead of the exponential backoff, and not at all
	// when that wait would end past the total timeout: the answer is
	// forwarded then. A longer Retry-After is ignored and the backoff
	// used, as Envoy's rate_limited_retry_back_off discards a reset
	// header beyond its max_interval. Default 300s (Envoy's).
	RetryAfterMax units.Duration `yaml:"retry_after_max" zero:"default"`
	// HedgeOnPerTryTimeout makes a per-try timeout start the next attempt
	// without cancelling the one that timed out (Envoy's hedge_policy
	// hedge_on_per_try_timeout): both stay in flight and the first answer
	// that is not itself retriable is forwarded, the others cancelled. A
	// hedge counts as a retry (max_attempts, the budget) and is sent at
	// once, without backoff: the per-try timeout was the wait. It needs a
	// per-try timeout, and hedges only what a retry may send again (an
	// idempotent method or retry_non_idempotent, a replayable body).
	// Default false.
	HedgeOnPerTryTimeout bool `yaml:"hedge_on_per_try_timeout"`
}

// Defaults.
const (
	DefaultMaxAttempts         = 2
	DefaultBackoffBase         = 25 * time.Millisecond
	DefaultBudgetPercent       = 0.20
	DefaultMinRetryConcurrency = 3
	DefaultMaxReplayBody       = 64 << 10
	DefaultRetryAfterMax       = 300 * time.Second
)

// DefaultRetryOn is used when RetryOn is empty. Envoy has no default (a
// route without retry_on never retries); a user who wrote a retry policy at
// all wants retries, and connect failures and resets are the cases where a
// retry on another endpoint is nearly always right.
var DefaultRetryOn = []string{OnConnectFailure, OnReset}

const maxAttemptsLimit = 100

// Validate reports every problem at once, each naming its field.
func (c Config) Validate() error {
	var errs yamlfile.Errors
	bad := func(field, format string, args ...any) {
		errs = append(errs, &yamlfile.Error{Path: field, Msg: fmt.Sprintf(format, args...)})
	}
	for i, s := range c.RetryOn {
		if _, err := parseCondition(s); err != nil {
			bad(fmt.Sprintf("retry_on[%d]", i), "%v", err)
		}
	}
	if c.MaxAttempts < 0 || c.MaxAttempts > maxAttemptsLimit {
		bad("max_attempts", "must be between 1 and %d, got %d", maxAttemptsLimit, c.MaxAttempts)
	}
	if c.MinRetryConcurrency < 0 {
		bad("min_retry_concurrency", "must not be negative, got %d", c.MinRetryConcurrency)
	}
	if !(c.BudgetPercent >= 0 && c.BudgetPercent <= 1) {
		bad("budget_percent", "must be within 0%%..100%%, got %v", c.BudgetPercent)
	}
	if c.MaxReplayBody < 0 {
		bad("max_replay_body", "must not be negative, got %d", c.MaxReplayBody)
	}
	for _, d := range []struct {
		field string
		v     units.Duration
	}{{"per_try_timeout", c.PerTryTimeout}, {"backoff_base", c.BackoffBase}, {"backoff_max", c.BackoffMax},
		{"retry_after_max", c.RetryAfterMax}} {
		if d.v < 0 {
			bad(d.field, "must not be negative, got %v", d.v)
		}
	}
	s := c.settings()
	if c.BackoffMax != 0 && s.backoffMax < s.backoffBase {
		bad("backoff_max", "(%v) is below backoff_base (%v)", s.backoffMax, s.backoffBase)
	}
	return errs.Err()
}

// ValidateTotal checks the policy against the route's total timeout. Envoy
// silently ignores a per-try timeout that is not shorter than the route
// timeout; cascade refuses it, because such a policy can never retry after a
// timed-out attempt and its author meant something else.
func (c Config) ValidateTotal(total time.Duration) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if total > 0 && c.PerTryTimeout != 0 && c.PerTryTimeout.D() >= total {
		return yamlfile.Errors{{Path: "per_try_timeout", Msg: fmt.Sprintf(
			"(%v) must be shorter than the route's total timeout (%v): a first attempt that times out would leave no time to retry (Envoy ignores such a per-try timeout silently)",
			c.PerTryTimeout, total)}}
	}
	return nil
}

// condition set: kinds of failure plus status codes.
type conditions struct {
	connectFailure, reset, any5xx, gatewayError bool
	status                                      [10]uint64 // bit per status code 0..639
}

func (cs *conditions) setStatus(code int) { cs.status[code/64] |= 1 << (code % 64) }

func (cs *conditions) hasStatus(code int) bool {
	return code >= 0 && code < 640 && cs.status[code/64]&(1<<(code%64)) != 0
}

func parseCondition(s string) (func(*conditions), error) {
	switch strings.TrimSpace(s) {
	case OnConnectFailure:
		return func(c *conditions) { c.connectFailure = true }, nil
	case OnReset:
		return func(c *conditions) { c.reset = true }, nil
	case On5xx:
		return func(c *conditions) { c.any5xx = true }, nil
	case OnGatewayError:
		return func(c *conditions) { c.gatewayError = true }, nil
	}
	code, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("unknown retry condition %q: expected one of %s, or a status code such as 503",
			s, strings.Join(conditionNames, ", "))
	}
	// Only an answer the gateway counts as failed can be retried: a 1xx,
	// 2xx or 3xx goes to the client as it is, so a condition naming one
	// would be accepted and never act.
	if code < 400 || code > 599 {
		return nil, fmt.Errorf("status code %d is not a failure: retry_on takes codes from 400 to 599", code)
	}
	return func(c *conditions) { c.setStatus(code) }, nil
}

type settings struct {
	conds         conditions
	maxAttempts   int
	perTry        time.Duration
	backoffBase   time.Duration
	backoffMax    time.Duration
	budgetPercent float64
	minRetries    int64
	nonIdempotent bool
	maxReplay     int64
	retryAfterMax time.Duration
	hedge         bool
}

// RetriesTimeouts says whether the policy retries an attempt that timed
// out (the per-try or the response-header timeout): a timeout is retried
// on reset, 5xx and gateway_error, not on connect_failure or a status
// code. The timeout cascade needs it: the client then sees that timeout
// only after several attempts that each hit it.
func (c Config) RetriesTimeouts() bool {
	s := c.settings()
	return s.match(Outcome{Kind: Timeout}) != ""
}

func (c Config) settings() settings {
	s := settings{
		maxAttempts:   c.MaxAttempts,
		perTry:        c.PerTryTimeout.D(),
		backoffBase:   c.BackoffBase.D(),
		backoffMax:    c.BackoffMax.D(),
		budgetPercent: c.BudgetPercent.F(),
		minRetries:    int64(c.MinRetryConcurrency),
		nonIdempotent: c.RetryNonIdempotent,
		maxReplay:     c.MaxReplayBody.Bytes(),
		retryAfterMax: c.RetryAfterMax.D(),
		hedge:         c.HedgeOnPerTryTimeout,
	}
	if s.retryAfterMax == 0 {
		s.retryAfterMax = DefaultRetryAfterMax
	}
	if s.maxAttempts == 0 {
		s.maxAttempts = DefaultMaxAttempts
	}
	if s.backoffBase == 0 {
		s.backoffBase = DefaultBackoffBase
	}
	if s.backoffMax == 0 {
		s.backoffMax = 10 * s.backoffBase
	}
	if s.budgetPercent == 0 {
		s.budgetPercent = DefaultBudgetPercent
	}
	if s.minRetries == 0 {
		s.minRetries = DefaultMinRetryConcurrency
	}
	if s.maxReplay == 0 {
		s.maxReplay = DefaultMaxReplayBody
	}
	on := c.RetryOn
	if len(on) == 0 {
		on = DefaultRetryOn
	}
	for _, name := range on {
		if set, err := parseCondition(name); err == nil {
			set(&s.conds)
		}
	}
	return s
}

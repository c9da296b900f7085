package verdict

import (
	"math"
	"testing"
)

// An objective comes from a scenario file or a --threshold flag. Whatever
// ParseThreshold accepts must be judgeable: a bound that is a number (NaN
// would make every comparison false, so the objective fail or pass whatever
// was measured), never negative, and a text that parses again to the same
// objective, and a quantile that exists.
func FuzzParseThreshold(f *testing.F) {
	for _, s := range []string{"p99 < 300ms", "p99<300ms", "error_rate <= 1%", "achieved_rate >= 95%",
		"achieved_rate > 1000/s", "retry_amplification < 1.5x", "errors < NaN", "errors == Inf",
		"p99.9 < 1s", "max < 2s", "cause_rate:timeout < 0.1%", "a<b<c", "<", "p99 <", "p(nan) < 1s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		th, err := ParseThreshold(expr, "")
		if err != nil {
			return
		}
		if math.IsNaN(th.bound) || math.IsInf(th.bound, 0) || th.bound < 0 {
			t.Fatalf("ParseThreshold(%q): bound %v, want a finite number ≥ 0", expr, th.bound)
		}
		if q := th.metric.quantile; th.metric.stat == "quantile" && !(q > 0 && q <= 100) {
			t.Fatalf("ParseThreshold(%q): quantile %v, want one in (0, 100]", expr, q)
		}
		again, err := ParseThreshold(th.Expr, "fault")
		if err != nil {
			t.Fatalf("ParseThreshold(%q) accepted, its Expr %q did not: %v", expr, th.Expr, err)
		}
		if again.bound != th.bound || again.op != th.op || again.metric != th.metric || again.relative != th.relative {
			t.Fatalf("ParseThreshold(%q) and again in a phase differ: %+v vs %+v", expr, th, again)
		}
	})
}

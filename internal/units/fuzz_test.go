package units

import (
	"math"
	"testing"
)

// The parsers take flags and scenario values as typed by people: whatever
// they accept must be a usable value (finite, in range) that prints back to
// text they accept again with the same meaning (scenario.yaml in a run
// directory is re-read from that text).
func FuzzParse(f *testing.F) {
	for _, s := range []string{"2000/s", "120/m", "2/ms", "7200/h", "0", "1e308/ms", "5%", "0.05", "300ms",
		"1m30s", "4KiB", "1MB", "-1s", "NaN", "Inf/s", " 3 / sec "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := ParseRate(s); err == nil {
			v := r.PerSecond()
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				t.Fatalf("ParseRate(%q) = %v, want a finite rate ≥ 0", s, v)
			}
			back, err := ParseRate(r.String())
			if err != nil || !near(back.PerSecond(), v, 1e-7) {
				t.Fatalf("ParseRate(%q) = %v prints %q, which reads back as %v, %v", s, v, r.String(), back, err)
			}
		}
		if d, err := ParseDuration(s); err == nil {
			if d < 0 {
				t.Fatalf("ParseDuration(%q) = %v, want ≥ 0", s, d)
			}
			if back, err := ParseDuration(d.String()); err != nil || back != d {
				t.Fatalf("ParseDuration(%q) = %v prints %q, which reads back as %v, %v", s, d.D(), d.String(), back.D(), err)
			}
		}
		if p, err := ParsePercent(s); err == nil {
			if v := p.F(); math.IsNaN(v) || v < 0 || v > 1 {
				t.Fatalf("ParsePercent(%q) = %v, want a fraction in [0, 1]", s, v)
			}
			if back, err := ParsePercent(p.String()); err != nil || !near(back.F(), p.F(), 1e-5) {
				t.Fatalf("ParsePercent(%q) = %v prints %q, which reads back as %v, %v", s, p.F(), p.String(), back, err)
			}
		}
		if z, err := ParseSize(s); err == nil && z < 0 {
			t.Fatalf("ParseSize(%q) = %d, want ≥ 0", s, z)
		}
	})
}

func near(a, b, rel float64) bool {
	return math.Abs(a-b) <= rel*math.Max(math.Abs(a), math.Abs(b))
}

package units

import (
	"strings"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/yamlfile"
)

func TestParsers(t *testing.T) {
	durs := map[string]time.Duration{"300ms": 300 * time.Millisecond, "2s": 2 * time.Second, "1m30s": 90 * time.Second, "0": 0}
	for in, want := range durs {
		if got, err := ParseDuration(in); err != nil || got.D() != want {
			t.Errorf("ParseDuration(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "5", "1.5", "-1s", "5x", "ms"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
	pcts := map[string]float64{"5%": 0.05, "0.5%": 0.005, "100%": 1, "0.25": 0.25, "0": 0, "1": 1}
	for in, want := range pcts {
		if got, err := ParsePercent(in); err != nil || got.F() != want {
			t.Errorf("ParsePercent(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"150%", "-1%", "2", "x%", "NaN"} {
		if _, err := ParsePercent(bad); err == nil {
			t.Errorf("ParsePercent(%q) accepted", bad)
		}
	}
	rates := map[string]float64{"2000/s": 2000, "120/m": 2, "7200/h": 2, "5": 5, "2/ms": 2000, "0/s": 0}
	for in, want := range rates {
		if got, err := ParseRate(in); err != nil || got.PerSecond() != want {
			t.Errorf("ParseRate(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"10/y", "-5/s", "x/s", "Inf"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
	sizes := map[string]int64{"512": 512, "4KiB": 4096, "1MB": 1000000, "1 kB": 1000}
	for in, want := range sizes {
		if got, err := ParseSize(in); err != nil || got.Bytes() != want {
			t.Errorf("ParseSize(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseSize("lots"); err == nil {
		t.Error("ParseSize(lots) accepted")
	}
}

type doc struct {
	D Duration `yaml:"d"`
	P Percent  `yaml:"p"`
	R Rate     `yaml:"r"`
	S Size     `yaml:"s"`
}

// Values decoded from a file keep their position in errors.
func TestPositionedErrors(t *testing.T) {
	cases := map[string]string{
		"d: 1s\np: 5%\nr: 10/s\ns: 1KiB\n": "",
		"d: 5\n":                           "f.yaml:1:4: d: duration \"5\" has no unit",
		"d: 1s\np: 200%\n":                 "f.yaml:2:4: p: percentage \"200%\" is outside",
		"r: 10/y\n":                        "f.yaml:1:4: r: invalid rate",
		"s: many\n":                        "f.yaml:1:4: s: invalid size",
		"d: [1]\n":                         "f.yaml:1:4: d: expected a duration",
	}
	for src, want := range cases {
		var v doc
		_, err := yamlfile.Decode("f.yaml", []byte(src), &v)
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", src, err)
			}
			if v.D.D() != time.Second || v.P.F() != 0.05 || v.R.PerSecond() != 10 || v.S.Bytes() != 1024 {
				t.Errorf("decoded %+v", v)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: err = %v, want prefix %q", src, err, want)
		}
	}
}

func TestStrings(t *testing.T) {
	if s := Percent(0.005).String(); s != "0.5%" {
		t.Errorf("Percent = %s", s)
	}
	if s := Rate(2000).String(); s != "2000/s" {
		t.Errorf("Rate = %s", s)
	}
	if s := Duration(1500 * time.Millisecond).String(); s != "1.5s" {
		t.Errorf("Duration = %s", s)
	}
}

package packet

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/invopop/jsonschema"

	"github.com/cascadehq/cascade/internal/units"
	"github.com/cascadehq/cascade/internal/yamlfile"
)

func TestImpairmentDecodes(t *testing.T) {
	src := `
loss: {gemodel: {p: 1%, r: 30%, bad_loss: 90%}}
delay: 50ms
jitter: 5ms
correlation: 25%
distribution: normal
duplicate: 1%
reorder: {percent: 5%, gap: 3}
corrupt: 0.1%
bandwidth: {rate: 10mbit, queue: 64KiB}
syn_blackhole: true
filter: {port: 8080}
`
	var imp Impairment
	if _, err := yamlfile.Decode("x.yaml", []byte(src), &imp); err != nil {
		t.Fatal(err)
	}
	if err := imp.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Impairment{
		Loss:  Loss{GEModel: GilbertElliott{P: 0.01, R: 0.3, BadLoss: 0.9}},
		Delay: ms(50), Jitter: ms(5), Correlation: 0.25, Distribution: "normal",
		Duplicate: 0.01, Reorder: Reorder{Percent: 0.05, Gap: 3}, Corrupt: 0.001,
		Bandwidth:    Bandwidth{Rate: 10e6, Queue: 64 << 10},
		SYNBlackhole: true, Filter: Filter{Port: 8080},
	}
	if imp != want {
		t.Fatalf("decoded\n%+v\nwant\n%+v", imp, want)
	}
	var short Impairment
	if _, err := yamlfile.Decode("x.yaml", []byte("loss: 5%\n"), &short); err != nil || short.Loss.Percent != 0.05 {
		t.Fatalf("loss shorthand: %+v %v", short, err)
	}
	// 0 needs no sign: it means the same read either way.
	var zero Impairment
	if _, err := yamlfile.Decode("x.yaml", []byte("delay: 1ms\nloss: 0\nduplicate: 0.0\n"), &zero); err != nil || zero.Loss.Percent != 0 || zero.Duplicate != 0 {
		t.Fatalf("bare 0: %+v %v", zero, err)
	}
}

func TestImpairmentDecodeErrorsArePositioned(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"delay: 50ms\nbandwidth: {rate: 10mbps}\n", "x.yaml:2:"},
		{"delay: 50ms\nloss: lots\n", "x.yaml:2:"},
		{"delay: 50\n", "no unit"},
		{"dealy: 50ms\n", "dealy"},
		{"loss: {gemodel: {p: 1%, q: 2%}}\n", "q"},
		// A bare number is refused where netem reads it as a percentage and
		// cascade's other fields as a fraction: 0.5 would be 0.5 % or 50 %.
		{"delay: 1ms\nloss: 0.5\n", "x.yaml:2:7: loss: write 0.5 with a % sign: 0.5% as netem and Chaos Mesh read a bare 0.5, or 50% as cascade's other fields read it"},
		{"loss: 1\n", "x.yaml:1:7: loss: write 1 with a % sign"},
		{"loss: {percent: 0.05}\n", "x.yaml:1:17: loss.percent: write 0.05 with a % sign"},
		{"duplicate: 1\n", "write 1 with a % sign"},
		{"corrupt: 0.1\n", "write 0.1 with a % sign"},
		{"reorder: {percent: 10}\n", "reorder.percent: write 10 with a % sign: 10% as netem"},
		{"jitter: 1ms\ncorrelation: 0.25\n", "x.yaml:2:14: correlation: write 0.25 with a % sign"},
		{"loss: {gemodel: {p: 0.01, r: 30%}}\n", "write 0.01 with a % sign"},
	} {
		var imp Impairment
		_, err := yamlfile.Decode("x.yaml", []byte(tc.src), &imp)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to mention %q", tc.src, err, tc.want)
		}
	}
}

func TestImpairmentValidate(t *testing.T) {
	for _, tc := range []struct {
		imp  Impairment
		want string
	}{
		{Impairment{Loss: Loss{Percent: 0.1, GEModel: GilbertElliott{P: 0.1}}}, "either percent or gemodel"},
		{Impairment{Correlation: 0.5}, "jitter is not set"},
		{Impairment{Jitter: ms(1), Correlation: 1}, "below 100%"},
		{Impairment{Jitter: ms(1), Distribution: "pareto"}, "unknown \"pareto\""},
		{Impairment{Reorder: Reorder{Gap: 3}}, "percent is not set"},
		{Impairment{Filter: Filter{Port: 70000}}, "outside 1..65535"},
		{Impairment{Bandwidth: Bandwidth{Queue: 10}}, "must be above 0"},
	} {
		err := tc.imp.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.imp, err, tc.want)
		}
	}
	if err := (Impairment{}).Validate(); err != nil {
		t.Errorf("the zero impairment is valid: %v", err)
	}
}

func TestBitRate(t *testing.T) {
	for s, want := range map[string]BitRate{"800kbit": 800e3, "10mbit": 10e6, "1.5Gbit/s": 1.5e9, "64000bit": 64000} {
		got, err := ParseBitRate(s)
		if err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", s, got, err, want)
		}
		back, err := ParseBitRate(got.String())
		if err != nil || back != got {
			t.Errorf("%q does not round-trip through %q", s, got.String())
		}
	}
	for _, s := range []string{"10mbps", "10MB/s", "10", "", "-1mbit", "0mbit", "mbit"} {
		if _, err := ParseBitRate(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestDirection(t *testing.T) {
	for _, d := range []Direction{Both, ToUpstream, FromUpstream} {
		got, err := ParseDirection(d.String())
		if err != nil || got != d {
			t.Errorf("%v does not round-trip", d)
		}
	}
	var d struct {
		D Direction `yaml:"d"`
	}
	if _, err := yamlfile.Decode("x.yaml", []byte("d: sideways\n"), &d); err == nil || !strings.Contains(err.Error(), "x.yaml:1:") {
		t.Errorf("bad direction: %v", err)
	}
}

func TestNewLinkRejectsBadConfigWithoutRoot(t *testing.T) {
	for _, cfg := range []Config{{}, {Prefix: "Has-Caps"}, {Prefix: "waytoolongprefix"}, {Prefix: "ok", MTU: 100}} {
		if _, err := NewLink(t.Context(), cfg); err == nil || errors.Is(err, ErrPrivileges) {
			t.Errorf("%+v: %v, want a config error", cfg, err)
		}
	}
	if err := Cleanup(""); err == nil {
		t.Errorf("Cleanup with an empty prefix would remove every namespace; it must refuse")
	}
}

func ms(n int) units.Duration { return units.Duration(time.Duration(n) * time.Millisecond) }

func TestImpairmentJSONSchema(t *testing.T) {
	r := jsonschema.Reflector{FieldNameTag: "yaml", DoNotReference: true}
	b, err := json.Marshal(r.Reflect(&Impairment{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"syn_blackhole"`, `"gemodel"`, `"bad_loss"`, `bit(/s)?$`, `"distribution"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("schema lacks %s:\n%s", want, b)
		}
	}
}

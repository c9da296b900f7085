package tcpfault

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestNewToxicDecodesToxiproxyAttributes(t *testing.T) {
	cases := []struct {
		typ, attrs string
		want       Toxic
	}{
		{"latency", `{"latency": 100, "jitter": 10}`, &Latency{Latency: 100 * time.Millisecond, Jitter: 10 * time.Millisecond}},
		{"latency", `{"latency": "1.5ms"}`, &Latency{Latency: 1500 * time.Microsecond}},
		{"latency", ``, &Latency{}},
		{"latency", `null`, &Latency{}},
		{"bandwidth", `{"rate": 100}`, &Bandwidth{Rate: 100}},
		{"slow_close", `{"delay": 250}`, &SlowClose{Delay: 250 * time.Millisecond}},
		{"timeout", `{"timeout": 0}`, &Timeout{}},
		{"reset_peer", `{"timeout": 5}`, &ResetPeer{Timeout: 5 * time.Millisecond}},
		{"slicer", `{"average_size": 10, "size_variation": 5, "delay": 100}`, &Slicer{AverageSize: 10, SizeVariation: 5, Delay: 100 * time.Microsecond}},
		{"limit_data", `{"bytes": 1024}`, &LimitData{Bytes: 1024}},
		{"blackhole", `{"no_accept": 1}`, &Blackhole{NoAccept: true}},
		{"blackhole", `{"no_accept": false}`, &Blackhole{}},
	}
	for _, c := range cases {
		got, err := NewToxic(c.typ, json.RawMessage(c.attrs))
		if err != nil {
			t.Errorf("NewToxic(%s, %s): %v", c.typ, c.attrs, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("NewToxic(%s, %s) = %+v, want %+v", c.typ, c.attrs, got, c.want)
		}
	}
}

func TestNewToxicRefusesWithValidNames(t *testing.T) {
	_, err := NewToxic("latncy", nil)
	if !errors.Is(err, ErrUnknownToxic) || !strings.Contains(err.Error(), "latency, limit_data, reset_peer") {
		t.Errorf("unknown type: %v", err)
	}
	_, err = NewToxic("latency", json.RawMessage(`{"latency": 10, "jiter": 3}`))
	var ae *AttrError
	if !errors.As(err, &ae) || !errors.Is(err, ErrUnknownAttribute) || ae.Attr != "jiter" ||
		!strings.Contains(err.Error(), "valid: jitter, latency") {
		t.Errorf("unknown attribute: %v", err)
	}
	bad := []struct{ typ, attrs, mention string }{
		{"latency", `{"latency": -1}`, "non-negative"},
		{"latency", `{"latency": 1.5}`, "integer"},
		{"latency", `{"latency": "fast"}`, "invalid duration"},
		{"latency", `{"latency": "-3ms"}`, "negative"},
		{"latency", `{"latency": 9223372036854775807}`, "too large"},
		{"latency", `[1]`, "JSON object"},
		{"latency", `{"latency": 1} x`, "trailing"},
		{"bandwidth", `{"rate": "100"}`, "integer"},
		{"blackhole", `{"no_accept": 2}`, "true/false"},
		{"slicer", `{"average_size": 10, "size_variation": 10}`, "smaller than average_size"},
		{"slicer", `{"average_size": 0}`, "at least 1"},
	}
	for _, b := range bad {
		_, err := NewToxic(b.typ, json.RawMessage(b.attrs))
		if err == nil || !strings.Contains(err.Error(), b.mention) {
			t.Errorf("NewToxic(%s, %s) = %v, want an error mentioning %q", b.typ, b.attrs, err, b.mention)
		}
	}
}

func TestWithAttributesKeepsOthers(t *testing.T) {
	orig := &Latency{Latency: 100 * time.Millisecond, Jitter: 5 * time.Millisecond}
	got, err := WithAttributes(orig, json.RawMessage(`{"jitter": 20}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := (&Latency{Latency: 100 * time.Millisecond, Jitter: 20 * time.Millisecond}); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if orig.Jitter != 5*time.Millisecond {
		t.Error("WithAttributes modified the installed toxic")
	}
}

func TestAttributesWireForm(t *testing.T) {
	got := Attributes(&Slicer{AverageSize: 10, SizeVariation: 2, Delay: 30 * time.Microsecond})
	want := map[string]any{"average_size": int64(10), "size_variation": int64(2), "delay": int64(30)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// Toxiproxy's attributes are numbers; its clients assume so
	// (toxiproxy-cli inspect panicked on a JSON bool).
	if a := Attributes(&Blackhole{NoAccept: true}); a["no_accept"] != int64(1) {
		t.Errorf("no_accept encodes as %#v, want 1", a["no_accept"])
	}
	if a := Attributes(&Latency{Latency: 1500 * time.Microsecond}); a["latency"] != "1.5ms" {
		t.Errorf("a sub-millisecond latency encodes as %v, want the exact \"1.5ms\"", a["latency"])
	}
}

// FuzzNewToxic: any input gives a toxic or an error, never a panic; a
// decoded toxic encodes to attributes that decode to the same toxic.
func FuzzNewToxic(f *testing.F) {
	for _, typ := range Types() {
		f.Add(typ, `{}`)
	}
	f.Add("latency", `{"latency": 100, "jitter": 10}`)
	f.Add("slicer", `{"average_size": 10, "size_variation": 5, "delay": 100}`)
	f.Fuzz(func(t *testing.T, typ, attrs string) {
		tox, err := NewToxic(typ, json.RawMessage(attrs))
		if err != nil {
			return
		}
		wire, err := json.Marshal(Attributes(tox))
		if err != nil {
			t.Fatalf("encoding %+v: %v", tox, err)
		}
		again, err := NewToxic(typ, wire)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", wire, err)
		}
		if !reflect.DeepEqual(tox, again) {
			t.Fatalf("round trip %s: %+v != %+v", wire, tox, again)
		}
	})
}

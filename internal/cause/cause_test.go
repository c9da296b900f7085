package cause

import (
	"encoding/json"
	"testing"
)

func TestNamesRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range All() {
		name := c.String()
		if name == "" || seen[name] {
			t.Fatalf("cause %d has an empty or duplicate name %q", c, name)
		}
		seen[name] = true
		if p, ok := Parse(name); !ok || p != c {
			t.Fatalf("Parse(%q) = %v", name, p)
		}
		if c.Layer() == "" {
			t.Fatalf("%s has no layer", name)
		}
	}
	if len(Names()) != Count {
		t.Fatalf("Names() has %d entries, want %d", len(Names()), Count)
	}
	b, _ := json.Marshal(map[Cause]int{GatewayTimeout: 3})
	if string(b) != `{"gateway_timeout":3}` {
		t.Fatalf("JSON = %s", b)
	}
	var back map[Cause]int
	if err := json.Unmarshal(b, &back); err != nil || back[GatewayTimeout] != 3 {
		t.Fatalf("unmarshal: %v %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"nope":1}`), &back); err == nil {
		t.Fatal("an unknown cause name must not decode")
	}
}

func TestFromResponse(t *testing.T) {
	cases := []struct {
		status int
		header string
		want   Cause
	}{
		{200, "", OK},
		{302, "", OK},
		{504, "", GatewayTimeout},
		{504, "upstream_timeout", UpstreamTimeout},
		{502, "", BadGateway},
		{502, "upstream_reset", UpstreamReset},
		{503, "", ServiceUnavailable},
		{503, "breaker_open", BreakerOpen},
		{429, "", RateLimited},
		{404, "", HTTPError},
		{500, "made_up", HTTPError},
		{200, "fallback", Fallback},
	}
	for _, c := range cases {
		if got := FromResponse(c.status, c.header); got != c.want {
			t.Errorf("FromResponse(%d, %q) = %s, want %s", c.status, c.header, got, c.want)
		}
	}
}

func TestErrorsAndLayers(t *testing.T) {
	for c, want := range map[Cause]bool{OK: false, Fallback: false, Aborted: false, Dropped: true, GatewayTimeout: true, DBTimeout: true} {
		if c.IsError() != want {
			t.Errorf("%s.IsError() = %v", c, !want)
		}
	}
	if ClientTimeout.Layer() != LayerClient || GatewayTimeout.Layer() != LayerGateway || UpstreamTimeout.Layer() != LayerUpstream || DBTimeout.Layer() != LayerDB {
		t.Fatal("layers are wrong")
	}
	if GatewayTimeout.Status() != 504 || UpstreamConnectFailure.Status() != 502 || BreakerOpen.Status() != 503 || ClientGone.Status() != 499 {
		t.Fatal("statuses are wrong")
	}
}

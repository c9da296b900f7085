package autoscale

import (
	"math"
	"testing"
	"time"

	"github.com/cascadehq/cascade/internal/units"
)

func dur(d time.Duration) *units.Duration { u := units.Duration(d); return &u }

func spec(mut func(*Spec)) Settings {
	s := Spec{Upstream: "api", MinReplicas: 2, MaxReplicas: 10, Metric: InFlight, Target: "4"}
	if mut != nil {
		mut(&s)
	}
	if errs := s.Validate(); len(errs) > 0 {
		panic(errs[0].Error())
	}
	return s.Settings()
}

type step struct {
	at      time.Duration
	current int
	value   float64
	want    int
	raw     int // 0: not checked
	reason  string
	dead    bool
}

func run(t *testing.T, s Settings, steps []step) {
	t.Helper()
	h := New(s)
	for i, st := range steps {
		d := h.Step(st.at, st.current, st.value)
		if d.To != st.want {
			t.Fatalf("step %d (t=%v current=%d value=%v): to = %d, want %d (%+v)", i, st.at, st.current, st.value, d.To, st.want, d)
		}
		if st.raw != 0 && d.Raw != st.raw {
			t.Errorf("step %d: raw = %d, want %d", i, d.Raw, st.raw)
		}
		if st.reason != "" && d.Reason != st.reason {
			t.Errorf("step %d: reason = %q, want %q", i, d.Reason, st.reason)
		}
		if d.DeadBand != st.dead {
			t.Errorf("step %d: dead band = %v, want %v", i, d.DeadBand, st.dead)
		}
	}
}

func TestHPA(t *testing.T) {
	s := time.Second
	cases := []struct {
		name  string
		spec  Settings
		steps []step
	}{
		{"ceil(current x ratio)", spec(nil), []step{
			{at: 0, current: 2, value: 8, want: 4, raw: 4},        // ratio 2
			{at: 15 * s, current: 4, value: 5.1, want: 6, raw: 6}, // ratio 1.275 → ceil(5.1) = 6
		}},
		{"inside the 10% tolerance nothing moves", spec(nil), []step{
			// Exactly ±10% is outside in float64, as in Kubernetes
			// (|1 - 4.4/4| = 0.10000000000000009 > 0.1).
			{at: 0, current: 2, value: 4.39, want: 2, raw: 2, dead: true},   // +9.75%: inside
			{at: s, current: 2, value: 3.61, want: 2, raw: 2, dead: true},   // -9.75%: inside
			{at: 2 * s, current: 2, value: 4.4, want: 3, raw: 3},            // +10%: outside
			{at: 3 * s, current: 3, value: 4, want: 3, raw: 3, dead: false}, // on target: not a dead band
		}},
		{"default scale-up policy: max(4 pods, 100%) per 15s", spec(nil), []step{
			{at: 0, current: 2, value: 40, want: 6, raw: 20, reason: "scale-up limited by policy"},
			{at: 5 * s, current: 6, value: 40, want: 6, raw: 60, reason: "scale-up limited by policy"}, // 4 added in the period: start 2 → limit 6
			{at: 16 * s, current: 6, value: 40, want: 10, raw: 60, reason: "too many replicas: max_replicas"},
		}},
		{"pods policy per short period", spec(func(sp *Spec) {
			sp.Behavior.ScaleUp = &Rules{Policies: []Policy{{Type: Pods, Value: 2, Period: units.Duration(2 * s)}}}
		}), []step{
			{at: 0, current: 2, value: 40, want: 4},
			{at: s, current: 4, value: 40, want: 4}, // 2 added within 2s
			{at: 2 * s, current: 4, value: 40, want: 6},
			{at: 4 * s, current: 6, value: 40, want: 8},
		}},
		{"select min takes the smaller policy", spec(func(sp *Spec) {
			sp.Behavior.ScaleUp = &Rules{SelectPolicy: SelectMin, Policies: []Policy{
				{Type: Pods, Value: 1, Period: units.Duration(s)}, {Type: Percent, Value: 100, Period: units.Duration(s)}}}
		}), []step{{at: 0, current: 2, value: 40, want: 3}}},
		{"scale-up disabled", spec(func(sp *Spec) { sp.Behavior.ScaleUp = &Rules{SelectPolicy: SelectDisabled} }), []step{
			{at: 0, current: 2, value: 40, want: 2, raw: 20}}},
		{"scale-down waits out the 300s stabilization window", spec(nil), []step{
			{at: 0, current: 8, value: 4, want: 8},
			{at: 15 * s, current: 8, value: 1, want: 8, raw: 2}, // highest recommendation in the window is 8
			{at: 299 * s, current: 8, value: 1, want: 8},
			{at: 301 * s, current: 8, value: 1, want: 2, raw: 2}, // the 8s aged out; 100%/15s allows it
		}},
		{"scale-down by percent policy", spec(func(sp *Spec) {
			sp.Behavior.ScaleDown = &Rules{StabilizationWindow: dur(0), Policies: []Policy{{Type: Percent, Value: 50, Period: units.Duration(10 * s)}}}
		}), []step{
			{at: 0, current: 10, value: 0.4, want: 5, raw: 1, reason: "scale-down limited by policy"}, // 10 × 50% = 5
			{at: 5 * s, current: 5, value: 0.4, want: 5},                                              // 5 removed in the period: start 10 → limit 5
			{at: 11 * s, current: 5, value: 0.4, want: 2, reason: "too few replicas: min_replicas"},   // int(5 × 0.5) = 2 = min
		}},
		{"stabilization up window holds the lowest", spec(func(sp *Spec) {
			sp.Behavior.ScaleUp = &Rules{StabilizationWindow: dur(3 * s)}
		}), []step{
			{at: 0, current: 2, value: 4, want: 2},
			{at: s, current: 2, value: 12, want: 2, raw: 6}, // lowest in the last 3s is 2
			{at: 2 * s, current: 2, value: 12, want: 2},
			{at: 4 * s, current: 2, value: 12, want: 6}, // the 2 at t=0 aged out
		}},
		{"outside min/max is corrected first", spec(nil), []step{
			{at: 0, current: 12, value: 100, want: 10, reason: "above max_replicas"},
			{at: s, current: 1, value: 0, want: 2, reason: "below min_replicas"},
		}},
		{"no metric keeps the count", spec(nil), []step{{at: 0, current: 3, value: math.NaN(), want: 3, reason: "no metric"}}},
		{"p95 latency is a value target", spec(func(sp *Spec) { sp.Metric, sp.Target = P95Latency, "50ms" }), []step{
			{at: 0, current: 2, value: 0.150, want: 6, raw: 6}, // 150ms/50ms = 3 → ceil(2×3)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { run(t, tc.spec, tc.steps) })
	}
}

func TestReplayRescalesPerReplicaMetrics(t *testing.T) {
	s := spec(func(sp *Spec) {
		sp.SyncPeriod = units.Duration(time.Second)
		sp.Behavior.ScaleUp = &Rules{Policies: []Policy{{Type: Pods, Value: 4, Period: units.Duration(time.Second)}}}
	})
	// Total in-flight of 24 with the replicas fixed at 2: an HPA would have
	// gone 2 → 6 (24/2 = 12 per replica, ratio 3, ceil 6), then at 6 replicas
	// 24/6 = 4 per replica is on target.
	var samples []Sample
	for i := 0; i < 5; i++ {
		samples = append(samples, Sample{At: time.Duration(i) * time.Second, Replicas: 2, Total: 24})
	}
	ds := Replay(s, samples)
	got := []int{}
	for _, d := range ds {
		got = append(got, d.To)
	}
	want := []int{6, 6, 6, 6, 6}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("replicas = %v, want %v", got, want)
		}
	}
	if ds[1].Value != 4 || ds[1].Ratio != 1 {
		t.Errorf("after scaling the per-replica value = %v (ratio %v), want 4 (1)", ds[1].Value, ds[1].Ratio)
	}
}

func TestDeadBandReport(t *testing.T) {
	// Target 4 with a steady 4.3 per replica: 7.5% above target, inside the
	// tolerance: a real HPA never scales although the metric is over target.
	s := spec(func(sp *Spec) { sp.SyncPeriod = units.Duration(time.Second) })
	var samples []Sample
	for i := 0; i < 10; i++ {
		samples = append(samples, Sample{At: time.Duration(i) * time.Second, Replicas: 2, Total: 8.6})
	}
	ds := Replay(s, samples)
	r := DeadBand(ds)
	if r.InBand != 10 || r.AboveInBand != 10 || r.First != 0 || r.Last != 9*time.Second {
		t.Fatalf("dead band = %+v", r)
	}
	for _, d := range ds {
		if d.Scaled() {
			t.Fatalf("scaled inside the dead band: %+v", d)
		}
	}
}

func TestValidate(t *testing.T) {
	bad := Spec{Upstream: "api", MinReplicas: 5, MaxReplicas: 3, Metric: "cpu", Target: "x", SyncPeriod: units.Duration(time.Millisecond),
		Behavior: Behavior{ScaleUp: &Rules{SelectPolicy: "most", Policies: []Policy{{Type: "nodes", Value: 0}}}}}
	errs := bad.Validate()
	want := map[string]bool{"max_replicas": false, "metric": false, "sync_period": false, "behavior.scale_up.select_policy": false,
		"behavior.scale_up.policies[0].type": false, "behavior.scale_up.policies[0].value": false, "behavior.scale_up.policies[0].period": false}
	for _, e := range errs {
		if _, ok := want[e.Path]; ok {
			want[e.Path] = true
		} else {
			t.Errorf("unexpected error %v", e)
		}
	}
	for p, seen := range want {
		if !seen {
			t.Errorf("no error for %s (got %v)", p, errs)
		}
	}
	for metric, target := range map[string]string{InFlight: "-1", RequestRate: "fast", P95Latency: "0ms"} {
		s := Spec{Upstream: "a", MaxReplicas: 2, Metric: metric, Target: target}
		if errs := s.Validate(); len(errs) != 1 || errs[0].Path != "target" {
			t.Errorf("%s target %q: errors %v", metric, target, errs)
		}
	}
}

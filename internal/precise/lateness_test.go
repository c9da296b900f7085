package precise

import (
	"strings"
	"testing"
	"time"
)

func TestLatenessBuckets(t *testing.T) {
	var r Recorder
	for _, d := range []time.Duration{-time.Microsecond, 0, 50 * time.Microsecond, 51 * time.Microsecond,
		499 * time.Microsecond, 500 * time.Microsecond, 800 * time.Microsecond, time.Second} {
		r.Record(d)
	}
	l := r.Snapshot()
	want := [len(bounds) + 1]uint64{3, 1, 0, 2, 1, 0, 0, 1}
	if l.Counts != want || l.Max != time.Second || l.Releases() != 8 {
		t.Fatalf("got %+v, want counts %v, max 1s", l, want)
	}
	if got := l.Within(500 * time.Microsecond); got != 6.0/8 {
		t.Errorf("within 500µs = %v, want 6/8", got)
	}
	if got := l.Within(700 * time.Microsecond); got != 6.0/8 {
		t.Errorf("within 700µs (between bounds: up to the lower) = %v, want 6/8", got)
	}
	if got := (Lateness{}).Within(time.Millisecond); got != 1 {
		t.Errorf("none counted: within = %v, want 1", got)
	}
	var sum Lateness
	sum.Add(l)
	sum.Add(Lateness{Counts: [len(bounds) + 1]uint64{1}, Max: time.Millisecond})
	if sum.Releases() != 9 || sum.Counts[0] != 4 || sum.Max != time.Second {
		t.Errorf("sum %+v", sum)
	}
	if s := l.String(); !strings.Contains(s, "75.0% of 8 within 0.5 ms") || !strings.Contains(s, "max 1000.00 ms late") {
		t.Errorf("String() = %q", s)
	}
	var nilRec *Recorder
	nilRec.Record(time.Second) // a wait nobody accounts for
	if nilRec.Snapshot().Releases() != 0 {
		t.Error("nil recorder counted")
	}
}

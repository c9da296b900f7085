package faults

import (
	"context"
	"testing"
	"time"
)

// Real timers, coarse bounds: never short, a cancelled delay ends early
// and is not counted, a completed one is.
func TestDelayWait(t *testing.T) {
	var w delay
	ctx := context.Background()
	s := time.Now()
	if !w.wait(ctx, 15*time.Millisecond) || time.Since(s) < 15*time.Millisecond {
		t.Fatalf("15ms delay: returned after %s", time.Since(s))
	}
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(10*time.Millisecond, cancel)
	s = time.Now()
	if w.wait(cctx, 10*time.Second) || time.Since(s) > 5*time.Second {
		t.Fatalf("cancelled after 10ms: returned after %s", time.Since(s))
	}
	if l := w.late.Snapshot(); l.Releases() != 1 || l.Max < 0 {
		t.Errorf("lateness %+v: want the one completed delay, not early", l)
	}
	var none *delay
	s = time.Now()
	if !none.wait(ctx, 5*time.Millisecond) || time.Since(s) < 5*time.Millisecond {
		t.Errorf("nil delay: returned after %s for 5ms", time.Since(s))
	}
}

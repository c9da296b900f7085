package precise

import (
	"sync"
	"testing"
	"time"
)

// Real sleeps, coarse bounds: a sleep is never short, and past the cap a
// caller is told to wait elsewhere instead of blocking a thread.
func TestSleepers(t *testing.T) {
	var s Sleepers
	start := time.Now()
	if !s.SleepUntil(start.Add(5*time.Millisecond)) || time.Since(start) < 5*time.Millisecond {
		t.Fatalf("returned after %s for 5ms", time.Since(start))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := 0
	until := time.Now().Add(time.Second) // far enough that all start before any ends
	for range maxSleepers + 8 {
		wg.Go(func() {
			if !s.SleepUntil(until) {
				mu.Lock()
				refused++
				mu.Unlock()
			} else if time.Now().Before(until) {
				t.Error("woke before its deadline")
			}
		})
	}
	wg.Wait()
	if refused < 8 {
		t.Errorf("%d of %d sleepers refused, want at least 8 over the cap of %d", refused, maxSleepers+8, maxSleepers)
	}
	if s.n.Load() != 0 {
		t.Errorf("%d sleepers still counted", s.n.Load())
	}
}

package run

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// A slow setup step says what it is doing, again while it lasts, and how it
// ended; a quick one says nothing. (A first containerised run spent two and
// a half minutes building a static binary without a word.)
func TestSlowSetupStepSaysWhatItDoes(t *testing.T) {
	defer func(s, e time.Duration) { slowStep, stillEvery = s, e }(slowStep, stillEvery)
	slowStep, stillEvery = 30*time.Millisecond, 40*time.Millisecond
	var mu sync.Mutex
	var said []string
	e := &upstreamEnv{notice: func(m string) { mu.Lock(); said = append(said, m); mu.Unlock() }}

	if err := e.step("quick", func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := e.step("building the image", func() error { time.Sleep(150 * time.Millisecond); return nil }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := e.step("starting replica api[0]", func() error { time.Sleep(60 * time.Millisecond); return boom }); err != boom {
		t.Fatalf("step returned %v, want fn's error", err)
	}
	mu.Lock()
	defer mu.Unlock()
	got := strings.Join(said, "\n")
	if strings.Contains(got, "quick") {
		t.Errorf("a quick step spoke:\n%s", got)
	}
	for _, want := range []string{"building the image...", "still building the image (", "building the image: done in ",
		"starting replica api[0]...", "starting replica api[0]: failed after "} {
		if !strings.Contains(got, want) {
			t.Errorf("notices lack %q:\n%s", want, got)
		}
	}
}

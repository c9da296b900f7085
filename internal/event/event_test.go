package event

import (
	"encoding/json"
	"sync"
	"testing"
	"time"
)

func TestEventJSONRoundTrip(t *testing.T) {
	e := Event{T: 1500*time.Millisecond + 250*time.Microsecond, Source: "gateway", Type: "breaker.open", Target: "api",
		Attrs: map[string]any{"failure_rate": 0.5}}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"t":1.50025,"source":"gateway","type":"breaker.open","target":"api","attrs":{"failure_rate":0.5}}` {
		t.Fatalf("JSON = %s", b)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil || back.T != e.T || back.Type != e.Type || back.Attrs["failure_rate"] != 0.5 {
		t.Fatalf("round trip: %+v %v", back, err)
	}
}

func TestClockReset(t *testing.T) {
	c := NewClock()
	time.Sleep(20 * time.Millisecond)
	if c.Now() < 20*time.Millisecond {
		t.Fatal("clock did not advance")
	}
	zero := time.Now()
	c.Reset(zero)
	if n := c.Now(); n < 0 || n > 10*time.Millisecond {
		t.Fatalf("after Reset, Now = %s", n)
	}
	if c.Offset(zero.Add(-time.Second)) != -time.Second || !c.At(time.Second).Equal(zero.Add(time.Second)) {
		t.Fatal("Offset/At disagree with the zero")
	}
}

func TestMemoryAndTeeAreConcurrent(t *testing.T) {
	var a, b Memory
	s := Tee(&a, &b)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				s.Emit(Event{Type: "x"})
			}
		}()
	}
	wg.Wait()
	if len(a.Events()) != 800 || len(b.Events()) != 800 {
		t.Fatalf("got %d and %d events", len(a.Events()), len(b.Events()))
	}
}

func TestDeferredRestampsSetupEvents(t *testing.T) {
	var m Memory
	d := NewDeferred(&m)
	d.Emit(Event{T: 100 * time.Millisecond, Type: "container.ready"})
	d.Emit(Event{T: 1500 * time.Millisecond, Type: "upstream.listen"})
	if len(m.Events()) != 0 {
		t.Fatalf("events passed on before Release: %v", m.Events())
	}
	d.Release(2 * time.Second) // the load started 2 s after the first zero
	d.Emit(Event{T: 0, Type: "load.start"})
	d.Release(time.Hour) // only the first counts
	d.Emit(Event{T: time.Second, Type: "fault.start"})
	got := m.Events()
	want := []struct {
		typ string
		t   time.Duration
	}{{"container.ready", -1900 * time.Millisecond}, {"upstream.listen", -500 * time.Millisecond}, {"load.start", 0}, {"fault.start", time.Second}}
	if len(got) != len(want) {
		t.Fatalf("events = %v", got)
	}
	for i, w := range want {
		if got[i].Type != w.typ || got[i].T != w.t {
			t.Errorf("event %d = %s at %v, want %s at %v", i, got[i].Type, got[i].T, w.typ, w.t)
		}
	}
}

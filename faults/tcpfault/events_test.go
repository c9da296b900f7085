package tcpfault

import (
	"testing"
	"time"
)

func TestEventsAndCounters(t *testing.T) {
	up := httpUpstream(t, nil)
	mem, sink := memSink()
	p := startProxy(t, up.Listener.Addr().String(), sink, func(c *Config) { c.ApplyEvery = time.Hour })
	add(t, p, NewSpec("lat", Downstream, &Latency{Latency: 5 * time.Millisecond}))
	add(t, p, ToxicSpec{Name: "never", Stream: Upstream, Toxicity: 0, Toxic: &Timeout{}})
	c := keepAliveClient()
	for i := 0; i < 10; i++ {
		timedGet(t, c, p.Addr())
	}
	if _, err := p.UpdateToxic(NewSpec("lat", Downstream, &Latency{Latency: 6 * time.Millisecond})); err != nil {
		t.Fatal(err)
	}
	timedGet(t, c, p.Addr())

	s := p.Stats()
	if s.ToxicsAdded != 2 || s.ToxicsUpdated != 1 || s.ToxicsRemoved != 0 {
		t.Errorf("proxy stats %+v", s)
	}
	if lat := s.Toxics["lat"]; lat.Conns != 1 || lat.Requests != 11 || lat.Updates != 1 || lat.BytesDelayed == 0 || lat.ConnsSeen != 2 {
		t.Errorf("lat stats %+v: want 1 connection, 11 requests, seen for 2 versions", lat)
	}
	if nv := s.Toxics["never"]; nv.Conns != 0 || nv.ConnsSeen != 1 || nv.ConnsDrawn != 0 {
		t.Errorf("toxicity-0 stats %+v: want seen on 1 connection and never acting", nv)
	}

	p.RemoveToxic("lat")
	p.ResetToxics()
	if got := len(eventsOf(mem, "fault.start")); got != 2 {
		t.Errorf("%d fault.start events, want 2", got)
	}
	if got := len(eventsOf(mem, "fault.update")); got != 1 {
		t.Errorf("%d fault.update events, want 1", got)
	}
	// With ApplyEvery an hour: one fault.apply at the first application,
	// one flushing the rest at removal, and none for the toxic that never acted.
	applies := eventsOf(mem, "fault.apply")
	if len(applies) != 2 || applies[0].Attr("toxic") != "lat" || applies[1].Attr("toxic") != "lat" {
		t.Fatalf("fault.apply events %+v", applies)
	}
	if r := applies[0].Attrs["requests"].(uint64) + applies[1].Attrs["requests"].(uint64); r != 11 {
		t.Errorf("fault.apply events cover %d requests, want 11", r)
	}
	stops := eventsOf(mem, "fault.stop")
	if len(stops) != 2 {
		t.Fatalf("%d fault.stop events", len(stops))
	}
	for _, e := range stops {
		if e.Attr("toxic") == "lat" && e.Attrs["requests"].(uint64) != 11 {
			t.Errorf("fault.stop for lat: %+v", e.Attrs)
		}
		if te := e.Attrs["took_effect"].(bool); te != (e.Attr("toxic") == "lat") {
			t.Errorf("fault.stop for %s: took_effect = %v", e.Attr("toxic"), te)
		}
		if e.Attr("toxic") == "never" && e.Attrs["conns"].(uint64) != 0 {
			t.Errorf("fault.stop for never: %+v", e.Attrs)
		}
		if e.Source != "tcpfault" || e.Target != "test" {
			t.Errorf("event source/target %q/%q", e.Source, e.Target)
		}
	}
	if s := p.Stats(); s.ToxicsRemoved != 2 || len(s.Toxics) != 0 {
		t.Errorf("after removal: %+v", s)
	}
}

func TestApplyEventsAreAggregated(t *testing.T) {
	up := httpUpstream(t, nil)
	mem, sink := memSink()
	p := startProxy(t, up.Listener.Addr().String(), sink, func(c *Config) { c.ApplyEvery = 100 * time.Millisecond })
	add(t, p, NewSpec("lat", Downstream, &Latency{Latency: 2 * time.Millisecond}))
	c := keepAliveClient()
	deadline := time.Now().Add(550 * time.Millisecond)
	n := 0
	for time.Now().Before(deadline) {
		timedGet(t, c, p.Addr())
		n++
	}
	applies := len(eventsOf(mem, "fault.apply"))
	if applies < 2 || applies > 8 || applies >= n {
		t.Errorf("%d fault.apply events for %d applications over ~550ms at one per 100ms", applies, n)
	}
}

func TestDownEmitsFaultEvents(t *testing.T) {
	addr, _ := tcpUpstream(t, echo)
	mem, sink := memSink()
	p := startProxy(t, addr, sink)
	p.SetEnabled(false)
	p.SetEnabled(true)
	st, sp := eventsOf(mem, "fault.start"), eventsOf(mem, "fault.stop")
	if len(st) != 1 || st[0].Attr("type") != "down" || len(sp) != 1 || sp[0].Attr("type") != "down" || sp[0].T < st[0].T {
		t.Errorf("start %+v stop %+v", st, sp)
	}
}

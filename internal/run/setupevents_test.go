package run

import (
	"testing"
	"time"

	"github.com/cascadehq/cascade/results"
)

// The events of the setup (replicas listening, the gateway's first health
// checks) come before load.start in events.jsonl and carry negative times on
// the run's clock, whose zero is the load's start. They used to carry their
// offset from the setup's start and sit after load.start's 0, as if they had
// happened during the load.
func TestSetupEventsComeBeforeTheLoad(t *testing.T) {
	o := runScenarioOut(t, `name: setup-events
upstreams:
  - {name: api, replicas: 3, latency: 1ms}
gateway:
  upstreams:
    - {name: api, health_check: {path: /, interval: 50ms}}
  routes:
    - {path: /, upstream: api}
load:
  rate: 20/s
  duration: 500ms
  requests: [{path: /}]
`)
	r, err := results.Load(o.Dir)
	if err != nil {
		t.Fatal(err)
	}
	start, listens := -1, 0
	for i, e := range r.Events {
		switch {
		case e.Type == "load.start":
			start = i
			if e.T != 0 {
				t.Errorf("load.start at %v", e.T)
			}
		case e.Type == "upstream.listen":
			listens++
			if start >= 0 || e.T > 0 || e.T < -10*time.Second {
				t.Errorf("event %d, %s %s at %v, load.start at index %d: not before the load", i, e.Type, e.Target, e.T, start)
			}
		case start >= 0 && e.T < 0:
			t.Errorf("event %d, %s %s at %v: after load.start in the file, before it in time", i, e.Type, e.Target, e.T)
		}
	}
	if start < 0 || listens != 3 {
		t.Fatalf("load.start at index %d, %d upstream.listen events; want one, and 3", start, listens)
	}
}

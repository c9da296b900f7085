package verdict

import (
	"strings"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/cascadehq/cascade/internal/cause"
	"github.com/cascadehq/cascade/internal/event"
	"github.com/cascadehq/cascade/results"
)

// A db_timeout reaches its caller after the pool wait plus the statement
// timeout: the database's timer starts once the request holds a
// connection. Three requests on a one-connection pool time out at 150,
// 300 and 450 ms against a 150 ms statement_timeout; the database
// reported waits of up to 300 ms, so all three were decided by the
// database at its timeout. Without that report, two are outside the band.
func TestCascadeAllowsTheDatabasePoolWait(t *testing.T) {
	st := results.NewStats()
	st.ByCause = &[cause.Count]*hdr.Histogram{}
	h := results.NewHistogram()
	for _, ms := range []int64{151, 302, 453} {
		_ = h.RecordValue(ms * 1000)
	}
	st.ByCause[cause.DBTimeout], st.Causes[cause.DBTimeout] = h, 3
	c := &Cascade{Name: "c", Layers: []Layer{{Name: "client", Causes: []cause.Cause{cause.ClientTimeout}, Timeouts: []time.Duration{5 * time.Second}},
		{Name: "db", Causes: []cause.Cause{cause.DBTimeout}, Timeouts: []time.Duration{150 * time.Millisecond}}}, Expect: "db"}
	in := func(evs ...event.Event) *Input {
		return &Input{Phases: map[string]*Phase{"run": {Summary: results.PhaseSummary{Name: "run", End: 10}, Stats: st}}, Events: evs}
	}
	r := c.Evaluate(in())
	if r.Pass || !strings.Contains(r.Evidence, "2 outside") {
		t.Fatalf("without the database's report: pass %v, %s; want 2 outside the band", r.Pass, r.Evidence)
	}
	waited := event.Event{T: 2 * time.Second, Type: "db.timeout", Attrs: map[string]any{"count": 3, "max_wait_ms": 301.5}}
	r = c.Evaluate(in(waited))
	if !r.Pass || !strings.Contains(r.Evidence, "waiting for a connection before the database's timer") {
		t.Fatalf("with waits of up to 301.5 ms: pass %v, %s", r.Pass, r.Evidence)
	}
	// A report from outside the phase does not widen its band.
	waited.T = 30 * time.Second
	if r = c.Evaluate(in(waited)); r.Pass {
		t.Fatalf("a wait reported after the phase widened its band: %s", r.Evidence)
	}
}

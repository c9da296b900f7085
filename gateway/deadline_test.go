package gateway

import (
	"strings"
	"testing"
	"time"
)

// The remaining budget an attempt carries is rounded up to whole
// milliseconds: 0 says the caller has given up, and the upstreams count such
// an attempt as late, which one sent with 0.4 ms left is not.
func TestDeadlineHeaderRoundsUp(t *testing.T) {
	for _, tc := range []struct {
		budget time.Duration
		want   string
	}{
		{400 * time.Microsecond, "1"},
		{time.Millisecond, "1"},
		{1500 * time.Microsecond, "2"},
		{0, "0"},
		{-time.Millisecond, "0"},
	} {
		ex := &exchange{rt: &route{prop: propDeadline}}
		ex.buildAttempt(1, tc.budget)
		if !strings.Contains(string(ex.out), "X-Cascade-Deadline-Ms: "+tc.want+"\r\n") {
			t.Errorf("budget %s: %q", tc.budget, ex.out)
		}
	}
}

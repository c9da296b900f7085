//go:build !linux

package precise

import (
	"runtime"
	"time"
)

// SleepUntil yields until t where the Linux timer-slack control is not
// available; callers keep the stretch short (see the Linux version).
func SleepUntil(t time.Time) {
	for time.Now().Before(t) {
		runtime.Gosched()
	}
}

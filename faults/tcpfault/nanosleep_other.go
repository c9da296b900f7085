//go:build !linux

package tcpfault

import (
	"runtime"
	"time"
)

// nanosleepUntil yields until t where the Linux timer-slack control is not
// available; the wait is at most the handoff.
func nanosleepUntil(t time.Time) {
	for time.Now().Before(t) {
		runtime.Gosched()
	}
}

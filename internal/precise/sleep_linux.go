package precise

import (
	"syscall"
	"time"
)

const prSetTimerslack = 29 // PR_SET_TIMERSLACK, linux/prctl.h

// SleepUntil blocks the calling thread (not just the goroutine) until t,
// for the last stretch of a precise wait: a Go timer wakes its goroutine
// only as finely as the runtime's network poller sleeps (whole ms on
// Linux), a kernel nanosleep lands ~20–50 µs after t. The thread's timer
// slack (default 50 µs, by which the kernel may postpone a wake-up to batch
// timers) is set to 1 ns first and stays so, which only makes the thread's
// later sleeps more punctual. The goroutine is not locked to its thread: a
// locked goroutine returning from a blocking call whose processor was
// taken must wait for that processor to be handed back to its own thread,
// an extra wake-up on a busy machine; at worst, a goroutine moved between
// the two calls sleeps with the default slack.
//
// A thread blocked here keeps its processor (P) until sysmon retakes it
// (20 µs–10 ms later), and a held P does not poll the network: callers
// keep the stretch short (a few ms) and cap how many sleep at once.
func SleepUntil(t time.Time) {
	syscall.Syscall(syscall.SYS_PRCTL, prSetTimerslack, 1, 0)
	for r := time.Until(t); r > 0; r = time.Until(t) { // again after EINTR (Go's preemption signals)
		ts := syscall.NsecToTimespec(int64(r))
		syscall.Nanosleep(&ts, nil)
	}
}

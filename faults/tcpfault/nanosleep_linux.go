package tcpfault

import (
	"runtime"
	"syscall"
	"time"
)

const prSetTimerslack = 29 // PR_SET_TIMERSLACK, linux/prctl.h

// nanosleepUntil blocks the calling thread until t. The thread's timer
// slack (default 50 µs, by which the kernel may postpone the wake-up to
// batch timers) is set to 1 ns first; it stays so for the thread, which
// only makes its later sleeps more punctual.
func nanosleepUntil(t time.Time) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	syscall.Syscall(syscall.SYS_PRCTL, prSetTimerslack, 1, 0)
	for r := time.Until(t); r > 0; r = time.Until(t) { // again after EINTR (Go's preemption signals)
		ts := syscall.NsecToTimespec(int64(r))
		syscall.Nanosleep(&ts, nil)
	}
}

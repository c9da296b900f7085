package packet

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestInNetnsDiscardsAThreadThatCannotReturn makes the switch back fail
// (fn drops CAP_SYS_ADMIN from its own thread, so setns is refused) and
// checks that the thread is destroyed rather than handed to other goroutines
// while it sits in the link's namespace.
func TestInNetnsDiscardsAThreadThatCannotReturn(t *testing.T) {
	l := newTestLink(t, Config{})
	home := threadNetns(t)
	var tid int
	var inside string
	err := l.in(&l.upNS, func() error {
		tid = unix.Gettid()
		inside, _ = os.Readlink("/proc/thread-self/ns/net")
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			return err
		}
		data[0].Effective &^= 1 << unix.CAP_SYS_ADMIN // capabilities are per thread
		return unix.Capset(&hdr, &data[0])
	})
	if err == nil || !strings.Contains(err.Error(), "thread discarded") {
		t.Fatalf("in: %v, want the switch back to fail", err)
	}
	if inside == home || inside == "" {
		t.Fatalf("fn ran in %q, not in the link's namespace", inside)
	}
	// The runtime tears the thread down when its goroutine exits locked,
	// except the process's main thread, which it cannot end: that one it
	// parks for good (runtime.mexit "wedges" m0), so it never runs Go code
	// again either. Which thread the goroutine got is the scheduler's choice.
	deadline := time.Now().Add(5 * time.Second)
	for tid != os.Getpid() {
		_, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid))
		if os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			ns, _ := os.Readlink("/proc/self/task/" + strconv.Itoa(tid) + "/ns/net")
			t.Fatalf("thread %d still exists (in %s) after its switch back failed", tid, ns)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// And the link still works from fresh threads.
	ln, err := l.Listen("tcp", ":0")
	if err != nil {
		t.Fatalf("Listen after a discarded thread: %v", err)
	}
	ln.Close()
}

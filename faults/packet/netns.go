package packet

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrPrivileges is returned (wrapped) when the process may not create
// network namespaces and TUN devices.
var ErrPrivileges = errors.New("packet faults need root: CAP_NET_ADMIN and CAP_SYS_ADMIN, and /dev/net/tun")

// CheckPrivileges reports whether this process can build a Link: it needs
// CAP_NET_ADMIN (TUN devices, addresses, routes), CAP_SYS_ADMIN (creating
// and entering network namespaces, bind-mounting them under /run/netns) and a
// readable and writable /dev/net/tun.
func CheckPrivileges() error {
	eff, err := effectiveCaps()
	if err != nil {
		return fmt.Errorf("%w: cannot read capabilities: %v", ErrPrivileges, err)
	}
	var missing []string
	if eff&(1<<unix.CAP_NET_ADMIN) == 0 {
		missing = append(missing, "CAP_NET_ADMIN")
	}
	if eff&(1<<unix.CAP_SYS_ADMIN) == 0 {
		missing = append(missing, "CAP_SYS_ADMIN")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s (run as root, or grant them with setcap or --cap-add)", ErrPrivileges, strings.Join(missing, " and "))
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: cannot open /dev/net/tun: %v (load the tun module, or pass --device /dev/net/tun to a container)", ErrPrivileges, err)
	}
	unix.Close(fd)
	return nil
}

// effectiveCaps reads CapEff from /proc/self/status.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no CapEff line in /proc/self/status")
}

// inNetns runs fn on an OS thread switched into the network namespace ns.
//
// A socket belongs to the namespace of the thread that created it and keeps
// it for life, so fn can listen or dial there and hand the socket to any
// goroutine. The work runs on a fresh goroutine locked to its thread, never
// on the caller's: if the switch back fails, the goroutine ends still locked
// and the Go runtime destroys the thread instead of reusing it, so no other
// goroutine ever runs in the wrong namespace. (New threads are cloned from
// the runtime's template thread, not from locked ones, so they do not
// inherit the namespace either.)
func inNetns(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// From here on, every early return leaves the thread locked: it dies
		// with the goroutine.
		home, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("read this thread's network namespace: %w", err)
			return
		}
		defer home.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(home); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return from network namespace (thread discarded): %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// newNamedNetns creates the network namespace name (bind-mounted under
// /run/netns, so `ip netns exec` reaches it and Cleanup finds it after a
// crash) and runs setup inside it on the same thread.
func newNamedNetns(name string, setup func() error) (netns.NsHandle, error) {
	type result struct {
		h   netns.NsHandle
		err error
	}
	rc := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // see inNetns: stays locked on every failure
		home, err := netns.Get()
		if err != nil {
			rc <- result{netns.None(), fmt.Errorf("read this thread's network namespace: %w", err)}
			return
		}
		defer home.Close()
		if _, err := os.Lstat(netnsDir + "/" + name); err == nil {
			rc <- result{netns.None(), fmt.Errorf("network namespace %s already exists (a leftover of a killed run? packet.Cleanup removes it): %w", name, os.ErrExist)}
			runtime.UnlockOSThread()
			return
		}
		// NewNamed unshares the calling thread into the new namespace.
		h, err := netns.NewNamed(name)
		if err != nil {
			// NewNamed leaves an empty mount point behind when the bind
			// mount fails; the name was free a moment ago, so it is ours.
			if !errors.Is(err, os.ErrExist) {
				_ = deleteNamedNetns(name)
			}
			rc <- result{netns.None(), fmt.Errorf("create network namespace %s: %w", name, err)}
			return
		}
		serr := setup()
		if err := netns.Set(home); err != nil {
			h.Close()
			_ = deleteNamedNetns(name)
			rc <- result{netns.None(), fmt.Errorf("return from network namespace %s (thread discarded): %w", name, err)}
			return
		}
		runtime.UnlockOSThread()
		if serr != nil {
			h.Close()
			_ = deleteNamedNetns(name)
			rc <- result{netns.None(), serr}
			return
		}
		rc <- result{h, nil}
	}()
	r := <-rc
	return r.h, r.err
}

// netnsDir is where named namespaces are bind-mounted (as by `ip netns add`).
const netnsDir = "/run/netns"

// deleteNamedNetns unmounts and removes a named namespace. The namespace
// itself disappears once nothing (a socket, a thread, an open handle) still
// refers to it.
func deleteNamedNetns(name string) error {
	err := netns.DeleteNamed(name)
	if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("delete network namespace %s: %w", name, err)
	}
	// EINVAL: not a mount point (a half-made leftover); remove the file.
	if err := os.Remove(netnsDir + "/" + name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete network namespace %s: %w", name, err)
	}
	return nil
}

// Holders lists the processes that hold the named namespace: a thread that
// runs in it, or an open handle on it. A live Link holds both of its
// namespaces open for its whole life, so a namespace nobody holds belongs
// to no live run; one that a process holds must not be pulled from under
// it by a cleanup.
func Holders(name string) ([]int, error) {
	if strings.ContainsAny(name, "/") || name == "" || name == "." || name == ".." {
		return nil, fmt.Errorf("packet: namespace name %q", name)
	}
	var ns unix.Stat_t
	if err := unix.Stat(netnsDir+"/"+name, &ns); err != nil {
		return nil, fmt.Errorf("packet: namespace %s: %w", name, err)
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		if holds(fmt.Sprintf("/proc/%d/task", pid), "ns/net", name, ns) || holds(fmt.Sprintf("/proc/%d/fd", pid), "", name, ns) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// holds reports whether a link under dir (dir/<entry>/sub, or dir/<entry>
// when sub is empty) leads to the namespace ns, named name. A handle
// opened through /proc reads as net:[<inode>], one opened through
// /run/netns as that path; either is then compared by what it leads to
// (device and inode). Other links are not followed: stat on another
// process's open file could block (a stuck network filesystem).
// Processes that end meanwhile, or that this process may not look into,
// hold nothing it can see.
func holds(dir, sub, name string, ns unix.Stat_t) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		p := dir + "/" + e.Name()
		if sub != "" {
			p += "/" + sub
		}
		l, err := os.Readlink(p)
		if err != nil || !strings.HasPrefix(l, "net:[") && !strings.HasSuffix(l, "/"+name) {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Ino == ns.Ino && st.Dev == ns.Dev {
			return true
		}
	}
	return false
}

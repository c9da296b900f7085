// Package owner ties what a cascade process leaves on the machine
// (temporary directories, containers) to that process, so that `cascade
// cleanup` can tell what a killed process left from what a live one still
// uses.
//
// A process is named by its PID and its start time: the kernel hands a
// dead process's PID to a new process sooner or later, and only the start
// time tells the two apart.
package owner

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process names one process for the life of the machine.
type Process struct {
	PID int
	// Start is when it started, in clock ticks after boot (field 22 of
	// /proc/<pid>/stat); 0 when unknown (no /proc), and then only the PID
	// is compared.
	Start uint64
}

// Self is the running process.
func Self() Process {
	pid := os.Getpid()
	st, _ := readStat(pid)
	return Process{PID: pid, Start: st.start}
}

// String is "<pid>.<start>", the form Parse reads and names and labels
// carry.
func (p Process) String() string { return strconv.Itoa(p.PID) + "." + strconv.FormatUint(p.Start, 10) }

// Parse reads what String wrote.
func Parse(s string) (Process, error) {
	a, b, ok := strings.Cut(s, ".")
	pid, err1 := strconv.Atoi(a)
	start, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || pid <= 0 {
		return Process{}, fmt.Errorf("owner %q: want <pid>.<start>", s)
	}
	return Process{PID: pid, Start: start}, nil
}

// Alive reports whether the process is still running: its PID exists, is
// not a zombie, and (when known) started when it did.
func (p Process) Alive() bool {
	st, err := readStat(p.PID)
	if errors.Is(err, errNoProc) {
		return pidExists(p.PID)
	}
	if err != nil || st.dead {
		return false
	}
	return p.Start == 0 || st.start == 0 || st.start == p.Start
}

// RunningSince reports whether process pid is running and started no
// later than t (give or take the second the boot time is rounded to): what
// can be told of the owner of a name that holds only a PID and the time it
// was made, such as a run id. A process that got the PID after the owner
// died started after the name was made.
func RunningSince(pid int, t time.Time) bool {
	st, err := readStat(pid)
	if errors.Is(err, errNoProc) {
		return pidExists(pid)
	}
	if err != nil || st.dead {
		return false
	}
	boot, err := bootTime()
	if err != nil {
		return true // cannot tell: say alive, the cautious answer for a cleanup
	}
	started := boot.Add(time.Duration(st.start) * time.Second / clockTicks)
	return !started.After(t.Add(2 * time.Second))
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's start time: 100 on
// every Linux architecture (sysconf(_SC_CLK_TCK)).
const clockTicks = 100

var errNoProc = errors.New("no /proc on this system")

type stat struct {
	start uint64
	dead  bool // a zombie: exited, not yet reaped; it holds nothing
}

func readStat(pid int) (stat, error) {
	if pid <= 0 {
		return stat{}, os.ErrNotExist
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if _, perr := os.Stat("/proc/self/stat"); perr != nil {
			return stat{}, errNoProc
		}
		return stat{}, err
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses,
	// so fields are counted after the last ')'; state is field 3 and the
	// start time field 22.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return stat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return stat{}, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	return stat{start: start, dead: f[0] == "Z" || f[0] == "X"}, nil
}

func bootTime() (time.Time, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, err
			}
			return time.Unix(s, 0), nil
		}
	}
	return time.Time{}, errors.New("/proc/stat has no btime")
}

// pidExists is the check without /proc: signal 0 reaches a live process
// (EPERM: it exists, owned by another user).
func pidExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Temporary directories.
//
// A run works in temporary directories (an image's build context, an
// SQLite database) that it removes on its way out. A killed run cannot,
// so their names carry the owner: cascade-<kind>-<pid>.<start>-<random>.

var tempName = regexp.MustCompile(`^cascade-([a-z]+)-([0-9]+\.[0-9]+)-[0-9]+$`)

var kindName = regexp.MustCompile(`^[a-z]+$`)

// MkdirTemp makes a temporary directory of the given kind ("build",
// "slowdb") owned by this process, in os.TempDir().
func MkdirTemp(kind string) (string, error) {
	if !kindName.MatchString(kind) {
		return "", fmt.Errorf("temporary directory kind %q: want lower-case letters", kind)
	}
	return os.MkdirTemp("", "cascade-"+kind+"-"+Self().String()+"-")
}

// TempDir is a temporary directory made by MkdirTemp.
type TempDir struct {
	Path  string
	Kind  string
	Owner Process
}

// TempDirs lists the temporary directories MkdirTemp made, in any process,
// that are still in os.TempDir(). Names without an owner (made by an older
// cascade) are not listed: nothing tells whose they are.
func TempDirs() ([]TempDir, error) {
	root := os.TempDir()
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out []TempDir
	for _, e := range entries {
		m := tempName.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		p, err := Parse(m[2])
		if err != nil {
			continue
		}
		out = append(out, TempDir{Path: filepath.Join(root, e.Name()), Kind: m[1], Owner: p})
	}
	return out, nil
}

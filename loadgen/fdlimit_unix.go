//go:build unix

package loadgen

import "syscall"

// openFileLimit is the process's soft limit on open files (0: unknown),
// for the message that says the generator reached it.
func openFileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return uint64(rl.Cur)
}

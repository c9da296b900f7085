//go:build unix

package gameday

import (
	"errors"
	"syscall"
)

// alive says whether process pid exists: a control file left by a game day
// that was killed (kill -9 skips the removal) names a dead one.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

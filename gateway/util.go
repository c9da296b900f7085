package gateway

import (
	"errors"
	"io"
	"sort"
	"syscall"
)

func sorted(s []string) []string { sort.Strings(s); return s }

// isReset reports a connection the upstream reset or closed mid-exchange.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

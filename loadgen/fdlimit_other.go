//go:build !unix

package loadgen

// openFileLimit is unknown where there is no RLIMIT_NOFILE.
func openFileLimit() uint64 { return 0 }

//go:build !linux

package h1

// rawIO: elsewhere Conn goes through net.Conn only (three syscalls per
// request instead of two; see io.go). cascade's runs and benchmarks are on
// Linux; this keeps the package building for development elsewhere.
const rawIO = false

func (c *Conn) peek(fd uintptr) bool   { return true }
func (c *Conn) sendCB(fd uintptr) bool { return true }
func (c *Conn) readCB(fd uintptr) bool { return true }

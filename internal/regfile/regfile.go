// Package regfile reads the files a configuration names (a scenario, a data
// set, a gateway config): regular files of bounded size. A path is typed by
// hand, and a typo naming /dev/zero read until the process died (validate
// took all 23 GB of the machine and was killed), while a FIFO blocked it in
// open for ever, deaf to Ctrl-C.
package regfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
)

// MaxConfig bounds a hand-written configuration: a scenario, a gateway
// config, a fault file. Ten thousand lines are a few hundred KB.
const MaxConfig = 16 << 20

// Read reads path, which must be a regular file of at most limit bytes.
func Read(path string, limit int64) ([]byte, error) {
	// Stat before open: opening a FIFO waits for a writer.
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (it is %s)", path, kind(st.Mode()))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %s, the most it may be", path, size(limit))
	}
	return b, nil
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a plain file"
}

func size(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

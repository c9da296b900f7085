package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// entries lists dir, for a temporary file left behind.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// A write that fails partway leaves the file that was there, whole, and no
// temporary file beside it; one that succeeds replaces it and keeps its
// mode.
func TestWriteIsWholeOrNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "series.csv")
	if err := os.WriteFile(path, []byte("the old series\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := errors.New("the renderer failed")
	err := Write(path, 0o644, func(w io.Writer) error {
		if _, err := io.WriteString(w, strings.Repeat("half of the new one\n", 10000)); err != nil {
			return err
		}
		return broken
	})
	if !errors.Is(err, broken) {
		t.Fatalf("err %v, want the renderer's", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "the old series\n" {
		t.Fatalf("after a failed write the file holds %d bytes: %.40q", len(b), b)
	}
	if names := entries(t, dir); len(names) != 1 {
		t.Fatalf("%s holds %v, want series.csv alone", dir, names)
	}

	if err := WriteFile(path, []byte("the new series\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "the new series\n" || st.Mode().Perm() != 0o600 {
		t.Fatalf("after a write: %q, mode %v (want the old file's 0600)", b, st.Mode().Perm())
	}
	fresh := filepath.Join(dir, "new.xml")
	if err := WriteFile(fresh, []byte("<x/>"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(fresh); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("a new file: %v, %v", st, err)
	}
}

// A link to a file is written through, as os.Create writes through it: the
// file it names gets the new contents, and the link stays a link.
func TestWriteThroughALink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.csv")
	link := filepath.Join(dir, "link.csv")
	if err := os.WriteFile(real, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.csv", link); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(link, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(real); string(b) != "new" {
		t.Fatalf("real.csv holds %q", b)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("link.csv is no longer a link: %v %v", st, err)
	}
}

// What is not a regular file (a named pipe, /dev/null, /dev/stdout)
// cannot be renamed over: it is written in place.
func TestWriteInPlaceWhenNotAFile(t *testing.T) {
	if err := WriteFile(os.DevNull, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(os.DevNull); err != nil || st.Mode().IsRegular() {
		t.Fatalf("%s: %v %v", os.DevNull, st, err)
	}
	fifo := filepath.Join(t.TempDir(), "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		b, _ := os.ReadFile(fifo)
		got <- string(b)
	}()
	if err := WriteFile(fifo, []byte("through the pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "through the pipe" {
		t.Fatalf("read %q from the pipe", s)
	}
}

// A write the file system refuses partway (here the file size limit, as
// a full disk would) fails with the target's name, not the temporary
// file's, and leaves the old file whole.
func TestWriteFailingPartway(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.csv")
	old := strings.Repeat("old\n", 100)
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &rl); err != nil {
		t.Fatal(err)
	}
	lower := rl
	lower.Cur = 16 << 10
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lower); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(path, []byte(strings.Repeat("new\n", 64<<10)), 0o644)
	if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &rl); rerr != nil {
		t.Fatal(rerr)
	}
	if !errors.Is(err, syscall.EFBIG) || !strings.HasPrefix(err.Error(), "write "+path+": ") {
		t.Fatalf("err %v, want EFBIG for %s", err, path)
	}
	if b, _ := os.ReadFile(path); string(b) != old {
		t.Fatalf("after a failed write the file holds %d bytes, want the old %d", len(b), len(old))
	}
	if names := entries(t, dir); len(names) != 1 {
		t.Fatalf("%s holds %v, want out.csv alone", dir, names)
	}
	if err := Write(filepath.Join(dir, "missing", "out.csv"), 0o644, func(io.Writer) error { return nil }); err == nil ||
		!strings.Contains(err.Error(), filepath.Join(dir, "missing", "out.csv")) {
		t.Fatalf("a directory that does not exist: %v", err)
	}
}

package regfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok.yaml")
	if err := os.WriteFile(ok, []byte("name: a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := Read(ok, 8); err != nil || string(b) != "name: a\n" {
		t.Fatalf("a file at the bound: %q %v", b, err)
	}
	if _, err := Read(ok, 7); err == nil || !strings.Contains(err.Error(), "is larger than 7 bytes") {
		t.Fatalf("a file past the bound: %v", err)
	}
	if _, err := Read(filepath.Join(dir, "nope"), 8); !os.IsNotExist(err) {
		t.Fatalf("a missing file: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "zero.csv")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/dev/zero": "a character device", link: "a character device", // read until memory ran out
		fifo: "a named pipe", // open waited for a writer for ever
		dir:  "a directory",
	} {
		done := make(chan error, 1)
		go func() { _, err := Read(path, MaxConfig); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "is not a regular file (it is "+want+")") {
				t.Errorf("%s: %v, want it refused as %s", path, err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: still reading after 5 s", path)
		}
	}
}

// Package atomicfile writes a file whole or not at all: through a
// temporary file in the same directory, renamed over the target once it is
// complete. A write that fails partway (a full disk, a size limit, an
// error while rendering) leaves the file that was there before, not the
// first part of the new one; a reader never sees half a file.
package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Write writes path with what write produces. The file takes the mode of
// the file it replaces, or perm for a new one.
//
// A path that names something other than a regular file (/dev/stdout, a
// named pipe, a terminal) cannot be renamed over: it is written in place,
// as os.Create would. A symbolic link to a file is written through: the
// file it names is replaced, and the link stays.
func Write(path string, perm fs.FileMode, write func(io.Writer) error) (err error) {
	target := path
	if st, lerr := os.Lstat(path); lerr == nil && st.Mode()&fs.ModeSymlink != 0 {
		resolved, rerr := filepath.EvalSymlinks(path)
		if rerr != nil {
			// A link to nothing (yet): os.Create would make its target.
			return inPlace(path, perm, write)
		}
		target = resolved
	}
	exists := false
	if st, serr := os.Stat(target); serr == nil {
		if !st.Mode().IsRegular() {
			return inPlace(target, perm, write)
		}
		perm, exists = st.Mode().Perm(), true
	}
	f, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".tmp-*")
	if errors.Is(err, fs.ErrPermission) && exists {
		// A file one may write in a directory one may not add to: written
		// in place, as before, rather than refused.
		return inPlace(target, perm, write)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err == nil {
			return
		}
		_ = f.Close()
		_ = os.Remove(tmp)
		// The temporary file's name would only puzzle: the error is the
		// target's.
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Path == tmp {
			pe.Path = path
		}
	}()
	bw := bufio.NewWriterSize(f, 64<<10)
	if err = write(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	// Without a sync, a crash soon after the rename can leave an empty
	// file where the old one was on some file systems (ext4 without
	// auto_da_alloc, XFS). One that cannot sync this file says so with
	// EINVAL: nothing to wait for.
	if err = f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, target); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteFile is Write of data.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// inPlace writes a path that cannot be replaced by a rename.
func inPlace(path string, perm fs.FileMode, write func(io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

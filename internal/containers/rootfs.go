package containers

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/client"
)

// A rootfs is a minimal root filesystem assembled from files already
// installed on this machine by Debian's packages: the binaries a recipe names,
// the shared libraries ldd says they load, and a few synthetic files
// (/etc/passwd, an entrypoint). It is imported as an image with ImageImport.
//
// We write this ourselves because it is the product here: there is no
// registry, so images cannot be pulled, and apt-get download + dpkg -x would
// have to re-implement apt's dependency resolution. apt already installed
// the packages with their dependencies on this machine; ldd tells exactly
// which of those files a binary loads.
type rootfs struct {
	entries map[string]*fsEntry // absolute path → entry
}

type fsEntry struct {
	typ      byte // tar.TypeReg, tar.TypeDir, tar.TypeSymlink
	mode     int64
	uid, gid int
	src      string // host file to copy, for host regular files
	data     []byte // content, for synthetic regular files
	link     string // symlink target
	size     int64
	mtime    time.Time
}

func newRootfs() *rootfs { return &rootfs{entries: map[string]*fsEntry{}} }

// maxSymlinkHops bounds symlink resolution, as the kernel does (ELOOP).
const maxSymlinkHops = 40

// addHost adds the host path p: every symlink on the way is added as a
// symlink and followed, so files are stored under their real paths and the
// image resolves the same names the host does (merged /usr included).
// Directories are added recursively, minus paths for which skip is true.
func (r *rootfs) addHost(p string, skip func(string) bool) error {
	return r.addHostHops(p, skip, 0)
}

func (r *rootfs) addHostHops(p string, skip func(string) bool, hops int) error {
	if hops > maxSymlinkHops {
		return fmt.Errorf("rootfs: too many symlinks resolving %s", p)
	}
	if !path.IsAbs(p) {
		return fmt.Errorf("rootfs: %s is not absolute", p)
	}
	p = path.Clean(p)
	if p == "/" {
		return fmt.Errorf("rootfs: refusing to add the whole host root")
	}
	parts := strings.Split(p[1:], "/")
	cur := "/"
	for i, part := range parts {
		next := path.Join(cur, part)
		fi, err := os.Lstat(next)
		if err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
		last := i == len(parts)-1
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(next)
			if err != nil {
				return fmt.Errorf("rootfs: %w", err)
			}
			if err := r.put(next, &fsEntry{typ: tar.TypeSymlink, mode: 0o777, link: link, mtime: fi.ModTime()}); err != nil {
				return err
			}
			target := link
			if !path.IsAbs(target) {
				target = path.Join(cur, link)
			}
			if !last {
				target = path.Join(append([]string{target}, parts[i+1:]...)...)
			}
			return r.addHostHops(target, skip, hops+1)
		case fi.IsDir():
			if err := r.put(next, &fsEntry{typ: tar.TypeDir, mode: int64(fi.Mode().Perm()), mtime: fi.ModTime()}); err != nil {
				return err
			}
			if last {
				return r.addHostDir(next, skip, hops)
			}
		case fi.Mode().IsRegular():
			if !last {
				return fmt.Errorf("rootfs: %s is a file, not a directory", next)
			}
			return r.put(next, &fsEntry{typ: tar.TypeReg, mode: int64(fi.Mode().Perm()), src: next, size: fi.Size(), mtime: fi.ModTime()})
		default:
			return fmt.Errorf("rootfs: %s: unsupported file type %v", next, fi.Mode().Type())
		}
		cur = next
	}
	return nil
}

func (r *rootfs) addHostDir(dir string, skip func(string) bool, hops int) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	for _, de := range des {
		p := path.Join(dir, de.Name())
		if skip != nil && skip(p) {
			continue
		}
		if err := r.addHostHops(p, skip, hops); err != nil {
			return err
		}
	}
	return nil
}

// addFile adds a synthetic regular file.
func (r *rootfs) addFile(p string, data []byte, mode int64, uid, gid int) error {
	return r.put(p, &fsEntry{typ: tar.TypeReg, mode: mode, uid: uid, gid: gid, data: data, size: int64(len(data))})
}

// addDir adds (or re-owns) a directory.
func (r *rootfs) addDir(p string, mode int64, uid, gid int) error {
	if e, ok := r.entries[path.Clean(p)]; ok && e.typ == tar.TypeDir {
		e.mode, e.uid, e.gid = mode, uid, gid
		return nil
	}
	return r.put(p, &fsEntry{typ: tar.TypeDir, mode: mode, uid: uid, gid: gid})
}

// addSymlink adds a synthetic symlink.
func (r *rootfs) addSymlink(p, target string) error {
	return r.put(p, &fsEntry{typ: tar.TypeSymlink, mode: 0o777, link: target})
}

func (r *rootfs) put(p string, e *fsEntry) error {
	p = path.Clean(p)
	if old, ok := r.entries[p]; ok {
		if old.typ != e.typ || old.link != e.link || (e.typ == tar.TypeReg && (old.src != e.src || !bytes.Equal(old.data, e.data))) {
			return fmt.Errorf("rootfs: %s added twice with different content", p)
		}
		return nil
	}
	for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
		if pe, ok := r.entries[dir]; ok {
			if pe.typ != tar.TypeDir {
				return fmt.Errorf("rootfs: %s: parent %s is not a directory in the image", p, dir)
			}
			continue
		}
		r.entries[dir] = &fsEntry{typ: tar.TypeDir, mode: 0o755}
	}
	r.entries[p] = e
	return nil
}

// addELFLibraries adds the shared libraries (and the loader) that the ELF
// files already in the rootfs load, as ldd reports them on this machine, so
// nothing the image runs can miss a library.
//
// ldd runs the loader once per file (~10 ms each), so it runs only on the
// programs and on shared objects that need a library the programs' closure
// does not already hold; PostgreSQL's ~80 modules mostly need nothing more.
func (r *rootfs) addELFLibraries(ctx context.Context) error {
	var programs, objects []string
	for _, p := range r.paths() {
		e := r.entries[p]
		if e.typ != tar.TypeReg || e.src == "" {
			continue
		}
		f, err := elf.Open(e.src)
		if err != nil {
			continue // not ELF: scripts, data
		}
		interp := slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
		f.Close()
		if interp {
			programs = append(programs, e.src)
		} else {
			objects = append(objects, e.src)
		}
	}
	libs, known, err := lddLibraries(ctx, programs)
	if err != nil {
		return err
	}
	var rest []string
	for _, o := range objects {
		if !neededKnown(o, known) {
			rest = append(rest, o)
		}
	}
	more, _, err := lddLibraries(ctx, rest)
	if err != nil {
		return err
	}
	for _, l := range append(libs, more...) {
		if err := r.addHost(l, nil); err != nil {
			return err
		}
	}
	return nil
}

// neededKnown reports whether every DT_NEEDED entry of the shared object at
// p is a library name already resolved; any doubt answers false, so ldd runs.
func neededKnown(p string, known map[string]bool) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	needed, err := f.ImportedLibraries()
	if err != nil {
		return false
	}
	for _, n := range needed {
		if !known[n] {
			return false
		}
	}
	return true
}

// lddLibraries runs ldd once over all files and returns the sorted set of
// library paths, and the set of library names (as DT_NEEDED spells them)
// they resolve. Files ldd calls "not a dynamic executable" (static, or not
// ELF) need nothing; a "not found" library is an error that names it.
func lddLibraries(ctx context.Context, files []string) ([]string, map[string]bool, error) {
	known := map[string]bool{}
	if len(files) == 0 {
		return nil, known, nil
	}
	ldd, err := exec.LookPath("ldd")
	if err != nil {
		return nil, nil, fmt.Errorf("rootfs: ldd not found (Debian package libc-bin): %w", err)
	}
	cmd := exec.CommandContext(ctx, ldd, files...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// ldd exits non-zero when any argument is not dynamic; the per-file
	// output says which, so the exit status alone means nothing here.
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	set := map[string]bool{}
	var missing []string
	current := files[0]
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "\t") {
			current = strings.TrimSuffix(line, ":")
			continue
		}
		line = strings.TrimSpace(line)
		switch {
		case strings.Contains(line, "=> not found"):
			missing = append(missing, fmt.Sprintf("%s (needed by %s)", strings.Fields(line)[0], current))
		case strings.Contains(line, "=> /"):
			name, rest, _ := strings.Cut(line, " => ")
			lib := strings.Fields(rest)[0]
			set[lib] = true
			known[strings.TrimSpace(name)] = true
		case strings.HasPrefix(line, "/"):
			loader := strings.Fields(line)[0]
			set[loader] = true
			known[path.Base(loader)] = true
		}
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("rootfs: libraries not installed on this machine: %s", strings.Join(missing, ", "))
	}
	if len(set) == 0 && runErr != nil {
		return nil, nil, fmt.Errorf("rootfs: ldd %v: %v: %s", files, runErr, strings.TrimSpace(stderr.String()))
	}
	libs := make([]string, 0, len(set))
	for l := range set {
		libs = append(libs, l)
	}
	slices.Sort(libs)
	return libs, known, nil
}

func (r *rootfs) paths() []string {
	ps := make([]string, 0, len(r.entries))
	for p := range r.entries {
		ps = append(ps, p)
	}
	// Lexical order puts every directory before its contents.
	slices.Sort(ps)
	return ps
}

// hash identifies the rootfs. Host files are identified by path, mode, size
// and mtime, not content: dpkg sets mtimes from the package, so an upgrade
// changes them, and hashing ~100 MB on every run would cost more than the
// cache check it serves.
func (r *rootfs) hash(recipe string, extra ...string) string {
	h := sha256.New()
	fmt.Fprintf(h, "rootfs\x00%s\x00%s\x00", imageRecipeVersion, recipe)
	for _, x := range extra {
		fmt.Fprintf(h, "%s\x00", x)
	}
	for _, p := range r.paths() {
		e := r.entries[p]
		fmt.Fprintf(h, "%s\x00%c\x00%o\x00%d\x00%d\x00%s\x00%d\x00", p, e.typ, e.mode, e.uid, e.gid, e.link, e.size)
		if e.src != "" {
			fmt.Fprintf(h, "%d\x00", e.mtime.UnixNano())
		} else {
			sum := sha256.Sum256(e.data)
			h.Write(sum[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:20]
}

// writeTar writes the rootfs as a tar stream, as `docker import` expects.
func (r *rootfs) writeTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, p := range r.paths() {
		e := r.entries[p]
		hdr := &tar.Header{
			Name:     strings.TrimPrefix(p, "/"),
			Typeflag: e.typ,
			Mode:     e.mode,
			Uid:      e.uid,
			Gid:      e.gid,
			ModTime:  e.mtime,
			Linkname: e.link,
			Format:   tar.FormatPAX,
		}
		if e.typ == tar.TypeDir {
			hdr.Name += "/"
		}
		if e.typ == tar.TypeReg {
			hdr.Size = e.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("rootfs tar %s: %w", p, err)
		}
		if e.typ != tar.TypeReg {
			continue
		}
		if e.src == "" {
			if _, err := tw.Write(e.data); err != nil {
				return fmt.Errorf("rootfs tar %s: %w", p, err)
			}
			continue
		}
		if err := copyFileExact(tw, e.src, e.size); err != nil {
			return err
		}
	}
	return tw.Close()
}

func copyFileExact(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return fmt.Errorf("rootfs: copy %s: %w", src, err)
	}
	if n != size {
		return fmt.Errorf("rootfs: %s changed size while building the image (%d of %d bytes)", src, n, size)
	}
	return nil
}

// importRootfs streams the rootfs into the daemon as image ref, applying
// Dockerfile-style changes (ENTRYPOINT, USER, ENV, ...). The tar is produced
// on the fly through a pipe: nothing of ~100 MB lands on disk.
func (d *Docker) importRootfs(ctx context.Context, r *rootfs, ref string, changes []string) error {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(r.writeTar(pw))
	}()
	defer pr.Close()
	repo, tag := splitRef(ref)
	res, err := d.provider.Client().ImageImport(ctx,
		client.ImageImportSource{Source: pr, SourceName: "-"},
		repo, client.ImageImportOptions{Tag: tag, Changes: changes, Message: "cascade rootfs"})
	if err != nil {
		return fmt.Errorf("import %s: %w", ref, err)
	}
	defer res.Close()
	// The daemon answers with a stream of JSON messages; an error arrives as
	// one of them, not as an HTTP status.
	dec := json.NewDecoder(res)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("import %s: read response: %w", ref, err)
		}
		if msg.Error != "" {
			return fmt.Errorf("import %s: %s", ref, msg.Error)
		}
	}
}

// buildRootfsImage returns the image for recipe, importing it unless an image
// with the same content hash exists.
// start is when assembling r began, so Image.Took covers the ldd work too.
func (d *Docker) buildRootfsImage(ctx context.Context, start time.Time, repo, recipe string, r *rootfs, changes []string) (Image, error) {
	ref := repo + ":" + r.hash(recipe, changes...)
	if img, ok, err := d.cached(ctx, ref, start); err != nil || ok {
		return img, err
	}
	if err := d.importRootfs(ctx, r, ref, changes); err != nil {
		return Image{}, err
	}
	return d.built(ctx, ref, start)
}

// passwd and group files for minimal images: root, the service user, nobody.
func passwdFiles(user string, uid int) (passwd, group []byte) {
	passwd = fmt.Appendf(nil, "root:x:0:0:root:/root:/bin/sh\n%s:x:%d:%d:%s:/var/lib/%s:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", user, uid, uid, user, user)
	group = fmt.Appendf(nil, "root:x:0:\n%s:x:%d:\nnogroup:x:65534:\n", user, uid)
	return passwd, group
}

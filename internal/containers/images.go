package containers

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"

	"github.com/cascadehq/cascade/internal/owner"
)

// imageRecipeVersion is part of every image hash: bump it when the way an
// image is assembled changes, so cached images are not reused wrongly.
const imageRecipeVersion = "1"

// LabelImage marks images this package built, with the kind as value
// ("binary", "postgres", "nginx", "haproxy"). Images never carry
// cascade.managed: a container inherits its image's labels, so a container
// someone else creates from a cascade image would otherwise look like ours
// to CleanupAll.
const LabelImage = "cascade.image"

// LabelImageRepo is the repository (cascade/<name>) a binary image was
// built for. The Dockerfile sets it with LabelImage right after FROM, so
// every step's image carries both: a build that was interrupted or killed
// leaves untagged (dangling) images, and the labels are all that ties them
// to cascade and to the image they were meant for.
const LabelImageRepo = "cascade.image.repo"

// Image is a local image this package built or found already built.
type Image struct {
	// Ref is the image reference, repository:tag; the tag carries a content
	// hash of everything that went into the image.
	Ref string
	// Built is false when an image with that hash already existed and the
	// build was skipped.
	Built bool
	// Took is how long the build (or the cache check) took.
	Took time.Duration
	// Size is the image size in bytes as the daemon reports it.
	Size int64
}

var repoPattern = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+)*$`)

// BuildBinaryImage builds an image FROM scratch holding only the static
// binary at binPath as /<base name>, with that binary as entrypoint. The
// image is cascade/<name>:<hash of binary and Dockerfile>; when it already
// exists the build is skipped. binPath must be a static executable
// (CGO_ENABLED=0 for Go): scratch has no loader and no libc.
func (d *Docker) BuildBinaryImage(ctx context.Context, name, binPath string) (Image, error) {
	start := time.Now()
	if !repoPattern.MatchString(name) {
		return Image{}, fmt.Errorf("%w: image name %q: want lower-case letters, digits and . _ - separators", ErrInvalidSpec, name)
	}
	if err := checkStaticExecutable(binPath); err != nil {
		return Image{}, err
	}
	const entry = "/app"
	dockerfile := fmt.Sprintf("FROM scratch\nLABEL %s=binary %s=cascade/%s\nCOPY app %s\nENTRYPOINT [%q]\n",
		LabelImage, LabelImageRepo, name, entry, entry)

	h := sha256.New()
	fmt.Fprintf(h, "binary-image\x00%s\x00%s\x00", imageRecipeVersion, dockerfile)
	f, err := os.Open(binPath)
	if err != nil {
		return Image{}, fmt.Errorf("open binary: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return Image{}, fmt.Errorf("hash binary %s: %w", binPath, err)
	}
	ref := "cascade/" + name + ":" + hex.EncodeToString(h.Sum(nil))[:20]

	if img, ok, err := d.cached(ctx, ref, start); err != nil || ok {
		return img, err
	}

	// Assemble the build context as a tar in a temp dir: the Dockerfile and
	// the binary, nothing else, so the daemon receives only what it needs.
	// The dir is named after this process: if it is killed before the
	// deferred removal, `cascade cleanup` finds the dir and its owner dead.
	dir, err := owner.MkdirTemp("build")
	if err != nil {
		return Image{}, fmt.Errorf("build context dir: %w", err)
	}
	defer os.RemoveAll(dir)
	ctxTar, err := os.Create(filepath.Join(dir, "context.tar"))
	if err != nil {
		return Image{}, fmt.Errorf("build context: %w", err)
	}
	defer ctxTar.Close()
	if err := writeBuildContext(ctxTar, dockerfile, f); err != nil {
		return Image{}, err
	}
	if _, err := ctxTar.Seek(0, io.SeekStart); err != nil {
		return Image{}, fmt.Errorf("build context: %w", err)
	}

	repo, tag := splitRef(ref)
	req := &testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
		ContextArchive: ctxTar,
		Repo:           repo,
		Tag:            tag,
		KeepImage:      true,
		BuildOptionsModifier: func(o *client.ImageBuildOptions) {
			o.Labels = map[string]string{LabelImage: "binary"}
			// Never try to pull (there is no registry); scratch needs none.
			o.PullParent = false
		},
	}}
	if _, err := d.provider.BuildImage(ctx, req); err != nil {
		return Image{}, fmt.Errorf("build %s from %s: %w", ref, binPath, err)
	}
	return d.built(ctx, ref, start)
}

func writeBuildContext(w io.Writer, dockerfile string, bin *os.File) error {
	fi, err := bin.Stat()
	if err != nil {
		return fmt.Errorf("stat binary: %w", err)
	}
	if _, err := bin.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind binary: %w", err)
	}
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile)), Typeflag: tar.TypeReg}); err != nil {
		return fmt.Errorf("build context: %w", err)
	}
	if _, err := io.WriteString(tw, dockerfile); err != nil {
		return fmt.Errorf("build context: %w", err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: "app", Mode: 0o755, Size: fi.Size(), Typeflag: tar.TypeReg}); err != nil {
		return fmt.Errorf("build context: %w", err)
	}
	if n, err := io.Copy(tw, bin); err != nil || n != fi.Size() {
		return fmt.Errorf("build context: copied %d of %d bytes of the binary: %v", n, fi.Size(), err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("build context: %w", err)
	}
	return nil
}

// checkStaticExecutable refuses what cannot run on scratch, with a message
// that says how to fix it, rather than a container that exits at once.
func checkStaticExecutable(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%w: %s is not an ELF executable: %v", ErrInvalidSpec, p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: %s is dynamically linked; a FROM scratch image needs a static binary (build with CGO_ENABLED=0)", ErrInvalidSpec, p)
		}
	}
	return nil
}

// cached returns the image if ref already exists.
func (d *Docker) cached(ctx context.Context, ref string, start time.Time) (Image, bool, error) {
	res, err := d.provider.Client().ImageInspect(ctx, ref)
	if err == nil {
		return Image{Ref: ref, Took: time.Since(start), Size: res.Size}, true, nil
	}
	if isNotFound(err) {
		return Image{}, false, nil
	}
	return Image{}, false, fmt.Errorf("inspect image %s: %w", ref, err)
}

func (d *Docker) built(ctx context.Context, ref string, start time.Time) (Image, error) {
	res, err := d.provider.Client().ImageInspect(ctx, ref)
	if err != nil {
		return Image{}, fmt.Errorf("inspect built image %s: %w", ref, err)
	}
	img := Image{Ref: ref, Built: true, Took: time.Since(start), Size: res.Size}
	d.emit("image.build", ref, map[string]any{"took_ms": ms(img.Took), "bytes": img.Size})
	return img, nil
}

func splitRef(ref string) (repo, tag string) {
	for i := len(ref) - 1; i >= 0; i-- {
		if ref[i] == ':' {
			return ref[:i], ref[i+1:]
		}
	}
	return ref, "latest"
}

func isNotFound(err error) bool {
	return cerrdefs.IsNotFound(err) || errors.Is(err, cerrdefs.ErrNotFound)
}

// CleanupImages removes the images this package built (label cascade.image)
// that no container uses, and returns their references: the cache, for
// `cascade cleanup --images`. It also removes, by ID, the untagged images
// an interrupted or killed build left (listed as "<none>@<id>"). With names
// (e.g. "postgres", "nginx", or a BuildBinaryImage name) only cascade/<name>
// images are removed. Images in use are left and reported in the error;
// so is the last step of a build still in progress, which its next step
// uses (only the instant between two steps is not covered).
func (d *Docker) CleanupImages(ctx context.Context, names ...string) ([]string, error) {
	removed, err := d.cleanupTagged(ctx, names)
	dangling, derr := d.cleanupDangling(ctx, names)
	removed = append(removed, dangling...)
	slices.Sort(removed)
	return removed, errors.Join(err, derr)
}

// cleanupDangling removes the untagged images with cascade's label: the
// steps an interrupted build committed. A build that finished leaves none:
// its steps are the tagged image's parents, removed with it.
func (d *Docker) cleanupDangling(ctx context.Context, names []string) ([]string, error) {
	filters := make(client.Filters).Add("label", LabelImage).Add("dangling", "true")
	res, err := d.provider.Client().ImageList(ctx, client.ImageListOptions{Filters: filters})
	if err != nil {
		return nil, fmt.Errorf("list dangling cascade images: %w", err)
	}
	var removed []string
	var errs []error
	for _, img := range res.Items {
		// Check again what the daemon filtered: never remove a stranger's
		// image because a filter was ignored.
		if _, ok := img.Labels[LabelImage]; !ok || len(img.RepoTags) > 0 && !danglingTags(img.RepoTags) {
			continue
		}
		if len(names) > 0 && !slices.Contains(names, strings.TrimPrefix(img.Labels[LabelImageRepo], "cascade/")) {
			continue
		}
		_, err := d.provider.Client().ImageRemove(ctx, img.ID, client.ImageRemoveOptions{PruneChildren: true})
		if err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("remove dangling image %s: %w", img.ID, err))
			continue
		}
		removed = append(removed, "<none>@"+img.ID)
	}
	return removed, errors.Join(errs...)
}

// danglingTags reports whether tags are only the placeholder an untagged
// image is listed with.
func danglingTags(tags []string) bool {
	for _, t := range tags {
		if t != "<none>:<none>" {
			return false
		}
	}
	return true
}

func (d *Docker) cleanupTagged(ctx context.Context, names []string) ([]string, error) {
	filters := make(client.Filters).Add("label", LabelImage)
	for _, n := range names {
		if !repoPattern.MatchString(n) {
			return nil, fmt.Errorf("%w: image name %q", ErrInvalidSpec, n)
		}
		filters.Add("reference", "cascade/"+n)
	}
	res, err := d.provider.Client().ImageList(ctx, client.ImageListOptions{Filters: filters})
	if err != nil {
		return nil, fmt.Errorf("list cascade images: %w", err)
	}
	var removed []string
	var errs []error
	for _, img := range res.Items {
		if _, ok := img.Labels[LabelImage]; !ok {
			continue
		}
		for _, ref := range img.RepoTags {
			repo, _ := splitRef(ref)
			if !strings.HasPrefix(repo, "cascade/") || (len(names) > 0 && !slices.Contains(names, strings.TrimPrefix(repo, "cascade/"))) {
				continue
			}
			_, err := d.provider.Client().ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true})
			if err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("remove image %s: %w", ref, err))
				continue
			}
			removed = append(removed, ref)
		}
	}
	return removed, errors.Join(errs...)
}

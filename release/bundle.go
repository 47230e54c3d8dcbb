package release

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// ErrEmpty reports a pack source, or a bundle, that holds no regular file.
var ErrEmpty = errors.New("nothing to pack")

// ErrUnsafeEntry reports a tree entry that a bundle may not carry: a device,
// socket or pipe, or a symlink that points outside the tree.
var ErrUnsafeEntry = errors.New("unsafe entry")

// epoch is every entry's mtime: bundles must not depend on when files were
// touched.
var epoch = time.Unix(0, 0).UTC()

// PackResult is what packing learned about the bundle it wrote.
type PackResult struct {
	ID           ID    // sha256 of the bundle bytes
	BundleSize   int64 // compressed bytes written
	UnpackedSize int64 // sum of regular file sizes
	Files        int   // regular files packed
}

// PackOptions adjusts Pack.
type PackOptions struct {
	// Only, when set, packs just this one top-level name of the FS (a single
	// file release) instead of the whole tree.
	Only string
	// Progress, when set, is called with the number of file bytes read so far.
	Progress func(read int64)
}

// Pack writes fsys as a deterministic bundle to w: a tar stream with entries in
// lexical order, mtime 0, uid/gid 0, no owner names and modes normalised to
// 0755 for directories and executables and 0644 for other files, compressed
// with zstd at fixed settings. The same tree always gives the same bytes, and
// so the same release id. Only directories, regular files and symlinks that
// stay inside the tree are packed; anything else is refused with
// ErrUnsafeEntry. A tree of more than DefaultMaxEntries entries, which
// Unpack would refuse, is refused with ErrTooManyEntries. fsys should
// implement fs.ReadLinkFS (os.DirFS does) for symlinks to be packed.
func Pack(w io.Writer, fsys fs.FS, opts PackOptions) (PackResult, error) {
	h := sha256.New()
	cw := &countWriter{}
	enc, err := zstd.NewWriter(io.MultiWriter(w, h, cw),
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderConcurrency(1), // fixed, so output never depends on the machine
		zstd.WithEncoderCRC(true),
		zstd.WithZeroFrames(true),
	)
	if err != nil {
		return PackResult{}, fmt.Errorf("zstd: %w", err)
	}
	tw := tar.NewWriter(enc)
	p := packer{fsys: fsys, tw: tw, progress: opts.Progress, links: linkSet{}}
	root := "."
	if opts.Only != "" {
		if !fs.ValidPath(opts.Only) || strings.Contains(opts.Only, "/") {
			return PackResult{}, fmt.Errorf("pack: %q is not a top-level name", opts.Only)
		}
		root = opts.Only
	}
	if err := fs.WalkDir(fsys, root, p.visit); err != nil {
		enc.Close()
		return PackResult{}, fmt.Errorf("pack: %w", err)
	}
	if p.files == 0 {
		enc.Close()
		return PackResult{}, fmt.Errorf("pack: %w: no regular files", ErrEmpty)
	}
	if err := p.links.check(); err != nil {
		enc.Close()
		return PackResult{}, fmt.Errorf("pack: %w", err)
	}
	if err := tw.Close(); err != nil {
		enc.Close()
		return PackResult{}, fmt.Errorf("pack: tar: %w", err)
	}
	if err := enc.Close(); err != nil {
		return PackResult{}, fmt.Errorf("pack: zstd: %w", err)
	}
	return PackResult{ID: IDFromHash(h), BundleSize: cw.n, UnpackedSize: p.unpacked, Files: p.files}, nil
}

type packer struct {
	fsys     fs.FS
	tw       *tar.Writer
	progress func(int64)
	links    linkSet
	entries  int
	files    int
	unpacked int64
	read     int64
}

func (p *packer) visit(name string, d fs.DirEntry, err error) error {
	if err != nil {
		return err
	}
	if name == "." {
		return nil
	}
	// Unpack refuses more: a release no node would install fails here.
	if p.entries++; p.entries > DefaultMaxEntries {
		return fmt.Errorf("%w: more than %d files, directories and symlinks; pack fewer (ship many small files as one archive inside the release)", ErrTooManyEntries, DefaultMaxEntries)
	}
	hdr := &tar.Header{
		Name:    name,
		ModTime: epoch,
		Format:  tar.FormatPAX,
	}
	switch t := d.Type(); {
	case t.IsDir():
		hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
		return p.tw.WriteHeader(hdr)
	case t.IsRegular():
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, info.Size(), 0o644
		if info.Mode().Perm()&0o111 != 0 {
			hdr.Mode = 0o755
		}
		return p.file(hdr)
	case t&fs.ModeSymlink != 0:
		rl, ok := p.fsys.(fs.ReadLinkFS)
		if !ok {
			return fmt.Errorf("%w %s: symlink in a file system that cannot read links", ErrUnsafeEntry, name)
		}
		target, err := rl.ReadLink(name)
		if err != nil {
			return err
		}
		if err := checkLink(name, target); err != nil {
			return err
		}
		p.links[name] = target
		hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, target, 0o777
		return p.tw.WriteHeader(hdr)
	default:
		return fmt.Errorf("%w %s: type %s is not a file, directory or symlink", ErrUnsafeEntry, name, t)
	}
}

func (p *packer) file(hdr *tar.Header) error {
	f, err := p.fsys.Open(hdr.Name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := p.tw.WriteHeader(hdr); err != nil {
		return err
	}
	var src io.Reader = f
	if p.progress != nil {
		src = &progressReader{r: f, fn: func(n int64) { p.read += n; p.progress(p.read) }}
	}
	n, err := io.Copy(p.tw, src)
	if err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	if n != hdr.Size {
		return fmt.Errorf("%s: size changed while packing (%d, then %d bytes)", hdr.Name, hdr.Size, n)
	}
	p.files++
	p.unpacked += n
	return nil
}

// checkLink refuses symlink targets that are absolute or climb out of the tree.
func checkLink(name, target string) error {
	if target == "" || path.IsAbs(target) || strings.HasPrefix(target, "\\") {
		return fmt.Errorf("%w %s: symlink target %q is absolute or empty", ErrUnsafeEntry, name, target)
	}
	resolved := path.Join(path.Dir(name), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("%w %s: symlink target %q leaves the tree", ErrUnsafeEntry, name, target)
	}
	return nil
}

// maxLinkHops bounds how many symlinks one resolution may follow; Linux gives
// up (ELOOP) after 40, so a chain this long can never be followed anywhere.
const maxLinkHops = 40

// linkSet holds a tree's symlinks, by path, with their targets. Checking each
// target on its own (checkLink) is not enough: "a/b" -> ".." and
// "a/c" -> "b/.." both look inside the tree, yet a/c resolves to the tree's
// parent. check resolves every target through the other links.
type linkSet map[string]string

// check refuses a link that resolves outside the tree or through a loop. It
// assumes no entry's parent path goes through a link (true of a walked tree,
// and enforced by Unpack).
func (s linkSet) check() error {
	names := make([]string, 0, len(s))
	for name := range s {
		names = append(names, name)
	}
	slices.Sort(names) // the same tree always reports the same link
	for _, name := range names {
		if err := s.resolve(name); err != nil {
			return err
		}
	}
	return nil
}

// resolve follows name's target component by component, as the kernel would,
// and fails if it climbs above the root. Components that do not exist are
// taken as directories, which only makes the check stricter.
func (s linkSet) resolve(name string) error {
	var cur []string
	if dir := path.Dir(name); dir != "." {
		cur = strings.Split(dir, "/")
	}
	if path.IsAbs(s[name]) {
		return fmt.Errorf("%w %s: symlink target %q is absolute", ErrUnsafeEntry, name, s[name])
	}
	todo := strings.Split(s[name], "/")
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return fmt.Errorf("%w %s: symlink target %q leaves the tree", ErrUnsafeEntry, name, s[name])
			}
			cur = cur[:len(cur)-1]
			continue
		}
		cur = append(cur, c)
		target, ok := s[strings.Join(cur, "/")]
		if !ok {
			continue
		}
		if hops++; hops > maxLinkHops {
			return fmt.Errorf("%w %s: symlink target %q loops or chains through more than %d links", ErrUnsafeEntry, name, s[name], maxLinkHops)
		}
		if path.IsAbs(target) {
			return fmt.Errorf("%w %s: symlink target %q goes through an absolute link", ErrUnsafeEntry, name, s[name])
		}
		cur = cur[:len(cur)-1]
		todo = append(strings.Split(target, "/"), todo...)
	}
	return nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(b []byte) (int, error) { c.n += int64(len(b)); return len(b), nil }

type progressReader struct {
	r  io.Reader
	fn func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.fn(int64(n))
	}
	return n, err
}

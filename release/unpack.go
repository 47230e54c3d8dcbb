package release

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Sentinel errors for Unpack; match them with errors.Is.
var (
	// ErrTooLarge: the bundle unpacks to more bytes than its manifest's
	// unpacked size, is longer than its manifest's bundle size, or spends
	// more than a tar header's worth of bytes between two entries.
	ErrTooLarge = errors.New("bundle is larger than its manifest says")
	// ErrIDMismatch: the bundle's bytes do not hash to the expected release id.
	ErrIDMismatch = errors.New("bundle does not match its release id")
	// ErrTrailingData: the bundle goes on after its tar archive's
	// end-of-archive marker. Pack writes nothing there, so such a bundle was
	// made by something else: it is how gigabytes of zeros hide behind a
	// few files.
	ErrTrailingData = errors.New("bundle has data after the end of its tar archive")
	// ErrEntryBody: a directory or symlink entry declares a body. Pack never
	// writes one; a tar reader skips it unread, so it can only hide data.
	ErrEntryBody = errors.New("bundle entry that is not a regular file declares a body")
	// ErrTooManyEntries: the bundle holds more entries than Unpack accepts
	// (UnpackOptions.MaxEntries, by default DefaultMaxEntries).
	ErrTooManyEntries = errors.New("bundle has too many entries")
)

// DefaultMaxEntries is how many entries (files, directories and symlinks
// together) a bundle may hold, and Pack may write. Manifests do not record a
// file count, so this is one bound for every release: each entry costs an
// inode and a file creation on every node, and a release with more files
// than this should ship them as one archive inside the release.
const DefaultMaxEntries = 1 << 16

// maxHeaderBytes bounds the tar bytes Unpack reads between one entry's body
// and the next entry (padding, header, PAX or GNU long-name records) and
// after the last one (the end-of-archive marker). Pack writes at most a few
// KiB there (a PAX record for a path near PATH_MAX).
const maxHeaderBytes = 64 << 10

// UnpackOptions bounds what Unpack accepts.
type UnpackOptions struct {
	// Name names the release in errors, e.g. "web 2.0.0"; empty: "bundle".
	Name string
	// MaxBytes is the most file bytes the bundle may unpack to, normally the
	// manifest's UnpackedSize. Zero means no file bytes at all.
	MaxBytes int64
	// MaxBundleBytes is the most compressed bytes Unpack reads, normally the
	// manifest's BundleSize; zero means no bound.
	MaxBundleBytes int64
	// MaxEntries is the most entries the bundle may hold; zero means
	// DefaultMaxEntries.
	MaxEntries int
	// ExpectID, when set, is checked against the sha256 of every byte read.
	ExpectID ID
}

// republish is what to do about a bundle that breaks the format's rules:
// Pack never writes one, so it was made or changed by something else.
const republish = "swarm publish never writes this; publish the release again from its directory as a new version"

// Unpack extracts a bundle into dir, which must exist and be empty. It accepts
// only directories, regular files and symlinks whose targets stay inside dir;
// it refuses (with ErrUnsafeEntry) absolute paths, "..", hard links, devices,
// pipes, duplicate entries and entries placed through a symlink. It refuses
// more than opts.MaxBytes of file content or opts.MaxBundleBytes of bundle
// (ErrTooLarge), more than opts.MaxEntries entries (ErrTooManyEntries), a
// directory or symlink with a body (ErrEntryBody), anything after the tar
// archive's end (ErrTrailingData) and a bundle without a regular file
// (ErrEmpty). Modes are 0755 for directories and executables and 0644 for
// other files, whatever the umask. All writes go through an os.Root, so no
// entry can escape dir whatever the checks miss.
//
// Unpack checks ctx on every read, compressed or not, and returns ctx's
// error soon after it ends, however large the bundle. On error, dir holds a
// partial tree that the caller must remove.
func Unpack(ctx context.Context, r io.Reader, dir string, opts UnpackOptions) error {
	name := opts.Name
	if name == "" {
		name = "bundle"
	}
	if err := unpack(ctx, r, dir, opts); err != nil {
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return fmt.Errorf("unpack %s: %w", name, err)
	}
	return nil
}

func unpack(ctx context.Context, r io.Reader, dir string, opts UnpackOptions) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	maxEntries := opts.MaxEntries
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}

	h := sha256.New()
	in := &boundedReader{ctx: ctx, r: r, hash: h, max: -1}
	if opts.MaxBundleBytes > 0 {
		in.max = opts.MaxBundleBytes
		in.over = func() error {
			return fmt.Errorf("%w: more than its %d bytes; the manifest and bundle do not belong together: %s",
				ErrTooLarge, opts.MaxBundleBytes, republish)
		}
	}
	dec, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		return fmt.Errorf("zstd: %w", err)
	}
	defer dec.Close()
	out := &boundedReader{ctx: ctx, r: dec}
	// cause prefers what the readers saw (ctx ended, a bound crossed) to
	// however the decoder or tar reader reported it.
	cause := func(err error) error {
		for _, b := range []*boundedReader{in, out} {
			if b.err != nil {
				return b.err
			}
		}
		return err
	}

	tr := tar.NewReader(out)
	var written int64
	files, entries := 0, 0
	seen := map[string]bool{}
	links := linkSet{}
	headerOver := func() error {
		return fmt.Errorf("%w: a tar header of more than %d bytes after entry %d; %s", ErrTooLarge, maxHeaderBytes, entries, republish)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		out.limit(maxHeaderBytes, headerOver)
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read bundle: %w", cause(err))
		}
		if entries++; entries > maxEntries {
			return fmt.Errorf("%w: more than %d; pack fewer files (an archive inside the release counts as one)", ErrTooManyEntries, maxEntries)
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return err
		}
		if seen[name] {
			return fmt.Errorf("%w %s: duplicate entry", ErrUnsafeEntry, name)
		}
		seen[name] = true
		// Nothing is placed through a symlink: it would land somewhere other
		// than its name says, and linkSet.check relies on names being real.
		for i := range len(name) {
			if name[i] != '/' {
				continue
			}
			if _, ok := links[name[:i]]; ok {
				return fmt.Errorf("%w %s: path goes through symlink %s", ErrUnsafeEntry, name, name[:i])
			}
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Size != 0 {
			return fmt.Errorf("%w: %s (tar type %q) declares %d bytes; %s", ErrEntryBody, name, hdr.Typeflag, hdr.Size, republish)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.Mkdir(name, 0o755); err != nil {
				return err
			}
			// Mkdir honours the umask; a release's tree must not depend on it.
			if err := root.Chmod(name, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if hdr.Size < 0 || hdr.Size > opts.MaxBytes-written {
				return fmt.Errorf("%s: %w: more than %d bytes of files; the manifest and bundle do not belong together: %s",
					name, ErrTooLarge, opts.MaxBytes, republish)
			}
			mode := os.FileMode(0o644)
			if hdr.Mode&0o111 != 0 {
				mode = 0o755
			}
			out.limit(hdr.Size, nil)
			n, err := writeEntry(root, name, mode, tr, hdr.Size)
			written += n
			if err != nil {
				return fmt.Errorf("%s: %w", name, cause(err))
			}
			files++
		case tar.TypeSymlink:
			if err := checkLink(name, hdr.Linkname); err != nil {
				return err
			}
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return err
			}
			links[name] = hdr.Linkname
		default:
			return fmt.Errorf("%w %s: tar type %q is not a file, directory or symlink", ErrUnsafeEntry, name, hdr.Typeflag)
		}
	}
	// Pack ends the stream with the end-of-archive marker the tar reader
	// has just read. One more byte of tar is refused without decoding the
	// rest, however much there is.
	var one [1]byte
	if n, err := io.ReadFull(dec, one[:]); n > 0 {
		return fmt.Errorf("%w: at byte %d of the tar stream; %s", ErrTrailingData, out.n, republish)
	} else if !errors.Is(err, io.EOF) {
		return fmt.Errorf("read bundle: %w", cause(err))
	}
	// The decoder has seen the end of its input; read anything it left so
	// that the id covers every byte.
	if _, err := io.Copy(io.Discard, in); err != nil {
		return fmt.Errorf("read bundle: %w", cause(err))
	}
	if opts.ExpectID != "" {
		if got := IDFromHash(h); got != opts.ExpectID {
			return fmt.Errorf("%w: got %s, want %s", ErrIDMismatch, got, opts.ExpectID)
		}
	}
	if err := links.check(); err != nil {
		return err
	}
	if files == 0 {
		return fmt.Errorf("%w: bundle holds no regular file", ErrEmpty)
	}
	return nil
}

// boundedReader checks ctx before every read, counts bytes, feeds them to
// hash when set and refuses to read past a bound. Its first error sticks,
// so that Unpack reports it whatever the decoder or tar reader made of it.
type boundedReader struct {
	ctx  context.Context
	r    io.Reader
	hash hash.Hash

	n    int64        // bytes read
	max  int64        // most bytes allowed in all; negative: no bound
	over func() error // the error for reading past max
	err  error
}

// limit allows n more bytes from here, failing with over past them.
func (b *boundedReader) limit(n int64, over func() error) {
	b.max, b.over = b.n+n, over
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if err := b.ctx.Err(); err != nil {
		b.err = err
		return 0, err
	}
	if b.max >= 0 && int64(len(p)) > b.max-b.n {
		// One byte past the bound tells "more" from "exactly this much".
		p = p[:b.max-b.n+1]
	}
	n, err := b.r.Read(p)
	if b.max >= 0 && b.n+int64(n) > b.max {
		n = int(b.max - b.n)
		b.err = fmt.Errorf("%w: read past a bound", ErrTooLarge)
		if b.over != nil {
			b.err = b.over()
		}
		err = b.err
	}
	if b.hash != nil {
		b.hash.Write(p[:n])
	}
	b.n += int64(n)
	return n, err
}

// entryName checks a tar entry name and returns it without a trailing slash.
func entryName(raw string) (string, error) {
	name := strings.TrimSuffix(raw, "/")
	if strings.HasPrefix(raw, "/") || strings.Contains(raw, "\\") || !fs.ValidPath(name) || name == "." {
		return "", fmt.Errorf("%w %q: absolute, empty or contains '..'", ErrUnsafeEntry, raw)
	}
	return name, nil
}

func writeEntry(root *os.Root, name string, mode os.FileMode, r io.Reader, size int64) (int64, error) {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return 0, err
	}
	n, err := io.CopyN(f, r, size)
	if err == nil {
		err = f.Chmod(mode) // as for directories: not the umask's choice
	}
	if err != nil {
		f.Close()
		return n, err
	}
	return n, f.Close()
}

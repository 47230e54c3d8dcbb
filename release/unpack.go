package release

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Sentinel errors for Unpack; match them with errors.Is.
var (
	// ErrTooLarge: the bundle unpacks to more bytes than its manifest says.
	ErrTooLarge = errors.New("bundle unpacks to more than its manifest's unpacked size")
	// ErrIDMismatch: the bundle's bytes do not hash to the expected release id.
	ErrIDMismatch = errors.New("bundle does not match its release id")
)

// UnpackOptions bounds what Unpack accepts.
type UnpackOptions struct {
	// MaxBytes is the most file bytes the bundle may unpack to, normally the
	// manifest's UnpackedSize. Zero means no file bytes at all.
	MaxBytes int64
	// ExpectID, when set, is checked against the sha256 of every byte read.
	ExpectID ID
}

// Unpack extracts a bundle into dir, which must exist and be empty. It accepts
// only directories, regular files and symlinks whose targets stay inside dir;
// it refuses (with ErrUnsafeEntry) absolute paths, "..", hard links, devices,
// pipes, duplicate entries and entries placed through a symlink, and refuses
// more than opts.MaxBytes of file content (ErrTooLarge) and a bundle without
// a regular file (ErrEmpty). Modes are 0755 for directories and executables
// and 0644 for other files, whatever the umask. All writes go through
// an os.Root, so no entry can escape dir whatever the checks miss. On error,
// dir holds a partial tree that the caller must remove.
func Unpack(r io.Reader, dir string, opts UnpackOptions) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	defer root.Close()

	h := sha256.New()
	dec, err := zstd.NewReader(io.TeeReader(r, h), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		return fmt.Errorf("unpack: zstd: %w", err)
	}
	defer dec.Close()

	tr := tar.NewReader(dec)
	var written int64
	files := 0
	seen := map[string]bool{}
	links := linkSet{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("unpack: read bundle: %w", err)
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
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.Mkdir(name, 0o755); err != nil {
				return fmt.Errorf("unpack %s: %w", name, err)
			}
			// Mkdir honours the umask; a release's tree must not depend on it.
			if err := root.Chmod(name, 0o755); err != nil {
				return fmt.Errorf("unpack %s: %w", name, err)
			}
		case tar.TypeReg:
			if hdr.Size < 0 || hdr.Size > opts.MaxBytes-written {
				return fmt.Errorf("unpack %s: %w (%d bytes allowed)", name, ErrTooLarge, opts.MaxBytes)
			}
			mode := os.FileMode(0o644)
			if hdr.Mode&0o111 != 0 {
				mode = 0o755
			}
			n, err := writeEntry(root, name, mode, tr, hdr.Size)
			written += n
			if err != nil {
				return err
			}
			files++
		case tar.TypeSymlink:
			if err := checkLink(name, hdr.Linkname); err != nil {
				return err
			}
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return fmt.Errorf("unpack %s: %w", name, err)
			}
			links[name] = hdr.Linkname
		default:
			return fmt.Errorf("%w %s: tar type %q is not a file, directory or symlink", ErrUnsafeEntry, name, hdr.Typeflag)
		}
	}
	// Read to the end so the id covers every byte, trailing ones included.
	if _, err := io.Copy(io.Discard, dec); err != nil {
		return fmt.Errorf("unpack: read bundle: %w", err)
	}
	if opts.ExpectID != "" {
		if got := IDFromHash(h); got != opts.ExpectID {
			return fmt.Errorf("unpack: %w: got %s, want %s", ErrIDMismatch, got, opts.ExpectID)
		}
	}
	if err := links.check(); err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	if files == 0 {
		return fmt.Errorf("unpack: %w: bundle holds no regular file", ErrEmpty)
	}
	return nil
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
		return 0, fmt.Errorf("unpack %s: %w", name, err)
	}
	n, err := io.CopyN(f, r, size)
	if err == nil {
		err = f.Chmod(mode) // as for directories: not the umask's choice
	}
	if err != nil {
		f.Close()
		return n, fmt.Errorf("unpack %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("unpack %s: %w", name, err)
	}
	return n, nil
}

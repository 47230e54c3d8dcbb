package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
	"golang.org/x/sys/unix"

	"github.com/swarmdeploy/swarm/release"
)

// DiskFullError reports that a bundle does not fit the file system it is
// stored on: Need more bytes were wanted, and only Free were available to
// an unprivileged writer, on the file system of Dir. It wraps
// syscall.ENOSPC, whether the file system said so (a reservation or a
// write) or a check before any byte was written found it.
type DiskFullError struct {
	Dir        string
	Need, Free int64
}

func (e *DiskFullError) Error() string {
	return fmt.Sprintf(diskFullPrefix+"need %s, %s free on %s", SizeText(e.Need, true), SizeText(e.Free, false), e.Dir)
}

func (e *DiskFullError) Unwrap() error { return syscall.ENOSPC }

// diskFullPrefix starts every DiskFullError's text.
const diskFullPrefix = "disk full: "

// IsDiskFull reports whether a gossiped failure reason is a DiskFullError's
// text: the node's host, not the release, is at fault.
func IsDiskFull(reason string) bool { return strings.HasPrefix(reason, diskFullPrefix) }

// SizeText writes n bytes for an operator: "512 KiB", "128 MiB", "12.5 GiB".
// up rounds up (a need), otherwise down (what is free), so that a need
// never reads as if it fitted.
func SizeText(n int64, up bool) string {
	unit, name := int64(1), "B"
	switch {
	case n >= 10<<40:
		return fmt.Sprintf("%.1f TiB", float64(n)/(1<<40))
	case n >= 10<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		unit, name = 1<<20, "MiB"
	case n >= 1<<10:
		unit, name = 1<<10, "KiB"
	}
	q := n / unit
	if up && n%unit != 0 {
		q++
	}
	return fmt.Sprintf("%d %s", q, name)
}

// FreeBytes is the space an unprivileged writer has left on dir's file
// system.
func FreeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// allocated is how many bytes of f's first size are on disk: a part file
// is sparse where nothing was written (or reserved) yet.
func allocated(fi fs.FileInfo, size int64) int64 {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return min(fi.Size(), size)
	}
	return min(st.Blocks*512, size)
}

// SpaceNeeded is how many more bytes of disk release m's bundle takes
// before it is complete: its size less what its part file already holds.
// It is 0 for a bundle already stored whole, and in shared mode (nothing
// is stored).
func (c *Client) SpaceNeeded(m release.Manifest) int64 {
	if c.shared != nil {
		return 0
	}
	path := c.BundlePath(m.ReleaseID)
	if fi, err := os.Stat(path); err == nil && fi.Size() == m.BundleSize {
		return 0
	}
	fi, err := os.Stat(path + partSuffix)
	if err != nil {
		return m.BundleSize
	}
	return m.BundleSize - allocated(fi, m.BundleSize)
}

// reservePart creates the part file of a bundle of size bytes at path (its
// final name) if it is missing, and reserves the disk space the whole
// bundle takes (fallocate), so that a disk too small fails here, before a
// byte is fetched, rather than part way. fresh reports that the file is
// new: none of its pieces is there yet. A new part file that does not fit
// is removed; an old one keeps the pieces it holds. Where the file system
// cannot reserve, nothing is reserved and a full disk shows as a write
// error instead.
func reservePart(path string, size int64) (fresh bool, err error) {
	part := path + partSuffix
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	fresh = err == nil
	if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(part, os.O_RDWR, 0)
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	err = unix.Fallocate(int(f.Fd()), 0, 0, size)
	switch {
	case err == nil:
		return fresh, nil
	case errors.Is(err, syscall.ENOSPC):
		full := diskFull(f, filepath.Dir(path), size)
		if fresh {
			full.Need = size
			if rmErr := os.Remove(part); rmErr != nil {
				return false, fmt.Errorf("%w (and removing the new part file: %w)", full, rmErr)
			}
		}
		return false, full
	case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOSYS), errors.Is(err, syscall.EINVAL):
		return fresh, nil // no reservation here; writes report a full disk
	default:
		return false, fmt.Errorf("reserve %d bytes for %s: %w", size, part, err)
	}
}

// diskFull describes a full disk for f, a part file of a bundle of size
// bytes in dir.
func diskFull(f *os.File, dir string, size int64) *DiskFullError {
	e := &DiskFullError{Dir: filepath.Dir(dir), Need: size}
	if fi, err := f.Stat(); err == nil {
		e.Need = size - allocated(fi, size)
	}
	e.Free, _ = FreeBytes(dir)
	return e
}

// fileStorage keeps one release's bundle in one file on disk, read and
// written through a file descriptor (pread and pwrite), never through a
// memory mapping. anacrolix's own file storage maps the file: the release's
// pages then count as the agent's resident memory (a whole bundle's worth,
// against a cgroup's limit too), and a write to a full disk becomes SIGBUS
// when a page cannot be allocated, a crash instead of an error. Through a
// descriptor, memory is the buffers in flight and a full disk is ENOSPC,
// which anacrolix reports to the fetch (Torrent.SetOnWriteChunkError).
//
// While pieces are missing the file is path+partSuffix; once every piece
// has passed its hash check it is synced and renamed to path, so a bundle
// under its final name is always whole. The fetch creates the part file and
// reserves its space first (reservePart).
type fileStorage struct {
	path     string
	complete bool // the bundle at path is whole and verified: seed it
	fresh    bool // the part file is new: no piece is there yet
	// resumed, if set, is told once how many pieces (and bytes) of an old
	// part file passed their check, when every one has been checked.
	resumed func(pieces, of int, bytes int64)
}

func newFileStorage(path string, complete, fresh bool, resumed func(pieces, of int, bytes int64)) *fileStorage {
	return &fileStorage{path: path, complete: complete, fresh: fresh, resumed: resumed}
}

func (s *fileStorage) Close() error { return nil }

// OpenTorrent opens the bundle (complete) or its part file, which it
// creates if missing. Pieces of a part file that existed before are
// unknown until anacrolix hashes them, so a restarted fetch keeps what it
// had; pieces of a new part file are known missing, so nothing is hashed.
func (s *fileStorage) OpenTorrent(_ context.Context, info *metainfo.Info, _ metainfo.Hash) (storage.TorrentImpl, error) {
	if info == nil || info.PieceLength <= 0 || len(info.Files) != 0 {
		return storage.TorrentImpl{}, errors.New("file storage: need a single-file info with a piece length")
	}
	t := &fileTorrent{
		path:    s.path,
		known:   make([]bool, info.NumPieces()),
		done:    make([]bool, info.NumPieces()),
		size:    info.Length,
		pieceLn: info.PieceLength,
		resumed: s.resumed,
	}
	var err error
	if s.complete {
		t.f, err = os.Open(s.path)
		t.final = true
	} else {
		t.f, err = t.openPart(s.fresh)
	}
	if err != nil {
		return storage.TorrentImpl{}, fmt.Errorf("file storage: %w", err)
	}
	if t.final {
		for i := range t.done {
			t.known[i], t.done[i] = true, true
		}
		t.ndone = len(t.done)
	}
	return storage.TorrentImpl{
		Piece: func(p metainfo.Piece) storage.PieceImpl {
			return filePiece{t: t, i: p.Index(), off: p.Offset(), length: p.Length()}
		},
		Close: t.close,
	}, nil
}

// openPart opens the part file, creating it empty if it does not exist.
// A new file (created here, or by reservePart just before: fresh) has no
// piece yet; a file left by an earlier fetch is re-checked piece by piece.
func (t *fileTorrent) openPart(fresh bool) (*os.File, error) {
	part := t.path + partSuffix
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err == nil || fresh {
		if err != nil {
			f, err = os.OpenFile(part, os.O_RDWR, 0)
			if err != nil {
				return nil, err
			}
		}
		for i := range t.known {
			t.known[i] = true
		}
		return f, nil
	}
	if !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	t.unknown = len(t.known)
	return os.OpenFile(part, os.O_RDWR, 0)
}

// fileTorrent is one open bundle.
type fileTorrent struct {
	path    string
	f       *os.File // safe for concurrent ReadAt and WriteAt
	size    int64
	pieceLn int64
	resumed func(pieces, of int, bytes int64) // see fileStorage

	mu    sync.Mutex
	known []bool // the piece's state is known: hashed, or the file is new
	done  []bool // the piece passed its hash check
	ndone int
	final bool // renamed to path: every piece is done
	// unknown counts the pieces of an old part file not checked yet; kept
	// counts those of them that passed.
	unknown, kept int
	keptBytes     int64
}

// close closes the file closeGrace later, not now: anacrolix/torrent
// (v1.59.1) may still be reading a piece for a peer when it closes the
// torrent, and a read that fails then panics the whole process
// (PeerConn.servePeerRequest: "panic: true"); a read that succeeds is
// simply dropped. Reads under way take microseconds; the grace is short so
// that the space of a removed part file comes back soon after.
func (t *fileTorrent) close() error {
	time.AfterFunc(closeGrace, func() { t.f.Close() })
	return nil
}

// closeGrace is how long a closed torrent's file stays open for reads
// already under way (see fileTorrent.close).
const closeGrace = 2 * time.Second

// SpaceReturnDelay bounds how long the disk space of a bundle or part file
// removed after Drop takes to come back: its file stays open for reads
// under way that long.
const SpaceReturnDelay = closeGrace

// markDone records piece i as verified and, once every piece is, syncs
// the part file and renames it to the bundle's name.
func (t *fileTorrent) markDone(i int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.known[i] {
		t.kept++
		t.keptBytes += min(t.pieceLn, t.size-int64(i)*t.pieceLn)
		t.noteChecked()
	}
	t.known[i] = true
	if t.done[i] {
		return nil
	}
	t.done[i] = true
	t.ndone++
	if t.ndone < len(t.done) || t.final {
		return nil
	}
	if err := t.f.Sync(); err != nil {
		return fmt.Errorf("file storage: sync: %w", err)
	}
	if err := os.Rename(t.path+partSuffix, t.path); err != nil {
		return fmt.Errorf("file storage: %w", err)
	}
	t.final = true
	return nil
}

func (t *fileTorrent) markMissing(i int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.known[i] {
		t.noteChecked()
	}
	t.known[i] = true
	if t.done[i] {
		t.done[i] = false
		t.ndone--
	}
}

// noteChecked counts one piece of an old part file checked and, after the
// last, says how many were kept. Called with t.mu held, before the piece is
// marked known.
func (t *fileTorrent) noteChecked() {
	t.unknown--
	if t.unknown == 0 && t.resumed != nil {
		t.resumed(t.kept, len(t.known), t.keptBytes)
	}
}

// filePiece is the anacrolix view of one piece; anacrolix makes one
// whenever it needs the piece, so the state lives in fileTorrent.
type filePiece struct {
	t      *fileTorrent
	i      int
	off    int64 // of the piece in the bundle
	length int64
}

var (
	_ storage.PieceImpl = filePiece{}
	_ io.WriterTo       = filePiece{}
)

func (p filePiece) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 || off >= p.length {
		return 0, io.EOF
	}
	short := int64(len(b)) > p.length-off
	b = b[:min(int64(len(b)), p.length-off)]
	n, err := p.t.f.ReadAt(b, p.off+off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

// WriteTo writes the whole piece to w: what anacrolix hashes.
func (p filePiece) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, io.NewSectionReader(p.t.f, p.off, p.length))
}

func (p filePiece) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(b)) > p.length {
		return 0, fmt.Errorf("file storage: write [%d, %d) outside a piece of %d bytes", off, off+int64(len(b)), p.length)
	}
	n, err := p.t.f.WriteAt(b, p.off+off)
	if errors.Is(err, syscall.ENOSPC) {
		// Only where the space could not be reserved (reservePart).
		return n, fmt.Errorf("write %s: %w", p.t.path+partSuffix, diskFull(p.t.f, filepath.Dir(p.t.path), p.t.size))
	}
	return n, err
}

// MarkComplete is called by anacrolix once the piece passed its hash.
func (p filePiece) MarkComplete() error { return p.t.markDone(p.i) }

// MarkNotComplete is called when the piece failed its hash, or a read of
// it failed: it is fetched again.
func (p filePiece) MarkNotComplete() error {
	p.t.markMissing(p.i)
	return nil
}

func (p filePiece) Completion() storage.Completion {
	p.t.mu.Lock()
	defer p.t.mu.Unlock()
	return storage.Completion{Ok: p.t.known[p.i], Complete: p.t.done[p.i]}
}

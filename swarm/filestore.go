package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
)

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
// under its final name is always whole.
type fileStorage struct {
	path     string
	complete bool // the bundle at path is whole and verified: seed it
}

func newFileStorage(path string, complete bool) *fileStorage {
	return &fileStorage{path: path, complete: complete}
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
		path:  s.path,
		known: make([]bool, info.NumPieces()),
		done:  make([]bool, info.NumPieces()),
	}
	var err error
	if s.complete {
		t.f, err = os.Open(s.path)
		t.final = true
	} else {
		t.f, err = t.openPart()
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
// A new file has no piece yet; a file left by an earlier fetch is
// re-checked piece by piece.
func (t *fileTorrent) openPart() (*os.File, error) {
	part := t.path + partSuffix
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err == nil {
		for i := range t.known {
			t.known[i] = true
		}
		return f, nil
	}
	if !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	return os.OpenFile(part, os.O_RDWR, 0)
}

// fileTorrent is one open bundle.
type fileTorrent struct {
	path string
	f    *os.File // safe for concurrent ReadAt and WriteAt

	mu    sync.Mutex
	known []bool // the piece's state is known: hashed, or the file is new
	done  []bool // the piece passed its hash check
	ndone int
	final bool // renamed to path: every piece is done
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

// markDone records piece i as verified and, once every piece is, syncs
// the part file and renames it to the bundle's name.
func (t *fileTorrent) markDone(i int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
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
	t.known[i] = true
	if t.done[i] {
		t.done[i] = false
		t.ndone--
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
	return p.t.f.WriteAt(b, p.off+off)
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

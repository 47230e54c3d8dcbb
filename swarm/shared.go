package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
)

// sharedPage is the unit in which sharedStorage buffers a piece that is not
// verified yet: a divisor of chunkSize (and anacrolix's default chunk), so a
// piece holds only the chunks that have arrived.
const sharedPage = 16 << 10

// errChunkMissing reports a read of a part of an unverified piece that has
// not been received.
var errChunkMissing = errors.New("shared storage: chunk not received")

// sharedStorage is a release's storage in shared mode (Config.SharedDir): the
// client keeps no copy of the bundle.
//
// Chunks of a piece that is not verified yet are held in memory. anacrolix
// verifies a piece by reading it back from storage (WriteTo, or ReadAt) and
// hashing what it reads against the piece hash in the info dictionary; for an
// unverified piece both return exactly the chunks received, so the bytes
// hashed are the bytes that crossed the wire. anacrolix calls MarkComplete
// only when that hash matched, and MarkNotComplete when it did not; both drop
// the chunks. A complete piece is then read from the shared file, which holds
// the verified bundle (the origin's copy in the same process), so it yields
// the same bytes that were hashed. The shared file is only ever read.
//
// Memory is the chunks of pieces in flight, not the bundle.
type sharedStorage struct {
	path     string // the shared, verified bundle
	complete bool   // every piece starts complete: the bundle is seeded
	pages    *sharedPages
}

func newSharedStorage(path string, complete bool, pages *sharedPages) *sharedStorage {
	return &sharedStorage{path: path, complete: complete, pages: pages}
}

// sharedPages recycles one client's pages and counts the bytes it holds.
type sharedPages struct {
	pool     sync.Pool // of *[sharedPage]byte
	buffered atomic.Int64
	peak     atomic.Int64
}

func (sp *sharedPages) get() *[sharedPage]byte {
	pg, _ := sp.pool.Get().(*[sharedPage]byte)
	if pg == nil {
		pg = new([sharedPage]byte)
	} else {
		clear(pg[:])
	}
	n := sp.buffered.Add(sharedPage)
	for {
		p := sp.peak.Load()
		if n <= p || sp.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return pg
}

func (sp *sharedPages) put(pg *[sharedPage]byte) {
	sp.buffered.Add(-sharedPage)
	sp.pool.Put(pg)
}

func (s *sharedStorage) Close() error { return nil }

func (s *sharedStorage) OpenTorrent(_ context.Context, info *metainfo.Info, _ metainfo.Hash) (storage.TorrentImpl, error) {
	if info == nil || info.PieceLength <= 0 {
		return storage.TorrentImpl{}, errors.New("shared storage: info without a piece length")
	}
	t := &sharedTorrent{
		path:   s.path,
		pages:  s.pages,
		pieces: make([]sharedPiece, info.NumPieces()),
	}
	for i := range t.pieces {
		t.pieces[i].complete = s.complete
	}
	return storage.TorrentImpl{
		Piece: func(p metainfo.Piece) storage.PieceImpl {
			return sharedPieceImpl{t: t, p: &t.pieces[p.Index()], off: p.Offset(), length: p.Length()}
		},
		Close: t.close,
	}, nil
}

// sharedTorrent is one release in a sharedStorage.
type sharedTorrent struct {
	path   string
	pages  *sharedPages
	pieces []sharedPiece

	fileMu sync.Mutex
	file   *os.File // opened on first read of a complete piece
	closed bool
}

// sharedPiece is one piece's state. Before it is complete, pages[i] holds
// bytes [i*sharedPage, (i+1)*sharedPage) of the piece as received, or nil.
type sharedPiece struct {
	mu       sync.Mutex
	complete bool
	pages    []*[sharedPage]byte
}

func (t *sharedTorrent) open() (*os.File, error) {
	t.fileMu.Lock()
	defer t.fileMu.Unlock()
	if t.closed {
		if t.file != nil {
			return t.file, nil // within closeGrace of close
		}
		return nil, errors.New("shared storage closed")
	}
	if t.file == nil {
		f, err := os.Open(t.path)
		if err != nil {
			return nil, fmt.Errorf("shared storage: %w", err)
		}
		t.file = f
	}
	return t.file, nil
}

// close frees the torrent's pages and closes its file closeGrace later,
// reads of complete pieces still working until then (see fileTorrent.close:
// a read that fails while anacrolix closes the torrent panics the process).
func (t *sharedTorrent) close() error {
	t.fileMu.Lock()
	f := t.file
	t.closed = true
	t.fileMu.Unlock()
	for i := range t.pieces {
		p := &t.pieces[i]
		p.mu.Lock()
		t.dropLocked(p)
		p.mu.Unlock()
	}
	if f != nil {
		time.AfterFunc(closeGrace, func() {
			t.fileMu.Lock()
			t.file = nil
			t.fileMu.Unlock()
			f.Close()
		})
	}
	return nil
}

// dropLocked frees p's pages.
func (t *sharedTorrent) dropLocked(p *sharedPiece) {
	for _, pg := range p.pages {
		if pg != nil {
			t.pages.put(pg)
		}
	}
	p.pages = nil
}

// sharedPieceImpl is the anacrolix view of one piece; anacrolix makes one
// whenever it needs the piece, so the state lives in sharedTorrent.
type sharedPieceImpl struct {
	t      *sharedTorrent
	p      *sharedPiece
	off    int64 // of the piece in the bundle
	length int64
}

var (
	_ storage.PieceImpl = sharedPieceImpl{}
	_ io.WriterTo       = sharedPieceImpl{}
)

func (s sharedPieceImpl) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 || off >= s.length {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), s.length-off)]
	s.p.mu.Lock()
	if s.p.complete {
		s.p.mu.Unlock()
		f, err := s.t.open()
		if err != nil {
			return 0, err
		}
		return f.ReadAt(b, s.off+off)
	}
	defer s.p.mu.Unlock()
	return s.readPagesLocked(b, off)
}

// readPagesLocked copies received bytes of an unverified piece.
func (s sharedPieceImpl) readPagesLocked(b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		at := off + int64(n)
		i := int(at / sharedPage)
		if i >= len(s.p.pages) || s.p.pages[i] == nil {
			return n, errChunkMissing
		}
		n += copy(b[n:], s.p.pages[i][at%sharedPage:min(sharedPage, s.length-int64(i)*sharedPage)])
	}
	return n, nil
}

// WriteTo writes the whole piece to w: what anacrolix hashes.
func (s sharedPieceImpl) WriteTo(w io.Writer) (int64, error) {
	s.p.mu.Lock()
	if s.p.complete {
		s.p.mu.Unlock()
		f, err := s.t.open()
		if err != nil {
			return 0, err
		}
		return io.Copy(w, io.NewSectionReader(f, s.off, s.length))
	}
	defer s.p.mu.Unlock()
	var n int64
	for i := int64(0); i*sharedPage < s.length; i++ {
		if int(i) >= len(s.p.pages) || s.p.pages[i] == nil {
			return n, errChunkMissing
		}
		m, err := w.Write(s.p.pages[i][:min(sharedPage, s.length-i*sharedPage)])
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// WriteAt buffers received bytes of an unverified piece. Writes to a
// complete piece are dropped: the shared file is never written.
func (s sharedPieceImpl) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(b)) > s.length {
		return 0, fmt.Errorf("shared storage: write [%d, %d) outside a piece of %d bytes", off, off+int64(len(b)), s.length)
	}
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if s.p.complete {
		return len(b), nil
	}
	if s.p.pages == nil {
		s.p.pages = make([]*[sharedPage]byte, (s.length+sharedPage-1)/sharedPage)
	}
	n := 0
	for n < len(b) {
		at := off + int64(n)
		i := int(at / sharedPage)
		if s.p.pages[i] == nil {
			s.p.pages[i] = s.t.pages.get()
		}
		n += copy(s.p.pages[i][at%sharedPage:], b[n:])
	}
	return n, nil
}

// MarkComplete is called by anacrolix once the received bytes passed the
// piece hash; from now on the piece is read from the shared file.
func (s sharedPieceImpl) MarkComplete() error {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.p.complete = true
	s.t.dropLocked(s.p)
	return nil
}

// MarkNotComplete is called when the received bytes failed the piece hash
// (or a read of a complete piece failed): they are dropped and the piece is
// fetched again.
func (s sharedPieceImpl) MarkNotComplete() error {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.p.complete = false
	s.t.dropLocked(s.p)
	return nil
}

func (s sharedPieceImpl) Completion() storage.Completion {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	return storage.Completion{Ok: true, Complete: s.p.complete}
}

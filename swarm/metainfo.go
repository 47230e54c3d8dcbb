package swarm

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/swarmdeploy/swarm/release"
)

// ErrInfoHashMismatch reports bytes, or an info dictionary, that do not match
// the infohash or shape a manifest promises.
var ErrInfoHashMismatch = errors.New("bundle does not match the manifest's infohash")

// InfoName is the torrent's info name for a release: app + "-" + version +
// ".tar.zst". It is part of the hashed info dictionary, so publisher, seeder
// and agents must agree on it; other BitTorrent clients save the file under it.
func InfoName(app, version string) string {
	return app + "-" + version + ".tar.zst"
}

// Metainfo hashes a bundle of size bytes read from r into BitTorrent v1
// pieces of pieceLength and returns the infohash (40 lower-case hex digits)
// of the single-file info dictionary named name. swarm publish uses it to fill
// the manifest before anything is sent; the seeder uses it to check a publish.
// r must yield exactly size bytes.
func Metainfo(r io.Reader, size, pieceLength int64, name string) (infohash string, err error) {
	d, err := digestBundle(r, size, pieceLength, name, false, nil)
	if err != nil {
		return "", fmt.Errorf("metainfo %s: %w", name, err)
	}
	return d.infoHash, nil
}

// digest is what hashing a bundle yields.
type digest struct {
	infoBytes []byte     // bencoded info dictionary
	infoHash  string     // sha1 of infoBytes, lower-case hex
	id        release.ID // sha256 of the bytes; empty unless asked for
}

// errStopped reports a hash pass cut short by its stop channel.
var errStopped = errors.New("stopped")

// digestBundle reads exactly size bytes from r and returns the info
// dictionary for them and, if withID, their release id, in one pass. A close
// of stop (which may be nil) ends it early with errStopped.
func digestBundle(r io.Reader, size, pieceLength int64, name string, withID bool, stop <-chan struct{}) (digest, error) {
	switch {
	case size <= 0:
		return digest{}, fmt.Errorf("size must be positive, got %d", size)
	case pieceLength <= 0 || pieceLength&(pieceLength-1) != 0:
		return digest{}, fmt.Errorf("piece length %d is not a power of two", pieceLength)
	case name == "" || strings.ContainsAny(name, `/\`):
		return digest{}, fmt.Errorf("info name %q must be a non-empty file name", name)
	}
	numPieces := (size + pieceLength - 1) / pieceLength
	pieces := make([]byte, 0, numPieces*sha1.Size)
	pieceHash := sha1.New()
	var w io.Writer = pieceHash
	var whole hash.Hash
	if withID {
		whole = sha256.New()
		w = io.MultiWriter(pieceHash, whole)
	}
	buf := make([]byte, 256<<10)
	for left := size; left > 0; {
		select {
		case <-stop:
			return digest{}, errStopped
		default:
		}
		n := min(pieceLength, left)
		got, err := io.CopyBuffer(w, io.LimitReader(r, n), buf)
		if err != nil {
			return digest{}, fmt.Errorf("read bundle: %w", err)
		}
		if got < n {
			return digest{}, fmt.Errorf("bundle is %d bytes, shorter than %d", size-left+got, size)
		}
		pieces = pieceHash.Sum(pieces)
		pieceHash.Reset()
		left -= n
	}
	if n, _ := io.ReadFull(r, buf[:1]); n > 0 {
		return digest{}, fmt.Errorf("bundle is longer than %d bytes", size)
	}
	info := metainfo.Info{
		Name:        name,
		PieceLength: pieceLength,
		Pieces:      pieces,
		Length:      size,
	}
	b, err := bencode.Marshal(info)
	if err != nil {
		return digest{}, fmt.Errorf("encode info: %w", err)
	}
	sum := sha1.Sum(b)
	d := digest{infoBytes: b, infoHash: hex.EncodeToString(sum[:])}
	if withID {
		d.id = release.IDFromHash(whole)
	}
	return d, nil
}

// MagnetURI returns a magnet link for m that any BitTorrent client can fetch:
// magnet:?xt=urn:btih:<infohash>&dn=<InfoName>[&x.pe=<host:port>...], with
// peers as x.pe hints. The bytes are still checked against the infohash; only
// a swarm agent also checks the release id.
func MagnetURI(m release.Manifest, peers ...string) string {
	var b strings.Builder
	b.WriteString("magnet:?xt=urn:btih:")
	b.WriteString(strings.ToLower(m.InfoHash))
	b.WriteString("&dn=")
	b.WriteString(escapeQuery(InfoName(m.App, m.Version)))
	for _, p := range peers {
		b.WriteString("&x.pe=")
		b.WriteString(escapeQuery(p))
	}
	return b.String()
}

// escapeQuery percent-encodes s for a query value, leaving RFC 3986
// unreserved characters and the ':', '[' and ']' of "host:port" readable.
func escapeQuery(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == ':', c == '[', c == ']':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

package release

import (
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// ErrInvalid reports a manifest or desired state whose fields break the rules.
var ErrInvalid = errors.New("invalid")

var (
	appNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,47}$`)
)

// ValidateApp checks an app name: 1–63 characters of lower-case letters, digits,
// '.', '_' and '-', starting with a letter or digit. App names become directory
// names on every node, so the rule is strict.
func ValidateApp(app string) error {
	if !appNameRE.MatchString(app) {
		return fmt.Errorf("%w app name %q: use 1-63 characters from a-z, 0-9, '.', '_', '-', starting with a letter or digit", ErrInvalid, app)
	}
	return nil
}

// ValidateVersion checks a version string: 1–48 characters of letters, digits,
// '.', '_', '+' and '-', starting with a letter or digit.
func ValidateVersion(v string) error {
	if !versionRE.MatchString(v) {
		return fmt.Errorf("%w version %q: use 1-48 characters from A-Z, a-z, 0-9, '.', '_', '+', '-', starting with a letter or digit", ErrInvalid, v)
	}
	return nil
}

// Manifest describes one bundle: what it is (app, version), what its bytes are
// (release id, sizes) and how to fetch it over BitTorrent (infohash, piece
// length). It is signed by a release key; see SignManifest.
type Manifest struct {
	App          string    `json:"app"`
	Version      string    `json:"version"`
	ReleaseID    ID        `json:"release_id"`
	BundleSize   int64     `json:"bundle_size"`
	UnpackedSize int64     `json:"unpacked_size"`
	InfoHash     string    `json:"infohash"`
	PieceLength  int64     `json:"piece_length"`
	Created      time.Time `json:"created"`
}

// Validate checks every field's form; it does not look at any bytes.
func (m *Manifest) Validate() error {
	if err := ValidateApp(m.App); err != nil {
		return err
	}
	if err := ValidateVersion(m.Version); err != nil {
		return err
	}
	if _, err := ParseID(string(m.ReleaseID)); err != nil {
		return fmt.Errorf("%w manifest: %w", ErrInvalid, err)
	}
	if m.BundleSize <= 0 || m.UnpackedSize < 0 {
		return fmt.Errorf("%w manifest: sizes must be positive (bundle %d, unpacked %d)", ErrInvalid, m.BundleSize, m.UnpackedSize)
	}
	if b, err := hex.DecodeString(m.InfoHash); err != nil || len(b) != 20 {
		return fmt.Errorf("%w manifest: infohash %q is not 40 hex digits", ErrInvalid, m.InfoHash)
	}
	if m.PieceLength <= 0 || m.PieceLength&(m.PieceLength-1) != 0 {
		return fmt.Errorf("%w manifest: piece length %d is not a power of two", ErrInvalid, m.PieceLength)
	}
	return nil
}

// Dir is the directory name a release unpacks into: "<version>-<short id>".
func (m *Manifest) Dir() string { return m.Version + "-" + m.ReleaseID.Short() }

// PieceLengthFor picks a torrent piece length for a bundle of the given size:
// the smallest power of two from 256 KiB to 16 MiB that keeps the bundle to
// at most 2048 pieces. Fewer, larger pieces cost less bookkeeping per peer;
// more, smaller pieces let peers start serving each other sooner.
func PieceLengthFor(size int64) int64 {
	const minLen, maxLen, targetPieces = 256 << 10, 16 << 20, 2048
	l := int64(minLen)
	for l < maxLen && size > l*targetPieces {
		l *= 2
	}
	return l
}

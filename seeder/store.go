package seeder

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"

	"github.com/swarmdeploy/swarm/atomicfile"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/swarm"
)

// Sentinel errors of the store; the HTTP API maps them to status codes.
var (
	// ErrVersionConflict: the app already has this version with other content.
	ErrVersionConflict = errors.New("conflicts with a published release")
	// ErrBundleMismatch: the uploaded bytes do not match the manifest.
	ErrBundleMismatch = errors.New("bundle does not match its manifest")
	// ErrNotFound: no such release in the store.
	ErrNotFound = errors.New("release not found")
)

// store is the seeder's release store on disk:
//
//	<dir>/releases/<hex id>/bundle.tar.zst   the bundle (swarm.BundlePath)
//	<dir>/releases/<hex id>/manifest.json    its signed manifest
//	<dir>/releases/<hex id>/pending.json     where it rolls out, while it
//	                                         waits for release signatures
//	<dir>/tmp/                               uploads in progress
//	<dir>/desired.json                       accepted desired states (gossip)
//
// A release directory appears by one rename, complete, or not at all.
type store struct {
	dir string

	mu       sync.Mutex
	releases map[release.ID]storedRelease
	// untrusted holds the release directories open left out because their
	// manifest no longer verifies: kept on disk, not served.
	untrusted map[release.ID]bool
}

// untrustedRelease is a stored release open left out: its manifest is
// signed by no release key pinned now (the seeder ran with other keys).
type untrustedRelease struct {
	Dir      string
	Manifest release.Manifest // unverified
	Err      error
}

type storedRelease struct {
	Manifest release.Manifest
	Signed   release.SignedManifest
	// Pending, while the release has fewer release signatures than the
	// threshold, says where and how it rolls out once it has them. It is
	// cleared when the rollout starts, or when another release becomes the
	// target of its environment first (the release is then superseded).
	Pending *PublishOptions
}

const pendingFile = "pending.json"

func newStore(dir string) *store {
	return &store{dir: dir, releases: map[release.ID]storedRelease{}}
}

func (s *store) releasesDir() string { return filepath.Join(s.dir, "releases") }
func (s *store) tmpDir() string      { return filepath.Join(s.dir, "tmp") }
func (s *store) desiredPath() string { return filepath.Join(s.dir, "desired.json") }

// open creates the layout, clears abandoned uploads and loads every stored
// release, re-verifying manifests against ring. A release whose manifest
// is signed by no key of ring (one published while the seeder ran with
// other keys) does not stop the seeder: it is left on disk, not served,
// and returned, so that the seeder says so; pinning its key again serves
// it after a restart, and publishing it again with a pinned key's
// signature replaces it.
func (s *store) open(ring release.Keyring) (skipped []untrustedRelease, err error) {
	for _, d := range []string{s.releasesDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("store %s: %w", s.dir, err)
		}
	}
	if err := probeWritable(s.tmpDir()); err != nil {
		return nil, fmt.Errorf("store %s is not writable: %w", s.dir, err)
	}
	if tmps, err := os.ReadDir(s.tmpDir()); err == nil {
		for _, e := range tmps {
			_ = os.RemoveAll(filepath.Join(s.tmpDir(), e.Name()))
		}
	}
	entries, err := os.ReadDir(s.releasesDir())
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", s.dir, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.releasesDir(), e.Name(), "manifest.json"))
		if err != nil {
			return nil, fmt.Errorf("store: release %s: %w", e.Name(), err)
		}
		var sm release.SignedManifest
		if err := json.Unmarshal(b, &sm); err != nil {
			return nil, fmt.Errorf("store: release %s: manifest: %w", e.Name(), err)
		}
		m, err := sm.Verify(ring)
		if errors.Is(err, release.ErrUnknownKey) {
			u, uerr := sm.Unverified()
			if uerr == nil && u.ReleaseID.Hex() == e.Name() {
				if s.untrusted == nil {
					s.untrusted = map[release.ID]bool{}
				}
				s.untrusted[u.ReleaseID] = true
				skipped = append(skipped, untrustedRelease{Dir: filepath.Join(s.releasesDir(), e.Name()), Manifest: u, Err: err})
				continue
			}
		}
		if err != nil {
			return nil, fmt.Errorf("store: release %s: %w; pin its release key with --trust-release", e.Name(), err)
		}
		r := storedRelease{Manifest: m, Signed: sm}
		if b, err := os.ReadFile(filepath.Join(s.releasesDir(), e.Name(), pendingFile)); err == nil {
			r.Pending = &PublishOptions{}
			if err := json.Unmarshal(b, r.Pending); err != nil {
				return nil, fmt.Errorf("store: release %s: %s: %w", e.Name(), pendingFile, err)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("store: release %s: %w", e.Name(), err)
		}
		s.releases[m.ReleaseID] = r
	}
	return skipped, nil
}

// setSigned replaces the stored signed manifest of id (more signatures,
// same payload).
func (s *store) setSigned(id release.ID, sm release.SignedManifest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.releases[id]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	mb, err := json.Marshal(sm)
	if err != nil {
		return fmt.Errorf("store: encode manifest: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(s.releasesDir(), id.Hex(), "manifest.json"), mb, 0o644); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	r.Signed = sm
	s.releases[id] = r
	return nil
}

// clearPending forgets where id was to roll out: its rollout started, or
// another release became the target first.
func (s *store) clearPending(id release.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clearPendingLocked(id)
}

func (s *store) clearPendingLocked(id release.ID) error {
	r, ok := s.releases[id]
	if !ok || r.Pending == nil {
		return nil
	}
	dir := filepath.Join(s.releasesDir(), id.Hex())
	if err := os.Remove(filepath.Join(dir, pendingFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: %w", err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	r.Pending = nil
	s.releases[id] = r
	return nil
}

// supersede clears the pending rollout of every release of app waiting for
// env except target, which has just become env's target: a release that
// gets its last signature later must not move the environment back to it.
func (s *store) supersede(app, env string, target release.ID) ([]release.Manifest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []release.Manifest
	for id, r := range s.releases {
		if id == target || r.Pending == nil || r.Manifest.App != app || envName(r.Pending.Env) != env {
			continue
		}
		if err := s.clearPendingLocked(id); err != nil {
			return out, err
		}
		out = append(out, r.Manifest)
	}
	return out, nil
}

func (s *store) get(id release.ID) (storedRelease, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.releases[id]
	return r, ok
}

// byVersion finds the stored release of app at version.
func (s *store) byVersion(app, version string) (storedRelease, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.releases {
		if r.Manifest.App == app && r.Manifest.Version == version {
			return r, true
		}
	}
	return storedRelease{}, false
}

// list returns every stored release, oldest first.
func (s *store) list() []storedRelease {
	s.mu.Lock()
	out := make([]storedRelease, 0, len(s.releases))
	for _, r := range s.releases {
		out = append(out, r)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Manifest.Created.Equal(out[j].Manifest.Created) {
			return out[i].Manifest.Created.Before(out[j].Manifest.Created)
		}
		return out[i].Manifest.ReleaseID < out[j].Manifest.ReleaseID
	})
	return out
}

// admitLocked decides whether m may be stored: it refuses a version that
// is stored with other content, and bytes stored under another name. It
// reports whether m is stored already. The caller holds s.mu.
func (s *store) admitLocked(m release.Manifest) (stored bool, err error) {
	for _, old := range s.releases {
		if old.Manifest.App == m.App && old.Manifest.Version == m.Version && old.Manifest.ReleaseID != m.ReleaseID {
			return false, fmt.Errorf("%w: %s %s is already published with other content (%s); publish under a new version", ErrVersionConflict, m.App, m.Version, old.Manifest.ReleaseID.Short())
		}
	}
	if old, ok := s.releases[m.ReleaseID]; ok {
		return true, sameRelease(old.Manifest, m)
	}
	return false, nil
}

// admit is admitLocked under the lock.
func (s *store) admit(m release.Manifest) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.admitLocked(m)
}

// put streams a bundle into the store. It checks the size, the sha256 against
// the release id and the infohash against the manifest before the release
// appears; on any error nothing is left behind. A version conflict is
// checked before the upload (to refuse early) and again under the lock
// where the release appears, so of two concurrent publishes of one version
// with different content exactly one is stored.
// pending, when set, is written with it (pending.json) in the same rename.
func (s *store) put(m release.Manifest, sm release.SignedManifest, body io.Reader, pending *PublishOptions) (existed bool, err error) {
	if stored, err := s.admit(m); err != nil || stored {
		// The same release again: keep what is stored, read nothing.
		return stored, err
	}
	work, err := os.MkdirTemp(s.tmpDir(), "upload-")
	if err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	defer os.RemoveAll(work) // a no-op once renamed into place

	bundle := swarm.BundlePath(work, m.ReleaseID)
	if err := os.MkdirAll(filepath.Dir(bundle), 0o755); err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	if err := receive(bundle, m, body); err != nil {
		return false, err
	}
	mb, err := json.Marshal(sm)
	if err != nil {
		return false, fmt.Errorf("store: encode manifest: %w", err)
	}
	relDir := filepath.Dir(bundle)
	if err := atomicfile.WriteFile(filepath.Join(relDir, "manifest.json"), mb, 0o644); err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	if pending != nil {
		pb, err := json.Marshal(pending)
		if err != nil {
			return false, fmt.Errorf("store: encode rollout options: %w", err)
		}
		if err := atomicfile.WriteFile(filepath.Join(relDir, pendingFile), pb, 0o644); err != nil {
			return false, fmt.Errorf("store: %w", err)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	// A concurrent publish may have stored this version, or these bytes,
	// while this one was uploading.
	if stored, err := s.admitLocked(m); err != nil || stored {
		return stored, err
	}
	final := filepath.Join(s.releasesDir(), m.ReleaseID.Hex())
	if s.untrusted[m.ReleaseID] {
		// Left out at open for a key no longer pinned; the same bytes,
		// now signed by a pinned key, take its place.
		if err := os.RemoveAll(final); err != nil {
			return false, fmt.Errorf("store: replace untrusted %s: %w", final, err)
		}
		delete(s.untrusted, m.ReleaseID)
	}
	if err := os.Rename(relDir, final); err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	if err := atomicfile.SyncDir(s.releasesDir()); err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	s.releases[m.ReleaseID] = storedRelease{Manifest: m, Signed: sm, Pending: pending}
	return false, nil
}

// receive writes body to path, checking size, release id and infohash.
func receive(path string, m release.Manifest, body io.Reader) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(body, m.BundleSize+1))
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return fmt.Errorf("store is full after %d of %d bytes: %w; free space on the --store disk", n, m.BundleSize, err)
		}
		return fmt.Errorf("store: receive bundle after %d bytes: %w", n, err)
	}
	if n != m.BundleSize {
		return fmt.Errorf("%w: received %d bytes, manifest says %d", ErrBundleMismatch, n, m.BundleSize)
	}
	if got := release.IDFromHash(h); got != m.ReleaseID {
		return fmt.Errorf("%w: bytes hash to %s, manifest says %s", ErrBundleMismatch, got, m.ReleaseID)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	ih, err := swarm.Metainfo(f, m.BundleSize, m.PieceLength, swarm.InfoName(m.App, m.Version))
	if err != nil {
		return fmt.Errorf("store: hash pieces: %w", err)
	}
	if ih != m.InfoHash {
		return fmt.Errorf("%w: infohash is %s, manifest says %s", ErrBundleMismatch, ih, m.InfoHash)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("store: sync bundle: %w", err)
	}
	return f.Close()
}

// probeWritable creates and removes a file in dir.
func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".probe-")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// sameRelease checks that a manifest for stored content describes it as the
// stored one does. Content is stored once, under one app and version; the
// same bytes under another name are refused rather than silently aliased.
func sameRelease(stored, m release.Manifest) error {
	if stored.App != m.App || stored.Version != m.Version {
		return fmt.Errorf("%w: these bytes are already published as %s %s (%s); publish them under that version, or change the content",
			ErrVersionConflict, stored.App, stored.Version, stored.ReleaseID.Short())
	}
	if stored.InfoHash != m.InfoHash || stored.BundleSize != m.BundleSize || stored.UnpackedSize != m.UnpackedSize || stored.PieceLength != m.PieceLength {
		return fmt.Errorf("%w: %s %s is stored with other sizes or infohash than this manifest gives", ErrBundleMismatch, m.App, m.Version)
	}
	return nil
}

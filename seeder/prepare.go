package seeder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/swarm"
)

// Bundle is a packed, signed release ready to publish: the bundle in a
// temporary file and its signed manifest. Close removes the file.
type Bundle struct {
	Path     string
	Manifest release.Manifest
	Signed   release.SignedManifest
	Files    int
}

// Close removes the temporary bundle file.
func (b *Bundle) Close() error { return os.Remove(b.Path) }

// PackOptions says what to pack and how to sign it.
type PackOptions struct {
	Source  string // a directory, or one file
	App     string
	Version string
	Key     *release.PrivateKey
	TempDir string           // where the bundle file goes; "" = os.TempDir()
	Now     func() time.Time // manifest creation time; default time.Now
	// Progress, when set, is called with the file bytes read so far.
	Progress func(read int64)
}

// Pack packs Source into a deterministic bundle in a temporary file,
// computes its release id and infohash and signs its manifest: everything
// `swarm publish` needs before it sends a byte. The bundle is never held in
// memory.
func Pack(o PackOptions) (*Bundle, error) {
	if err := release.ValidateApp(o.App); err != nil {
		return nil, err
	}
	if err := release.ValidateVersion(o.Version); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	st, err := os.Stat(o.Source)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s does not exist", release.ErrInvalid, o.Source)
		}
		return nil, err
	}
	fsys, opts := os.DirFS(o.Source), release.PackOptions{Progress: o.Progress}
	if !st.IsDir() {
		fsys, opts.Only = os.DirFS(filepath.Dir(o.Source)), filepath.Base(o.Source)
	}
	f, err := os.CreateTemp(o.TempDir, "swarm-bundle-*.tar.zst")
	if err != nil {
		return nil, fmt.Errorf("temporary bundle: %w", err)
	}
	b := &Bundle{Path: f.Name()}
	ok := false
	defer func() {
		f.Close()
		if !ok {
			os.Remove(b.Path)
		}
	}()
	res, err := release.Pack(f, fsys, opts)
	if err != nil {
		return nil, err
	}
	m := release.Manifest{
		App: o.App, Version: o.Version, ReleaseID: res.ID, BundleSize: res.BundleSize,
		UnpackedSize: res.UnpackedSize, PieceLength: release.PieceLengthFor(res.BundleSize),
		Created: o.Now().UTC().Truncate(time.Second),
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("temporary bundle: %w", err)
	}
	if m.InfoHash, err = swarm.Metainfo(f, m.BundleSize, m.PieceLength, swarm.InfoName(m.App, m.Version)); err != nil {
		return nil, fmt.Errorf("hash pieces: %w", err)
	}
	if b.Signed, err = release.SignManifest(m, o.Key); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("temporary bundle: %w", err)
	}
	b.Manifest, b.Files, ok = m, res.Files, true
	return b, nil
}

// PublishBundle streams b to the seeder. progress, when set, is written
// every byte sent (a progress bar). opts, at most one, says where and how
// the release rolls out (Client.Publish).
func (c *Client) PublishBundle(ctx context.Context, b *Bundle, progress io.Writer, opts ...PublishOptions) (PublishResult, error) {
	f, err := os.Open(b.Path)
	if err != nil {
		return PublishResult{}, fmt.Errorf("open bundle: %w", err)
	}
	defer f.Close()
	var body io.Reader = f
	if progress != nil {
		body = io.TeeReader(f, progress)
	}
	return c.Publish(ctx, b.Signed, body, b.Manifest.BundleSize, opts...)
}

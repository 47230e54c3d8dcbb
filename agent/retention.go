package agent

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/atomicfile"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/swarm"
)

// Bundle retention. Every bundle the agent fetched stays on disk and keeps
// seeding until retention removes it: beyond the Keep newest per app, and
// then oldest first while the data dir's free space is under MinFreeBytes.
// The current and previous release of every app, every release a desired
// state names (target and previous) and every release being fetched or
// installed are never removed, whatever the disk says.

// bundleRecord is written next to each bundle the agent fetched, so that
// retention knows its app and age without the gossip that announced it.
type bundleRecord struct {
	App       string     `json:"app"`
	Version   string     `json:"version"`
	ReleaseID release.ID `json:"release_id"`
	Size      int64      `json:"size"`
	Fetched   time.Time  `json:"fetched"`
}

const bundleRecordName = "record.json"

// heldBundle is one bundle on disk.
type heldBundle struct {
	bundleRecord
	dir string
}

// recordBundle writes m's record next to its bundle.
func (a *Agent) recordBundle(m release.Manifest) error {
	dir := filepath.Dir(swarm.BundlePath(a.bundlesDir(), m.ReleaseID))
	b, err := json.Marshal(bundleRecord{App: m.App, Version: m.Version, ReleaseID: m.ReleaseID, Size: m.BundleSize, Fetched: time.Now().UTC()})
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, bundleRecordName), b, 0o644)
}

// heldBundles lists the bundles with a record. Bundles without one (fetched
// by an older agent, or half-written) are left alone.
func (a *Agent) heldBundles() ([]heldBundle, error) {
	ents, err := os.ReadDir(a.bundlesDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []heldBundle
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(a.bundlesDir(), e.Name())
		b, err := os.ReadFile(filepath.Join(dir, bundleRecordName))
		if err != nil {
			continue
		}
		var r bundleRecord
		if json.Unmarshal(b, &r) != nil || r.App == "" || r.ReleaseID == "" {
			continue
		}
		out = append(out, heldBundle{bundleRecord: r, dir: dir})
	}
	return out, nil
}

// pruneChoice picks the bundles to remove: per app, those beyond the keep
// newest; then, oldest first, while free is under minFree. Protected
// bundles are never chosen. short is how many bytes are still missing to
// reach minFree once every removable bundle is chosen (0 if none).
func pruneChoice(held []heldBundle, protected map[release.ID]bool, keep int, free, minFree int64) (remove []heldBundle, short int64) {
	held = slices.Clone(held)
	// Newest first; ties (same second) by id so that the choice is stable.
	slices.SortFunc(held, func(x, y heldBundle) int {
		if c := y.Fetched.Compare(x.Fetched); c != 0 {
			return c
		}
		return cmp.Compare(x.ReleaseID, y.ReleaseID)
	})
	perApp := map[string]int{}
	var candidates []heldBundle // removable, kept so far; newest first
	for _, b := range held {
		perApp[b.App]++
		switch {
		case protected[b.ReleaseID]:
		case perApp[b.App] > keep:
			remove = append(remove, b)
			free += b.Size
		default:
			candidates = append(candidates, b)
		}
	}
	for i := len(candidates) - 1; i >= 0 && free < minFree; i-- {
		remove = append(remove, candidates[i])
		free += candidates[i].Size
	}
	if free < minFree {
		short = minFree - free
	}
	return remove, short
}

// protectedReleases are the releases retention must not touch.
func (a *Agent) protectedReleases() map[release.ID]bool {
	p := map[release.ID]bool{}
	a.mu.Lock()
	for _, w := range a.workers {
		p[w.id] = true
	}
	apps := make([]string, 0, len(a.apps))
	for app, st := range a.apps {
		apps = append(apps, app)
		p[st.ReleaseID] = true
	}
	a.mu.Unlock()
	for _, app := range apps {
		if m, ok, _ := a.inst.Current(app); ok {
			p[m.ReleaseID] = true
		}
		if m, ok, _ := a.inst.Previous(app); ok {
			p[m.ReleaseID] = true
		}
	}
	for _, m := range a.desiredManifests() {
		p[m.ReleaseID] = true
	}
	return p
}

// retain removes bundles as pruneChoice says: each stops seeding, then its
// directory goes. An agent in shared-storage mode holds no bundles.
func (a *Agent) retain() {
	if a.cfg.SharedBundleDir != "" {
		return
	}
	held, err := a.heldBundles()
	if err != nil {
		a.log.Warn("retention: cannot list bundles", zap.Error(err))
		return
	}
	free, err := freeBytes(a.cfg.DataDir)
	if err != nil {
		a.log.Warn("retention: cannot read free space", zap.Error(err))
		return
	}
	remove, short := pruneChoice(held, a.protectedReleases(), a.cfg.Keep, free, a.cfg.MinFreeBytes)
	for _, b := range remove {
		a.torrent.Drop(b.ReleaseID)
		if err := os.RemoveAll(b.dir); err != nil {
			a.log.Warn("retention: cannot remove bundle", zap.String("app", b.App), zap.String("version", b.Version), zap.Error(err))
			continue
		}
		a.log.Info("retention: removed bundle", zap.String("app", b.App), zap.String("version", b.Version),
			zap.String("release_id", string(b.ReleaseID)), zap.Int64("bytes", b.Size))
	}
	if short > 0 && !a.warnedShort {
		a.log.Warn("disk below its watermark with only protected releases left (current, previous, desired, in flight); free space or lower --min-free",
			zap.Int64("short_bytes", short), zap.Int64("min_free_bytes", a.cfg.MinFreeBytes))
	}
	a.warnedShort = short > 0
}

// freeBytes is the space an unprivileged writer has left on dir's file
// system.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}

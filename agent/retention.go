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
// installed are never removed, whatever the disk says. A download that did
// not complete (a part file) is kept only while its release is a desired
// target or being fetched: one superseded by a newer target is dropped.

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

// heldBundle is one bundle on disk, or the part file of one being fetched.
type heldBundle struct {
	bundleRecord
	dir string
	// partial: only a part file (or nothing yet) is there; bytes is what
	// it takes on disk. The record of a partial one may be missing (an
	// older agent's): then only ReleaseID is known.
	partial bool
	bytes   int64
}

// recordBundle writes m's record next to its bundle. It is written when
// the download starts too, so that retention knows what a part file is.
func (a *Agent) recordBundle(m release.Manifest) error {
	dir := filepath.Dir(swarm.BundlePath(a.bundlesDir(), m.ReleaseID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(bundleRecord{App: m.App, Version: m.Version, ReleaseID: m.ReleaseID, Size: m.BundleSize, Fetched: time.Now().UTC()})
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, bundleRecordName), b, 0o644)
}

// heldBundles lists the bundles with a record, and the part files of
// downloads that did not complete. Whole bundles without a record (fetched
// by an older agent) are left alone.
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
		id, err := release.ParseID("sha256:" + e.Name())
		if err != nil {
			continue // not a release's directory
		}
		dir := filepath.Join(a.bundlesDir(), e.Name())
		h := heldBundle{dir: dir}
		b, err := os.ReadFile(filepath.Join(dir, bundleRecordName))
		recorded := err == nil && json.Unmarshal(b, &h.bundleRecord) == nil && h.App != "" && h.ReleaseID == id
		bundle := swarm.BundlePath(a.bundlesDir(), id)
		if _, err := os.Stat(bundle); err == nil {
			if recorded {
				out = append(out, h)
			}
			continue
		}
		fi, err := os.Stat(bundle + partSuffix)
		if err != nil && !recorded {
			continue // neither bundle, part file nor record: not ours
		}
		if !recorded {
			h.bundleRecord = bundleRecord{ReleaseID: id}
		}
		h.partial = true
		if err == nil {
			h.bytes = diskBytes(fi)
		}
		out = append(out, h)
	}
	return out, nil
}

// partSuffix marks a bundle still downloading (swarm's file storage).
const partSuffix = ".part"

// diskBytes is what fi's file takes on disk (a part file is sparse until
// reserved or written).
func diskBytes(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

// pruneChoice picks the bundles to remove: part files of releases not
// wanted (no desired target, not in flight); then per app, the bundles
// beyond the keep newest; then, oldest first, while free is under minFree.
// Protected bundles are never chosen, nor wanted part files. short is how
// many bytes are still missing to reach minFree once every removable
// bundle is chosen (0 if none).
func pruneChoice(held []heldBundle, protected, wanted map[release.ID]bool, keep int, free, minFree int64) (remove []heldBundle, short int64) {
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
		if b.partial {
			if !wanted[b.ReleaseID] {
				remove = append(remove, b)
				free += b.bytes
			}
			continue
		}
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

// wantedDownloads are the releases whose part files retention keeps: those
// being fetched and every desired target. A release that is only some
// state's previous is not fetched again by this node, so its part file
// goes.
func (a *Agent) wantedDownloads() map[release.ID]bool {
	w := map[release.ID]bool{}
	a.mu.Lock()
	for _, wk := range a.workers {
		w[wk.id] = true
	}
	a.mu.Unlock()
	for _, sd := range a.gossip.DesiredAll() {
		if d, err := sd.Unverified(); err == nil {
			if m, err := d.Target.Unverified(); err == nil {
				w[m.ReleaseID] = true
			}
		}
	}
	return w
}

// retain removes bundles as pruneChoice says, for the watermark alone, and
// warns once while the watermark cannot be met.
func (a *Agent) retain() {
	short, _, err := a.prune(0)
	if err != nil {
		a.log.Warn("retention: "+err.Error(), zap.Error(err))
		return
	}
	if short > 0 && !a.warnedShort {
		a.log.Warn("disk below its watermark with only protected releases left (current, previous, desired, in flight); free space or lower --min-free",
			zap.Int64("short_bytes", short), zap.Int64("min_free_bytes", a.cfg.MinFreeBytes))
	}
	a.warnedShort = short > 0
}

// prune removes bundles as pruneChoice says, so that MinFreeBytes plus
// extra bytes are free if they can be: each stops seeding, then its
// directory goes (its space comes back within swarm.SpaceReturnDelay). It
// reports how many bytes are still missing, and how many bundles or part
// files it removed. An agent in shared-storage mode holds no bundles.
func (a *Agent) prune(extra int64) (short int64, removed int, err error) {
	if a.cfg.SharedBundleDir != "" {
		return 0, 0, nil
	}
	a.retainMu.Lock()
	defer a.retainMu.Unlock()
	held, err := a.heldBundles()
	if err != nil {
		return 0, 0, fmt.Errorf("cannot list bundles: %w", err)
	}
	free, err := swarm.FreeBytes(a.cfg.DataDir)
	if err != nil {
		return 0, 0, fmt.Errorf("cannot read free space: %w", err)
	}
	remove, short := pruneChoice(held, a.protectedReleases(), a.wantedDownloads(), a.cfg.Keep, free, a.cfg.MinFreeBytes+extra)
	for _, b := range remove {
		log := a.log.With(zap.String("app", b.App), zap.String("version", b.Version), zap.String("release_id", string(b.ReleaseID)))
		a.torrent.Drop(b.ReleaseID)
		if err := os.RemoveAll(b.dir); err != nil {
			log.Warn("retention: cannot remove bundle", zap.Error(err))
			continue
		}
		removed++
		if b.partial {
			// Its file closes (and its space returns) once the dropped
			// fetch has let go of it, within seconds.
			log.Info("dropped superseded download", zap.Int64("bytes", b.bytes))
			continue
		}
		log.Info("retention: removed bundle", zap.Int64("bytes", b.Size))
	}
	return short, removed, nil
}

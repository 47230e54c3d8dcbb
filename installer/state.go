package installer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/atomicfile"
	"github.com/swarmdeploy/swarm/release"
)

// stateFile is releases/<app>/state.json.
type stateFile struct {
	Current  *release.Manifest `json:"current,omitempty"`
	Previous *release.Manifest `json:"previous,omitempty"`
	// Unchecked says that Current became current but has not passed its
	// health check yet: a crash came in between. Installing Current again
	// runs the check instead of reporting it already current.
	Unchecked bool `json:"unchecked,omitempty"`
	// Pending is the switch being made: written before the symlink moves,
	// cleared after. See the package doc.
	Pending *switchTo `json:"pending,omitempty"`
}

// switchTo is the state an app is moving to. A nil Current means no release
// is current (a first install whose health check failed).
type switchTo struct {
	Current   *release.Manifest `json:"current,omitempty"`
	Previous  *release.Manifest `json:"previous,omitempty"`
	Unchecked bool              `json:"unchecked,omitempty"`
}

// metaFile is releases/<app>/.meta/<dir>.json: which manifest a release
// directory holds, so that the symlink alone is enough to rebuild the state.
type metaFile struct {
	Manifest  release.Manifest `json:"manifest"`
	Installed time.Time        `json:"installed"`
}

func dirOf(m *release.Manifest) string {
	if m == nil {
		return ""
	}
	return m.Dir()
}

func sameRelease(a, b *release.Manifest) bool {
	return a != nil && b != nil && a.ReleaseID == b.ReleaseID && a.Version == b.Version
}

func clone(m *release.Manifest) *release.Manifest {
	if m == nil {
		return nil
	}
	c := *m
	return &c
}

func (a *app) statePath() string { return filepath.Join(a.dir, stateName) }

func (a *app) metaPath(dir string) string {
	return filepath.Join(a.dir, metaDirName, dir+".json")
}

// writeState persists st atomically.
func (a *app) writeState(st stateFile) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	return atomicfile.WriteFile(a.statePath(), append(b, '\n'), 0o644)
}

func (a *app) writeMeta(m release.Manifest, now time.Time) error {
	if err := mkdirSync(filepath.Join(a.dir, metaDirName)); err != nil {
		return err
	}
	b, err := json.MarshalIndent(metaFile{Manifest: m, Installed: now.UTC()}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	return atomicfile.WriteFile(a.metaPath(m.Dir()), append(b, '\n'), 0o644)
}

// readMeta returns the manifest recorded for a release directory.
func (a *app) readMeta(dir string) (metaFile, bool) {
	b, err := os.ReadFile(a.metaPath(dir))
	if err != nil {
		return metaFile{}, false
	}
	var mf metaFile
	if err := json.Unmarshal(b, &mf); err != nil || mf.Manifest.Dir() != dir || mf.Manifest.App != a.name {
		return metaFile{}, false
	}
	return mf, true
}

func (a *app) removeMeta(dir string) {
	if err := os.Remove(a.metaPath(dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.log.Warn("remove release manifest", zap.String("dir", dir), zap.Error(err))
	}
}

// load reads the app's state from disk, reconciles it with the current
// symlink, persists any repair, and removes what earlier runs left
// unfinished. It runs once per app per Installer, before any other use, with
// a.mu held.
func (a *app) load() error {
	if !isDir(a.dir) {
		// Never installed: nothing to read or repair.
		a.cur, a.prev = nil, nil
		return nil
	}
	a.cleanTemp()

	target, err := readCurrent(a.dir)
	if err != nil {
		return err
	}
	var st stateFile
	b, err := os.ReadFile(a.statePath())
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read %s: %w", a.statePath(), err)
	default:
		if err := json.Unmarshal(b, &st); err != nil {
			a.log.Warn("state file unreadable; rebuilding it from the current symlink",
				zap.String("path", a.statePath()), zap.Error(err))
			st = stateFile{}
		}
	}

	now, why := a.reconcile(target, st)
	a.cur, a.prev, a.unchecked = now.Current, now.Previous, now.Unchecked
	a.cleanMeta()
	if why == "" {
		return nil
	}
	a.log.Warn("repaired state from the current symlink", zap.String("reason", why),
		zap.String("current", dirOf(now.Current)), zap.String("previous", dirOf(now.Previous)))
	return a.writeState(stateFile{Current: now.Current, Previous: now.Previous, Unchecked: now.Unchecked})
}

// reconcile decides the state from the symlink target and what state.json
// says. It returns a non-empty reason when state.json must be rewritten.
func (a *app) reconcile(target string, st stateFile) (now switchTo, why string) {
	var cur, prev *release.Manifest
	unchecked := false
	switch {
	case target == dirOf(st.Current):
		cur, prev, unchecked = st.Current, st.Previous, st.Unchecked
		if st.Pending != nil {
			why = "a switch to " + orNone(dirOf(st.Pending.Current)) + " did not happen"
		}
	case st.Pending != nil && target == dirOf(st.Pending.Current):
		cur, prev, unchecked = st.Pending.Current, st.Pending.Previous, st.Pending.Unchecked
		why = "a switch to " + orNone(target) + " was not recorded"
	default:
		why = fmt.Sprintf("current points at %s but state says %s", orNone(target), orNone(dirOf(st.Current)))
		if st.Current != nil && st.Current.Dir() != target {
			prev = st.Current
		} else {
			prev = st.Previous
		}
	}
	if cur != nil {
		if bad := a.unusable(cur); bad != "" {
			a.log.Warn("current release "+bad, zap.String("dir", cur.Dir()))
			cur, unchecked = nil, false
			if why == "" {
				why = "current release " + bad
			}
		}
	}
	if cur == nil && target != "" {
		// state.json names no usable release where current points: take
		// the manifest recorded for that directory.
		if mf, ok := a.readMeta(target); ok && a.unusable(&mf.Manifest) == "" {
			cur = &mf.Manifest
		} else {
			a.log.Warn("current points at a release with no recorded manifest; treating the app as having no current release",
				zap.String("dir", target))
		}
	}
	if prev != nil {
		bad := a.unusable(prev)
		if bad == "" && prev.Dir() == dirOf(cur) {
			bad = "is the current one"
		}
		if bad != "" {
			prev = nil
			if why == "" {
				why = "previous release " + bad
			}
		}
	}
	return switchTo{Current: clone(cur), Previous: clone(prev), Unchecked: unchecked && cur != nil}, why
}

// unusable says why m, as state.json or a manifest record has it, cannot be
// one of the app's releases, or "" if it can: a manifest whose fields do not
// name a directory inside the app's (state.json is not signed, and a
// version of "../x" would have the installer switch to, and later delete,
// a directory elsewhere), of another app, or whose directory is gone.
func (a *app) unusable(m *release.Manifest) string {
	switch {
	case checkManifest(*m) != nil:
		return "is not a valid manifest"
	case m.App != a.name:
		return "belongs to app " + m.App
	case !isDir(filepath.Join(a.dir, m.Dir())):
		return "directory is missing"
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

// cleanTemp removes what an interrupted run left behind: unpack and delete
// directories, symlinks that never replaced current, half-written files.
func (a *app) cleanTemp() {
	for _, dir := range []string{a.dir, filepath.Join(a.dir, metaDirName)} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			name := e.Name()
			stale := strings.HasPrefix(name, tmpPrefix) ||
				(dir == a.dir && strings.HasPrefix(name, tmpLinkPrefix) && e.Type()&fs.ModeSymlink != 0)
			if !stale {
				continue
			}
			p := filepath.Join(dir, name)
			if err := os.RemoveAll(p); err != nil {
				a.log.Warn("remove leftover", zap.String("path", p), zap.Error(err))
				continue
			}
			a.log.Info("removed leftover of an interrupted run", zap.String("path", p))
		}
	}
}

// cleanMeta removes manifest records whose release directory is gone.
func (a *app) cleanMeta() {
	entries, err := os.ReadDir(filepath.Join(a.dir, metaDirName))
	if err != nil {
		return
	}
	for _, e := range entries {
		dir, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(dir, ".") {
			continue
		}
		if !isDir(filepath.Join(a.dir, dir)) {
			a.removeMeta(dir)
		}
	}
}

package installer

import (
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// retain removes release directories beyond Config.Keep, oldest installed
// first, never the current or the previous one, and hook logs of releases
// that are gone beyond the Keep newest (so logs of failed installs stay for a
// while but do not pile up). Failures are logged: the install they follow
// succeeded.
func (i *Installer) retain(a *app) {
	cur, prev := a.snapshot()
	entries, err := os.ReadDir(a.dir)
	if err != nil {
		a.log.Warn("list releases", zap.Error(err))
		return
	}
	type candidate struct {
		name      string
		installed time.Time
	}
	var others []candidate
	kept := 0
	present := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		present[name] = true
		if name == dirOf(cur) || name == dirOf(prev) {
			kept++
			continue
		}
		mf, _ := a.readMeta(name) // no record: oldest
		others = append(others, candidate{name, mf.Installed})
	}
	slices.SortFunc(others, func(x, y candidate) int {
		if c := y.installed.Compare(x.installed); c != 0 {
			return c
		}
		return cmp.Compare(y.name, x.name)
	})
	room := max(i.cfg.Keep-kept, 0)
	for _, r := range others[min(room, len(others)):] {
		if err := removeDir(a.dir, r.name); err != nil {
			a.log.Warn("remove old release", zap.String("dir", r.name), zap.Error(err))
			continue
		}
		a.removeMeta(r.name)
		delete(present, r.name)
		a.log.Info("removed old release", zap.String("dir", r.name))
	}
	i.pruneLogs(a, present)
}

func (i *Installer) pruneLogs(a *app, present map[string]bool) {
	entries, err := os.ReadDir(a.logDir)
	if err != nil {
		return
	}
	type logFile struct {
		path string
		mod  time.Time
	}
	var orphans []logFile
	for _, e := range entries {
		dir, ok := strings.CutSuffix(e.Name(), ".hook.log")
		if !ok || present[dir] {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		orphans = append(orphans, logFile{filepath.Join(a.logDir, e.Name()), info.ModTime()})
	}
	slices.SortFunc(orphans, func(x, y logFile) int { return y.mod.Compare(x.mod) })
	for _, l := range orphans[min(i.cfg.Keep, len(orphans)):] {
		if err := os.Remove(l.path); err != nil {
			a.log.Warn("remove old hook log", zap.String("path", l.path), zap.Error(err))
		}
	}
}

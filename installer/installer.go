package installer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/atomicfile"
	"github.com/swarmdeploy/swarm/release"
)

// Installer installs, activates and rolls back releases under one root
// directory. It is safe for concurrent use: operations on different apps run
// in parallel, operations on one app one at a time. One Installer (one
// process) should own a root at a time.
type Installer struct {
	cfg Config
	log *zap.Logger
	now func() time.Time

	mu   sync.Mutex
	apps map[string]*app
}

// app is one app's directory and the state loaded from it.
type app struct {
	name   string
	dir    string // Dir/releases/<name>
	logDir string // Dir/logs/<name>
	log    *zap.Logger

	op       chan struct{} // held for a whole Install or Rollback
	hookLock *os.File      // the locked hook lock (hooklock.go) while op is held

	mu        sync.Mutex // guards the fields below
	loaded    bool
	cur       *release.Manifest
	prev      *release.Manifest
	unchecked bool // cur has not passed its health check yet
}

// Result describes a finished Install.
type Result struct {
	// Dir is the release's absolute directory.
	Dir string
	// Previous is the release that was current before this one, if any:
	// where Rollback goes.
	Previous *release.Manifest
	// AlreadyCurrent reports that the release was current already and
	// nothing was run or changed.
	AlreadyCurrent bool
	// HookLog is the path of the log file that holds the output of the hook
	// and health check runs for this release; empty when neither ran.
	HookLog string
}

// New returns an Installer for cfg; zero fields get their defaults. It does
// no I/O: call cfg.Validate first to check the hook and health check, and
// directories are created on first install.
func New(cfg Config, log *zap.Logger) (*Installer, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if err := cfg.validateFields(); err != nil {
		return nil, err
	}
	for _, p := range []*string{&cfg.Dir, &cfg.Hook, &cfg.HealthCheck, &cfg.Shim} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrConfig, *p, err)
		}
		*p = abs
	}
	return &Installer{
		cfg:  cfg.withDefaults(),
		log:  log.Named("installer"),
		now:  time.Now,
		apps: make(map[string]*app),
	}, nil
}

func (i *Installer) app(name string) (*app, error) {
	if err := release.ValidateApp(name); err != nil {
		return nil, err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	a, ok := i.apps[name]
	if !ok {
		a = &app{
			name:   name,
			dir:    filepath.Join(i.cfg.Dir, "releases", name),
			logDir: filepath.Join(i.cfg.Dir, "logs", name),
			log:    i.log.With(zap.String("app", name)),
			op:     make(chan struct{}, 1),
		}
		i.apps[name] = a
	}
	return a, nil
}

// lockApp starts an Install or Rollback of a: it waits for the app's other
// operations in this process, then takes the app's hook lock, which shuts
// out hook runs of other processes (an earlier life of this agent's
// included) until unlock. Unless create, an app that has no directory yet
// gets none, and no hook lock: it has no release a hook could run in.
func (i *Installer) lockApp(ctx context.Context, a *app, create bool) error {
	select {
	case a.op <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	if !create && !isDir(a.dir) {
		return nil
	}
	f, err := i.lockHooks(ctx, a)
	if err != nil {
		<-a.op
		return err
	}
	a.hookLock = f
	return nil
}

func (a *app) unlock() {
	if a.hookLock != nil {
		a.hookLock.Close()
		a.hookLock = nil
	}
	<-a.op
}

// ensureLoaded loads and repairs the app's state from disk the first time
// the app is used.
func (a *app) ensureLoaded() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.loaded {
		return nil
	}
	if err := a.load(); err != nil {
		return err
	}
	a.loaded = true
	return nil
}

func (a *app) snapshot() (cur, prev *release.Manifest) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return clone(a.cur), clone(a.prev)
}

// commit moves the app to current cur and previous prev: it records the
// switch in state.json, points the symlink, then records the result. See
// the package doc for why in this order. unchecked records that cur still
// has a health check to pass.
func (a *app) commit(cur, prev *release.Manifest, unchecked bool) error {
	to := switchTo{Current: clone(cur), Previous: clone(prev), Unchecked: unchecked && cur != nil}
	a.mu.Lock()
	st := stateFile{Current: clone(a.cur), Previous: clone(a.prev), Unchecked: a.unchecked, Pending: &to}
	a.mu.Unlock()
	if err := a.writeState(st); err != nil {
		return err
	}
	if err := pointCurrent(a.dir, dirOf(cur)); err != nil {
		// The symlink may or may not have moved: read the truth from disk
		// next time.
		a.mu.Lock()
		a.loaded = false
		a.mu.Unlock()
		return err
	}
	a.mu.Lock()
	a.cur, a.prev, a.unchecked = to.Current, to.Previous, to.Unchecked
	a.mu.Unlock()
	if err := a.writeState(stateFile{Current: to.Current, Previous: to.Previous, Unchecked: to.Unchecked}); err != nil {
		// The switch happened and state.json records it as pending, which
		// loading adopts: nothing is inconsistent, so this is no failure.
		a.log.Warn("record switch", zap.Error(err))
	}
	return nil
}

// checked records that the current release passed its health check.
func (a *app) checked() {
	a.mu.Lock()
	st := stateFile{Current: clone(a.cur), Previous: clone(a.prev)}
	was := a.unchecked
	a.unchecked = false
	a.mu.Unlock()
	if !was {
		return
	}
	if err := a.writeState(st); err != nil {
		// Harmless: the next Install of this release checks it again.
		a.log.Warn("record health check", zap.Error(err))
	}
}

func (a *app) isUnchecked() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.unchecked
}

// Current returns the app's active release, as the current symlink says.
func (i *Installer) Current(appName string) (release.Manifest, bool, error) {
	cur, _, err := i.state(appName)
	if err != nil || cur == nil {
		return release.Manifest{}, false, err
	}
	return *cur, true, nil
}

// Previous returns the release that was active before the current one: the
// one Rollback goes back to.
func (i *Installer) Previous(appName string) (release.Manifest, bool, error) {
	_, prev, err := i.state(appName)
	if err != nil || prev == nil {
		return release.Manifest{}, false, err
	}
	return *prev, true, nil
}

// HealthPending reports whether the app's current release became current
// but has not passed its health check: the process stopped in between.
// Install that release again to run the check; until then, do not report it
// healthy.
func (i *Installer) HealthPending(appName string) (bool, error) {
	a, err := i.app(appName)
	if err != nil {
		return false, err
	}
	if err := a.ensureLoaded(); err != nil {
		return false, fmt.Errorf("load %s: %w", appName, err)
	}
	return a.isUnchecked(), nil
}

func (i *Installer) state(appName string) (cur, prev *release.Manifest, err error) {
	a, err := i.app(appName)
	if err != nil {
		return nil, nil, err
	}
	if err := a.ensureLoaded(); err != nil {
		return nil, nil, fmt.Errorf("load %s: %w", appName, err)
	}
	cur, prev = a.snapshot()
	return cur, prev, nil
}

// Install makes m, whose bundle is the file at bundlePath, the app's current
// release. It unpacks the bundle (checking its id and unpacked size again),
// runs the hook, switches current and runs the health check. When any step
// fails the release that was current stays or becomes current again, and the
// error says which step failed: it wraps ErrHookFailed, ErrHookTimeout,
// ErrHealthFailed, ctx's error, or release's unpack errors
// (release.ErrIDMismatch, release.ErrTooLarge, release.ErrUnsafeEntry,
// release.ErrTrailingData, release.ErrEntryBody, release.ErrTooManyEntries).
// The unpack stops soon after ctx ends, however large the bundle, and
// leaves nothing behind.
//
// A release that is current already is not touched: Install returns
// AlreadyCurrent. Installing the previous release again reuses its
// directory, as Rollback does, and runs the hook on it. If ctx ends during
// the health check, the switch is undone as for a failed check, since
// Install has not finished.
func (i *Installer) Install(ctx context.Context, m release.Manifest, bundlePath string) (Result, error) {
	if err := checkManifest(m); err != nil {
		return Result{}, fmt.Errorf("install: %w", err)
	}
	a, err := i.app(m.App)
	if err != nil {
		return Result{}, err
	}
	if err := i.lockApp(ctx, a, true); err != nil {
		return Result{}, fmt.Errorf("install %s %s: %w", m.App, m.Version, err)
	}
	defer a.unlock()
	res, err := i.install(ctx, a, m, bundlePath)
	if err != nil {
		return res, fmt.Errorf("install %s %s: %w", m.App, m.Version, err)
	}
	return res, nil
}

func (i *Installer) install(ctx context.Context, a *app, m release.Manifest, bundlePath string) (Result, error) {
	if err := a.ensureLoaded(); err != nil {
		return Result{}, err
	}
	cur0, prev0 := a.snapshot()
	dir := filepath.Join(a.dir, m.Dir())
	log := a.log.With(zap.String("version", m.Version), zap.String("release_id", string(m.ReleaseID)), zap.String("dir", dir))
	if sameRelease(cur0, &m) {
		res := Result{Dir: dir, Previous: prev0}
		if !a.isUnchecked() || i.cfg.HealthCheck == "" {
			a.checked()
			res.AlreadyCurrent = true
			return res, nil
		}
		// A crash came between the switch and the health check: finish the
		// install. On failure the previous release comes back, with no
		// previous of its own (that was not recorded).
		log.Info("finishing an install interrupted before its health check")
		return res, i.checkHealth(ctx, a, m, &res, prev0, nil, false)
	}
	if dirOf(cur0) == m.Dir() {
		return Result{}, fmt.Errorf("directory %s is current but holds release %s, not %s", m.Dir(), cur0.ReleaseID, m.ReleaseID)
	}

	reused := sameRelease(prev0, &m) && isDir(dir)
	if reused {
		log.Info("previous release directory reused")
	} else if err := i.unpack(ctx, a, m, bundlePath); err != nil {
		return Result{}, err
	}
	discard := func() {
		if reused {
			return // it is still the previous release
		}
		if err := removeDir(a.dir, m.Dir()); err != nil {
			log.Warn("remove failed release", zap.Error(err))
		}
		a.removeMeta(m.Dir())
	}

	// The new previous is what ran before; if nothing ran (current was
	// removed or dangling), keep the last previous as the rollback target.
	prev := cur0
	if prev == nil {
		prev = prev0
	}
	res := Result{Dir: dir, Previous: prev}
	logPath := filepath.Join(a.logDir, m.Dir()+".hook.log")
	if i.cfg.Hook != "" {
		res.HookLog = logPath
		err := i.exec(ctx, run{path: i.cfg.Hook, verb: "install", m: m, dir: dir,
			prevDir: a.abs(prev), timeout: i.cfg.HookTimeout, logPath: logPath, lock: a.hookLock})
		if err != nil {
			discard()
			log.Warn("hook failed; previous release stays active", zap.Error(err), zap.String("log", logPath))
			return res, hookError(err, logPath)
		}
	}
	if err := ctx.Err(); err != nil {
		discard()
		return res, err
	}

	if err := a.commit(&m, prev, i.cfg.HealthCheck != ""); err != nil {
		return res, fmt.Errorf("switch to %s: %w", m.Dir(), err)
	}
	if err := i.checkHealth(ctx, a, m, &res, cur0, prev0, reused); err != nil {
		return res, err
	}
	i.retain(a)
	log.Info("release active", zap.String("previous", dirOf(prev)))
	return res, nil
}

// checkHealth runs the health check on m, which has just become current.
// If it fails, current goes back to back (with previous backPrev) and m's
// directory is removed unless keep says it is still needed.
func (i *Installer) checkHealth(ctx context.Context, a *app, m release.Manifest, res *Result, back, backPrev *release.Manifest, keep bool) error {
	if i.cfg.HealthCheck == "" {
		a.checked()
		return nil
	}
	logPath := filepath.Join(a.logDir, m.Dir()+".hook.log")
	res.HookLog = logPath
	err := i.exec(ctx, run{path: i.cfg.HealthCheck, verb: "health", m: m, dir: a.abs(&m),
		prevDir: a.abs(res.Previous), timeout: i.cfg.HealthTimeout, logPath: logPath, lock: a.hookLock})
	if err == nil {
		a.checked()
		return nil
	}
	a.log.Warn("health check failed; putting the previous release back", zap.Error(err),
		zap.String("version", m.Version), zap.String("release_id", string(m.ReleaseID)),
		zap.String("previous", orNone(dirOf(back))), zap.String("log", logPath))
	herr := fmt.Errorf("%w: %w; log %s", ErrHealthFailed, err, logPath)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		herr = fmt.Errorf("health check interrupted: %w; log %s", err, logPath)
	}
	return errors.Join(herr, i.revert(ctx, a, m, back, backPrev, keep))
}

// revert undoes the switch to m after its health check failed: cur0 and
// prev0 become current and previous again, m's directory goes (unless keep:
// it is the previous release), and the hook runs as "rollback" for the
// release that is current again. ctx's cancellation is ignored here, not its
// values: an agent shutting down must not leave the failed release half
// replaced.
func (i *Installer) revert(ctx context.Context, a *app, m release.Manifest, cur0, prev0 *release.Manifest, keep bool) error {
	ctx = context.WithoutCancel(ctx)
	if err := a.commit(cur0, prev0, false); err != nil {
		return fmt.Errorf("put back %s: %w", orNone(dirOf(cur0)), err)
	}
	var err error
	if cur0 != nil && i.cfg.Hook != "" {
		err = i.rollbackHook(ctx, a, *cur0, &m)
	}
	if !keep {
		if rerr := removeDir(a.dir, m.Dir()); rerr != nil {
			a.log.Warn("remove failed release", zap.String("dir", m.Dir()), zap.Error(rerr))
		}
		a.removeMeta(m.Dir())
	}
	a.log.Info("previous release active again", zap.String("dir", orNone(dirOf(cur0))))
	return err
}

// Rollback makes the previous release current again and returns it; the
// release that was current becomes the previous one, so a second Rollback
// goes forward again. The switch is atomic and no bundle is needed: the
// previous release's directory is kept for this. After the switch the hook
// runs as [Hook, "rollback"] in the reactivated release's directory, so that
// it can restart the service on the old code. The health check does not run.
// If the hook fails the switch stands (the previous release was healthy when
// it was last active) and the error wraps ErrHookFailed or ErrHookTimeout.
// With no previous release the error wraps ErrNoPrevious and nothing changes.
func (i *Installer) Rollback(ctx context.Context, appName string) (release.Manifest, error) {
	a, err := i.app(appName)
	if err != nil {
		return release.Manifest{}, err
	}
	if err := i.lockApp(ctx, a, false); err != nil {
		return release.Manifest{}, fmt.Errorf("rollback %s: %w", appName, err)
	}
	defer a.unlock()
	if err := a.ensureLoaded(); err != nil {
		return release.Manifest{}, fmt.Errorf("rollback %s: %w", appName, err)
	}
	cur0, prev0 := a.snapshot()
	if prev0 == nil {
		return release.Manifest{}, fmt.Errorf("rollback %s: %w", appName, ErrNoPrevious)
	}
	if err := a.commit(prev0, cur0, false); err != nil {
		return release.Manifest{}, fmt.Errorf("rollback %s to %s: %w", appName, prev0.Dir(), err)
	}
	a.log.Info("rolled back", zap.String("version", prev0.Version), zap.String("release_id", string(prev0.ReleaseID)),
		zap.String("dir", prev0.Dir()), zap.String("from", orNone(dirOf(cur0))))
	if i.cfg.Hook != "" {
		if err := i.rollbackHook(ctx, a, *prev0, cur0); err != nil {
			return *prev0, fmt.Errorf("rollback %s to %s: switched, but %w", appName, prev0.Dir(), err)
		}
	}
	return *prev0, nil
}

// rollbackHook runs [Hook, "rollback"] for m, which has just become current
// again after from.
func (i *Installer) rollbackHook(ctx context.Context, a *app, m release.Manifest, from *release.Manifest) error {
	logPath := filepath.Join(a.logDir, m.Dir()+".hook.log")
	err := i.exec(ctx, run{path: i.cfg.Hook, verb: "rollback", m: m, dir: a.abs(&m),
		prevDir: a.abs(from), timeout: i.cfg.HookTimeout, logPath: logPath, lock: a.hookLock})
	if err != nil {
		a.log.Warn("rollback hook failed", zap.String("dir", m.Dir()), zap.Error(err), zap.String("log", logPath))
		return hookError(err, logPath)
	}
	return nil
}

// hookError wraps a failed hook run in the sentinel that says how it failed.
func hookError(err error, logPath string) error {
	switch {
	case errors.Is(err, errTimeout):
		return fmt.Errorf("%w: %w; log %s", ErrHookTimeout, err, logPath)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("hook interrupted: %w; log %s", err, logPath)
	default:
		return fmt.Errorf("%w: %w; log %s", ErrHookFailed, err, logPath)
	}
}

// abs is m's absolute release directory, or "" for no release.
func (a *app) abs(m *release.Manifest) string {
	if m == nil {
		return ""
	}
	return filepath.Join(a.dir, m.Dir())
}

// checkManifest checks the fields that become paths. The caller verified the
// signature; the rest of the manifest is not the installer's business.
func checkManifest(m release.Manifest) error {
	if err := release.ValidateApp(m.App); err != nil {
		return err
	}
	if err := release.ValidateVersion(m.Version); err != nil {
		return err
	}
	if _, err := release.ParseID(string(m.ReleaseID)); err != nil {
		return err
	}
	return nil
}

// unpack puts the bundle's tree at releases/<app>/<dir>: unpacked into a
// temporary directory beside it, synced, then renamed into place, replacing a
// directory an earlier failed attempt left under that name. If it fails or
// ctx ends, the temporary directory is removed (and, should the process die
// first, loading the app removes it).
func (i *Installer) unpack(ctx context.Context, a *app, m release.Manifest, bundlePath string) error {
	if err := mkdirSync(a.dir); err != nil {
		return err
	}
	open := i.cfg.OpenBundle
	if open == nil {
		open = func(p string) (io.ReadCloser, error) { return os.Open(p) }
	}
	f, err := open(bundlePath)
	if err != nil {
		return fmt.Errorf("open bundle: %w", err)
	}
	defer f.Close()
	tmp, err := os.MkdirTemp(a.dir, tmpPrefix+m.Dir()+"-")
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	opts := release.UnpackOptions{
		Name:     m.App + " " + m.Version,
		MaxBytes: m.UnpackedSize, MaxBundleBytes: m.BundleSize, ExpectID: m.ReleaseID,
	}
	if err := release.Unpack(ctx, bufio.NewReaderSize(f, 1<<20), tmp, opts); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	if err := syncTree(ctx, tmp); err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	if err := a.writeMeta(m, i.now()); err != nil {
		return err
	}
	final := filepath.Join(a.dir, m.Dir())
	if isDir(final) {
		a.log.Info("replacing a release directory left by an earlier attempt", zap.String("dir", m.Dir()))
		if err := removeDir(a.dir, m.Dir()); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	done = true
	return atomicfile.SyncDir(a.dir)
}

// Check runs the health check against the app's current release, as the
// agent does every health interval after activation; it changes nothing on
// disk whatever the outcome (the fleet's controller decides what a failing
// node means). It returns nil when there is no health check or no current
// release, and an error wrapping ErrHealthFailed when the check fails.
func (i *Installer) Check(ctx context.Context, appName string) error {
	if i.cfg.HealthCheck == "" {
		return nil
	}
	a, err := i.app(appName)
	if err != nil {
		return err
	}
	if err := a.ensureLoaded(); err != nil {
		return fmt.Errorf("health check %s: %w", appName, err)
	}
	cur, prev := a.snapshot()
	if cur == nil {
		return nil
	}
	logPath := filepath.Join(a.logDir, cur.Dir()+".hook.log")
	err = i.exec(ctx, run{path: i.cfg.HealthCheck, verb: "health", m: *cur, dir: a.abs(cur),
		prevDir: a.abs(prev), timeout: i.cfg.HealthTimeout, logPath: logPath})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s %s: %w; log %s", ErrHealthFailed, appName, cur.Version, err, logPath)
	}
	return nil
}

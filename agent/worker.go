package agent

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/installer"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/rollout"
	"github.com/swarmdeploy/swarm/swarm"
)

// worker drives one app toward one target release.
type worker struct {
	id     release.ID
	seq    uint64
	cancel context.CancelFunc
	done   chan struct{}
}

func (a *Agent) startWorker(ctx context.Context, d release.DesiredState, m release.Manifest) {
	wctx, cancel := context.WithCancel(ctx)
	w := &worker{id: m.ReleaseID, seq: d.Sequence, cancel: cancel, done: make(chan struct{})}
	a.mu.Lock()
	a.workers[d.App] = w
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer close(w.done)
		defer cancel()
		a.drive(wctx, d, m)
		a.retainNow.Store(true)
		a.mu.Lock()
		if a.workers[d.App] == w {
			delete(a.workers, d.App)
		}
		a.mu.Unlock()
		a.poke()
	}()
}

func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// drive takes one app from where it is to its target: download, wait for
// the wave, install; or, when the target is the release this node ran
// before, wait for admission and switch back to it (no download). It
// returns when done, failed for good, or cancelled.
func (a *Agent) drive(ctx context.Context, d release.DesiredState, m release.Manifest) {
	log := a.log.With(zap.String("app", m.App), zap.String("version", m.Version), zap.String("release_id", string(m.ReleaseID)))
	st := appState{App: m.App, Version: m.Version, ReleaseID: m.ReleaseID, Seq: d.Sequence, Phase: gossip.PhaseDownloading}
	if prev, ok, err := a.inst.Previous(m.App); err == nil && ok && prev.ReleaseID == m.ReleaseID {
		a.switchBack(ctx, st, m, log)
		return
	}
	a.setState(st)
	log.Info("downloading")
	if !a.fetch(ctx, &st, m, log) {
		return
	}
	st.Phase, st.Error = gossip.PhaseStaged, ""
	a.setState(st)
	log.Info("staged")

	if !a.waitAdmitted(ctx, m) {
		return
	}
	res, err := a.install(ctx, &st, m, log)
	switch {
	case err == nil:
		st.Phase, st.Healthy, st.Error = gossip.PhaseActive, true, ""
		log.Info("active", zap.String("dir", res.Dir), zap.Bool("already_current", res.AlreadyCurrent))
	case errors.Is(err, installer.ErrHealthFailed):
		st.Phase, st.Healthy, st.Error = gossip.PhaseRolledBack, false, shortError(err)
		log.Error("health check failed; previous release restored", zap.Error(err))
	case ctx.Err() != nil:
		return
	default:
		st.Phase, st.Healthy, st.Error = gossip.PhaseFailed, false, shortError(err)
		log.Error("install failed; previous release stays active", zap.Error(err))
	}
	a.setState(st)
}

// install installs m; an install that runs out of disk (the unpack: something
// else took the room the download left) waits for room as a download does
// and runs again.
func (a *Agent) install(ctx context.Context, st *appState, m release.Manifest, log *zap.Logger) (installer.Result, error) {
	for {
		st.Phase = gossip.PhaseInstalling
		a.setState(*st)
		res, err := a.inst.Install(ctx, m, a.torrent.BundlePath(m.ReleaseID))
		if err == nil || ctx.Err() != nil || !errors.Is(err, syscall.ENOSPC) || errors.Is(err, installer.ErrHealthFailed) {
			return res, err
		}
		log.Warn("install ran out of disk", zap.Error(err))
		free, _ := swarm.FreeBytes(a.cfg.DataDir)
		full := &swarm.DiskFullError{Dir: a.cfg.DataDir, Need: a.spaceNeeded(m), Free: free}
		if !a.waitForRoom(ctx, st, m, full, log) {
			return res, ctx.Err()
		}
	}
}

// fetch downloads m until it is complete, retrying after failures; false if
// ctx ended or the bundle can never be right. A download starts only when
// the disk has room for it (roomFor); while it has not, the app is failed
// with "disk full" and the download waits for room (waitForRoom).
func (a *Agent) fetch(ctx context.Context, st *appState, m release.Manifest, log *zap.Logger) bool {
	for {
		err := a.roomFor(ctx, m)
		if err == nil {
			if a.cfg.SharedBundleDir == "" {
				if err := a.recordBundle(m); err != nil {
					log.Warn("cannot record the download for retention", zap.Error(err))
				}
			}
			err = a.torrent.FetchWith(ctx, m, a.sources(m), a.originUse(m, log))
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		if full, ok := errors.AsType[*swarm.DiskFullError](err); ok {
			// The swarm's figure is the bundle's; the agent's counts the
			// unpack too.
			full = &swarm.DiskFullError{Dir: full.Dir, Need: a.spaceNeeded(m), Free: full.Free}
			if !a.waitForRoom(ctx, st, m, full, log) {
				return false
			}
			st.Phase = gossip.PhaseDownloading
			a.setState(*st)
			continue
		}
		if errors.Is(err, release.ErrIDMismatch) {
			log.Error("refused a bundle that does not match its release id", zap.Error(err))
			st.Phase, st.Error = gossip.PhaseFailed, "bundle does not match its release id"
			a.setState(*st)
			return false
		}
		log.Warn("download failed; retrying", zap.Error(err), zap.Duration("backoff", a.cfg.RetryBackoff))
		st.Error = shortError(err)
		a.setState(*st)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(a.cfg.RetryBackoff):
		}
	}
	if a.cfg.SharedBundleDir == "" {
		if err := a.recordBundle(m); err != nil {
			log.Warn("cannot record the bundle for retention; it stays until removed by hand", zap.Error(err))
		}
	}
	return true
}

// spaceNeeded is the disk m still takes on this node before it runs: the
// bundle's size less what its part file already holds, and the unpacked
// release.
func (a *Agent) spaceNeeded(m release.Manifest) int64 {
	return a.torrent.SpaceNeeded(m) + m.UnpackedSize
}

// roomFor checks that m fits on disk (spaceNeeded) with MinFreeBytes to
// spare once installed; if not, retention first removes what it may, and if
// that is not enough, the result is a *swarm.DiskFullError.
func (a *Agent) roomFor(ctx context.Context, m release.Manifest) error {
	need := a.spaceNeeded(m)
	dir := a.bundlesDir()
	free, err := swarm.FreeBytes(dir)
	if err != nil {
		return fmt.Errorf("check disk space: %w", err)
	}
	if free-need >= a.cfg.MinFreeBytes {
		return nil
	}
	_, removed, err := a.prune(need)
	if err != nil {
		a.log.Warn("retention: "+err.Error(), zap.Error(err))
	}
	// What retention removed comes back once its files close.
	returned := time.Now().Add(swarm.SpaceReturnDelay + time.Second)
	for {
		if free, err = swarm.FreeBytes(dir); err != nil {
			return fmt.Errorf("check disk space: %w", err)
		}
		if free-need >= a.cfg.MinFreeBytes {
			return nil
		}
		if removed == 0 || time.Now().After(returned) {
			return &swarm.DiskFullError{Dir: dir, Need: need, Free: free}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitForRoom reports that m does not fit the disk (the app fails with
// full's text) and checks again every DiskRetry until it does, then
// returns true for the caller to try again. false if ctx ended first.
func (a *Agent) waitForRoom(ctx context.Context, st *appState, m release.Manifest, full *swarm.DiskFullError, log *zap.Logger) bool {
	text := a.diskFullText(full)
	log.Error(text+"; free space there or lower --min-free: the release is fetched and installed by itself once it fits",
		zap.Int64("need_bytes", full.Need), zap.Int64("free_bytes", full.Free), zap.Int64("min_free_bytes", a.cfg.MinFreeBytes),
		zap.Duration("check_every", a.cfg.DiskRetry))
	st.Phase, st.Error = gossip.PhaseFailed, text
	a.setState(*st)
	for {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(a.cfg.DiskRetry):
		}
		err := a.roomFor(ctx, m)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		if _, ok := errors.AsType[*swarm.DiskFullError](err); !ok {
			log.Warn("cannot tell whether the download fits yet", zap.Error(err))
		}
	}
	log.Info("the disk has room for the release again; trying again")
	st.Error = ""
	return true
}

// diskFullText is the app's error for a download the disk cannot hold,
// short enough to gossip: "disk full: need 128 MiB, 90 MiB free on
// /data/bundles (--min-free 0)".
func (a *Agent) diskFullText(full *swarm.DiskFullError) string {
	minFree := "0"
	if a.cfg.MinFreeBytes > 0 {
		minFree = swarm.SizeText(a.cfg.MinFreeBytes, false)
	}
	return fmt.Sprintf("%s (--min-free %s)", full.Error(), minFree)
}

// AppError is what the app's last failure on this node said, as its state
// gossips it; empty when it did not fail.
func (a *Agent) AppError(app string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.apps[app].Error
}

// switchBack returns the app to m, the release it ran before the current
// one, once admitted: the installer switches the symlink back and runs the
// hook as "rollback". This is how a fleet rollback lands on a node that
// moved: no download and no unpack, so it takes as long as the hook.
func (a *Agent) switchBack(ctx context.Context, st appState, m release.Manifest, log *zap.Logger) {
	st.Phase = gossip.PhaseStaged // on disk already
	a.setState(st)
	if !a.waitAdmitted(ctx, m) {
		return
	}
	st.Phase = gossip.PhaseInstalling
	a.setState(st)
	_, err := a.inst.Rollback(ctx, m.App)
	switch {
	case err == nil:
		st.Phase, st.Healthy, st.Error = gossip.PhaseActive, true, ""
		log.Info("active again: switched back to the previous release")
	case ctx.Err() != nil:
		return
	case errors.Is(err, installer.ErrHookFailed), errors.Is(err, installer.ErrHookTimeout):
		// The switch stands: the release was healthy when it last ran.
		st.Phase, st.Healthy, st.Error = gossip.PhaseActive, true, shortError(err)
		log.Warn("switched back; the rollback hook failed", zap.Error(err))
	default:
		st.Phase, st.Healthy, st.Error = gossip.PhaseFailed, false, shortError(err)
		log.Error("cannot switch back to the previous release", zap.Error(err))
	}
	a.setState(st)
}

// waitAdmitted waits until the latest desired state admits this node to m;
// false if ctx ended first. A newer state for the same target (a step
// forward, a resume, the blue-green flip) arrives through gossip; a
// different target cancels ctx.
func (a *Agent) waitAdmitted(ctx context.Context, m release.Manifest) bool {
	for !a.admitted(m) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(a.cfg.Tick):
		}
	}
	return true
}

// admitted reports whether the latest desired state for m's app still
// targets m and admits this node.
func (a *Agent) admitted(m release.Manifest) bool {
	d, _, ok := a.view.Desired(a.key(m.App))
	if !ok {
		return false
	}
	tm, err := d.Target.Unverified()
	if err != nil || tm.ReleaseID != m.ReleaseID {
		return false
	}
	return rollout.Admitted(a.cfg.Name, &d, m.ReleaseID)
}

// releases is what the agent needs of the installer; tests fake it.
type releases interface {
	Install(ctx context.Context, m release.Manifest, bundlePath string) (installer.Result, error)
	Rollback(ctx context.Context, app string) (release.Manifest, error)
	Current(app string) (release.Manifest, bool, error)
	Previous(app string) (release.Manifest, bool, error)
	HealthPending(app string) (bool, error)
	Check(ctx context.Context, app string) error
}

// cluster is what the agent's workers read of gossip; tests fake it.
type cluster interface {
	Desired(key string) (release.DesiredState, release.SignedDesiredState, bool)
	Members() []gossip.NodeState
	ReleaseProgress(id release.ID) float64
}

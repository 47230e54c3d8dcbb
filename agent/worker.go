package agent

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/installer"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/rollout"
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

// drive takes one app from nothing to its target: download, wait for the
// wave, install. It returns when done, failed for good, or cancelled.
func (a *Agent) drive(ctx context.Context, d release.DesiredState, m release.Manifest) {
	log := a.log.With(zap.String("app", m.App), zap.String("version", m.Version), zap.String("release_id", string(m.ReleaseID)))
	st := appState{App: m.App, Version: m.Version, ReleaseID: m.ReleaseID, Seq: d.Sequence, Phase: gossip.PhaseDownloading}
	a.setState(st)
	log.Info("downloading")
	for {
		err := a.torrent.FetchWith(ctx, m, a.sources(m), a.originUse(m, log))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, release.ErrIDMismatch) {
			log.Error("refused a bundle that does not match its release id", zap.Error(err))
			st.Phase, st.Error = gossip.PhaseFailed, "bundle does not match its release id"
			a.setState(st)
			return
		}
		log.Warn("download failed; retrying", zap.Error(err), zap.Duration("backoff", a.cfg.RetryBackoff))
		st.Error = shortError(err)
		a.setState(st)
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.cfg.RetryBackoff):
		}
	}
	if a.cfg.SharedBundleDir == "" {
		if err := a.recordBundle(m); err != nil {
			log.Warn("cannot record the bundle for retention; it stays until removed by hand", zap.Error(err))
		}
	}
	st.Phase, st.Error = gossip.PhaseStaged, ""
	a.setState(st)
	log.Info("staged")

	// Wait for the wave. A newer desired state for the same target (a step
	// forward, a resume) arrives through gossip; a different target cancels us.
	for !a.admitted(m) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.cfg.Tick):
		}
	}

	st.Phase = gossip.PhaseInstalling
	a.setState(st)
	res, err := a.inst.Install(ctx, m, a.torrent.BundlePath(m.ReleaseID))
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

// admitted reports whether the latest desired state for m's app still
// targets m and admits this node.
func (a *Agent) admitted(m release.Manifest) bool {
	d, _, ok := a.gossip.Desired(a.key(m.App))
	if !ok {
		return false
	}
	tm, err := d.Target.Unverified()
	if err != nil || tm.ReleaseID != m.ReleaseID {
		return false
	}
	return rollout.Admitted(a.cfg.Name, &d, m.ReleaseID)
}

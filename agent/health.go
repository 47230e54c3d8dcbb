package agent

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
)

// Health. After a release becomes active the installer has run the health
// check once; from then on the agent runs it every HealthInterval against
// every active app that no worker is changing. HealthFailures consecutive
// failures make the node report the app unhealthy (gossip AppState.Healthy
// false, with the check's error); one success makes it healthy again. The
// node changes nothing itself: whether an unhealthy node fails a rollout is
// the controller's call (package rollout), which rolls the fleet back.

// healthLoop runs the periodic health checks until ctx ends.
func (a *Agent) healthLoop(ctx context.Context) {
	if a.cfg.HealthCheck == "" || a.cfg.HealthInterval < 0 {
		return
	}
	t := time.NewTicker(a.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.checkActive(ctx)
	}
}

// checkActive runs one health check of every app without a worker that
// runs a release: its active target, or the release a failed install left
// running or a rollback put back (the health the node reports is the
// running release's).
func (a *Agent) checkActive(ctx context.Context) {
	type due struct {
		app string
		id  release.ID
	}
	var list []due
	a.mu.Lock()
	for app, st := range a.apps {
		if a.workers[app] != nil {
			continue
		}
		switch st.Phase {
		case gossip.PhaseActive:
			list = append(list, due{app, st.ReleaseID})
		case gossip.PhaseFailed, gossip.PhaseRolledBack:
			if cur, ok, err := a.inst.Current(app); err == nil && ok {
				list = append(list, due{app, cur.ReleaseID})
			}
		}
	}
	a.mu.Unlock()
	for _, d := range list {
		err := a.inst.Check(ctx, d.app)
		if ctx.Err() != nil {
			return
		}
		a.noteHealth(d.app, d.id, err)
	}
}

// noteHealth records one periodic check of release id of app: err nil for
// a pass. It changes the app's state only if it still runs id.
func (a *Agent) noteHealth(app string, id release.ID, err error) {
	var turned string
	a.updateState(app, func(st *appState) bool {
		if a.sick == nil {
			a.sick = map[string]int{}
		}
		if st.ReleaseID != id || st.Phase != gossip.PhaseActive {
			return a.noteRunningHealthLocked(app, st, id, err, &turned)
		}
		if err == nil {
			a.sick[app] = 0
			if st.Healthy {
				return false
			}
			st.Healthy, st.Error = true, ""
			turned = "healthy"
			return true
		}
		a.sick[app]++
		if a.sick[app] < a.cfg.HealthFailures || !st.Healthy {
			return false
		}
		st.Healthy, st.Error = false, shortError(err)
		turned = "unhealthy"
		return true
	})
	switch turned {
	case "healthy":
		a.log.Info("health check passes again", zap.String("app", app), zap.String("release_id", string(id)))
	case "unhealthy":
		a.log.Error("health check failed repeatedly; reporting unhealthy", zap.String("app", app),
			zap.String("release_id", string(id)), zap.Int("failures", a.cfg.HealthFailures), zap.Error(err))
	}
}

// noteRunningHealthLocked records one periodic check of id, the release
// that runs while the app's target failed (st in phase failed or
// rolled-back), and reports whether that changed what the node reports.
func (a *Agent) noteRunningHealthLocked(app string, st *appState, id release.ID, err error, turned *string) bool {
	if st.Phase != gossip.PhaseFailed && st.Phase != gossip.PhaseRolledBack {
		return false
	}
	if cur, ok, cerr := a.inst.Current(app); cerr != nil || !ok || cur.ReleaseID != id {
		return false
	}
	if a.runSick == nil {
		a.runSick = map[string]release.ID{}
	}
	if err == nil {
		a.sick[app] = 0
		if a.runSick[app] != id {
			return false
		}
		delete(a.runSick, app)
		*turned = "healthy"
		return true
	}
	a.sick[app]++
	if a.sick[app] < a.cfg.HealthFailures || a.runSick[app] == id {
		return false
	}
	a.runSick[app] = id
	*turned = "unhealthy"
	return true
}

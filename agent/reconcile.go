package agent

import (
	"bytes"
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
)

// reconcile starts a worker for every app whose target the agent is not
// already working on or running, and retires workers of replaced targets.
func (a *Agent) reconcile(ctx context.Context) {
	states := a.gossip.DesiredAll()
	seen := make(map[string]verified, len(states))
	defer func() { a.verifiedCache = seen }() // forget superseded states
	for _, sd := range states {
		d, m, err := a.verify(sd, seen)
		if err != nil {
			a.log.Error("gossip handed over a desired state that does not verify", zap.Error(err))
			continue
		}
		if d.EnvName() != a.cfg.Env {
			continue // another environment's: relayed by gossip, not ours to follow
		}
		a.mu.Lock()
		w := a.workers[d.App]
		st, known := a.apps[d.App]
		a.mu.Unlock()
		if w != nil {
			if w.id == m.ReleaseID {
				continue // already on it; the worker sees step and pause changes itself
			}
			w.cancel()
			<-w.done
		}
		if known && st.ReleaseID == m.ReleaseID {
			switch {
			case st.Phase == gossip.PhaseActive:
				continue
			case (st.Phase == gossip.PhaseFailed || st.Phase == gossip.PhaseRolledBack) && st.Seq >= d.Sequence:
				continue // failed for this state already; wait for a newer one
			}
		}
		if a.installed(d.App, m.ReleaseID) {
			// Installed before a restart: serve it, do not fetch or install again.
			if err := a.torrent.Seed(m); err != nil {
				a.log.Warn("cannot seed the active release", zap.String("app", m.App), zap.Error(err))
			}
			a.setState(appState{App: m.App, Version: m.Version, ReleaseID: m.ReleaseID, Phase: gossip.PhaseActive, Healthy: true, Seq: d.Sequence})
			continue
		}
		a.startWorker(ctx, d, m)
	}
	if now := time.Now(); now.Sub(a.lastRefresh) >= a.cfg.Tick {
		// Member changes wake reconcile far more often than peers are
		// worth re-adding: at most once a tick.
		a.lastRefresh = now
		a.refreshPeers()
	}
	if now := time.Now(); now.Sub(a.lastRetain) >= retainEvery || a.retainNow.Swap(false) {
		a.lastRetain = now
		a.retain()
	}
	a.report()
}

// retainEvery is how often reconcile applies bundle retention.
const retainEvery = 10 * time.Second

// verified is a desired state whose signatures checked out, and its target.
type verified struct {
	env release.Envelope
	d   release.DesiredState
	m   release.Manifest
}

// verify checks sd's signatures and returns it with its target manifest,
// recording it in seen. reconcile runs on every gossip change, which in a
// large cluster is many times a second, so a state verified by the previous
// reconcile is not verified again while it is byte-for-byte the same.
func (a *Agent) verify(sd release.SignedDesiredState, seen map[string]verified) (release.DesiredState, release.Manifest, error) {
	key := string(sd.Sig)
	if v, ok := a.verifiedCache[key]; ok && sameEnvelope(v.env, sd.Envelope) {
		seen[key] = v
		return v.d, v.m, nil
	}
	d, err := sd.Verify(a.ring)
	if err != nil {
		return release.DesiredState{}, release.Manifest{}, err
	}
	m, err := d.Target.Verify(a.ring)
	if err != nil {
		return release.DesiredState{}, release.Manifest{}, err
	}
	seen[key] = verified{env: sd.Envelope, d: d, m: m}
	return d, m, nil
}

func sameEnvelope(x, y release.Envelope) bool {
	return x.KeyID == y.KeyID && bytes.Equal(x.Sig, y.Sig) && bytes.Equal(x.Payload, y.Payload)
}

// installed reports whether id is the app's current release and passed its
// health check. A release that became current just before a crash, with its
// health check not run, counts as not installed: the worker installs it
// again, which runs the check.
func (a *Agent) installed(app string, id release.ID) bool {
	cur, ok, err := a.inst.Current(app)
	if err != nil || !ok || cur.ReleaseID != id {
		return false
	}
	pending, err := a.inst.HealthPending(app)
	return err == nil && !pending
}

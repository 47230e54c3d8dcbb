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
		if a.noteStale(d) {
			continue // expired: keep running what runs, take no new target
		}
		a.noteTarget(m)
		a.mu.Lock()
		w := a.workers[d.App]
		st, known := a.apps[d.App]
		a.mu.Unlock()
		l := local{known: known, st: st}
		if w != nil {
			l.working = w.id
		}
		// installed reads the installer's state file: only when it matters.
		if l.working != m.ReleaseID && !(known && st.ReleaseID == m.ReleaseID && st.Phase == gossip.PhaseActive) {
			l.installed = a.installed(d.App, m.ReleaseID)
		}
		act := next(d, m.ReleaseID, l)
		if w != nil && w.id != m.ReleaseID {
			w.cancel() // its target was replaced
			select {
			case <-w.done:
			default:
				// Still stopping (an unpack or hook winding down): it
				// must not write this app's state after its successor, and
				// other apps must not wait for it. Its exit pokes
				// reconcile, which comes back to this app then.
				continue
			}
		}
		switch act {
		case actActive:
			// Installed already (before a restart, or the release a
			// rollback returns to that this node never left): serve it.
			if err := a.torrent.Seed(m); err != nil {
				a.log.Warn("cannot seed the active release", zap.String("app", m.App), zap.Error(err))
			}
			a.setState(appState{App: m.App, Version: m.Version, ReleaseID: m.ReleaseID, Phase: gossip.PhaseActive, Healthy: true, Seq: d.Sequence})
		case actWork:
			a.startWorker(ctx, d, m)
		}
	}
	if now := a.cfg.Now(); now.Sub(a.lastRefresh) >= a.cfg.Tick {
		// Member changes wake reconcile far more often than peers are
		// worth re-adding: at most once a tick.
		a.lastRefresh = now
		a.refreshPeers()
	}
	if now := a.cfg.Now(); now.Sub(a.lastRetain) >= retainEvery || a.retainNow.Swap(false) {
		a.lastRetain = now
		a.retain()
	}
	a.report()
}

// noteStale records whether d, this node's state for its app, has expired,
// logging the change, and reports whether it has. An expired state is not
// acted on: the node keeps running its release and reports the app stale
// until the seeder re-signs (seeder.Config.DesiredTTL); it may have been
// withheld on purpose, and acting on it would follow whoever replays it.
func (a *Agent) noteStale(d release.DesiredState) bool {
	expired := d.Expired(a.cfg.Now())
	a.mu.Lock()
	was := a.stale[d.App]
	if expired {
		if a.stale == nil {
			a.stale = map[string]bool{}
		}
		a.stale[d.App] = true
	} else {
		delete(a.stale, d.App)
	}
	a.mu.Unlock()
	switch {
	case expired && !was:
		a.log.Warn("desired state expired: keeping the running release until the seeder re-signs it",
			zap.String("app", d.App), zap.Uint64("seq", d.Sequence), zap.Time("expired", d.Expires))
	case !expired && was:
		a.log.Info("desired state fresh again", zap.String("app", d.App), zap.Uint64("seq", d.Sequence))
	}
	return expired
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
	d, err := a.cfg.Trust.VerifyDesired(sd) // the target manifest too
	if err != nil {
		return release.DesiredState{}, release.Manifest{}, err
	}
	m, err := d.Target.Unverified()
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

// action is what reconcile does about one app's desired state.
type action int

const (
	// actNone: nothing to do; the node runs the target, a worker is on it,
	// or the node waits for the target to be published anew.
	actNone action = iota
	// actActive: the target is installed and checked; record it active.
	actActive
	// actWork: start a worker that fetches, waits for admission and
	// installs the target.
	actWork
)

// local is what the agent knows of one app on this node.
type local struct {
	known     bool       // st holds the app's persisted state
	st        appState   // the app's state
	working   release.ID // the target of the app's running worker; "" none
	installed bool       // the target is current and passed its check
}

// next decides what to do about d, whose target is target, given what the
// node knows. It is the agent's state machine at the level of releases:
//
//   - a worker already on the target sees step and pause changes itself;
//   - a target recorded active, or installed and checked, is the running
//     release: nothing to fetch;
//   - a target that failed here (install failed or health check rolled it
//     back) since it was last published is not retried for newer states of
//     the same rollout (steps, pauses, a rollback elsewhere): only a new
//     publish (d.Published past the failure) retries it; but a download
//     the disk could not hold is retried (the worker waits for room);
//   - a target the environment marked bad is never installed;
//   - anything else gets a worker.
func next(d release.DesiredState, target release.ID, l local) action {
	if l.working == target {
		return actNone
	}
	if l.known && l.st.ReleaseID == target && l.st.Phase == gossip.PhaseActive {
		return actNone
	}
	if l.installed {
		return actActive
	}
	if d.IsBad(target) {
		return actNone
	}
	if l.known && l.st.ReleaseID == target && (l.st.Phase == gossip.PhaseFailed || l.st.Phase == gossip.PhaseRolledBack) && l.st.Seq >= d.Published && !l.st.diskFull() {
		return actNone
	}
	return actWork
}

// noteTarget records when this node first saw m as its app's target.
func (a *Agent) noteTarget(m release.Manifest) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.targetSeen == nil {
		a.targetSeen = map[string]seenTarget{}
	}
	if a.targetSeen[m.App].id != m.ReleaseID {
		a.targetSeen[m.App] = seenTarget{id: m.ReleaseID, at: a.cfg.Now()}
	}
}

// seenTarget is when a node first saw a release as its app's target.
type seenTarget struct {
	id release.ID
	at time.Time
}

// TargetSeenAt reports when this agent first saw release id as app's
// target; benchmarks measure how fast a publish spreads with it. The
// desired state may have been replaced since by newer ones with the same
// target (the controller's later steps): this is the first.
func (a *Agent) TargetSeenAt(app string, id release.ID) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.targetSeen[app]
	if !ok || s.id != id {
		return time.Time{}, false
	}
	return s.at, true
}

package agent

import (
	"math"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
)

// setState records and persists one app's state, then gossips it.
func (a *Agent) setState(st appState) {
	a.updateState(st.App, func(cur *appState) bool {
		*cur = st
		return true
	})
}

// updateState changes one app's state with f under the agent's lock (f
// reports whether it changed anything), then persists and gossips it.
func (a *Agent) updateState(app string, f func(st *appState) bool) {
	a.mu.Lock()
	if a.apps == nil {
		a.apps = map[string]appState{}
	}
	st := a.apps[app]
	st.App = app
	if !f(&st) {
		a.mu.Unlock()
		return
	}
	a.apps[app] = st
	a.notePhaseLocked(st)
	snapshot := make(map[string]appState, len(a.apps))
	for k, v := range a.apps {
		snapshot[k] = v
	}
	a.mu.Unlock()
	if err := a.state.save(snapshot); err != nil {
		a.log.Error("cannot persist agent state", zap.Error(err))
	}
	a.report()
}

// report gossips the node's per-app state with download progress, the
// release each app runs and why a desired state was refused.
func (a *Agent) report() {
	if a.gossip == nil {
		return
	}
	refusals := a.gossip.Refusals()
	a.mu.Lock()
	refused := a.refusalsLocked(refusals)
	out := make([]gossip.AppState, 0, len(a.apps))
	for _, st := range a.apps {
		as := gossip.AppState{App: st.App, Version: st.Version, ReleaseID: st.ReleaseID, Phase: st.Phase, Error: st.Error,
			Stale: a.stale[st.App], Refused: refused[st.App]}
		as.RunningVersion, as.RunningReleaseID, as.Healthy = a.runningLocked(st)
		switch st.Phase {
		case gossip.PhaseDownloading:
			if have, total, ok := a.torrent.Progress(st.ReleaseID); ok && total > 0 {
				// Whole percents: finer steps would re-gossip the node on
				// every tick for nothing anyone acts on.
				as.Progress = math.Floor(float64(have)/float64(total)*100) / 100
				as.Rate = a.rateLocked(st)
			}
		default:
			as.Progress = 1
		}
		out = append(out, as)
	}
	// A refused app the node has no state of (it never accepted a state
	// for it) is reported too, while the record has room: that is the
	// case of a fleet that refuses its seeder from the start.
	limit := a.cfg.Gossip.MaxApps
	if limit == 0 {
		limit = gossip.MaxApps
	}
	for _, r := range refusals {
		if _, known := a.apps[r.App]; !known && refused[r.App] != "" && len(out) < limit {
			out = append(out, gossip.AppState{App: r.App, Refused: refused[r.App]})
		}
	}
	a.mu.Unlock()
	if err := a.gossip.SetApps(out); err != nil {
		a.log.Warn("cannot gossip node state", zap.Error(err))
	}
}

// runningLocked is the release the installer has current for st's app and
// its health: the health of what runs, never of a target that failed. The
// target's own health (st.Healthy, kept by the install and the periodic
// checks) when it is what runs; otherwise the running release is healthy
// once its check passed (the installer's HealthPending) unless the
// periodic checks have found it unhealthy since (runSick). Nothing
// running is not healthy.
func (a *Agent) runningLocked(st appState) (string, release.ID, bool) {
	if a.inst == nil {
		return "", "", false
	}
	cur, ok, err := a.inst.Current(st.App)
	if err != nil || !ok {
		return "", "", false
	}
	if st.Phase == gossip.PhaseActive && st.ReleaseID == cur.ReleaseID {
		return cur.Version, cur.ReleaseID, st.Healthy
	}
	pending, err := a.inst.HealthPending(st.App)
	return cur.Version, cur.ReleaseID, err == nil && !pending && a.runSick[st.App] != cur.ReleaseID
}

// shownRefusal is the refusal an app's gossiped state carries, and since
// when.
type shownRefusal struct {
	code  string
	since time.Time
}

// refusalsLocked is the refusal code to report per app, from gossip's
// refusals: one that appears or clears is reported at once, a change of
// cause at most once per gossip.RefusalHold, so a stream of refused states
// cannot make the node re-gossip its record more often.
func (a *Agent) refusalsLocked(rs []gossip.Refusal) map[string]string {
	want := make(map[string]string, len(rs))
	for _, r := range rs {
		want[r.App] = r.Reason
	}
	if a.refusalShown == nil {
		a.refusalShown = map[string]shownRefusal{}
	}
	now := a.cfg.Now()
	out := make(map[string]string, len(want))
	for app, cur := range a.refusalShown {
		if _, ok := want[app]; !ok {
			delete(a.refusalShown, app) // cleared
			if cur.code != "" {
				a.log.Info("desired state no longer refused", zap.String("app", app))
			}
		}
	}
	for app, code := range want {
		cur, ok := a.refusalShown[app]
		switch {
		case ok && cur.code == code:
		case !ok:
			a.log.Warn("refusing the desired state: reporting it in this node's app state", zap.String("app", app), zap.String("reason", code))
			a.refusalShown[app] = shownRefusal{code: code, since: now}
		case now.Sub(cur.since) >= gossip.RefusalHold:
			a.refusalShown[app] = shownRefusal{code: code, since: now}
		}
		out[app] = a.refusalShown[app].code
	}
	return out
}

// rateSample is the last download-rate measurement of one app.
type rateSample struct {
	id    release.ID
	bytes int64
	at    time.Time
	rate  int64 // bytes/s, two significant digits
}

// rateWindow is the shortest interval a download rate is measured over.
const rateWindow = time.Second

// rateLocked is st's download rate in bytes/s: the bytes fetched from peers
// (swarm.Client.Fetched), measured over at least rateWindow and rounded to
// two significant digits so that small wobbles do not re-gossip the node.
// Verified bytes would count the pieces a restarted download finds in its
// partial file as if they had just arrived: a restarted agent under a
// 2 MiB/s cap reported 3.3 MiB/s.
func (a *Agent) rateLocked(st appState) int64 {
	got, ok := a.torrent.Fetched(st.ReleaseID)
	if !ok {
		return 0
	}
	if a.rates == nil {
		a.rates = map[string]rateSample{}
	}
	now := a.cfg.Now()
	s, ok := a.rates[st.App]
	if !ok || s.id != st.ReleaseID || got < s.bytes {
		a.rates[st.App] = rateSample{id: st.ReleaseID, bytes: got, at: now}
		return 0
	}
	if dt := now.Sub(s.at); dt >= rateWindow {
		s.rate = twoDigits(int64(float64(got-s.bytes) / dt.Seconds()))
		s.bytes, s.at = got, now
		a.rates[st.App] = s
	}
	return s.rate
}

// twoDigits rounds n to two significant decimal digits.
func twoDigits(n int64) int64 {
	if n < 100 {
		return n
	}
	scale := int64(1)
	for n/scale >= 100 {
		scale *= 10
	}
	return (n + scale/2) / scale * scale
}

// shortError keeps gossiped errors within the node-state budget.
func shortError(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

// phaseTimes records when one app first entered each phase for one release.
type phaseTimes struct {
	id release.ID
	at map[gossip.Phase]time.Time
}

func (a *Agent) notePhaseLocked(st appState) {
	if a.entered == nil {
		a.entered = map[string]phaseTimes{}
	}
	pt := a.entered[st.App]
	if pt.id != st.ReleaseID || pt.at == nil {
		pt = phaseTimes{id: st.ReleaseID, at: map[gossip.Phase]time.Time{}}
		a.entered[st.App] = pt
	}
	if _, ok := pt.at[st.Phase]; !ok {
		pt.at[st.Phase] = a.cfg.Now()
	}
}

// PhaseEnteredAt reports when, in this process, the agent first reached
// phase for release id of app (downloading, staged, active...); benchmarks
// time downloads and installs with it. ok is false if it has not, or has
// moved on to another release since.
func (a *Agent) PhaseEnteredAt(app string, id release.ID, phase gossip.Phase) (at time.Time, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	pt := a.entered[app]
	if pt.id != id {
		return time.Time{}, false
	}
	at, ok = pt.at[phase]
	return at, ok
}

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

// report gossips the node's per-app state with download progress.
func (a *Agent) report() {
	if a.gossip == nil {
		return
	}
	a.mu.Lock()
	out := make([]gossip.AppState, 0, len(a.apps))
	for _, st := range a.apps {
		as := gossip.AppState{App: st.App, Version: st.Version, ReleaseID: st.ReleaseID, Phase: st.Phase, Healthy: st.Healthy, Error: st.Error,
			Stale: a.stale[st.App]}
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
	a.mu.Unlock()
	if err := a.gossip.SetApps(out); err != nil {
		a.log.Warn("cannot gossip node state", zap.Error(err))
	}
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

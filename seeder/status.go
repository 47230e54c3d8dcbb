package seeder

import (
	"fmt"
	"sort"
	"strings"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/rollout"
)

// Status is the cluster as the seeder sees it through gossip. Its JSON form
// is what `swarm status --json` prints: scripts depend on these field names.
type Status struct {
	// OriginBytesSent is the BitTorrent payload this seeder has uploaded
	// since it started: its origin egress.
	OriginBytesSent int64           `json:"origin_bytes_sent"`
	Seeders         []NodeStatus    `json:"seeders"`
	Nodes           []NodeStatus    `json:"nodes"`
	Desired         []DesiredStatus `json:"desired"`
	// Rollouts is every rollout's status, as GET /v1/rollouts answers.
	Rollouts []rollout.Status `json:"rollouts"`
}

// NodeStatus is one member and its apps.
type NodeStatus struct {
	Name        string      `json:"name"`
	Addr        string      `json:"addr"`
	TorrentAddr string      `json:"torrent_addr,omitempty"`
	Env         string      `json:"env"`
	Apps        []AppStatus `json:"apps"`
}

// AppStatus is one app on one node: the release it works towards
// (Version, ReleaseID, Phase) and the release it runs (RunningVersion,
// RunningReleaseID). They differ while a new release downloads or
// installs, and after an install failed or its health check rolled it
// back: the node then runs the release it ran before.
type AppStatus struct {
	App       string     `json:"app"`
	Version   string     `json:"version"`
	ReleaseID release.ID `json:"release_id"`
	Phase     string     `json:"phase"`
	// RunningVersion and RunningReleaseID are the release the node runs;
	// empty when it runs none (or is too old to say, when not active).
	RunningVersion   string     `json:"running_version"`
	RunningReleaseID release.ID `json:"running_release_id"`
	// Healthy is the health of the running release, never of a target
	// that failed: false when nothing runs.
	Healthy bool `json:"healthy"`
	// Refused says why the node refused the app's newest desired state
	// (gossip.Refused*), empty when it did not.
	Refused string `json:"refused,omitempty"`
	// Stale: the node's desired state for the app expired; it keeps its
	// release and takes no new target until a fresh one arrives.
	Stale    bool    `json:"stale,omitempty"`
	Progress float64 `json:"progress"`
	// RateBps is the download rate in bytes/s while downloading.
	RateBps int64  `json:"rate_bps,omitempty"`
	Error   string `json:"error,omitempty"`
}

// DesiredStatus is the desired state of one app in one environment.
type DesiredStatus struct {
	App       string     `json:"app"`
	Env       string     `json:"env"`
	Sequence  uint64     `json:"seq"`
	Version   string     `json:"version"`
	ReleaseID release.ID `json:"release_id"`
	Step      int        `json:"step"`
	Admitted  float64    `json:"admitted"`
	Paused    bool       `json:"paused"`
	Active    int        `json:"active"`
	Nodes     int        `json:"nodes"`
	// Refused counts the environment's nodes that refused the state (or
	// hold it expired), by reason, most first; Error says it in one line,
	// "refused by 3 nodes: untrusted key". Empty when none did.
	Refused []RefusalCount `json:"refused,omitempty"`
	Error   string         `json:"error,omitempty"`
}

// RefusalCount is how many nodes refused a desired state for one reason.
type RefusalCount struct {
	Reason string `json:"reason"`
	Nodes  int    `json:"nodes"`
}

// Status assembles cluster status from gossip.
func (s *Seeder) Status() Status {
	st := Status{Seeders: []NodeStatus{}, Nodes: []NodeStatus{}, Desired: []DesiredStatus{}}
	if s.torrent != nil {
		st.OriginBytesSent = s.torrent.Stats().BytesSent
	}
	envs := map[string]string{} // node name → environment
	for _, mbr := range s.gossip.Members() {
		envs[mbr.Name] = envName(mbr.Env)
		ns := NodeStatus{Name: mbr.Name, Addr: mbr.Addr, TorrentAddr: mbr.TorrentAddr, Env: mbr.Env, Apps: []AppStatus{}}
		for _, a := range mbr.Apps {
			ns.Apps = append(ns.Apps, AppStatus{
				App: a.App, Version: a.Version, ReleaseID: a.ReleaseID, Phase: string(a.Phase),
				RunningVersion: a.RunningVersion, RunningReleaseID: a.RunningReleaseID,
				Healthy: a.Healthy, Refused: a.Refused, Stale: a.Stale, Progress: a.Progress, RateBps: a.Rate, Error: a.Error,
			})
		}
		sort.Slice(ns.Apps, func(i, j int) bool { return ns.Apps[i].App < ns.Apps[j].App })
		if mbr.Role == gossip.RoleSeeder {
			st.Seeders = append(st.Seeders, ns)
		} else {
			st.Nodes = append(st.Nodes, ns)
		}
	}
	for _, sd := range s.gossip.DesiredAll() {
		d, err := sd.Unverified()
		if err != nil {
			continue
		}
		m, err := d.Target.Unverified()
		if err != nil {
			continue
		}
		ds := DesiredStatus{
			App: d.App, Env: d.EnvName(), Sequence: d.Sequence, Version: m.Version, ReleaseID: m.ReleaseID,
			Step: d.Step, Admitted: d.Admit, Paused: d.Paused,
		}
		refused := map[string]int{}
		for _, n := range st.Nodes {
			if envs[n.Name] != ds.Env {
				continue
			}
			ds.Nodes++
			for _, a := range n.Apps {
				if a.App != d.App {
					continue
				}
				if a.ReleaseID == m.ReleaseID && a.Phase == string(gossip.PhaseActive) {
					ds.Active++
				}
				switch {
				case a.Refused != "":
					refused[a.Refused]++
				case a.Stale:
					refused[gossip.RefusedExpired]++
				}
			}
		}
		ds.Refused, ds.Error = refusalSummary(refused)
		st.Desired = append(st.Desired, ds)
	}
	st.Rollouts = s.Rollouts()
	return st
}

// refusalSummary sorts refusal counts (most nodes first, then by reason)
// and says them in one line: "refused by 3 nodes: untrusted key; by 1
// node: expired".
func refusalSummary(byReason map[string]int) ([]RefusalCount, string) {
	if len(byReason) == 0 {
		return nil, ""
	}
	out := make([]RefusalCount, 0, len(byReason))
	for r, n := range byReason {
		out = append(out, RefusalCount{Reason: r, Nodes: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Nodes != out[j].Nodes {
			return out[i].Nodes > out[j].Nodes
		}
		return out[i].Reason < out[j].Reason
	})
	parts := make([]string, len(out))
	for i, c := range out {
		noun := "nodes"
		if c.Nodes == 1 {
			noun = "node"
		}
		parts[i] = fmt.Sprintf("by %d %s: %s", c.Nodes, noun, c.Reason)
	}
	return out, "refused " + strings.Join(parts, "; ")
}

package seeder

import (
	"sort"

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

// AppStatus is one app on one node.
type AppStatus struct {
	App       string     `json:"app"`
	Version   string     `json:"version"`
	ReleaseID release.ID `json:"release_id"`
	Phase     string     `json:"phase"`
	Healthy   bool       `json:"healthy"`
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
				Healthy: a.Healthy, Stale: a.Stale, Progress: a.Progress, RateBps: a.Rate, Error: a.Error,
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
		for _, n := range st.Nodes {
			if envs[n.Name] != ds.Env {
				continue
			}
			ds.Nodes++
			for _, a := range n.Apps {
				if a.App == d.App && a.ReleaseID == m.ReleaseID && a.Phase == string(gossip.PhaseActive) {
					ds.Active++
				}
			}
		}
		st.Desired = append(st.Desired, ds)
	}
	st.Rollouts = s.Rollouts()
	return st
}

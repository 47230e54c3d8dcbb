package bench

import (
	"slices"
	"time"
)

// RollbackResult is one fleet rollback, measured on real agents or
// simulated: from the decision (the seeder issuing the desired state whose
// target is the previous release) until every node that had moved to the
// bad release runs the previous one again, and until the seeder has seen
// each of them do so through gossip. JSON field names are a contract for
// scripts, as Result's are.
type RollbackResult struct {
	Kind  Kind      `json:"kind"` // real or sim
	Start time.Time `json:"start"`
	// Nodes is the fleet; Moved how many of them ran the bad release and
	// switched back (the others only record the previous release active).
	Nodes int `json:"nodes"`
	Moved int `json:"moved"`
	// Trigger is what decided the rollback: "manual" (the rollback command
	// through the seeder's API), "auto" (the controller, its failure budget
	// spent) or "sim".
	Trigger string `json:"trigger"`
	// HookS is the rollback hook's run time on each node (0: no hook).
	HookS float64 `json:"hook_s"`

	// Accept is, over every node, the seconds from the decision until the
	// node accepted the rollback state.
	Accept Spread `json:"accept"`
	// Back is, over the moved nodes, the seconds from the decision until
	// the node runs the previous release again (its symlink switched, the
	// hook run, the agent's state active). Back.Max is the fleet rollback
	// time.
	Back Spread `json:"back"`
	// Seen is, over the moved nodes, the seconds from the decision until
	// the seeder's gossip view shows the node active on the previous
	// release: what the controller and `swarm rollout status` can know.
	Seen Spread `json:"seen"`
	// FleetS is Back.Max: decision → every moved node back.
	FleetS float64 `json:"fleet_s"`
	// ReportedS is the seconds from the decision until the rollout's
	// status read rolled-back (real runs only): what `swarm publish --wait`
	// and `swarm rollout status` wait for.
	ReportedS float64 `json:"reported_s,omitempty"`

	// HostCPUFrac and HostBound are as in Result, over the rollback
	// (real runs only).
	HostCPUFrac float64 `json:"host_cpu_frac,omitempty"`
	HostBound   bool    `json:"host_bound,omitempty"`
	// SeederDropped counts nodes' direct packets the simulated seeder's
	// full queue dropped (sim only).
	SeederDropped int `json:"seeder_dropped,omitempty"`
	// WallS is the wall time the run or simulation took.
	WallS float64 `json:"wall_s"`
	Notes string  `json:"notes,omitempty"`
	// PerNode lists every moved node's times (real runs only).
	PerNode []RollbackNode `json:"per_node,omitempty"`
}

// RollbackNode is one moved node's return, in seconds from the decision.
type RollbackNode struct {
	Name  string  `json:"name"`
	BackS float64 `json:"back_s"`
	SeenS float64 `json:"seen_s"`
}

// Spread summarises per-node seconds: median, 99th percentile (nearest
// rank) and maximum.
type Spread struct {
	P50 float64 `json:"p50_s"`
	P99 float64 `json:"p99_s"`
	Max float64 `json:"max_s"`
}

// SpreadOf summarises xs (seconds); it sorts a copy. No values give zeros.
func SpreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return Spread{P50: Percentile(s, 0.5), P99: Percentile(s, 0.99), Max: s[len(s)-1]}
}

package rollout

import (
	"math"
	"time"

	"github.com/swarmdeploy/swarm/release"
)

// Status is a rollout as an operator sees it. Its JSON form is what
// `swarm rollout status --json` prints: scripts depend on these names.
type Status struct {
	App       string           `json:"app"`
	Env       string           `json:"env"`
	Version   string           `json:"version"`
	ReleaseID release.ID       `json:"release_id"`
	Strategy  release.Strategy `json:"strategy"`
	// State is the signed state, or the transient baking (the step's
	// nodes are active and healthy, the bake clock runs) and rolling-back
	// (a rollback some node has not followed yet).
	State release.RolloutState `json:"state"`
	// Step is 1-based, of Steps.
	Step  int `json:"step"`
	Steps int `json:"steps"`
	// Admitted counts the nodes below the admission threshold.
	Admitted int `json:"admitted"`
	// Failures counts the nodes counted as failed; Budget is how many the
	// rollout tolerates.
	Failures int    `json:"failures"`
	Budget   int    `json:"budget"`
	Reason   string `json:"reason"`
	// Phases counts nodes per phase of the target; "other" counts the
	// nodes that report another release (or none).
	Phases   map[string]int `json:"phases"`
	Sequence uint64         `json:"seq"`
	Paused   bool           `json:"paused"`
	// BakeLeftS is how many seconds the current step still bakes.
	BakeLeftS int `json:"bake_left_s,omitempty"`
	// Nodes is the environment's fleet.
	Nodes int `json:"nodes"`
	// HostFaults counts the target's nodes held back by their own host
	// (Node.HostFault), not counted as failures; HostFault is one of their
	// reasons.
	HostFaults int    `json:"host_faults,omitempty"`
	HostFault  string `json:"host_fault,omitempty"`
}

// PhaseOther is the Status.Phases key of nodes on another release.
const PhaseOther = "other"

// Describe is the status of the rollout d from the environment's nodes and
// the controller's memory of it (nil or zero is fine). It changes nothing.
func Describe(now time.Time, d release.DesiredState, nodes []Node, mem *Memory) Status {
	m, _ := d.Target.Unverified()
	id := m.ReleaseID
	st := Status{
		App: d.App, Env: d.EnvName(), Version: m.Version, ReleaseID: id, Strategy: d.Plan.Strat(),
		State: d.State, Step: d.Step + 1, Steps: d.Plan.NumSteps(), Budget: d.Plan.MaxFailures.Of(len(nodes)),
		Reason: d.Reason, Phases: map[string]int{}, Sequence: d.Sequence, Paused: d.Paused, Nodes: len(nodes),
	}
	if st.State == "" {
		st.State = release.RolloutProgressing
	}
	for _, n := range nodes {
		if n.ReleaseID == id && n.Phase != "" {
			st.Phases[string(n.Phase)]++
		} else {
			st.Phases[PhaseOther]++
		}
	}
	st.Admitted = countAdmitted(d.Admit, id, nodes)

	synced := mem.synced(&d, id)
	seen := map[string]bool{}
	if synced {
		for _, f := range mem.Failures {
			seen[f.Node] = true
		}
	}
	for _, n := range nodes {
		if failureOf(n, id) != "" {
			seen[n.Name] = true
		}
		if n.HostFault != "" && n.ReleaseID == id && !n.Suspect {
			st.HostFaults++
			st.HostFault = n.HostFault
		}
	}
	st.Failures = len(seen)

	switch {
	case d.Rollback:
		st.State = release.RolloutRolledBack
		if bad := previousID(&d); bad != "" {
			for _, n := range nodes {
				if !n.Suspect && n.ReleaseID == bad {
					st.State = release.RolloutRollingBack
					break
				}
			}
		}
	case d.State.Final():
	case d.State == release.RolloutStalled:
	case d.Paused:
		st.State = release.RolloutPaused
	case d.Plan.Strat() == release.StrategyBlueGreen && d.Admit == 0:
	default:
		if o := observe(&d, id, nodes); o.done() {
			st.State = release.RolloutBaking
			left := d.Plan.Bake
			if synced && !mem.BakeStart.IsZero() && mem.BakeStep == d.Step && mem.BakeAdmit == d.Admit {
				left -= now.Sub(mem.BakeStart)
			}
			if left > 0 {
				st.BakeLeftS = int(math.Ceil(left.Seconds()))
			}
		}
	}
	return st
}

func previousID(d *release.DesiredState) release.ID {
	if d.Previous == nil {
		return ""
	}
	m, err := d.Previous.Unverified()
	if err != nil {
		return ""
	}
	return m.ReleaseID
}

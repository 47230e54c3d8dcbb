package rollout

import (
	"fmt"

	"github.com/swarmdeploy/swarm/release"
)

// Start makes the first state of a new rollout of target in env under plan:
// step 0, admission for the first step (the exact node count of nodes when
// membership has settled, none until then; every node at once when the
// first step is 100%), every node for all-at-once, none
// for blue-green (every node stages; the controller flips later). Bad is
// carried over without the target: publishing a release anew clears it.
// The seeder sets Sequence, Published, Issued and Expires.
func Start(env string, plan release.Plan, target release.SignedManifest, previous *release.SignedManifest, bad []release.ID, nodes []string, settled bool) (release.DesiredState, error) {
	if err := plan.Validate(); err != nil {
		return release.DesiredState{}, err
	}
	m, err := target.Unverified()
	if err != nil {
		return release.DesiredState{}, fmt.Errorf("%w target manifest: %w", release.ErrInvalid, err)
	}
	if env == release.DefaultEnv {
		env = ""
	}
	d := release.DesiredState{
		App: m.App, Env: env, Target: target, Plan: plan, State: release.RolloutProgressing,
	}
	if previous != nil {
		p := *previous
		d.Previous = &p
	}
	for _, id := range bad {
		if id != m.ReleaseID {
			d.MarkBad(id)
		}
	}
	switch plan.Strat() {
	case release.StrategyAllAtOnce:
		d.Admit = 1
	case release.StrategyWaves:
		switch first := plan.StepAt(0); {
		case first.Percent == 100:
			d.Admit = 1 // every node, whoever they are: nothing to settle
		case settled && len(nodes) > 0:
			d.Admit = Threshold(nodes, m.ReleaseID, first.Nodes(len(nodes)))
		}
	}
	d.Plan.Steps = append([]release.Step(nil), plan.Steps...)
	d.Reason = fmt.Sprintf("published %s: step 1 of %d", m.Version, plan.NumSteps())
	if plan.Strat() == release.StrategyBlueGreen {
		d.Reason = fmt.Sprintf("published %s: staging on every node", m.Version)
	}
	return d, nil
}

// PreviousFor is the release a new rollout replacing cur falls back to:
// the last release the environment as a whole ran. That is cur's target
// when cur completed or is itself a rollback, or when at least as many of
// nodes are active on it as on cur's previous release (the controller may
// not have signed the completion yet); otherwise cur's previous release,
// since most nodes still run that one. It is never newTarget itself; nil
// when there is none.
func PreviousFor(cur *release.DesiredState, newTarget release.ID, nodes []Node) *release.SignedManifest {
	if cur == nil {
		return nil
	}
	cands := []*release.SignedManifest{&cur.Target, cur.Previous}
	ended := cur.Rollback || cur.State == release.RolloutComplete || cur.State == "" || mostlyOnTarget(cur, nodes)
	if !ended {
		cands[0], cands[1] = cands[1], cands[0]
	}
	for _, c := range cands {
		if c == nil {
			continue
		}
		if m, err := c.Unverified(); err == nil && m.ReleaseID != newTarget {
			p := *c
			return &p
		}
	}
	return nil
}

// ValidateAgainstFleet refuses a plan the environment cannot carry out: a
// count step, or a blue-green minimum of staged nodes, larger than the
// fleet nodes of env.
func ValidateAgainstFleet(plan release.Plan, env string, fleet int) error {
	if env == "" {
		env = release.DefaultEnv
	}
	if plan.Strat() == release.StrategyWaves {
		for _, st := range plan.Steps {
			if st.Count > fleet {
				return fmt.Errorf("%w plan step %d is more nodes than the %d in environment %s", release.ErrInvalid, st.Count, fleet, env)
			}
		}
	}
	if plan.Strat() == release.StrategyBlueGreen && plan.MinStaged.Count > fleet {
		return fmt.Errorf("%w min staged %d is more nodes than the %d in environment %s", release.ErrInvalid, plan.MinStaged.Count, fleet, env)
	}
	return nil
}

// mostlyOnTarget reports whether some of nodes run cur's target, and at
// least as many as run its previous release.
func mostlyOnTarget(cur *release.DesiredState, nodes []Node) bool {
	tm, err := cur.Target.Unverified()
	if err != nil {
		return false
	}
	var prev release.ID
	if cur.Previous != nil {
		if pm, err := cur.Previous.Unverified(); err == nil {
			prev = pm.ReleaseID
		}
	}
	onTarget, onPrev := 0, 0
	for _, n := range nodes {
		if n.Phase != PhaseActive {
			continue
		}
		switch n.ReleaseID {
		case tm.ReleaseID:
			onTarget++
		case prev:
			onPrev++
		}
	}
	return onTarget > 0 && onTarget >= onPrev
}

package rollout

import (
	"errors"
	"fmt"

	"github.com/swarmdeploy/swarm/release"
)

// Sentinel errors of the operator commands; match them with errors.Is. The
// seeder's API answers the first four with 409 Conflict.
var (
	// ErrFinal: the rollout is complete, rolled back or aborted.
	ErrFinal = errors.New("rollout has ended")
	// ErrNotPaused: resume of a rollout that is neither paused nor stalled.
	ErrNotPaused = errors.New("rollout is not paused")
	// ErrPaused: pause or promote of a paused or stalled rollout.
	ErrPaused = errors.New("rollout is paused")
	// ErrNoPrevious: rollback without a release to go back to.
	ErrNoPrevious = errors.New("no previous release to roll back to")
	// ErrSameTarget: rollback to the release the rollout already targets.
	ErrSameTarget = errors.New("release is already the target")
)

// what names d in errors: "web in prod".
func what(d *release.DesiredState) string { return d.App + " in " + d.EnvName() }

// live refuses a command on an ended rollout.
func live(verb string, d *release.DesiredState) error {
	if d.Rollback || d.State.Final() {
		state := d.State
		if d.Rollback {
			state = release.RolloutRolledBack
		}
		return fmt.Errorf("%s %s: %w (%s); publish a release to start a new one", verb, what(d), ErrFinal, state)
	}
	return nil
}

func paused(d *release.DesiredState) bool {
	return d.Paused || d.State == release.RolloutPaused || d.State == release.RolloutStalled
}

// Pause stops admission: no further node starts installing the target.
// Nodes that have installed keep it.
func Pause(d release.DesiredState) (release.DesiredState, error) {
	if err := live("pause", &d); err != nil {
		return d, err
	}
	if paused(&d) {
		return d, fmt.Errorf("pause %s: %w already (%s)", what(&d), ErrPaused, d.State)
	}
	next := clone(d)
	next.Paused, next.State, next.Reason = true, release.RolloutPaused, "paused by operator"
	return next, nil
}

// Resume continues a paused or stalled rollout. The new state is issued
// anew, so the progress deadline counts from the resume.
func Resume(d release.DesiredState) (release.DesiredState, error) {
	if err := live("resume", &d); err != nil {
		return d, err
	}
	if !paused(&d) {
		return d, fmt.Errorf("resume %s: %w (%s)", what(&d), ErrNotPaused, d.State)
	}
	next := clone(d)
	next.Paused, next.State, next.Reason = false, release.RolloutProgressing, "resumed by operator"
	return next, nil
}

// Promote skips the current bake: the next step is admitted now, or the
// rollout completes at the last step. A blue-green rollout that has not
// flipped flips now. A wave rollout that has admitted nobody yet (waiting
// for membership to settle) admits its current step now rather than
// skipping it: promote never skips the canary.
func Promote(d release.DesiredState, nodes []Node, mem *Memory) (release.DesiredState, error) {
	if err := live("promote", &d); err != nil {
		return d, err
	}
	if paused(&d) {
		return d, fmt.Errorf("promote %s: %w (%s); resume it first", what(&d), ErrPaused, d.State)
	}
	id, _, err := target(&d)
	if err != nil {
		return d, fmt.Errorf("promote: %w", err)
	}
	mem.sync(&d, id)
	mem.stopBake()
	nodes = sortNodes(nodes)
	if d.Plan.Strat() == release.StrategyBlueGreen && d.Admit == 0 {
		next := flip(d, countStaged(id, nodes), len(nodes))
		next.Reason = "promoted by operator: " + next.Reason
		return next, nil
	}
	if d.Admit == 0 {
		next := clone(d)
		next.Admit = Threshold(names(nodes), id, d.Plan.StepAt(d.Step).Nodes(len(nodes)))
		next.State = release.RolloutProgressing
		next.Reason = fmt.Sprintf("promoted by operator: step %d of %d: %d of %d nodes admitted",
			d.Step+1, d.Plan.NumSteps(), countAdmitted(next.Admit, id, nodes), len(nodes))
		return next, nil
	}
	return advance(d, id, nodes, "by operator"), nil
}

// Abort ends the rollout where it stands: no further node is admitted and
// every node keeps what it runs. To move nodes back, roll back instead.
func Abort(d release.DesiredState) (release.DesiredState, error) {
	if err := live("abort", &d); err != nil {
		return d, err
	}
	next := clone(d)
	next.Paused, next.State, next.Reason = true, release.RolloutAborted, "aborted by operator"
	return next, nil
}

// Rollback returns every node at once to release to (d.Previous when to is
// nil) and marks d's target bad, so that no node installs it again until it
// is published anew. It is allowed at any point of a rollout, after it
// completed or was aborted too; a state that is already a rollback only
// goes to an explicitly named release. reason, when empty, says an
// operator did it.
func Rollback(d release.DesiredState, to *release.SignedManifest, reason string) (release.DesiredState, error) {
	if to == nil {
		if d.Rollback {
			return d, fmt.Errorf("rollback %s: %w (rolled-back); name a release to go to", what(&d), ErrFinal)
		}
		if d.Previous == nil {
			return d, fmt.Errorf("rollback %s: %w", what(&d), ErrNoPrevious)
		}
		to = d.Previous
	}
	id, _, err := target(&d)
	if err != nil {
		return d, fmt.Errorf("rollback: %w", err)
	}
	tm, err := to.Unverified()
	if err != nil {
		return d, fmt.Errorf("rollback %s: %w release to roll back to: %w", what(&d), release.ErrInvalid, err)
	}
	if tm.App != d.App {
		return d, fmt.Errorf("rollback %s: %w: %s %s is a release of another app", what(&d), release.ErrInvalid, tm.App, tm.Version)
	}
	if tm.ReleaseID == id {
		return d, fmt.Errorf("rollback %s: %s %w", what(&d), tm.Version, ErrSameTarget)
	}
	if reason == "" {
		reason = "rolled back by operator to " + tm.Version
	}
	return rollbackTo(d, *to, reason), nil
}

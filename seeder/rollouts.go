package seeder

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/rollout"
)

// ErrNoRollout: no desired state for the app in the environment.
var ErrNoRollout = errors.New("no rollout")

// Rollout commands, as the API spells them.
const (
	VerbPause    = "pause"
	VerbResume   = "resume"
	VerbPromote  = "promote"
	VerbAbort    = "abort"
	VerbRollback = "rollback"
)

// Rollouts is the status of every rollout the seeder knows, by app then
// environment.
func (s *Seeder) Rollouts() []rollout.Status {
	states := s.gossip.DesiredAll()
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	out := []rollout.Status{}
	for _, sd := range states {
		d, err := sd.Unverified()
		if err != nil {
			continue
		}
		out = append(out, s.describeLocked(d))
	}
	slices.SortFunc(out, func(a, b rollout.Status) int {
		return strings.Compare(a.App+"@"+a.Env, b.App+"@"+b.Env)
	})
	return out
}

// Rollout is the status of app's rollout in env ("" is the default).
func (s *Seeder) Rollout(app, env string) (rollout.Status, error) {
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	d, err := s.currentLocked(app, env)
	if err != nil {
		return rollout.Status{}, err
	}
	return s.describeLocked(d), nil
}

// Command runs an operator command (VerbPause, VerbResume, VerbPromote,
// VerbAbort, VerbRollback to the previous release) on app's rollout in env
// and returns the resulting status.
func (s *Seeder) Command(app, env, verb string) (rollout.Status, error) {
	return s.command(app, env, verb, func(d release.DesiredState, nodes []rollout.Node, mem *rollout.Memory) (release.DesiredState, error) {
		switch verb {
		case VerbPause:
			return rollout.Pause(d)
		case VerbResume:
			next, err := rollout.Resume(d)
			if err == nil {
				mem.Forgive() // the operator accepts the failures so far
			}
			return next, err
		case VerbPromote:
			return rollout.Promote(d, nodes, mem)
		case VerbAbort:
			return rollout.Abort(d)
		case VerbRollback:
			return rollout.Rollback(d, nil, "")
		}
		return d, fmt.Errorf("%w rollout command %q: use pause, resume, promote, abort or rollback", release.ErrInvalid, verb)
	})
}

// RollbackTo rolls app in env back to version, which must be in the
// seeder's store with enough release signatures; "" is the rollout's
// previous release. It is the one way to make an environment target a
// release it has been through before (a publish of one is refused with
// ErrReplay).
func (s *Seeder) RollbackTo(app, env, version string) (rollout.Status, error) {
	if version == "" {
		return s.Command(app, env, VerbRollback)
	}
	if err := release.ValidateVersion(version); err != nil {
		return rollout.Status{}, err
	}
	r, ok := s.store.byVersion(app, version)
	if !ok {
		return rollout.Status{}, fmt.Errorf("rollback %s: %w: no version %s of %s in the seeder's store", app, ErrNotFound, version, app)
	}
	if _, err := s.trust.VerifyManifest(r.Signed); err != nil {
		return rollout.Status{}, fmt.Errorf("rollback %s to %s: %w", app, version, err)
	}
	return s.command(app, env, VerbRollback, func(d release.DesiredState, _ []rollout.Node, _ *rollout.Memory) (release.DesiredState, error) {
		return rollout.Rollback(d, &r.Signed, "")
	})
}

// command applies do to app's current state in env, signs the result and
// returns its status.
func (s *Seeder) command(app, env, verb string, do func(release.DesiredState, []rollout.Node, *rollout.Memory) (release.DesiredState, error)) (rollout.Status, error) {
	if err := release.ValidateApp(app); err != nil {
		return rollout.Status{}, err
	}
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	d, err := s.currentLocked(app, env)
	if err != nil {
		return rollout.Status{}, err
	}
	nodes := rolloutNodes(s.agents(d.EnvName()), app)
	next, err := do(d, nodes, s.ctl.memory(d.Key()))
	if err != nil {
		return rollout.Status{}, err
	}
	if next, err = s.signLocked(next); err != nil {
		return rollout.Status{}, fmt.Errorf("%s %s in %s: %w", verb, app, d.EnvName(), err)
	}
	s.logTransition("rollout "+verb, next)
	return s.describeLocked(next), nil
}

// PromoteRelease rolls the exact release that app targets in from out to
// env to, under plan (nil: the default plan), with no re-upload.
func (s *Seeder) PromoteRelease(app, from, to string, plan *release.Plan) (rollout.Status, error) {
	if err := release.ValidateApp(app); err != nil {
		return rollout.Status{}, err
	}
	from, to = envName(from), envName(to)
	if err := release.ValidateEnv(from); err != nil {
		return rollout.Status{}, err
	}
	if from == to {
		return rollout.Status{}, fmt.Errorf("%w promote %s: from and to are both environment %s", release.ErrInvalid, app, to)
	}
	env, p, err := s.rolloutOptions(to, plan)
	if err != nil {
		return rollout.Status{}, fmt.Errorf("promote %s to %s: %w", app, to, err)
	}
	s.publishMu.Lock()
	src, err := s.currentLocked(app, from)
	s.publishMu.Unlock()
	if err != nil {
		return rollout.Status{}, err
	}
	m, err := s.trust.VerifyManifest(src.Target)
	if err != nil {
		return rollout.Status{}, fmt.Errorf("promote %s from %s: %w", app, from, err)
	}
	d, _, err := s.issue(env, p, src.Target, m, nil)
	if err != nil {
		return rollout.Status{}, fmt.Errorf("promote %s %s to %s: %w", app, m.Version, to, err)
	}
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	s.logTransition("release promoted from "+from, d)
	return s.describeLocked(d), nil
}

// currentLocked is app's desired state in env; the caller holds publishMu.
func (s *Seeder) currentLocked(app, env string) (release.DesiredState, error) {
	env = envName(env)
	if err := release.ValidateEnv(env); err != nil {
		return release.DesiredState{}, err
	}
	d, _, ok := s.gossip.Desired(release.StateKey(app, env))
	if !ok {
		return release.DesiredState{}, fmt.Errorf("%w for app %s in environment %s", ErrNoRollout, app, env)
	}
	return d, nil
}

// describeLocked is d's status now; the caller holds publishMu.
func (s *Seeder) describeLocked(d release.DesiredState) rollout.Status {
	nodes := rolloutNodes(s.agents(d.EnvName()), d.App)
	var mem *rollout.Memory
	if m, ok := s.ctl.mems[d.Key()]; ok {
		mem = m
	}
	return rollout.Describe(s.cfg.Now(), d, nodes, mem)
}

// Desired is the desired state the seeder holds for app in env (env ""
// is the default environment); tests and benchmarks read it.
func (s *Seeder) Desired(app, env string) (release.DesiredState, bool) {
	d, _, ok := s.gossip.Desired(release.StateKey(app, env))
	return d, ok
}

package seeder

import (
	"context"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/rollout"
	"github.com/swarmdeploy/swarm/swarm"
)

// controller is the rollout controller's in-memory side: what it remembers
// per rollout and since when each environment's membership is unchanged.
// The decisions are package rollout's; everything here is guarded by
// Seeder.publishMu. A restarted seeder starts empty and resumes each
// rollout from its last signed state, which gossip persists.
type controller struct {
	mems    map[string]*rollout.Memory // by state key
	members map[string]membership      // by environment
	errs    map[string]string          // last signing error by state key, logged once
	grace   time.Duration              // rollout.Memory.RefusalGrace
}

// membership is an environment's agents as last seen, and since when.
type membership struct {
	names string // sorted, newline-separated
	since time.Time
}

func newController(refusalGrace time.Duration) controller {
	return controller{mems: map[string]*rollout.Memory{}, members: map[string]membership{}, errs: map[string]string{}, grace: refusalGrace}
}

func (c *controller) memory(key string) *rollout.Memory {
	m, ok := c.mems[key]
	if !ok {
		m = &rollout.Memory{RefusalGrace: c.grace}
		c.mems[key] = m
	}
	return m
}

// membership records env's agents as seen at now and reports their names
// and whether they have been the same for settle.
func (c *controller) membership(env string, agents []gossip.NodeState, now time.Time, settle time.Duration) ([]string, bool) {
	names := make([]string, len(agents))
	for i, a := range agents {
		names[i] = a.Name
	}
	slices.Sort(names)
	joined := strings.Join(names, "\n")
	m, ok := c.members[env]
	if !ok || m.names != joined {
		m = membership{names: joined, since: now}
		c.members[env] = m
	}
	return names, now.Sub(m.since) >= settle
}

// agents are the members that run the agent role in env.
func (s *Seeder) agents(env string) []gossip.NodeState {
	var out []gossip.NodeState
	for _, m := range s.gossip.Members() {
		if m.Role == gossip.RoleAgent && envName(m.Env) == env {
			out = append(out, m)
		}
	}
	return out
}

func envName(env string) string {
	if env == "" {
		return release.DefaultEnv
	}
	return env
}

// rolloutNodes is how the controller sees agents for app. No node is
// Suspect: memberlist v0.7.0 does not say which members it suspects (its
// Members leaves Node.State unset and its events are join, leave and
// update only). A suspected node so counts as it last reported, never as a
// failure, until memberlist declares it dead; it then leaves the fleet,
// again without counting as a failure (rollout.Decide's counting rule).
func rolloutNodes(agents []gossip.NodeState, app string) []rollout.Node {
	out := make([]rollout.Node, 0, len(agents))
	for _, a := range agents {
		n := rollout.Node{Name: a.Name}
		for _, as := range a.Apps {
			if as.App == app {
				n.ReleaseID, n.Phase, n.Healthy, n.Refused = as.ReleaseID, rollout.Phase(as.Phase), as.Healthy, as.Refused
				if as.Phase == gossip.PhaseFailed && swarm.IsDiskFull(as.Error) {
					n.HostFault = as.Error
				}
				break
			}
		}
		out = append(out, n)
	}
	return out
}

// control runs the controller every ControlInterval until ctx ends or the
// seeder closes.
func (s *Seeder) control(ctx context.Context) {
	t := time.NewTicker(s.cfg.ControlInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.stop:
			return
		case <-t.C:
			s.controlOnce()
		}
	}
}

// controlOnce decides on every rollout this seeder signs and issues what
// the decisions say.
func (s *Seeder) controlOnce() {
	now := s.cfg.Now()
	byEnv := map[string][]gossip.NodeState{}
	for _, m := range s.gossip.Members() {
		if m.Role == gossip.RoleAgent {
			env := envName(m.Env)
			byEnv[env] = append(byEnv[env], m)
		}
	}
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	for _, sd := range s.gossip.DesiredAll() {
		if sd.KeyID != s.cfg.Key.ID() {
			continue // another controller's rollout
		}
		d, err := sd.Unverified() // verified when gossip accepted it
		if err != nil {
			continue
		}
		env, key := d.EnvName(), d.Key()
		agents := byEnv[env]
		_, settled := s.ctl.membership(env, agents, now, s.cfg.Settle)
		dec := rollout.Decide(now, d, rolloutNodes(agents, d.App), settled, s.ctl.memory(key))
		if dec.Next == nil {
			if s.needsRefresh(d, now) {
				s.refreshLocked(d)
			}
			continue
		}
		next, err := s.signLocked(*dec.Next)
		if err != nil {
			if s.ctl.errs[key] != err.Error() {
				s.ctl.errs[key] = err.Error()
				s.log.Error("rollout transition not issued", zap.String("app", d.App), zap.String("env", env), zap.Error(err))
			}
			continue
		}
		delete(s.ctl.errs, key)
		s.logTransition("rollout", next)
	}
}

// needsRefresh reports whether d should be re-signed now: with a TTL, once
// less than half of it is left (or d has no expiry, signed before the TTL
// was set), so agents never see it expire while this seeder runs.
func (s *Seeder) needsRefresh(d release.DesiredState, now time.Time) bool {
	ttl := s.cfg.DesiredTTL
	return ttl > 0 && (d.Expires.IsZero() || d.Expires.Sub(now) < ttl/2)
}

// refreshLocked re-signs d unchanged but for its sequence and expiry.
func (s *Seeder) refreshLocked(d release.DesiredState) {
	next, err := s.resignLocked(d)
	if err != nil {
		s.log.Error("desired state not refreshed before its expiry", zap.String("app", d.App), zap.String("env", d.EnvName()),
			zap.Time("expires", d.Expires), zap.Error(err))
		return
	}
	s.log.Debug("desired state refreshed", zap.String("app", d.App), zap.String("env", d.EnvName()),
		zap.Uint64("seq", next.Sequence), zap.Time("expires", next.Expires))
}

func (s *Seeder) logTransition(msg string, d release.DesiredState) {
	m, _ := d.Target.Unverified()
	s.log.Info(msg, zap.String("app", d.App), zap.String("env", d.EnvName()), zap.String("version", m.Version),
		zap.Int("step", d.Step+1), zap.String("state", string(d.State)), zap.String("reason", d.Reason),
		zap.Uint64("seq", d.Sequence))
}

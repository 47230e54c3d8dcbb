package gossip

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/swarmdeploy/swarm/release"
)

// Refusal is why this node refused the newest desired state it heard for
// one app of its environment: what an operator needs to tell a state that
// reaches nobody from a quiet cluster (issue 14: a seeder restarted with
// another rollout key showed "0/3 active" and nothing else).
type Refusal struct {
	App string
	// Reason is one of the Refused* codes.
	Reason string
	// Seq is the refused state's sequence, as it claims (its signature may
	// not verify).
	Seq uint64
	// At is when a state was last refused for this reason.
	At time.Time
}

const (
	// maxRefusals bounds the refusals a node remembers; past it the oldest
	// is forgotten. States of other environments are not remembered.
	maxRefusals = 64
	// refusalTTL is how long a refusal is remembered once no state is
	// refused for it again. The refused state of a live seeder comes back
	// with every push/pull, so a refusal lasts as long as its cause.
	refusalTTL = 5 * time.Minute
)

// refusalReason maps a VerifyDesired error about sd to a refusal code.
func (n *Node) refusalReason(sd release.SignedDesiredState, err error) string {
	switch {
	case errors.Is(err, release.ErrUnknownKey):
		if _, ok := n.cfg.Trust.Release[sd.KeyID]; ok {
			return RefusedWrongRole
		}
		if _, ok := n.cfg.Trust.Rollout[sd.KeyID]; ok {
			return RefusedUntrustedRelease // the state's key is pinned: a manifest's is not
		}
		return RefusedUntrustedKey
	case errors.Is(err, release.ErrTooFewSignatures):
		return RefusedTooFewSignatures
	case errors.Is(err, release.ErrBadSignature):
		return RefusedBadSignature
	}
	return RefusedInvalid
}

// noteRefusalLocked remembers that a state of app in env at seq was refused
// for reason, if it is of this node's environment and would have been news:
// a refused state no newer than the one held would not have been taken
// anyway (a lagging peer's), except one issued after it with a lower
// sequence (RefusedOlderSequence). The caller holds n.mu.
func (n *Node) noteRefusalLocked(app, env string, seq uint64, reason string) {
	if app == "" || release.StateKey("", env) != release.StateKey("", n.cfg.Env) {
		return
	}
	key := release.StateKey(app, env)
	if reason != RefusedOlderSequence && seq <= n.highest[key] {
		return
	}
	if n.refused == nil {
		n.refused = make(map[string]Refusal)
	}
	now := n.now()
	if _, ok := n.refused[key]; !ok && len(n.refused) >= maxRefusals {
		oldest := ""
		for k, r := range n.refused {
			if oldest == "" || r.At.Before(n.refused[oldest].At) {
				oldest = k
			}
		}
		delete(n.refused, oldest)
	}
	n.refused[key] = Refusal{App: app, Reason: reason, Seq: seq, At: now}
}

// clearRefusalLocked forgets key's refusal once a state at seq, at least as
// new as the refused one, is accepted. The caller holds n.mu.
func (n *Node) clearRefusalLocked(key string, seq uint64) {
	if r, ok := n.refused[key]; ok && (seq >= r.Seq || r.Reason == RefusedOlderSequence) {
		delete(n.refused, key)
	}
}

// Refusals are the desired states of this node's environment that it
// refused and has not since been superseded by one it accepted, newest
// refusal per app, sorted by app. The agent reports them in its app states
// (AppState.Refused).
func (n *Node) Refusals() []Refusal {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	out := make([]Refusal, 0, len(n.refused))
	for key, r := range n.refused {
		if now.Sub(r.At) > refusalTTL {
			delete(n.refused, key)
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Refusal) int { return strings.Compare(a.App, b.App) })
	return out
}

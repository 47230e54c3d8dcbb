package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/swarmdeploy/swarm/atomicfile"
	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/swarm"
)

// appState is the agent's persisted view of one app: the release it is
// working on (or runs), the phase it reached and, when it failed, why.
type appState struct {
	App       string       `json:"app"`
	Version   string       `json:"version"`
	ReleaseID release.ID   `json:"release_id"`
	Phase     gossip.Phase `json:"phase"`
	Healthy   bool         `json:"healthy"`
	Error     string       `json:"error,omitempty"`
	// Seq is the desired-state sequence this state answers; a failure is
	// retried only when a newer desired state arrives.
	Seq uint64 `json:"seq"`
}

// diskFull reports a failure for want of disk space (its Error is a
// swarm.DiskFullError's text, as the seeder reads it too): the agent
// retries it by itself once there is room, across restarts too.
func (s appState) diskFull() bool {
	return s.Phase == gossip.PhaseFailed && swarm.IsDiskFull(s.Error)
}

// stateFile persists app states as one JSON file, replaced atomically.
type stateFile struct{ path string }

func (f stateFile) load() (map[string]appState, error) {
	out := map[string]appState{}
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read agent state: %w", err)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("agent state %s is corrupt (%w); move it aside to start afresh", f.path, err)
	}
	if out == nil { // the file said null
		out = map[string]appState{}
	}
	for key, st := range out {
		if err := st.validate(key); err != nil {
			return nil, fmt.Errorf("agent state %s is corrupt (%w); move it aside to start afresh", f.path, err)
		}
	}
	return out, nil
}

// validate checks a state read back from disk the way gossip checks what
// a node reports: one entry gossip refuses would keep the node from
// reporting any app. It must also be filed under its own app, as the agent
// looks it up by that name.
func (s appState) validate(key string) error {
	if s.App != key {
		return fmt.Errorf("entry %q is about app %q", key, s.App)
	}
	if err := release.ValidateApp(s.App); err != nil {
		return err
	}
	if s.Version != "" {
		if err := release.ValidateVersion(s.Version); err != nil {
			return fmt.Errorf("app %s: %w", s.App, err)
		}
	}
	if s.ReleaseID != "" {
		if _, err := release.ParseID(string(s.ReleaseID)); err != nil {
			return fmt.Errorf("app %s: %w", s.App, err)
		}
	}
	switch s.Phase {
	case "", gossip.PhaseDownloading, gossip.PhaseStaged, gossip.PhaseInstalling,
		gossip.PhaseActive, gossip.PhaseFailed, gossip.PhaseRolledBack:
	default:
		return fmt.Errorf("app %s: unknown phase %q", s.App, s.Phase)
	}
	return nil
}

func (f stateFile) save(states map[string]appState) error {
	b, err := json.MarshalIndent(states, "", "  ")
	if err != nil {
		return fmt.Errorf("encode agent state: %w", err)
	}
	if err := atomicfile.WriteFile(f.path, b, 0o644); err != nil {
		return fmt.Errorf("save agent state: %w", err)
	}
	return nil
}

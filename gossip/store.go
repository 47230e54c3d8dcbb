package gossip

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/swarmdeploy/swarm/release"
)

// stateFile is what StatePath holds. It must be written with json.Marshal,
// never MarshalIndent: indenting would rewrite the signed payloads embedded
// as raw JSON and break their signatures.
type stateFile struct {
	Version int `json:"version"`
	// Highest is the highest sequence accepted per app. It is kept apart
	// from Desired so that a state that no longer verifies after a keyring
	// change still keeps older states from being accepted again.
	Highest map[string]uint64            `json:"highest"`
	Desired []release.SignedDesiredState `json:"desired"`
}

const stateFileVersion = 1

// readStateFile returns the zero file if path does not exist.
func readStateFile(path string) (stateFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return stateFile{}, nil
	}
	if err != nil {
		return stateFile{}, fmt.Errorf("read gossip state %s: %w", path, err)
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return stateFile{}, fmt.Errorf("read gossip state %s: %w; move it away to start afresh (older desired states may then be accepted again)", path, err)
	}
	if f.Version != stateFileVersion {
		return stateFile{}, fmt.Errorf("read gossip state %s: version %d, want %d", path, f.Version, stateFileVersion)
	}
	return f, nil
}

// writeStateFile replaces path atomically: a temporary file in the same
// directory is written and synced, renamed over path, and the directory is
// synced so the rename survives a crash.
func writeStateFile(path string, f stateFile) (err error) {
	f.Version = stateFileVersion
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("write gossip state %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write gossip state %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(b); err != nil {
		return fmt.Errorf("write gossip state %s: %w", path, err)
	}
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("write gossip state %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("write gossip state %s: sync: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("write gossip state %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write gossip state %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write gossip state %s: sync dir: %w", path, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("write gossip state %s: sync dir: %w", path, err)
	}
	return nil
}

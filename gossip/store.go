package gossip

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/swarmdeploy/swarm/atomicfile"
	"github.com/swarmdeploy/swarm/release"
)

// stateFile is what StatePath holds. It must be written with json.Marshal,
// never MarshalIndent: indenting would rewrite the signed payloads embedded
// as raw JSON and break their signatures.
type stateFile struct {
	Version int `json:"version"`
	// Highest is the highest sequence accepted per key ("app@env"; files
	// written before environments have plain app names, read as the app's
	// default environment). It is kept apart
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

// writeStateFile replaces path atomically (compact JSON: re-indenting would
// break the signed payloads inside).
func writeStateFile(path string, f stateFile) (err error) {
	f.Version = stateFileVersion
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("write gossip state %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("gossip state: %w", err)
	}
	return nil
}

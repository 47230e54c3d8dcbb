// Package rollout is the pure logic of staged rollouts: where a node falls in
// a release's waves and whether a desired state admits it. It does no I/O and
// starts no goroutines, so it can be tested exhaustively and shared by the
// agent, the seeder's controller and the simulator.
package rollout

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/swarmdeploy/swarm/release"
)

// Bucket places a node in [0,1) for one release: H(node, release id) read as
// a fraction. The same node lands in a different place for each release, so
// the canary wave is not always the same machines, and every node computes
// its own place without coordination.
func Bucket(node string, id release.ID) float64 {
	h := sha256.New()
	h.Write([]byte(node))
	h.Write([]byte{0})
	h.Write([]byte(id))
	sum := h.Sum(nil)
	// 53 bits fill a float64 mantissa exactly: the result is uniform in [0,1).
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)
}

// Admitted reports whether node may install the target of d now: the state
// is not paused and the node's bucket is below the admitted fraction.
func Admitted(node string, d *release.DesiredState, target release.ID) bool {
	if d.Paused {
		return false
	}
	return Bucket(node, target) < d.AdmittedFraction()
}

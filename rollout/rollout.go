// Package rollout is the pure logic of staged rollouts: where a node falls in
// a release's waves, whether a desired state admits it, and the controller's
// decisions from what it observes and a clock. It does no I/O and starts no
// goroutines, so it can be tested exhaustively and shared by the agent, the
// seeder's controller and the simulator.
//
// # Counting failures
//
// The controller (Decide) counts a node as failed, once per rollout, when
// it reports the rollout's target release and its phase is failed or
// rolled-back, or it is active but not healthy (its health check failed the
// agent's --health-failures times in a row). That includes a node that
// fails to download or stage the target before it is admitted: it would
// fail when admitted. A failed node stays counted even if it recovers or
// leaves, so a node that flaps between healthy and unhealthy counts once.
// What is not a failure: a node gossip only suspects (neither failed nor
// healthy: its step is not done until it is confirmed alive or gone), a
// node that leaves or is killed (absent from the observed nodes), and a
// node that reports another release. A rollout's failures are compared with
// Plan.MaxFailures of the environment's current node count; one more than
// the budget spends it.
package rollout

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"

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
// is not paused, the target is not marked bad, and the node's bucket is
// below the admission threshold.
func Admitted(node string, d *release.DesiredState, target release.ID) bool {
	if d.Paused || d.IsBad(target) {
		return false
	}
	return Bucket(node, target) < d.Admit
}

// Threshold is the admission threshold that admits exactly n of nodes for
// release id: halfway between the n-th and the (n+1)-th bucket in
// increasing order. n <= 0 gives 0 (nobody); n >= len(nodes) gives 1
// (everybody, nodes that join later included).
func Threshold(nodes []string, id release.ID, n int) float64 {
	if n <= 0 {
		return 0
	}
	if n >= len(nodes) {
		return 1
	}
	b := make([]float64, len(nodes))
	for i, name := range nodes {
		b[i] = Bucket(name, id)
	}
	slices.Sort(b)
	return (b[n-1] + b[n]) / 2
}

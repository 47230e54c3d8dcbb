//go:build unix

package sim

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/swarmdeploy/swarm/bench"
)

// TestScale prints the documented sweep at 1 GiB, 1 Gbit/s nodes and a
// 10 Gbit/s origin, with the simulator's wall and CPU time. It takes
// minutes, so it runs only with SWARM_SIM_SCALE=1. SWARM_SIM_SCALE_NODES=n
// runs one size; SWARM_SIM_SCALE_REQUESTS and SWARM_SIM_SCALE_PIECES set
// MaxRequests and MaxSimPieces, to measure what they cost and change.
func TestScale(t *testing.T) {
	if os.Getenv("SWARM_SIM_SCALE") == "" {
		t.Skip("set SWARM_SIM_SCALE=1 to run the scale sweep")
	}
	sizes := []int{100, 500, 1000, 5000, 20000, 50000}
	if n := envInt(t, "SWARM_SIM_SCALE_NODES"); n > 0 {
		sizes = []int{n}
	}
	for _, n := range sizes {
		cfg := Config{
			Params: bench.Params{
				Nodes: n, SizeBytes: 1 << 30, NodeUp: 125e6, NodeDown: 125e6, OriginUp: 1250e6, Seed: 1,
			},
			MaxRequests:  envInt(t, "SWARM_SIM_SCALE_REQUESTS"),
			MaxSimPieces: envInt(t, "SWARM_SIM_SCALE_PIECES"),
		}
		cpu0 := cpuSeconds()
		r, err := Run(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		cpu := cpuSeconds() - cpu0
		t.Logf("N=%-6d completion %.2fs (p50 %.2f p90 %.2f) T* %.2fs ratio %.3f origin egress %.2f peer share %.3f gossip p99 %.2fs p100 %.2fs wall %.2fs cpu %.2fs",
			n, r.CompletionS, r.CompletionP50S, r.CompletionP90S, r.TStarS, r.CompletionRatio, r.OriginEgressRatio, r.PeerShare, r.Gossip99S, r.Gossip100S, r.WallS, cpu)
	}
}

// envInt reads an optional integer from the environment; 0 if unset.
func envInt(t *testing.T, name string) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return n
}

// cpuSeconds is the CPU time this process has used: on a shared machine a
// steadier measure of the simulator's cost than wall time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

package bench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/gossip"
)

// countingHook writes a hook that appends one line per run to a file.
func countingHook(t *testing.T) (hook, runs string) {
	t.Helper()
	return writeHook(t, "runs", "echo \"$1 $SWARM_VERSION\" >> %[1]s\n")
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// A restarted agent neither downloads nor installs again what it has.
func TestAgentRestartKeepsState(t *testing.T) {
	shim := testShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hook, runs := countingHook(t)
	c, err := NewCluster(ctx, ClusterConfig{Dir: t.TempDir(), Agents: 2, Hook: hook, Shim: shim}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	v1, err := c.Publish(ctx, makeApp(t, "1.0.0", 2<<20), "hello", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitActive(ctx, "hello", v1.ReleaseID, c.Agents()); err != nil {
		t.Fatal(err)
	}
	installs := countLines(t, runs)
	if installs != 2 {
		t.Fatalf("hook ran %d times for 2 agents", installs)
	}

	first := c.Agents()[0]
	name := first.Name()
	if err := first.Stop(); err != nil {
		t.Fatalf("stop %s: %v", name, err)
	}
	again, err := c.AddAgent(name, AgentOptions{})
	if err != nil {
		t.Fatalf("restart %s: %v", name, err)
	}
	if err := c.WaitActive(ctx, "hello", v1.ReleaseID, []*Node{again}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the restarted agent reports active in gossip", func() bool {
		return seenPhase(c, name, "hello", v1.ReleaseID, gossip.PhaseActive)
	})
	st := again.TorrentStats()
	if got := st.BytesFromOrigin + st.BytesFromPeers; got != 0 {
		t.Errorf("restarted agent downloaded %d bytes of a release it had", got)
	}
	if n := countLines(t, runs); n != installs {
		t.Errorf("hook ran %d more times after the restart", n-installs)
	}
}

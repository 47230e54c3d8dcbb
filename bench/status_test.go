package bench

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/rollout"
	"github.com/swarmdeploy/swarm/seeder"
)

// failing3 is a health check that fails every release 3.x.
const failing3 = `#!/bin/sh
case "$SWARM_VERSION" in
3.*) echo "3.x is sick"; exit 1 ;;
esac
exit 0
`

// TestClusterStatusShowsRunningAfterRollback is issue 14's "status hides
// the truth": 3.0.0 fails its health check on every node and the installer
// puts 1.0.0 back. Status used to show 3.0.0, health bad, and 1.0.0
// nowhere; it shows the rolled-back target and that 1.0.0 runs, healthy.
func TestClusterStatusShowsRunningAfterRollback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	health := filepath.Join(t.TempDir(), "health.sh")
	if err := os.WriteFile(health, []byte(failing3), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := NewCluster(ctx, ClusterConfig{Dir: t.TempDir(), Agents: 2, HealthCheck: health},
		zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	nodes := c.Agents()
	v1, err := c.Publish(ctx, makeApp(t, "1.0.0", 64<<10), "hello", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitActive(ctx, "hello", v1.ReleaseID, nodes); err != nil {
		t.Fatal(err)
	}
	// No automatic rollback of the fleet: the target stays 3.0.0, so what
	// each node shows is its own rollback.
	plan := &release.Plan{NoAutoRollback: true, MaxFailures: release.Budget{Count: len(nodes)}}
	v3, err := c.PublishWith(ctx, makeApp(t, "3.0.0", 64<<10), "hello", "3.0.0", seeder.PublishOptions{Plan: plan})
	if err != nil {
		t.Fatal(err)
	}
	var st seeder.Status
	waitFor(ctx, t, "every node to report 3.0.0 rolled back", func() bool {
		if st, err = c.Client.Status(ctx); err != nil || len(st.Nodes) != len(nodes) {
			return false
		}
		for _, n := range st.Nodes {
			if len(n.Apps) != 1 || n.Apps[0].ReleaseID != v3.ReleaseID || n.Apps[0].Phase != string(gossip.PhaseRolledBack) {
				return false
			}
		}
		return true
	})
	for _, n := range st.Nodes {
		a := n.Apps[0]
		if a.Version != "3.0.0" || a.RunningVersion != "1.0.0" || a.RunningReleaseID != v1.ReleaseID || !a.Healthy {
			t.Errorf("%s: %+v; want 3.0.0 rolled back, running 1.0.0 (%s), healthy", n.Name, a, v1.ReleaseID.Short())
		}
	}
	for _, n := range nodes {
		if cur, ok, _ := n.Current("hello"); !ok || cur.ReleaseID != v1.ReleaseID {
			t.Errorf("%s runs %s, not 1.0.0", n.Name(), cur.Version)
		}
	}
}

// TestClusterStatusSaysRefused is issue 14's desired state that no agent
// trusts: the agents pin another rollout key than the seeder's. Status
// used to show "0/3 active" and nothing else; it says every node refused
// it, and why.
func TestClusterStatusSaysRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := NewCluster(ctx, ClusterConfig{Dir: t.TempDir(), RefusalGrace: 2 * time.Second}, zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	other, err := release.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	trust := c.Trust()
	trust.Rollout = release.NewKeyring(other.Public())
	const agents = 3
	for i := range agents {
		if _, err := c.AddAgent("pinned-"+string(rune('a'+i)), AgentOptions{Trust: &trust}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(ctx, t, "the seeder to see every agent", func() bool {
		st, err := c.Client.Status(ctx)
		return err == nil && len(st.Nodes) == agents
	})
	if _, err := c.Publish(ctx, makeApp(t, "1.0.0", 16<<10), "hello", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	var d seeder.DesiredStatus
	waitFor(ctx, t, "status to say every node refused the desired state", func() bool {
		st, err := c.Client.Status(ctx)
		if err != nil || len(st.Desired) != 1 {
			return false
		}
		d = st.Desired[0]
		return d.Error != "" && refusedCount(d) == agents
	})
	if d.Error != "refused by 3 nodes: untrusted key" || d.Active != 0 || d.Nodes != agents {
		t.Fatalf("desired state status: %+v", d)
	}
	// The rollout does not wait on them for ever: it stalls, saying why,
	// so publish --wait ends.
	var r rollout.Status
	waitFor(ctx, t, "the rollout to stall on the refusals", func() bool {
		r, err = c.Client.Rollout(ctx, "hello", "")
		return err == nil && r.State == release.RolloutStalled
	})
	if !strings.Contains(r.Reason, "refused the desired state: untrusted key") {
		t.Fatalf("stalled rollout's reason %q does not say the nodes refused it", r.Reason)
	}
}

func refusedCount(d seeder.DesiredStatus) int {
	n := 0
	for _, r := range d.Refused {
		n += r.Nodes
	}
	return n
}

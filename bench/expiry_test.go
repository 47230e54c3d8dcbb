package bench

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
)

// TestDesiredStateExpiry: a running seeder re-signs its states before they
// expire, so no node ever reports stale; once the seeder is gone, every
// node reports its app stale after the TTL and keeps running its release;
// a restarted seeder re-signs and the nodes are fresh again.
func TestDesiredStateExpiry(t *testing.T) {
	const ttl = 3 * time.Second
	ctx := context.Background()
	c, err := NewCluster(ctx, ClusterConfig{
		Dir: filepath.Join(t.TempDir(), "cluster"), Agents: 3, SharedStorage: true,
		ControlInterval: 100 * time.Millisecond, DesiredTTL: ttl,
	}, zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	res, err := c.Publish(ctx, makeApp(t, "1.0.0", 4<<10), "exp", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := c.WaitActive(wctx, "exp", res.ReleaseID, c.Agents()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the rollout is complete", 30*time.Second, func() bool {
		st, err := c.Client.Rollout(ctx, "exp", "")
		return err == nil && st.State == release.RolloutComplete
	})
	time.Sleep(500 * time.Millisecond) // the complete state reaches the nodes
	first, _ := c.Agents()[0].Desired("exp")

	// Two TTLs with the seeder up: refreshed, never stale.
	for end := time.Now().Add(2 * ttl); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		for _, n := range c.Agents() {
			if n.Stale("exp") {
				t.Fatalf("%s reports exp stale while its seeder runs", n.Name())
			}
		}
	}
	now, _ := c.Agents()[0].Desired("exp")
	if now.Sequence <= first.Sequence || !now.Issued.Equal(first.Issued) || !now.Expires.After(first.Expires) {
		t.Fatalf("not refreshed: seq %d → %d, issued %v → %v, expires %v → %v",
			first.Sequence, now.Sequence, first.Issued, now.Issued, first.Expires, now.Expires)
	}

	// The seeder gone: stale after the TTL, still running 1.0.0.
	addr := c.Seeder.GossipAddr()
	c.StopSeeder()
	eventually(t, "every node reports exp stale", 3*ttl, func() bool {
		for _, n := range c.Agents() {
			if !n.Stale("exp") {
				return false
			}
		}
		return true
	})
	for _, n := range c.Agents() {
		phase, id, _ := n.AppPhase("exp")
		if phase != gossip.PhaseActive || id != res.ReleaseID {
			t.Errorf("%s: %s %s while stale, want active on %s", n.Name(), phase, id, res.ReleaseID)
		}
	}

	// Back: re-signed at once, fresh again.
	if err := c.startSeeder(addr, []string{c.Agents()[0].GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every node fresh again", 30*time.Second, func() bool {
		for _, n := range c.Agents() {
			if n.Stale("exp") {
				return false
			}
		}
		return true
	})
}

func eventually(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

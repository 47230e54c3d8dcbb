package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// Once the swarm holds every piece the origin is not needed: with the
// seeder stopped, agents that join afterwards (through an agent, since the
// seeder's gossip is gone too) learn the desired state from the others,
// download the bundle from them and run it.
func TestOriginLossAfterSwarmHoldsEveryPiece(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := NewCluster(ctx, ClusterConfig{Dir: t.TempDir(), Agents: 2}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	pub, err := c.Publish(ctx, makeApp(t, "1.0.0", 4<<20), "hello", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	holders := c.Agents()
	if err := c.WaitActive(ctx, "hello", pub.ReleaseID, holders); err != nil {
		t.Fatal(err)
	}

	c.StopSeeder()

	var late []*Node
	for i := range 3 {
		n, err := c.AddAgent(fmt.Sprintf("late-%d", i+1), AgentOptions{Join: holders[i%2].GossipAddr()})
		if err != nil {
			t.Fatal(err)
		}
		late = append(late, n)
	}
	if err := c.WaitActive(ctx, "hello", pub.ReleaseID, late); err != nil {
		t.Fatal(err)
	}
	for _, n := range late {
		st := n.TorrentStats()
		if st.BytesFromOrigin != 0 {
			t.Errorf("%s got %d bytes from a stopped origin", n.Name(), st.BytesFromOrigin)
		}
		if st.BytesFromPeers == 0 {
			t.Errorf("%s is active without downloading from peers", n.Name())
		}
	}
}

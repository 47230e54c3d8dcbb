package seeder

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
)

// TestStatusListsOnlySignedSeeders: members that claim the seeder role over
// real gossip, one unsigned and one signed by a key the seeder does not
// pin, are listed with the nodes, not with the seeders; the seeder itself,
// whose announcement is signed by its rollout key, is a seeder.
func TestStatusListsOnlySignedSeeders(t *testing.T) {
	f := startSeeder(t, t.TempDir())
	stranger, err := release.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, sign := range []*release.PrivateKey{nil, stranger} {
		name, ring := "fake-unsigned", release.NewKeyring(f.key.Public())
		if sign != nil {
			name, ring = "fake-untrusted", release.NewKeyring(stranger.Public())
		}
		trust := release.Trust{Release: release.NewKeyring(f.rel.Public()), Rollout: ring}
		n, err := gossip.New(gossip.Config{
			Name: name, BindAddr: "127.0.0.1:0", Trust: trust, Role: gossip.RoleSeeder, SigningKey: sign,
			TorrentAddr: "127.0.0.1:1", LeaveTimeout: 200 * time.Millisecond,
		}, zaptest.NewLogger(t).Named(name))
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		if err := n.Join(ctx, []string{f.s.GossipAddr()}); err != nil {
			t.Fatal(err)
		}
	}
	var st Status
	for {
		st = f.s.Status()
		if len(st.Seeders)+len(st.Nodes) == 3 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("status lists %d seeders and %d nodes, want 3 members", len(st.Seeders), len(st.Nodes))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(st.Seeders) != 1 || st.Seeders[0].Name != "seeder" {
		t.Errorf("seeders %+v, want only the seeder", st.Seeders)
	}
	names := map[string]bool{}
	for _, n := range st.Nodes {
		names[n.Name] = true
	}
	if !names["fake-unsigned"] || !names["fake-untrusted"] {
		t.Errorf("nodes %+v, want both fakes listed as nodes", st.Nodes)
	}
}

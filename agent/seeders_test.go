package agent

import (
	"context"
	"crypto/rand"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
)

func fastGossip() gossip.Config {
	return gossip.Config{
		GossipInterval: 50 * time.Millisecond, ProbeInterval: 200 * time.Millisecond,
		ProbeTimeout: 100 * time.Millisecond, PushPullInterval: time.Second, LeaveTimeout: 200 * time.Millisecond,
	}
}

// TestOnlySignedSeedersAreOrigins runs a real agent among three members
// that claim the seeder role over real gossip on 127.0.0.1: one signs its
// announcement with the pinned rollout key, one does not sign, one signs
// with a key the agent does not pin. The agent fetches from the first as
// the origin only; the others count as agents (never as origins), and the
// agent counts them.
func TestOnlySignedSeedersAreOrigins(t *testing.T) {
	genKey := func() *release.PrivateKey {
		k, err := release.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	rollout, stranger, rel := genKey(), genKey(), genKey()
	trustOf := func(k *release.PrivateKey) release.Trust {
		return release.Trust{Release: release.NewKeyring(rel.Public()), Rollout: release.NewKeyring(k.Public())}
	}
	member := func(name, torrent string, sign *release.PrivateKey) *gossip.Node {
		gc := fastGossip()
		gc.Name, gc.BindAddr, gc.Role, gc.TorrentAddr, gc.SigningKey = name, "127.0.0.1:0", gossip.RoleSeeder, torrent, sign
		gc.Trust = trustOf(rollout)
		if sign == stranger {
			gc.Trust = trustOf(stranger)
		}
		n, err := gossip.New(gc, zaptest.NewLogger(t).Named(name))
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	seeder := member("seeder", "127.0.0.1:1001", rollout)
	fakes := []*gossip.Node{member("fake-unsigned", "127.0.0.1:1002", nil), member("fake-untrusted", "127.0.0.1:1003", stranger)}

	a, err := New(Config{
		DataDir: t.TempDir(), Name: "agent", Trust: trustOf(rollout),
		GossipAddr: "127.0.0.1:0", TorrentAddr: "127.0.0.1:0", Join: []string{seeder.Addr()},
		Gossip: fastGossip(), OriginFeeders: 1,
	}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent run: %v", err)
		}
	})
	jctx, jcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer jcancel()
	for _, f := range fakes {
		if err := f.Join(jctx, []string{seeder.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for a.GossipMembers() != 4 {
		if time.Now().After(deadline) {
			t.Fatalf("the agent knows %d members, want 4", a.GossipMembers())
		}
		time.Sleep(10 * time.Millisecond)
	}
	src := a.sources(release.Manifest{App: "web", ReleaseID: release.IDOf([]byte("web 1.0.0"))})
	if !slices.Equal(src.Origins, []string{"127.0.0.1:1001"}) {
		t.Fatalf("origins %v, want only the signed seeder's 127.0.0.1:1001", src.Origins)
	}
	if got := a.GossipStats().RefusedSeeders; got != 2 {
		t.Fatalf("the agent counted %d fake seeders, want 2", got)
	}
}

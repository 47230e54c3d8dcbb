package bench

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/seeder"
	"github.com/swarmdeploy/swarm/swarm"
)

// repoRoot is where testdata lives, seen from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// makeApp writes a sample app tree: the hello script and size bytes of
// incompressible data, so the bundle has many pieces to swap.
func makeApp(t *testing.T, version string, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app-"+version)
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\necho hello " + version + "\n"
	if err := os.WriteFile(filepath.Join(dir, "bin", "hello"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "payload.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeHook writes an executable shell hook into a fresh temp dir; script
// gets the path of a second file in that dir (its state) as %[1]s.
func writeHook(t *testing.T, state, script string) (hook, statePath string) {
	t.Helper()
	dir := t.TempDir()
	statePath = filepath.Join(dir, state)
	hook = filepath.Join(dir, "hook.sh")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\n"+fmt.Sprintf(script, statePath)), 0o755); err != nil {
		t.Fatal(err)
	}
	return hook, statePath
}

// toggleHook writes a hook that succeeds until the file it watches exists.
func toggleHook(t *testing.T) (hook, failFile string) {
	t.Helper()
	return writeHook(t, "fail", "if [ -e %[1]s ]; then echo 'told to fail' >&2; exit 3; fi\necho installed $SWARM_VERSION\n")
}

func TestClusterRollout(t *testing.T) {
	shim := testShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := zaptest.NewLogger(t)
	const agents = 8
	const size = 6 << 20

	c, err := NewCluster(ctx, ClusterConfig{
		Dir: t.TempDir(), Agents: agents, Shim: shim,
		Hook: filepath.Join(repoRoot(t), "testdata", "hooks", "install.sh"),
		// A capped origin makes the agents serve each other, as in a fleet.
		OriginUploadRate: 4 << 20,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)

	badHook, failFile := toggleHook(t)
	bad, err := c.AddAgent("agent-badhook", AgentOptions{Hook: &badHook})
	if err != nil {
		t.Fatal(err)
	}
	nodes := c.Agents()

	// v1 reaches every node.
	v1, err := c.Publish(ctx, makeApp(t, "1.0.0", size), "hello", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitActive(ctx, "hello", v1.ReleaseID, nodes); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		cur, ok, err := n.Current("hello")
		if err != nil || !ok || cur.ReleaseID != v1.ReleaseID {
			t.Fatalf("%s: current = %v %v %v, want %s", n.Name(), cur.ReleaseID, ok, err, v1.ReleaseID)
		}
	}

	// Agents served each other, and the origin sent less than one copy per node.
	var fromPeers int64
	for _, n := range nodes {
		fromPeers += n.TorrentStats().BytesFromPeers
	}
	origin := c.Seeder.TorrentStats().BytesSent
	bundle := bundleSize(t, c, v1.ReleaseID)
	t.Logf("v1: bundle %d B, origin sent %d B (%.2f copies), peers served %d B", bundle, origin, float64(origin)/float64(bundle), fromPeers)
	if fromPeers == 0 {
		t.Errorf("no agent received a byte from a peer")
	}
	if origin >= int64(len(nodes))*bundle {
		t.Errorf("origin sent %d bytes, not less than %d nodes x %d bytes", origin, len(nodes), bundle)
	}

	// A node that joins after the publish catches up.
	late, err := c.AddAgent("agent-late", AgentOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitActive(ctx, "hello", v1.ReleaseID, []*Node{late}); err != nil {
		t.Fatal(err)
	}

	// v2 everywhere but on the node whose hook now fails: it keeps v1 and
	// reports failed. The rollout tolerates that one failure; by default
	// (a budget of 0) the controller would roll every node back.
	if err := os.WriteFile(failFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	v2, err := c.PublishWith(ctx, makeApp(t, "2.0.0", size), "hello", "2.0.0",
		seeder.PublishOptions{Plan: &release.Plan{Strategy: release.StrategyAllAtOnce, MaxFailures: release.Budget{Count: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	var good []*Node
	for _, n := range c.Agents() {
		if n != bad {
			good = append(good, n)
		}
	}
	if err := c.WaitActive(ctx, "hello", v2.ReleaseID, good); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "bad-hook agent reports failed in gossip", func() bool {
		return seenPhase(c, bad.Name(), "hello", v2.ReleaseID, gossip.PhaseFailed)
	})
	if cur, ok, _ := bad.Current("hello"); !ok || cur.ReleaseID != v1.ReleaseID {
		t.Fatalf("bad-hook agent: current %s, want previous release %s", cur.ReleaseID, v1.ReleaseID)
	}
	link, err := os.Readlink(filepath.Join(c.cfg.Dir, bad.Name(), "releases", "hello", "current"))
	if err != nil || !strings.Contains(link, v1.ReleaseID.Short()) {
		t.Fatalf("bad-hook agent: current symlink = %q (%v), want v1's dir", link, err)
	}
}

// seenPhase reports whether the seeder's status shows node at phase for id.
func seenPhase(c *Cluster, node, app string, id release.ID, phase gossip.Phase) bool {
	for _, n := range c.Seeder.Status().Nodes {
		if n.Name != node {
			continue
		}
		for _, a := range n.Apps {
			if a.App == app && a.ReleaseID == id && a.Phase == string(phase) {
				return true
			}
		}
	}
	return false
}

func bundleSize(t *testing.T, c *Cluster, id release.ID) int64 {
	t.Helper()
	st, err := os.Stat(swarm.BundlePath(filepath.Join(c.cfg.Dir, "seeder", "releases"), id))
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting: %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// rogue is a gossip member with its own BitTorrent origin that injects
// desired states the cluster must refuse.
type rogue struct {
	node    *gossip.Node
	torrent *swarm.Client
	dir     string
}

func newRogue(t *testing.T, trust release.Trust, key *release.PrivateKey, name string) *rogue {
	t.Helper()
	return newRoguePrep(t, trust, key, name, nil)
}

// newRoguePrep is newRogue with prep run on the rogue's gossip state file
// path before its gossip starts.
func newRoguePrep(t *testing.T, trust release.Trust, key *release.PrivateKey, name string, prep func(statePath string)) *rogue {
	t.Helper()
	log := zaptest.NewLogger(t).Named(name)
	dir := t.TempDir()
	tc, err := swarm.New(swarm.Config{Dir: dir, ListenAddr: "127.0.0.1:0", Origin: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	gc := FastGossip()
	gc.Name, gc.BindAddr, gc.Role, gc.TorrentAddr = name, "127.0.0.1:0", gossip.RoleSeeder, tc.Addr()
	// It signs its announcement: with a pinned rollout key, agents take it
	// for an origin (rogue-tampered); with another, for an agent.
	gc.Trust, gc.SigningKey = trust, key
	if prep != nil {
		gc.StatePath = filepath.Join(dir, "desired.json")
		prep(gc.StatePath)
	}
	n, err := gossip.New(gc, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return &rogue{node: n, torrent: tc, dir: dir}
}

// signedState builds a desired state for app targeting m, the manifest
// signed by rel, the state by key.
func signedState(t *testing.T, rel, key *release.PrivateKey, m release.Manifest, seq uint64) release.SignedDesiredState {
	t.Helper()
	sm, err := release.SignManifest(m, rel)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := release.SignDesired(release.DesiredState{App: m.App, Sequence: seq, Target: sm, Issued: time.Now().UTC()}, key)
	if err != nil {
		t.Fatal(err)
	}
	return sd
}

func TestClusterRefusesBadStates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := zaptest.NewLogger(t)
	// Every agent fetches from the origins itself (no feeders): an agent
	// that refuses the tampered bundle never serves its feeder share, and
	// the others would each wait out the origin fallback (20 s a round,
	// 80 s in all) before they reach the tampered origin themselves.
	c, err := NewCluster(ctx, ClusterConfig{Dir: t.TempDir(), Agents: 4, OriginFeeders: -1}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	nodes := c.Agents()

	// A real release, twice, so the app's highest sequence is 2.
	v1, err := c.Publish(ctx, makeApp(t, "1.0.0", 1<<20), "hello", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := c.Publish(ctx, makeApp(t, "2.0.0", 1<<20), "hello", "2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if v2.Sequence != v1.Sequence+1 {
		t.Fatalf("sequences %d then %d", v1.Sequence, v2.Sequence)
	}
	if err := c.WaitActive(ctx, "hello", v2.ReleaseID, nodes); err != nil {
		t.Fatal(err)
	}
	v1m := manifestOf(t, c, v1.ReleaseID)

	// 1. Signed by keys nobody pinned.
	stranger, strangerRel := newKey(t), newKey(t)
	r1 := newRogue(t, release.Trust{Release: release.NewKeyring(strangerRel.Public()), Rollout: release.NewKeyring(stranger.Public())}, stranger, "rogue-untrusted")
	if err := r1.node.Publish(signedState(t, strangerRel, stranger, v1m, 99)); err != nil {
		t.Fatalf("rogue could not publish to itself: %v", err)
	}
	// Joining an agent makes its join-time push/pull carry the state there.
	if err := r1.node.Join(ctx, []string{nodes[0].GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "an agent refuses the untrusted state", func() bool {
		return sumStats(nodes).RefusedUntrusted > 0
	})

	// 2. Trusted key, lower sequence than the cluster holds: rolls back to v1
	// if accepted. The rogue accepts it first (it has seen nothing), then joins.
	r2 := newRogue(t, c.Trust(), c.Key, "rogue-stale")
	if err := r2.node.Publish(signedState(t, c.ReleaseKeys[0], c.Key, v1m, v1.Sequence)); err != nil {
		t.Fatal(err)
	}
	if err := r2.node.Join(ctx, []string{nodes[0].GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "an agent refuses the stale state", func() bool {
		return sumStats(nodes).RefusedStale > 0
	})

	// 3. Trusted key, newer sequence, but the manifest's release id is not
	// the hash of the bytes served (the infohash is right, so BitTorrent
	// alone would accept them).
	r3 := newRogue(t, c.Trust(), c.Key, "rogue-tampered")
	evil := makeApp(t, "6.6.6", 512<<10)
	b, err := seeder.Pack(seeder.PackOptions{Source: evil, App: "evil", Version: "6.6.6", Key: c.ReleaseKeys[0], TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	lie := b.Manifest
	lie.ReleaseID = release.IDOf([]byte("something else"))
	// The rogue serves the true bytes; the lie has the same infohash.
	copyFile(t, b.Path, swarm.BundlePath(r3.dir, b.Manifest.ReleaseID))
	if err := r3.torrent.Seed(b.Manifest); err != nil {
		t.Fatalf("seed tampered bundle: %v", err)
	}
	if err := r3.node.Join(ctx, []string{c.Seeder.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	if err := r3.node.Publish(signedState(t, c.ReleaseKeys[0], c.Key, lie, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "every agent refuses the tampered bundle", func() bool {
		for _, n := range nodes {
			if ph, id, _ := n.AppPhase("evil"); ph != gossip.PhaseFailed || id != lie.ReleaseID {
				return false
			}
		}
		return true
	})

	// Nothing of any of it was installed; every node still runs v2.
	for _, n := range nodes {
		if cur, ok, _ := n.Current("hello"); !ok || cur.ReleaseID != v2.ReleaseID {
			t.Errorf("%s: hello current %s, want %s", n.Name(), cur.ReleaseID, v2.ReleaseID)
		}
		if _, ok, _ := n.Current("evil"); ok {
			t.Errorf("%s: installed the tampered release", n.Name())
		}
		if _, err := os.Stat(filepath.Join(c.cfg.Dir, n.Name(), "releases", "evil")); err == nil {
			entries, _ := os.ReadDir(filepath.Join(c.cfg.Dir, n.Name(), "releases", "evil"))
			if len(entries) > 0 {
				t.Errorf("%s: releases/evil holds %d entries", n.Name(), len(entries))
			}
		}
		// The controller may have signed newer states since (the rollout
		// completing), but none with another target.
		if d, ok := n.Desired("hello"); !ok || d.Sequence < v2.Sequence {
			t.Errorf("%s: desired state of hello went back to seq %d, below %d", n.Name(), d.Sequence, v2.Sequence)
		} else if tm, _ := d.Target.Unverified(); tm.ReleaseID != v2.ReleaseID {
			t.Errorf("%s: desired release of hello changed to %s", n.Name(), tm.Version)
		}
	}
}

func sumStats(nodes []*Node) gossip.Stats {
	var s gossip.Stats
	for _, n := range nodes {
		g := n.GossipStats()
		s.Accepted += g.Accepted
		s.RefusedStale += g.RefusedStale
		s.RefusedUntrusted += g.RefusedUntrusted
		s.RefusedInvalid += g.RefusedInvalid
	}
	return s
}

func manifestOf(t *testing.T, c *Cluster, id release.ID) release.Manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.cfg.Dir, "seeder", "releases", id.Hex(), "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sm release.SignedManifest
	if err := json.Unmarshal(b, &sm); err != nil {
		t.Fatal(err)
	}
	m, err := c.Trust().VerifyManifest(sm)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newKey(t *testing.T) *release.PrivateKey {
	t.Helper()
	k, err := release.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

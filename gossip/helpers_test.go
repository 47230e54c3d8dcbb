package gossip

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/release"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every poll; it is a deadline against hangs, not a
// speed assertion.
const waitTimeout = 20 * time.Second

func newKey(t testing.TB) *release.PrivateKey {
	t.Helper()
	k, err := release.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// releaseKeyOf is the release key that goes with the rollout key id in
// these tests: derived from it, so that a test needs to hold one key only.
// trustOf pins both.
func releaseKeyOf(rolloutID string) *release.PrivateKey {
	seed := sha256.Sum256([]byte("release key of " + rolloutID))
	k, err := release.GenerateKey(bytes.NewReader(seed[:]))
	if err != nil {
		panic(err) // 32 bytes of seed are all it reads
	}
	return k
}

// trustOf pins each key as a rollout key and the release key derived from
// it (releaseKeyOf) as a release key.
func trustOf(rollout ...release.PublicKey) release.Trust {
	tr := release.Trust{Release: release.Keyring{}, Rollout: release.NewKeyring(rollout...)}
	for _, k := range rollout {
		rk := releaseKeyOf(k.ID())
		tr.Release[rk.ID()] = rk.Public()
	}
	return tr
}

// manifest signs a manifest with the release key that goes with the
// rollout key k (releaseKeyOf).
func manifest(t testing.TB, k *release.PrivateKey, app, version string) release.SignedManifest {
	t.Helper()
	k = releaseKeyOf(k.ID())
	m := release.Manifest{
		App:          app,
		Version:      version,
		ReleaseID:    release.IDOf([]byte(app + "@" + version)),
		BundleSize:   123456789,
		UnpackedSize: 987654321,
		InfoHash:     "0123456789abcdef0123456789abcdef01234567",
		PieceLength:  1 << 20,
		Created:      time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
	}
	sm, err := release.SignManifest(m, k)
	if err != nil {
		t.Fatal(err)
	}
	return sm
}

// desired signs a desired state for app at seq whose target is version
// "1.0.<seq>" and whose previous manifest, from seq > 1, is "1.0.<seq-1>".
func desired(t testing.TB, k *release.PrivateKey, app string, seq uint64) release.SignedDesiredState {
	t.Helper()
	d := release.DesiredState{
		App:      app,
		Sequence: seq,
		Target:   manifest(t, k, app, fmt.Sprintf("1.0.%d", seq)),
		Plan:     release.Plan{Steps: []release.Step{{Percent: 10}, {Percent: 50}, {Percent: 100}}},
		Issued:   time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
	}
	if seq > 1 {
		prev := manifest(t, k, app, fmt.Sprintf("1.0.%d", seq-1))
		d.Previous = &prev
	}
	sd, err := release.SignDesired(d, k)
	if err != nil {
		t.Fatal(err)
	}
	return sd
}

// testConfig is a node on 127.0.0.1 with an OS-picked port and timings cut
// to milliseconds.
func testConfig(name string, ring release.Trust) Config {
	return Config{
		Name:             name,
		BindAddr:         "127.0.0.1:0",
		Trust:            ring,
		Role:             RoleAgent,
		TorrentAddr:      "127.0.0.1:6881",
		GossipInterval:   20 * time.Millisecond,
		ProbeInterval:    200 * time.Millisecond,
		ProbeTimeout:     100 * time.Millisecond,
		PushPullInterval: 500 * time.Millisecond,
		SuspicionMult:    6,
		TCPTimeout:       2 * time.Second,
		LeaveTimeout:     200 * time.Millisecond,
		JoinBackoff:      20 * time.Millisecond,
	}
}

func startNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	return startNodeLogger(t, cfg, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
}

func startNodeLogger(t testing.TB, cfg Config, log *zap.Logger) *Node {
	t.Helper()
	return startNodePrep(t, cfg, log, nil)
}

// startNodePrep starts a node after prep, when set, has changed it.
func startNodePrep(t testing.TB, cfg Config, log *zap.Logger, prep func(*Node)) *Node {
	t.Helper()
	n, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if prep != nil {
		prep(n)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func join(t testing.TB, n *Node, to ...*Node) {
	t.Helper()
	addrs := make([]string, len(to))
	for i, o := range to {
		addrs[i] = o.Addr()
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := n.Join(ctx, addrs); err != nil {
		t.Fatal(err)
	}
}

// cluster starts size nodes named node-00… and joins them to the first; the
// first is the seeder.
func cluster(t testing.TB, size int, ring release.Trust, tweak func(*Config)) []*Node {
	t.Helper()
	return clusterPrep(t, size, ring, tweak, nil)
}

// clusterPrep is cluster with prep, when set, run on each node before it
// starts.
func clusterPrep(t testing.TB, size int, ring release.Trust, tweak func(*Config), prep func(*Node)) []*Node {
	t.Helper()
	nodes := make([]*Node, size)
	// The seeder signs its announcement with a key every node pins.
	sk := newKey(t)
	ring.Rollout = maps.Clone(ring.Rollout)
	ring.Rollout[sk.ID()] = sk.Public()
	for i := range nodes {
		cfg := testConfig(fmt.Sprintf("node-%02d", i), ring)
		if i == 0 {
			cfg.Role, cfg.SigningKey = RoleSeeder, sk
		}
		if tweak != nil {
			tweak(&cfg)
		}
		nodes[i] = startNodePrep(t, cfg, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)), prep)
		if i > 0 {
			join(t, nodes[i], nodes[0])
		}
	}
	waitFor(t, "every node sees every member", func() bool {
		for _, n := range nodes {
			if len(n.Members()) != size {
				return false
			}
		}
		return true
	})
	return nodes
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func seqs(nodes []*Node, app string) string {
	var b strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&b, "%s=%d ", n.cfg.Name, n.HighestSeq(release.StateKey(app, "")))
	}
	return b.String()
}

// allHold reports whether every node holds app's desired state at seq.
func allHold(nodes []*Node, app string, seq uint64) bool {
	for _, n := range nodes {
		if n.HighestSeq(release.StateKey(app, "")) != seq {
			return false
		}
	}
	return true
}

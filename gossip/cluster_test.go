package gossip

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/swarmdeploy/swarm/release"
)

func appStateFor(i int) []AppState {
	return []AppState{{
		App:       "web",
		Version:   fmt.Sprintf("1.0.%d", i),
		ReleaseID: release.IDOf(fmt.Appendf(nil, "web@%d", i)),
		Phase:     PhaseDownloading,
		Progress:  float64(i) / 10,
	}}
}

func TestClusterSpreadsDesiredAndNodeState(t *testing.T) {
	k := newKey(t)
	ring := trustOf(k.Public())
	nodes := cluster(t, 8, ring, nil)
	for i, n := range nodes {
		if err := n.SetApps(appStateFor(i)); err != nil {
			t.Fatal(err)
		}
	}

	sd := desired(t, k, "web", 1)
	if err := nodes[0].Publish(sd); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every node holds web seq 1", func() bool {
		for _, n := range nodes {
			if _, got, ok := n.Desired("web@default"); !ok || !sameEnvelope(got, sd) {
				return false
			}
		}
		return true
	})
	for _, n := range nodes {
		d, _, _ := n.Desired("web@default")
		if d.App != "web" || d.Sequence != 1 {
			t.Errorf("%s: desired = %s seq %d", n.cfg.Name, d.App, d.Sequence)
		}
		if got := n.DesiredAll(); len(got) != 1 {
			t.Errorf("%s: DesiredAll has %d states", n.cfg.Name, len(got))
		}
		if st := n.Stats(); st.Accepted != 1 || st.RefusedInvalid+st.RefusedStale+st.RefusedUntrusted != 0 {
			t.Errorf("%s: stats %+v", n.cfg.Name, st)
		}
	}

	want := make([]NodeState, len(nodes))
	for i, n := range nodes {
		want[i] = NodeState{Name: n.cfg.Name, Addr: n.Addr(), Role: n.cfg.Role, TorrentAddr: "127.0.0.1:6881", Env: release.DefaultEnv, Apps: appStateFor(i)}
	}
	waitFor(t, "every node sees every member's app state", func() bool {
		for _, n := range nodes {
			if !reflect.DeepEqual(n.Members(), want) {
				return false
			}
		}
		return true
	})
	if want[0].Role != RoleSeeder || want[1].Role != RoleAgent {
		t.Fatalf("roles: %q %q", want[0].Role, want[1].Role)
	}
}

func TestNewerReplacesOlderEverywhere(t *testing.T) {
	k := newKey(t)
	nodes := cluster(t, 5, trustOf(k.Public()), nil)
	seeder := nodes[0]
	for _, seq := range []uint64{1, 3} {
		if err := seeder.Publish(desired(t, k, "web", seq)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("every node holds web seq %d", seq), func() bool {
			for _, n := range nodes {
				if n.HighestSeq("web@default") != seq {
					return false
				}
			}
			return true
		})
	}

	// Older, and same sequence with other contents: refused at the source.
	before := seeder.Stats()
	if err := seeder.Publish(desired(t, k, "web", 2)); !errors.Is(err, ErrStale) {
		t.Fatalf("publish seq 2 after 3: %v, want ErrStale", err)
	}
	// At least one: an older state still in flight from gossip may be refused too.
	if got := seeder.Stats().RefusedStale; got < before.RefusedStale+1 {
		t.Fatalf("RefusedStale = %d, want at least %d", got, before.RefusedStale+1)
	}
	// The same state again is a no-op.
	_, held, _ := seeder.Desired("web@default")
	if err := seeder.Publish(held); err != nil {
		t.Fatalf("republish held state: %v", err)
	}

	// An older state arriving by gossip changes nothing on the receiver.
	stale := desired(t, k, "web", 2)
	msg, err := encodeDesired(stale, maxBroadcast(false))
	if err != nil {
		t.Fatal(err)
	}
	rx := nodes[3]
	before = rx.Stats()
	rx.handleMsg(msg)
	if got := rx.Stats().RefusedStale; got < before.RefusedStale+1 {
		t.Fatalf("RefusedStale on receiver = %d, want at least %d", got, before.RefusedStale+1)
	}
	for _, n := range nodes {
		if d, _, _ := n.Desired("web@default"); d.Sequence != 3 {
			t.Fatalf("%s holds seq %d after stale state, want 3 (%s)", n.cfg.Name, d.Sequence, seqs(nodes, "web"))
		}
	}
}

func TestUntrustedStateIsNotRegossiped(t *testing.T) {
	k := newKey(t)
	rogueKey := newKey(t)
	honest := cluster(t, 4, trustOf(k.Public()), nil)

	// The rogue trusts its own key, so it accepts and gossips its state.
	rogue := startNode(t, testConfig("rogue", trustOf(k.Public(), rogueKey.Public())))
	join(t, rogue, honest[0])
	if err := rogue.Publish(desired(t, rogueKey, "evil", 9)); err != nil {
		t.Fatal(err)
	}
	// Every honest node hears it by push/pull with the rogue sooner or later.
	waitFor(t, "every honest node refused the rogue state", func() bool {
		for _, n := range honest {
			if n.Stats().RefusedUntrusted == 0 {
				return false
			}
		}
		return true
	})
	for _, n := range honest {
		if _, _, ok := n.Desired("evil@default"); ok || n.HighestSeq("evil@default") != 0 {
			t.Errorf("%s accepted the untrusted state", n.cfg.Name)
		}
		if q := n.queue.Len(); q != 0 {
			t.Errorf("%s queued %d broadcasts", n.cfg.Name, q)
		}
		if s := n.localState(); s != nil {
			t.Errorf("%s pushes state %q", n.cfg.Name, s)
		}
		if st := n.Stats(); st.Accepted != 0 {
			t.Errorf("%s: stats %+v", n.cfg.Name, st)
		}
	}
}

func TestLateJoinerCatchesUpByPushPull(t *testing.T) {
	k := newKey(t)
	ring := trustOf(k.Public())
	// No periodic push/pull: only the one a join does can carry the state.
	slow := func(c *Config) { c.PushPullInterval = time.Hour }
	nodes := cluster(t, 3, ring, slow)
	sd := desired(t, k, "web", 4)
	if err := nodes[0].Publish(sd); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the cluster holds the state and has stopped broadcasting it", func() bool {
		for _, n := range nodes {
			if n.HighestSeq("web@default") != 4 || n.queue.Len() != 0 {
				return false
			}
		}
		return true
	})

	cfg := testConfig("late", ring)
	slow(&cfg)
	late := startNode(t, cfg)
	join(t, late, nodes[2])
	waitFor(t, "the late joiner holds the state", func() bool {
		_, got, ok := late.Desired("web@default")
		return ok && sameEnvelope(got, sd)
	})
}

func TestEncryptedCluster(t *testing.T) {
	k := newKey(t)
	secret := []byte("0123456789abcdef")
	nodes := cluster(t, 3, trustOf(k.Public()), func(c *Config) { c.SecretKeys = [][]byte{secret} })
	if err := nodes[0].Publish(desired(t, k, "web", 2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every node holds web seq 2", func() bool { return allHold(nodes, "web", 2) })

	// A node without the key cannot join.
	cfg := testConfig("outsider", trustOf(k.Public()))
	cfg.JoinAttempts = 1
	out := startNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := out.Join(ctx, []string{nodes[0].Addr()}); err == nil {
		t.Fatal("a node without the secret key joined an encrypted cluster")
	}
}

func TestPersistedSequenceSurvivesRestart(t *testing.T) {
	k := newKey(t)
	ring := trustOf(k.Public())
	dir := t.TempDir()
	path := filepath.Join(dir, "gossip-state.json")

	cfg := testConfig("persist", ring)
	cfg.StatePath = path
	first := startNode(t, cfg)
	for _, app := range []string{"web", "api"} {
		if err := first.Publish(desired(t, k, app, 5)); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := filepath.Glob(filepath.Join(dir, "*")); len(entries) != 1 {
		t.Fatalf("state dir holds %v, want only the state file", entries)
	}

	// A peer that only ever saw seq 3.
	peer := startNode(t, testConfig("peer", ring))
	if err := peer.Publish(desired(t, k, "web", 3)); err != nil {
		t.Fatal(err)
	}

	restarted := startNode(t, cfg)
	for _, app := range []string{"web", "api"} {
		if got := restarted.HighestSeq(release.StateKey(app, "")); got != 5 {
			t.Fatalf("HighestSeq(%s) after restart = %d, want 5", app, got)
		}
		if d, _, ok := restarted.Desired(release.StateKey(app, "")); !ok || d.Sequence != 5 {
			t.Fatalf("Desired(%s) after restart = %v seq %d", app, ok, d.Sequence)
		}
	}
	if err := restarted.Publish(desired(t, k, "web", 4)); !errors.Is(err, ErrStale) {
		t.Fatalf("publish seq 4 after restart: %v, want ErrStale", err)
	}

	// Joining the peer: push/pull brings its seq 3 here (refused) and our
	// seq 5 there (accepted).
	join(t, restarted, peer)
	waitFor(t, "the restarted node refused the peer's older state", func() bool {
		return restarted.Stats().RefusedStale >= 2 // one publish, one push/pull
	})
	waitFor(t, "the peer caught up", func() bool { return peer.HighestSeq("web@default") == 5 && peer.HighestSeq("api@default") == 5 })
	if got := restarted.HighestSeq("web@default"); got != 5 {
		t.Fatalf("HighestSeq(web) = %d after older state arrived", got)
	}
}

func TestPersistedSequenceOutlivesItsKey(t *testing.T) {
	old, next := newKey(t), newKey(t)
	path := filepath.Join(t.TempDir(), "state.json")
	cfg := testConfig("rotate", trustOf(old.Public()))
	cfg.StatePath = path
	n := startNode(t, cfg)
	if err := n.Publish(desired(t, old, "web", 7)); err != nil {
		t.Fatal(err)
	}
	n.Close()

	// The old key is dropped from the keyring: the state is no longer
	// served, but its sequence still holds older states off.
	cfg.Trust = trustOf(next.Public())
	n = startNode(t, cfg)
	if _, _, ok := n.Desired("web@default"); ok {
		t.Fatal("a state signed by a dropped key is still served")
	}
	if got := n.HighestSeq("web@default"); got != 7 {
		t.Fatalf("HighestSeq = %d, want 7", got)
	}
	if err := n.Publish(desired(t, next, "web", 6)); !errors.Is(err, ErrStale) {
		t.Fatalf("publish seq 6: %v, want ErrStale", err)
	}
	if err := n.Publish(desired(t, next, "web", 8)); err != nil {
		t.Fatalf("publish seq 8: %v", err)
	}
}

// ReleaseProgress sums what the other agents report for one release: a
// node's own state, the seeder's, failed nodes and other releases do not
// count.
func TestReleaseProgress(t *testing.T) {
	k := newKey(t)
	nodes := cluster(t, 5, trustOf(k.Public()), nil)
	id := release.IDOf([]byte("web@2"))
	other := release.IDOf([]byte("web@1"))
	states := [][]AppState{
		{{App: "web", ReleaseID: id, Phase: PhaseActive, Progress: 1}}, // the seeder
		{{App: "web", ReleaseID: id, Phase: PhaseDownloading, Progress: 0.25}},
		{{App: "web", ReleaseID: id, Phase: PhaseActive, Progress: 1}},
		{{App: "web", ReleaseID: id, Phase: PhaseFailed, Progress: 1}},
		{{App: "web", ReleaseID: other, Phase: PhaseDownloading, Progress: 0.5}},
	}
	for i, n := range nodes {
		if err := n.SetApps(states[i]); err != nil {
			t.Fatal(err)
		}
	}
	want := []float64{1.25, 1, 0.25, 1.25, 1.25}
	// Node 4's state counts nowhere toward id, so the sums of id can be
	// right before it has spread: wait for the other release's sum too.
	waitFor(t, "every node sums the others' progress, per release", func() bool {
		for i, n := range nodes {
			if n.ReleaseProgress(id) != want[i] {
				return false
			}
		}
		return nodes[1].ReleaseProgress(other) == 0.5
	})
}

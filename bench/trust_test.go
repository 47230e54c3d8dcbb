package bench

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/seeder"
)

// onRelease checks that every node runs id of app and holds a desired
// state of app at sequence seq.
func onRelease(t *testing.T, nodes []*Node, app string, id release.ID, seq uint64) {
	t.Helper()
	for _, n := range nodes {
		if cur, ok, _ := n.Current(app); !ok || cur.ReleaseID != id {
			t.Errorf("%s: %s current %s, want %s", n.Name(), app, cur.ReleaseID.Short(), id.Short())
		}
		if d, ok := n.Desired(app); !ok || d.Sequence != seq {
			t.Errorf("%s: desired state of %s at seq %d, want %d", n.Name(), app, d.Sequence, seq)
		}
	}
}

// TestClusterReplayedManifestRefused is issue 13's downgrade against real
// agents: after v1 then v2, an attacker who reaches the seeder's API posts
// v1's signed manifest, as gossip carries it in the desired state's
// previous field, with an empty body. The seeder refuses it with 409
// naming the rollback command, issues nothing, and every node stays on v2.
// A publish of v2 again is a no-op.
func TestClusterReplayedManifestRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := NewCluster(ctx, ClusterConfig{Dir: t.TempDir(), Agents: 3}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	nodes := c.Agents()
	if _, err := c.Publish(ctx, makeApp(t, "1.0.0", 256<<10), "hello", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	v2, err := c.Publish(ctx, makeApp(t, "2.0.0", 256<<10), "hello", "2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitActive(ctx, "hello", v2.ReleaseID, nodes); err != nil {
		t.Fatal(err)
	}
	// Let the controller finish the rollout, so the sequence is settled.
	waitFor(ctx, t, "the rollout of 2.0.0 to complete", func() bool {
		st, err := c.Client.Rollout(ctx, "hello", "")
		return err == nil && st.State == release.RolloutComplete
	})
	held, _ := c.Seeder.Desired("hello", "")
	waitFor(ctx, t, "every node to hold the last state", func() bool {
		for _, n := range nodes {
			if d, ok := n.Desired("hello"); !ok || d.Sequence != held.Sequence {
				return false
			}
		}
		return true
	})

	// What the attacker holds: the previous manifest, from any node.
	d, _ := nodes[0].Desired("hello")
	if d.Previous == nil {
		t.Fatal("the desired state carries no previous manifest")
	}
	code, answer := postManifest(ctx, t, c, *d.Previous)
	if code != http.StatusConflict || !strings.Contains(answer.Error, "swarm rollout rollback hello --env default --to 1.0.0") {
		t.Fatalf("replayed manifest: HTTP %d %q; want 409 naming the rollback", code, answer.Error)
	}
	t.Logf("refused: %s", answer.Error)

	// The current target again is a no-op that says so.
	code, answer = postManifest(ctx, t, c, d.Target)
	if code != http.StatusOK || !answer.Existed || answer.Sequence != held.Sequence || !strings.Contains(answer.Note, "already the target") {
		t.Fatalf("publish of the target again: HTTP %d %+v", code, answer)
	}

	if now, _ := c.Seeder.Desired("hello", ""); now.Sequence != held.Sequence {
		t.Fatalf("the seeder issued seq %d after the replay (held %d)", now.Sequence, held.Sequence)
	}
	onRelease(t, nodes, "hello", v2.ReleaseID, held.Sequence)
}

// postManifest posts sm with an empty body, as an attacker who reaches the
// API would.
func postManifest(ctx context.Context, t *testing.T, c *Cluster, sm release.SignedManifest) (int, struct {
	seeder.PublishResult
	Error string
}) {
	t.Helper()
	var answer struct {
		seeder.PublishResult
		Error string
	}
	mb, _ := json.Marshal(sm)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.Seeder.APIURL()+seeder.PathReleases, strings.NewReader(""))
	req.Header.Set(seeder.ManifestHeader, base64.StdEncoding.EncodeToString(mb))
	req.Header.Set("Authorization", "Bearer "+c.APIToken) // the attacker holds the API token
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, answer
}

// TestClusterReleaseThreshold: 2 of 3 release keys, real agents. With one
// signature the release is stored and no node moves; a signature by an
// unknown key is refused; the second valid signature starts the rollout
// and every node installs it.
func TestClusterReleaseThreshold(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := NewCluster(ctx, ClusterConfig{Dir: t.TempDir(), Agents: 3, ReleaseKeys: 3, ReleaseThreshold: 2}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	nodes := c.Agents()

	res, err := c.Publish(ctx, makeApp(t, "1.0.0", 256<<10), "hello", "1.0.0")
	if err != nil || !res.Pending || res.Signatures != 1 || res.Threshold != 2 {
		t.Fatalf("publish with one signature: %+v %v", res, err)
	}
	if _, ok := c.Seeder.Desired("hello", ""); ok {
		t.Fatal("the seeder issued a desired state for a release with 1 of 2 signatures")
	}
	info, err := c.Client.Release(ctx, "hello", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := info.Signed.Sign(newKey(t))
	if _, err := c.Client.AddSignature(ctx, "hello", "1.0.0", sig); !isRefused(err, http.StatusForbidden) {
		t.Fatalf("signature by an unknown key: %v, want 403", err)
	}
	// One more valid signature from the key that signed adds nothing.
	sig, _ = info.Signed.Sign(c.ReleaseKeys[0])
	if r, err := c.Client.AddSignature(ctx, "hello", "1.0.0", sig); err != nil || r.Signatures != 1 {
		t.Fatalf("the same key again: %+v %v", r, err)
	}
	for _, n := range nodes {
		if _, ok := n.Desired("hello"); ok {
			t.Fatalf("%s holds a desired state of hello before the second signature", n.Name())
		}
		if _, ok, _ := n.Current("hello"); ok {
			t.Fatalf("%s installed hello before the second signature", n.Name())
		}
	}

	sig, _ = info.Signed.Sign(c.ReleaseKeys[2])
	r, err := c.Client.AddSignature(ctx, "hello", "1.0.0", sig)
	if err != nil || r.Pending || r.Signatures != 2 || r.Sequence == 0 {
		t.Fatalf("second signature: %+v %v", r, err)
	}
	if err := c.WaitActive(ctx, "hello", res.ReleaseID, nodes); err != nil {
		t.Fatal(err)
	}
}

func isRefused(err error, code int) bool {
	var r *seeder.ErrRefused
	return errors.As(err, &r) && r.Status == code
}

// TestClusterSequenceJumpRefused: a member holding a desired state with
// sequence 2^64-1, signed by the trusted rollout key, joins the cluster.
// Every agent refuses it (counted invalid), keeps its floor, and a normal
// publish afterwards reaches every node.
func TestClusterSequenceJumpRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := NewCluster(ctx, ClusterConfig{Dir: t.TempDir(), Agents: 3}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	nodes := c.Agents()
	v1, err := c.Publish(ctx, makeApp(t, "1.0.0", 256<<10), "hello", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitActive(ctx, "hello", v1.ReleaseID, nodes); err != nil {
		t.Fatal(err)
	}
	v1m := manifestOf(t, c, v1.ReleaseID)

	// Gossip's Publish refuses such a state, so the rogue loads it from its
	// state file, where a node that accepted it before the bound existed
	// would have it, and offers it in every push/pull.
	huge := signedState(t, c.ReleaseKeys[0], c.Key, v1m, math.MaxUint64)
	r := newRoguePrep(t, c.Trust(), c.Key, "rogue-huge", func(path string) {
		b, err := json.Marshal(map[string]any{
			"version": 1, "highest": map[string]uint64{"hello@default": math.MaxUint64},
			"desired": []release.SignedDesiredState{huge},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if seq := r.node.HighestSeq("hello@default"); seq != math.MaxUint64 {
		t.Fatalf("rogue holds seq %d", seq)
	}
	before := sumStats(nodes).RefusedInvalid
	if err := r.node.Join(ctx, []string{nodes[0].GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "every agent refuses the state", func() bool {
		for _, n := range nodes {
			if n.GossipStats().RefusedInvalid == 0 {
				return false
			}
		}
		return true
	})
	if got := sumStats(nodes).RefusedInvalid; got <= before {
		t.Fatalf("RefusedInvalid %d, was %d", got, before)
	}
	for _, n := range nodes {
		if d, ok := n.Desired("hello"); !ok || d.Sequence > v1.Sequence+release.MaxSequenceJump {
			t.Fatalf("%s holds seq %d", n.Name(), d.Sequence)
		}
	}

	v2, err := c.Publish(ctx, makeApp(t, "2.0.0", 256<<10), "hello", "2.0.0")
	if err != nil {
		t.Fatalf("publish after the refused state: %v", err)
	}
	if err := c.WaitActive(ctx, "hello", v2.ReleaseID, nodes); err != nil {
		t.Fatal(err)
	}
}

package seeder

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmdeploy/swarm/release"
)

// postManifest publishes sm with the given body over plain HTTP, as an
// attacker with access to the API (and its token) would: no client, no
// bundle.
func postManifest(t *testing.T, f *fixture, sm release.SignedManifest, body string) (int, PublishResult, string) {
	t.Helper()
	mb, err := json.Marshal(sm)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, f.s.APIURL()+PathReleases, strings.NewReader(body))
	req.Header.Set(ManifestHeader, base64.StdEncoding.EncodeToString(mb))
	resp := f.send(t, req)
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	var res PublishResult
	_ = json.Unmarshal(raw, &res)
	return resp.StatusCode, res, string(raw)
}

// TestPublishReplayRefused: the downgrade of issue 13. A manifest of an
// older release, replayed with an empty body (gossip carries it in the
// desired state's previous field), is refused with 409 and a message that
// names the rollback command; nothing is issued and the store is as it
// was. Publishing the current target again is a no-op that says so.
func TestPublishReplayRefused(t *testing.T) {
	f := startSeeder(t, t.TempDir())
	ctx := context.Background()
	b1 := pack(t, f, appTree(t, "v1", 10<<10), "web", "1.0.0")
	b2 := pack(t, f, appTree(t, "v2", 10<<10), "web", "2.0.0")
	for _, b := range []*Bundle{b1, b2} {
		if _, err := f.c.PublishBundle(ctx, b, nil); err != nil {
			t.Fatal(err)
		}
	}
	d := desiredIn(t, f, "web", "")
	before := storeListing(t, f.store)

	// What an attacker gets from gossip: the previous manifest.
	for name, sm := range map[string]release.SignedManifest{"from the store": b1.Signed, "from gossip": *d.Previous} {
		t.Run(name, func(t *testing.T) {
			code, _, body := postManifest(t, f, sm, "")
			if code != http.StatusConflict || !strings.Contains(body, "swarm rollout rollback web --env default --to 1.0.0") {
				t.Fatalf("replay: HTTP %d %s; want 409 naming the rollback", code, body)
			}
			if now := desiredIn(t, f, "web", ""); now.Sequence != d.Sequence {
				t.Fatalf("replay issued seq %d (was %d)", now.Sequence, d.Sequence)
			}
			if after := storeListing(t, f.store); !slices.Equal(before, after) {
				t.Fatalf("replay changed the store")
			}
		})
	}

	// Through the client, with the bundle: refused the same way.
	_, err := f.c.PublishBundle(ctx, b1, nil)
	refused(t, err, http.StatusConflict, "a publish never moves an environment back")

	// The current target again: 200, same sequence, and it says so.
	code, res, body := postManifest(t, f, b2.Signed, "")
	if code != http.StatusOK || !res.Existed || res.Sequence != d.Sequence || !strings.Contains(res.Note, "already the target") {
		t.Fatalf("republish of the target: HTTP %d %s", code, body)
	}

	// The explicit path still works.
	if _, err := f.c.RollbackTo(ctx, "web", "", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	if tm, _ := desiredIn(t, f, "web", "").Target.Unverified(); tm.Version != "1.0.0" {
		t.Fatalf("rollback --to 1.0.0 targets %s", tm.Version)
	}
	// And a publish does not undo it: 2.0.0 is now also a replay.
	code, _, body = postManifest(t, f, b2.Signed, "")
	if code != http.StatusConflict || !strings.Contains(body, "--to 2.0.0") {
		t.Fatalf("replay of the rolled-back release: HTTP %d %s", code, body)
	}
}

// TestReleaseThreshold: 2 of 3 release keys. One signature stores the
// release and issues nothing; a signature by an unknown key or by the
// rollout key is refused; the second valid one starts the rollout.
func TestReleaseThreshold(t *testing.T) {
	key := testKey(t)
	r1, r2, r3 := releaseKeyOf(key), testKey(t), testKey(t)
	f := startSeederConfig(t, Config{StoreDir: t.TempDir(), Key: key,
		Trust: release.Trust{Release: release.NewKeyring(r1.Public(), r2.Public(), r3.Public()), ReleaseThreshold: 2}})
	ctx := context.Background()
	b1 := pack(t, f, appTree(t, "v1", 10<<10), "web", "1.0.0")

	res, err := f.c.PublishBundle(ctx, b1, nil)
	if err != nil || !res.Pending || res.Signatures != 1 || res.Threshold != 2 || res.Sequence != 0 {
		t.Fatalf("publish with 1 of 2: %+v %v", res, err)
	}
	if _, ok := f.s.Desired("web", ""); ok {
		t.Fatal("a desired state was issued for a release with 1 of 2 signatures")
	}
	info, err := f.c.Release(ctx, "web", "1.0.0")
	if err != nil || !info.Pending || info.Signatures != 1 {
		t.Fatalf("release info: %+v %v", info, err)
	}

	sign := func(k *release.PrivateKey) (PublishResult, error) {
		sig, err := info.Signed.Sign(k)
		if err != nil {
			t.Fatal(err)
		}
		return f.c.AddSignature(ctx, "web", "1.0.0", sig)
	}
	_, err = sign(testKey(t))
	refused(t, err, http.StatusForbidden, "not one of the seeder's release keys")
	_, err = sign(key)
	refused(t, err, http.StatusForbidden, "is a rollout key")
	forged, _ := info.Signed.Sign(r3)
	forged.Sig[0] ^= 1
	_, err = f.c.AddSignature(ctx, "web", "1.0.0", forged)
	refused(t, err, http.StatusForbidden, "bad signature")
	if res, err := sign(r1); err != nil || !res.Existed || res.Signatures != 1 {
		t.Fatalf("second signature by the same key: %+v %v", res, err)
	}
	if _, ok := f.s.Desired("web", ""); ok {
		t.Fatal("a desired state was issued after refused signatures")
	}

	res, err = sign(r2)
	if err != nil || res.Pending || res.Signatures != 2 || res.Sequence != 1 {
		t.Fatalf("second signature: %+v %v", res, err)
	}
	d := desiredIn(t, f, "web", "")
	if n := len(d.Target.Signatures()); n != 2 {
		t.Fatalf("target carries %d signatures, want 2", n)
	}
	if _, err := f.s.trust.VerifyDesired(mustSigned(t, f)); err != nil {
		t.Fatalf("issued state does not verify under 2 of 3: %v", err)
	}

	// A pending release is superseded by one that rolls out first: its
	// last signature later moves nothing back.
	b2 := pack(t, f, appTree(t, "v2", 10<<10), "web", "2.0.0")
	b3 := pack(t, f, appTree(t, "v3", 10<<10), "web", "3.0.0")
	if res, err := f.c.PublishBundle(ctx, b2, nil); err != nil || !res.Pending {
		t.Fatalf("publish 2.0.0: %+v %v", res, err)
	}
	sig3, _ := b3.Signed.Sign(r3)
	if b3.Signed, err = b3.Signed.AddSignature(sig3); err != nil {
		t.Fatal(err)
	}
	if res, err := f.c.PublishBundle(ctx, b3, nil); err != nil || res.Pending || res.Signatures != 2 {
		t.Fatalf("publish 3.0.0 with 2 signatures: %+v %v", res, err)
	}
	info, _ = f.c.Release(ctx, "web", "2.0.0")
	sig2, _ := info.Signed.Sign(r2)
	if res, err := f.c.AddSignature(ctx, "web", "2.0.0", sig2); err != nil || res.Pending || res.Sequence != 0 {
		t.Fatalf("late signature of a superseded release: %+v %v", res, err)
	}
	if tm, _ := desiredIn(t, f, "web", "").Target.Unverified(); tm.Version != "3.0.0" {
		t.Fatalf("target is %s after a late signature of 2.0.0, want 3.0.0", tm.Version)
	}
}

// TestSequenceBound: a state with sequence 2^64-1 signed by the seeder's
// own rollout key is refused; a publish afterwards still works.
func TestSequenceBound(t *testing.T) {
	f := startSeeder(t, t.TempDir())
	b1 := pack(t, f, appTree(t, "v1", 10<<10), "web", "1.0.0")
	sd, err := release.SignDesired(release.DesiredState{
		App: "web", Sequence: math.MaxUint64, Target: b1.Signed, Issued: time.Now().UTC(),
	}, f.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.gossip.Publish(sd); err == nil {
		t.Fatal("a state with sequence 2^64-1 was accepted")
	}
	res, err := f.c.PublishBundle(context.Background(), b1, nil)
	if err != nil || res.Sequence != 1 {
		t.Fatalf("publish after the refused state: %+v %v", res, err)
	}
}

func mustSigned(t *testing.T, f *fixture) release.SignedDesiredState {
	t.Helper()
	_, sd, ok := f.s.gossip.Desired(release.StateKey("web", ""))
	if !ok {
		t.Fatal("no desired state")
	}
	return sd
}

func testKey(t *testing.T) *release.PrivateKey {
	t.Helper()
	k, err := release.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

package gossip

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math"
	"path/filepath"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/swarmdeploy/swarm/release"
)

// signRaw signs payload as a desired state exactly as given, so tests can
// build envelopes that release.SignDesired would refuse to make.
func signRaw(t *testing.T, k *release.PrivateKey, payload []byte) release.SignedDesiredState {
	t.Helper()
	pemBytes, err := k.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	priv, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	const domain = "swarm/desired-state/v1\n" // release.domainDesired
	sig := ed25519.Sign(priv.(ed25519.PrivateKey), append([]byte(domain), payload...))
	return release.SignedDesiredState{Envelope: release.Envelope{Payload: payload, KeyID: k.ID(), Sig: sig}}
}

func mustMsg(t *testing.T, sd release.SignedDesiredState) []byte {
	t.Helper()
	msg, err := encodeDesired(sd, maxBroadcast(false))
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestRefusedStatesChangeNothing(t *testing.T) {
	k, stranger := newKey(t), newKey(t)
	good := desired(t, k, "web", 2)

	tampered := desired(t, k, "web", 5)
	tampered.Sig = bytes.Clone(tampered.Sig)
	tampered.Sig[0] ^= 1

	var indented bytes.Buffer
	if err := json.Indent(&indented, desired(t, k, "web", 6).Payload, "", " "); err != nil {
		t.Fatal(err)
	}
	nonCanonical := signRaw(t, k, indented.Bytes())

	d, err := desired(t, k, "web", 7).Unverified()
	if err != nil {
		t.Fatal(err)
	}
	d.Plan.Steps = []release.Step{{Percent: 50}, {Percent: 20}} // decreasing: invalid
	bad, _ := json.Marshal(d)
	invalidFields := signRaw(t, k, bad)

	// Target manifest signed by a stranger inside a state signed by k.
	d2, _ := desired(t, k, "web", 8).Unverified()
	d2.Target = manifest(t, stranger, "web", "9.9.9")
	b2, _ := json.Marshal(d2)
	strangeTarget := signRaw(t, k, b2)

	otherApp, _ := desired(t, k, "web", 9).Unverified()
	otherApp.Target = manifest(t, k, "api", "1.0.0")
	b3, _ := json.Marshal(otherApp)
	mismatched := signRaw(t, k, b3)

	// Roles: a state signed by the release key, a target signed only by
	// the rollout key.
	byReleaseKey := func() release.SignedDesiredState {
		d, _ := desired(t, k, "web", 10).Unverified()
		sd, err := release.SignDesired(d, releaseKeyOf(k.ID()))
		if err != nil {
			t.Fatal(err)
		}
		return sd
	}()
	rolloutTarget := func() release.SignedDesiredState {
		d, _ := desired(t, k, "web", 11).Unverified()
		m, _ := d.Target.Unverified()
		var err error
		if d.Target, err = release.SignManifest(m, k); err != nil {
			t.Fatal(err)
		}
		sd, err := release.SignDesired(d, k)
		if err != nil {
			t.Fatal(err)
		}
		return sd
	}()

	tests := []struct {
		name string
		msg  []byte
		want func(Stats) uint64
	}{
		{"unknown key", mustMsg(t, desired(t, stranger, "web", 5)), func(s Stats) uint64 { return s.RefusedUntrusted }},
		{"state signed by a release key", mustMsg(t, byReleaseKey), func(s Stats) uint64 { return s.RefusedUntrusted }},
		{"target signed only by the rollout key", mustMsg(t, rolloutTarget), func(s Stats) uint64 { return s.RefusedUntrusted }},
		{"sequence 2^64-1", mustMsg(t, desired(t, k, "web", math.MaxUint64)), func(s Stats) uint64 { return s.RefusedInvalid }},
		{"sequence one past the jump bound", mustMsg(t, desired(t, k, "web", 2+release.MaxSequenceJump+1)), func(s Stats) uint64 { return s.RefusedInvalid }},
		{"manifest by unknown key", mustMsg(t, strangeTarget), func(s Stats) uint64 { return s.RefusedUntrusted }},
		{"tampered signature", mustMsg(t, tampered), func(s Stats) uint64 { return s.RefusedInvalid }},
		{"non-canonical payload", mustMsg(t, nonCanonical), func(s Stats) uint64 { return s.RefusedInvalid }},
		{"invalid fields", mustMsg(t, invalidFields), func(s Stats) uint64 { return s.RefusedInvalid }},
		{"manifest of another app", mustMsg(t, mismatched), func(s Stats) uint64 { return s.RefusedInvalid }},
		{"garbage json", append([]byte{msgDesired}, "{not json"...), func(s Stats) uint64 { return s.RefusedInvalid }},
		{"garbage deflate", []byte{msgDesiredFlate, 0xff, 0x00, 0x13}, func(s Stats) uint64 { return s.RefusedInvalid }},
		{"stale", mustMsg(t, desired(t, k, "web", 1)), func(s Stats) uint64 { return s.RefusedStale }},
		{"duplicate", mustMsg(t, good), func(s Stats) uint64 { return s.Duplicates }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := startNode(t, testConfig("rx", trustOf(k.Public())))
			if err := n.Publish(good); err != nil {
				t.Fatal(err)
			}
			before := n.Stats()
			queued := n.queue.Len()

			n.handleMsg(tt.msg)

			after := n.Stats()
			if got := tt.want(after) - tt.want(before); got != 1 {
				t.Fatalf("counter moved by %d, want 1 (stats %+v)", got, after)
			}
			if after.Accepted != before.Accepted {
				t.Fatalf("Accepted moved: %+v", after)
			}
			if d, sd, ok := n.Desired("web@default"); !ok || d.Sequence != 2 || !sameEnvelope(sd, good) {
				t.Fatalf("held state changed to seq %d", d.Sequence)
			}
			if n.HighestSeq("web@default") != 2 || len(n.DesiredAll()) != 1 {
				t.Fatalf("highest %d, %d states held", n.HighestSeq("web@default"), len(n.DesiredAll()))
			}
			if q := n.queue.Len(); q != queued {
				t.Fatalf("broadcast queue went from %d to %d", queued, q)
			}
		})
	}
}

// TestSequenceJumpBound: a state with sequence 2^64-1, signed by the trusted
// rollout key, is refused by a node that holds nothing (the bound is then
// absolute) and by a node that holds a state; the next honest state is
// taken afterwards, and a state at exactly the bound is taken.
func TestSequenceJumpBound(t *testing.T) {
	k := newKey(t)
	n := startNode(t, testConfig("rx", trustOf(k.Public())))
	n.handleMsg(mustMsg(t, desired(t, k, "web", math.MaxUint64)))
	if err := n.Publish(desired(t, k, "web", math.MaxUint64)); err == nil || !errors.Is(err, release.ErrInvalid) {
		t.Fatalf("Publish of seq 2^64-1 = %v, want ErrInvalid", err)
	}
	if st := n.Stats(); st.RefusedInvalid != 2 || st.Accepted != 0 {
		t.Fatalf("stats %+v: want both refusals counted invalid, nothing accepted", st)
	}
	if h := n.HighestSeq("web@default"); h != 0 {
		t.Fatalf("highest %d after refusals, want 0", h)
	}
	if err := n.Publish(desired(t, k, "web", 1)); err != nil {
		t.Fatalf("honest state after the refusal: %v", err)
	}
	n.handleMsg(mustMsg(t, desired(t, k, "web", math.MaxUint64)))
	if err := n.Publish(desired(t, k, "web", 1+release.MaxSequenceJump)); err != nil {
		t.Fatalf("state at the bound: %v", err)
	}
	if h := n.HighestSeq("web@default"); h != 1+release.MaxSequenceJump {
		t.Fatalf("highest %d", h)
	}
}

func TestPublishRefusals(t *testing.T) {
	k, stranger := newKey(t), newKey(t)
	n := startNode(t, testConfig("seeder", trustOf(k.Public())))
	tampered := desired(t, k, "web", 3)
	tampered.Sig = bytes.Clone(tampered.Sig)
	tampered.Sig[10] ^= 0x80

	tests := []struct {
		name string
		sd   release.SignedDesiredState
		want error
	}{
		{"unknown key", desired(t, stranger, "web", 3), release.ErrUnknownKey},
		{"tampered", tampered, release.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := n.Publish(tt.sd); !errors.Is(err, tt.want) {
				t.Fatalf("Publish = %v, want %v", err, tt.want)
			}
		})
	}
	if st := n.Stats(); st.RefusedUntrusted != 1 || st.RefusedInvalid != 1 || st.Accepted != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, _, ok := n.Desired("web@default"); ok {
		t.Fatal("a refused state is held")
	}

	unstarted, err := New(testConfig("x", trustOf(k.Public())), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := unstarted.Publish(desired(t, k, "web", 1)); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Publish before Start = %v", err)
	}
}

func TestRefusalLoggedOnce(t *testing.T) {
	k, stranger := newKey(t), newKey(t)
	core, logs := observer.New(zapcore.DebugLevel)
	n := startNodeLogger(t, testConfig("rx", trustOf(k.Public())), zap.New(core))
	if err := n.Publish(desired(t, k, "web", 5)); err != nil {
		t.Fatal(err)
	}
	untrusted := mustMsg(t, desired(t, stranger, "web", 9))
	stale := mustMsg(t, desired(t, k, "web", 4))
	for range 3 {
		n.handleMsg(untrusted)
		n.handleMsg(stale)
		n.handleMsg(mustMsg(t, desired(t, k, "web", 5))) // duplicate: never logged
	}
	if st := n.Stats(); st.RefusedUntrusted != 3 || st.RefusedStale != 3 || st.Duplicates != 3 {
		t.Fatalf("stats %+v", st)
	}
	refusals := logs.FilterMessage("refused desired state")
	if got := refusals.FilterField(zap.String("reason", reasonUntrusted)).Len(); got != 1 {
		t.Errorf("untrusted logged %d times, want 1", got)
	}
	if got := refusals.FilterField(zap.String("reason", reasonStale)).Len(); got != 1 {
		t.Errorf("stale logged %d times, want 1", got)
	}
	if got := refusals.Len(); got != 2 {
		t.Errorf("%d refusal lines, want 2", got)
	}
	for _, e := range refusals.All() {
		if e.ContextMap()["key_id"] == "" || e.ContextMap()["app"] != "web" {
			t.Errorf("refusal log lacks app or key_id: %v", e.ContextMap())
		}
	}
}

func TestNewerStateReplacesQueuedBroadcast(t *testing.T) {
	k := newKey(t)
	// Alone, the node has nobody to gossip to, so its queue keeps what it
	// holds.
	n := startNode(t, testConfig("solo", trustOf(k.Public())))
	for seq := uint64(1); seq <= 3; seq++ {
		if err := n.Publish(desired(t, k, "web", seq)); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Publish(desired(t, k, "api", 1)); err != nil {
		t.Fatal(err)
	}
	if q := n.queue.Len(); q != 2 {
		t.Fatalf("%d broadcasts queued, want one per app", q)
	}
	msgs := n.queue.Broadcasts(0, 1<<20)
	var seen []uint64
	for _, m := range msgs {
		sd, err := decodeDesired(m)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := sd.Unverified()
		if d.App == "web" {
			seen = append(seen, d.Sequence)
		}
	}
	if len(seen) != 1 || seen[0] != 3 {
		t.Fatalf("queued web sequences %v, want [3]", seen)
	}
}

func TestPushPullCarriesAllStates(t *testing.T) {
	k := newKey(t)
	ring := trustOf(k.Public())
	src := startNode(t, testConfig("src", ring))
	dst := startNode(t, testConfig("dst", ring))
	for _, app := range []string{"web", "api", "worker"} {
		if err := src.Publish(desired(t, k, app, 2)); err != nil {
			t.Fatal(err)
		}
	}
	dst.mergeRemote(src.localState())
	if got, want := len(dst.DesiredAll()), 3; got != want {
		t.Fatalf("merged %d states, want %d", got, want)
	}
	// Merging again: all duplicates.
	dst.mergeRemote(src.localState())
	if st := dst.Stats(); st.Accepted != 3 || st.Duplicates != 3 {
		t.Fatalf("stats %+v", st)
	}
	dst.mergeRemote([]byte{msgPushPull, '{'})
	if st := dst.Stats(); st.RefusedInvalid != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// BenchmarkAcceptNewState measures what a node does before it passes a new
// desired state on: verify the signatures, persist it (written and synced)
// and queue it. The simulator's gossip model (bench/sim GossipModel.Accept)
// takes its default per-hop cost from this figure.
func BenchmarkAcceptNewState(b *testing.B) {
	k := newKey(b)
	cfg := testConfig("bench", trustOf(k.Public()))
	cfg.StatePath = filepath.Join(b.TempDir(), "gossip-state.json")
	n := startNodeLogger(b, cfg, zap.NewNop())
	states := make([]release.SignedDesiredState, b.N)
	for i := range states {
		states[i] = desired(b, k, "web", uint64(i+1))
	}
	b.ResetTimer()
	for i := range b.N {
		if err := n.Publish(states[i]); err != nil {
			b.Fatal(err)
		}
	}
}

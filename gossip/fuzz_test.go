package gossip

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/release"
)

// One fuzz target per message this package reads off the network: a
// desired state (msgDesired, msgDesiredFlate), an app-state broadcast
// (msgApps), a push/pull state (MergeRemoteState's input) and node meta.
// FuzzDecodeRecord (apps_test.go) covers the app-state record alone. Each
// feeds its input through the path a message takes and checks what must
// hold for any input: nothing is taken without a valid signature, every
// message is counted once, the caps hold, and what decodes encodes back
// to the same thing.
//
// Their seed corpora, in testdata/fuzz/FuzzXxx/, are written by
// TestFuzzSeeds with -update-seeds from fuzzSeeds below: signed with a key
// derived from a fixed seed, so the valid seeds verify and the files do
// not change from run to run.

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the fuzz seed corpora in testdata/fuzz/")

// fuzzKey is the rollout key the fuzz targets trust: fixed, so that the
// committed seeds verify.
func fuzzKey(tb testing.TB) *release.PrivateKey {
	tb.Helper()
	k, err := release.GenerateKey(bytes.NewReader(make([]byte, 64)))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// fuzzRing trusts fuzzKey.
func fuzzRing(tb testing.TB) release.Trust { return trustOf(fuzzKey(tb).Public()) }

// strangerKey is another fixed key, not trusted.
func strangerKey(tb testing.TB) *release.PrivateKey {
	tb.Helper()
	k, err := release.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{1}, 64)))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// fuzzNode is an offline node trusting ring (fuzzRing), with member "x"
// of generation 3 (the seeds' app-state owner) joined.
func fuzzNode(tb testing.TB, ring release.Trust) *Node {
	tb.Helper()
	n, err := New(testConfig("rx", ring), zap.NewNop())
	if err != nil {
		tb.Fatal(err)
	}
	joinOffline(n, "x", 3)
	return n
}

// storedDeflate frames b as deflate stored blocks: what the push/pull
// target wraps the inner stream in, so that the fuzzer mutates the
// structure rather than compressed bits.
func storedDeflate(b []byte) []byte {
	out := make([]byte, 0, len(b)+5*(len(b)/65535+1))
	for {
		chunk := b[:min(len(b), 65535)]
		b = b[len(chunk):]
		final := byte(0)
		if len(b) == 0 {
			final = 1
		}
		out = append(out, final)
		out = binary.LittleEndian.AppendUint16(out, uint16(len(chunk)))
		out = binary.LittleEndian.AppendUint16(out, ^uint16(len(chunk)))
		out = append(out, chunk...)
		if final == 1 {
			return out
		}
	}
}

// rawPushPull marks a push/pull input as the inflated stream, to be
// wrapped by storedDeflate: its first byte.
const rawPushPull = 0

// innerStream is the inflated stream of a msgPushPullFlate message, with
// rawPushPull in front.
func innerStream(tb testing.TB, states []release.SignedDesiredState, records [][]byte) []byte {
	tb.Helper()
	js, err := json.Marshal(pushPull{Desired: states})
	if err != nil {
		tb.Fatal(err)
	}
	b := binary.AppendUvarint([]byte{rawPushPull}, uint64(len(js)))
	b = append(b, js...)
	b = binary.AppendUvarint(b, uint64(len(records)))
	for _, r := range records {
		b = binary.AppendUvarint(b, uint64(len(r)))
		b = append(b, r...)
	}
	return b
}

// fuzzSeeds are the seed inputs of each target, by target and name: a few
// small valid inputs and the malformed shapes the tests refuse.
func fuzzSeeds(tb testing.TB) map[string]map[string][]byte {
	tb.Helper()
	k, stranger := fuzzKey(tb), strangerKey(tb)
	web1, web2 := desired(tb, k, "web", 1), desired(tb, k, "web", 2)
	tampered := desired(tb, k, "api", 3)
	tampered.Sig = bytes.Clone(tampered.Sig)
	tampered.Sig[0] ^= 1
	msg := func(sd release.SignedDesiredState, limit int) []byte {
		m, err := encodeDesired(sd, limit)
		if err != nil {
			tb.Fatal(err)
		}
		return m
	}

	own := owner(tb, "x", 3)
	if err := own.SetApps(manyApps(2, 0)); err != nil {
		tb.Fatal(err)
	}
	parts := sent(own)
	record := own.ownRecord()[0]
	if err := own.SetApps(nil); err != nil {
		tb.Fatal(err)
	}
	bare := sent(own)[0]
	h, ps, err := decodeRecord(record, true)
	if err != nil {
		tb.Fatal(err)
	}
	wrongDigest := h
	wrongDigest.digest[0] ^= 1
	tooMany := h
	tooMany.count = MaxApps + 1

	pp := func(states []release.SignedDesiredState, records [][]byte) []byte {
		b, err := encodePushPull(states, records)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	legacy, err := json.Marshal(pushPull{Desired: []release.SignedDesiredState{web1}})
	if err != nil {
		tb.Fatal(err)
	}
	overSection := binary.AppendUvarint([]byte{rawPushPull}, maxDesiredSection+1)

	meta := func(role Role, torrent, env string, gen uint64) []byte {
		b, err := encodeMeta("n", role, torrent, env, gen, nil)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}

	return map[string]map[string][]byte{
		"FuzzDesiredMsg": {
			"valid":       msg(web1, maxBroadcast(false)),
			"valid-flate": msg(web2, 64), // a limit this small deflates it
			"untrusted":   msg(desired(tb, stranger, "web", 3), maxBroadcast(false)),
			"tampered":    msg(tampered, maxBroadcast(false)),
			"garbage":     append([]byte{msgDesired}, `{"payload":{"app":"web","seq":9},"key":"x","sig":"AA=="}`...),
			"bad-flate":   {msgDesiredFlate, 0xff, 0x00, 0x13},
		},
		"FuzzAppMsg": {
			"part":         parts[0],
			"bare-header":  bare,
			"truncated":    parts[1][:len(parts[1])-3],
			"wrong-digest": encodeAppMsg(wrongDigest, ps[:1]),
			"33-apps":      encodeAppMsg(tooMany, ps[:1]),
			"huge-length":  binary.AppendUvarint([]byte{msgApps}, 1<<40),
		},
		"FuzzMergeRemoteState": {
			"valid":        pp([]release.SignedDesiredState{web2, desired(tb, k, "api", 1)}, [][]byte{record}),
			"valid-raw":    innerStream(tb, []release.SignedDesiredState{web1}, [][]byte{record}),
			"flood-raw":    innerStream(tb, floodStates(6, k.ID()), nil),
			"legacy":       append([]byte{msgPushPull}, legacy...),
			"over-section": overSection,
			"records-raw":  innerStream(tb, nil, [][]byte{record, record[:10], make([]byte, 3)}),
			"garbage":      {msgPushPullFlate, 0x01, 0x02},
		},
		"FuzzDecodeMeta": {
			"agent":        meta(RoleAgent, "127.0.0.1:6881", "", 1733540000000000000),
			"seeder-env":   meta(RoleSeeder, "10.0.0.1:6881", "prod", 7),
			"empty":        {},
			"unknown-role": []byte(`{"r":"relay","t":"h:1","g":1}`),
			"bad-env":      []byte(`{"r":"agent","e":"Prod/../x"}`),
			"garbage":      []byte(`{"r":`),
		},
	}
}

// TestFuzzSeeds checks that the committed seed corpora are what fuzzSeeds
// makes; -update-seeds rewrites them.
func TestFuzzSeeds(t *testing.T) {
	for target, seeds := range fuzzSeeds(t) {
		dir := filepath.Join("testdata", "fuzz", target)
		if *updateSeeds {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for name, b := range seeds {
			path := filepath.Join(dir, name)
			want := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(b)))
			if *updateSeeds {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s is missing or stale (%v); run go test ./gossip -run TestFuzzSeeds -update-seeds", path, err)
			}
		}
	}

	// The valid seeds are taken, so the fuzzer starts from inputs that
	// reach the end of each path.
	seeds, ring := fuzzSeeds(t), fuzzRing(t)
	n := fuzzNode(t, ring)
	n.handleMsg(seeds["FuzzDesiredMsg"]["valid"])
	n.handleMsg(seeds["FuzzDesiredMsg"]["valid-flate"])
	if st := n.Stats(); st.Accepted != 2 {
		t.Errorf("valid desired-state seeds: %+v", st)
	}
	n = fuzzNode(t, ring)
	n.mergeRemote(seeds["FuzzMergeRemoteState"]["valid"])
	if st := n.Stats(); st.Accepted != 2 || st.AppRecords != 1 {
		t.Errorf("valid push/pull seed: %+v", st)
	}
	n = fuzzNode(t, ring)
	n.handleApps(seeds["FuzzAppMsg"]["part"])
	if st := n.Stats(); st.AppRefused != 0 || n.appQueue.Len() != 1 {
		t.Errorf("valid app-state seed: %+v", st)
	}
}

// desiredCounters sums the counters one desired state moves exactly once.
func desiredCounters(s Stats) uint64 {
	return s.Accepted + s.Duplicates + s.RefusedUntrusted + s.RefusedStale + s.RefusedInvalid + s.RefusedOverCap
}

// checkHeldVerify fails unless every state n holds verifies against ring
// and no more than MaxDesiredStates are held.
func checkHeldVerify(t *testing.T, n *Node, ring release.Trust) {
	t.Helper()
	all := n.DesiredAll()
	if len(all) > MaxDesiredStates {
		t.Fatalf("holds %d states, over %d", len(all), MaxDesiredStates)
	}
	for _, sd := range all {
		if _, err := ring.VerifyDesired(sd); err != nil {
			t.Fatalf("holds a state that does not verify: %v", err)
		}
	}
}

// FuzzDesiredMsg feeds a desired-state message to a node: it is counted
// exactly once, its signature checked at most once, and taken only if it
// verifies; what decodes re-encodes to a message that decodes alike.
func FuzzDesiredMsg(f *testing.F) {
	ring := fuzzRing(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) == 0 || (msg[0] != msgDesired && msg[0] != msgDesiredFlate) {
			return
		}
		n := fuzzNode(t, ring)
		n.handleMsg(msg)
		st := n.Stats()
		if c := desiredCounters(st); c != 1 {
			t.Fatalf("counted %d times: %+v", c, st)
		}
		if st.Verifications > 1 {
			t.Fatalf("%d signature checks for one state", st.Verifications)
		}
		checkHeldVerify(t, n, ring)
		if st.Accepted == 1 && n.queue.Len() != 1 {
			t.Fatalf("accepted but %d queued", n.queue.Len())
		}

		sd, err := decodeDesired(msg)
		if err != nil {
			return
		}
		again, err := encodeDesired(sd, maxBroadcast(false))
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		sd2, err := decodeDesired(again)
		if errors.Is(err, errOverCap) {
			return // re-encoding escapes HTML characters, and grew past the cap
		}
		if err != nil {
			t.Fatalf("re-encoded state does not decode: %v", err)
		}
		if st.Accepted == 1 && !sameEnvelope(sd, sd2) {
			t.Fatal("an accepted state does not survive re-encoding")
		}
		if sd.KeyID != sd2.KeyID || !bytes.Equal(sd.Sig, sd2.Sig) {
			t.Fatal("re-encoding changed the key or signature")
		}
	})
}

// FuzzAppMsg feeds an app-state broadcast to a node that has member x:
// it is refused (counted once) or decodes within the bounds; only x's apps
// are ever shown, valid and at most MaxApps; a message passed on is the
// one received; and what decodes re-encodes alike.
func FuzzAppMsg(f *testing.F) {
	ring := fuzzRing(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) == 0 || msg[0] != msgApps {
			return
		}
		n := fuzzNode(t, ring)
		n.handleApps(msg)
		st := n.Stats()
		h, parts, err := decodeRecord(msg[1:], false)
		switch {
		case err != nil && st.AppRefused != 1:
			t.Fatalf("undecodable (%v) but refused %d times", err, st.AppRefused)
		case err == nil && st.AppRefused != 0:
			t.Fatalf("decodes but refused %d times", st.AppRefused)
		case st.AppRefusedOverCap != 0:
			t.Fatal("a broadcast counted as a push/pull refusal")
		}
		for _, m := range n.Members() {
			if m.Name != "x" && len(m.Apps) > 0 {
				t.Fatalf("shows apps of %s, not a member", m.Name)
			}
			if len(m.Apps) > MaxApps {
				t.Fatalf("shows %d apps", len(m.Apps))
			}
			if err := checkApps(m.Apps); err != nil {
				t.Fatalf("shows invalid apps: %v", err)
			}
		}
		if q := n.appQueue.Broadcasts(0, 1<<20); len(q) > 0 && (len(q) != 1 || !bytes.Equal(q[0], msg)) {
			t.Fatalf("passed on %d messages, not the one received", len(q))
		}
		if err != nil {
			return
		}
		if h.count > MaxApps || len(parts) > 1 || h.seq < h.epoch {
			t.Fatalf("bounds broken: %+v, %d parts", h, len(parts))
		}
		h2, parts2, err := decodeRecord(encodeAppMsg(h, parts)[1:], false)
		if err != nil || h2 != h || len(parts2) != len(parts) {
			t.Fatalf("re-encoded message does not decode alike: %v", err)
		}
		for i := range parts {
			if parts2[i].state != parts[i].state || parts2[i].seq != parts[i].seq {
				t.Fatalf("part %d: %+v, was %+v", i, parts2[i].state, parts[i].state)
			}
		}
	})
}

// FuzzMergeRemoteState merges a push/pull state, as given or (first byte
// rawPushPull) as the inflated stream of a msgPushPullFlate: at most
// MaxDesiredStates signatures are checked, only verified states are held,
// every decoded or refused state is counted, and what decodes re-encodes
// to what decodes alike.
func FuzzMergeRemoteState(f *testing.F) {
	ring := fuzzRing(f)
	f.Fuzz(func(t *testing.T, buf []byte) {
		if len(buf) > 0 && buf[0] == rawPushPull {
			buf = append([]byte{msgPushPullFlate}, storedDeflate(buf[1:])...)
		}
		n := fuzzNode(t, ring)
		n.mergeRemote(buf)
		st := n.Stats()
		if st.Verifications > MaxDesiredStates {
			t.Fatalf("%d signature checks in one push/pull", st.Verifications)
		}
		if st.Accepted > st.Verifications {
			t.Fatalf("accepted %d, checked %d", st.Accepted, st.Verifications)
		}
		checkHeldVerify(t, n, ring)

		pps, err := decodePushPull(buf, defaultPushPullLimits)
		if err != nil {
			if len(buf) > 0 && desiredCounters(st) != 1 {
				t.Fatalf("undecodable (%v) but counted %d times", err, desiredCounters(st))
			}
			return
		}
		if len(pps.desired) > MaxDesiredStates || len(pps.records) > maxPushPullRecords {
			t.Fatalf("decoded %d states and %d records, over the caps", len(pps.desired), len(pps.records))
		}
		if got, want := desiredCounters(st), uint64(len(pps.desired)+pps.desiredRefused); got != want {
			t.Fatalf("counted %d states, decoded or refused %d", got, want)
		}
		again, err := encodePushPull(pps.desired, pps.records)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		pps2, err := decodePushPull(again, defaultPushPullLimits)
		if err != nil {
			t.Fatalf("re-encoded state does not decode: %v", err)
		}
		if len(pps2.desired)+pps2.desiredRefused != len(pps.desired) || !slices.EqualFunc(pps2.records, pps.records, bytes.Equal) {
			t.Fatalf("re-encoded: %d states (%d refused) and %d records, was %d and %d",
				len(pps2.desired), pps2.desiredRefused, len(pps2.records), len(pps.desired), len(pps.records))
		}
		for i := range pps2.desired {
			if pps2.desired[i].KeyID != pps.desired[i].KeyID || !bytes.Equal(pps2.desired[i].Sig, pps.desired[i].Sig) {
				t.Fatalf("state %d: key or signature changed", i)
			}
		}
	})
}

// FuzzDecodeMeta decodes node meta as a member advertises it (memberlist
// bounds it to metaLimit): what decodes is a known role, a valid
// environment and a bounded torrent address, and encodes back to meta that
// decodes alike.
func FuzzDecodeMeta(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > metaLimit {
			return
		}
		w, err := decodeMeta(b)
		if err != nil {
			return
		}
		switch w.Role {
		case "", RoleAgent, RoleSeeder:
		default:
			t.Fatalf("decoded unknown role %q", w.Role)
		}
		if w.Env != "" {
			if err := release.ValidateEnv(w.Env); err != nil {
				t.Fatalf("decoded invalid environment: %v", err)
			}
		}
		if len(w.Torrent) > maxTorrentAddr {
			t.Fatalf("decoded a torrent address of %d bytes", len(w.Torrent))
		}
		// Re-encoded unsigned: the signature is checked apart
		// (verifyAnnouncement), against the member's name.
		w.Key, w.Sig = "", nil
		enc, err := encodeMeta("n", w.Role, w.Torrent, w.Env, w.Gen, nil)
		if err != nil {
			if strings.Contains(err.Error(), "over memberlist's") {
				return // JSON escaping made it longer than it came
			}
			t.Fatalf("re-encode: %v", err)
		}
		w2, err := decodeMeta(enc)
		if w.Env == release.DefaultEnv {
			w.Env = "" // encodeMeta leaves the default environment out
		}
		if err != nil || !reflect.DeepEqual(w2, w) {
			t.Fatalf("re-encoded meta decodes to %+v (%v), was %+v", w2, err, w)
		}
	})
}

// TestDecodeMetaRefuses: meta no node of this version could send is
// refused, and the member is then listed with its name and address only.
func TestDecodeMetaRefuses(t *testing.T) {
	for name, b := range map[string]string{
		"unknown role":     `{"r":"relay"}`,
		"invalid env":      `{"e":"Prod/../x"}`,
		"env too long":     `{"e":"` + strings.Repeat("e", 33) + `"}`,
		"long torrent":     `{"t":"` + strings.Repeat("a", maxTorrentAddr+1) + `"}`,
		"not json":         `{"r":`,
		"gen out of range": `{"g":-1}`,
	} {
		if w, err := decodeMeta([]byte(b)); err == nil {
			t.Errorf("%s: decoded as %+v", name, w)
		}
	}
}

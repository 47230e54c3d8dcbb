package gossip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/release"
)

// travelled is apps as Members shows them once gossiped: sorted by app and
// cut to what travels.
func travelled(t testing.TB, apps []AppState) []AppState {
	t.Helper()
	if len(apps) == 0 {
		return nil
	}
	out := make([]AppState, len(apps))
	for i, a := range apps {
		p, err := newPart(1, 0, encodeAppContent(a))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = p.state
	}
	slices.SortFunc(out, func(a, b AppState) int { return strings.Compare(a.App, b.App) })
	return out
}

// manyApps is count apps named app-00…; v varies every field that travels.
func manyApps(count, v int) []AppState {
	out := make([]AppState, count)
	for i := range out {
		out[i] = appVersion(i, v)
	}
	return out
}

func appVersion(i, v int) AppState {
	a := AppState{
		App:       fmt.Sprintf("app-%02d", i),
		Version:   fmt.Sprintf("1.%d.%d", i, v),
		ReleaseID: release.IDOf(fmt.Appendf(nil, "%d@%d", i, v)),
		Phase:     phases[1+(i+v)%(len(phases)-1)],
		Healthy:   (i+v)%2 == 0,
		Stale:     (i+v)%3 == 0,
		Progress:  float64((i*7+v)%1001) / 1000,
		Rate:      int64((i+1)*(v+1)) << 10,
	}
	if a.Phase == PhaseFailed {
		a.Error = fmt.Sprintf("hook exited %d", v)
	}
	if v%2 == 1 { // runs the release before
		a.RunningVersion, a.RunningReleaseID = fmt.Sprintf("1.%d.%d", i, v-1), release.IDOf(fmt.Appendf(nil, "%d@%d", i, v-1))
	}
	a.Refused = refusalCodes[(i+v)%len(refusalCodes)]
	return a
}

// offline is a node that is not started: its app-state code runs without
// a network, driven by the test.
func offline(t testing.TB, name string) *Node {
	t.Helper()
	n, err := New(testConfig(name, trustOf(newKey(t).Public())), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// owner is an offline node whose record has generation gen, so SetApps
// queues broadcasts.
func owner(t testing.TB, name string, gen uint64) *Node {
	t.Helper()
	n := offline(t, name)
	n.self.gen = gen
	return n
}

// sent takes every app-state message n has queued.
func sent(n *Node) [][]byte {
	msgs := n.appQueue.Broadcasts(0, 1<<30)
	n.appQueue.Reset()
	return msgs
}

// joinOffline tells rx that name is a member of generation gen.
func joinOffline(rx *Node, name string, gen uint64) {
	meta, _ := encodeMeta(name, RoleAgent, "", "", gen, nil)
	rx.setMember(&memberlist.Node{Name: name, Addr: []byte{127, 0, 0, 1}, Port: 7946, Meta: meta})
}

func appsOf(n *Node, name string) []AppState {
	m, _ := n.member(name)
	return m.Apps
}

// TestRecordAssemblyNeverMixes drives a record through adds, changes and
// removals and delivers its broadcasts shuffled, duplicated and with a third
// lost: the receiver only ever shows versions the owner had, and a push/pull
// of the owner's record then brings it to the last one.
func TestRecordAssemblyNeverMixes(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			own := owner(t, "owner", 42)
			rx := offline(t, "rx")
			joinOffline(rx, "owner", 42)

			versions := map[string]bool{fmt.Sprint([]AppState(nil)): true}
			var msgs [][]byte
			apps := map[int]AppState{}
			var last []AppState
			for v := range 40 {
				switch k := rng.IntN(10); {
				case k < 6 || len(apps) == 0: // change or add one
					i := rng.IntN(MaxApps)
					apps[i] = appVersion(i, v)
				case k < 8: // change several
					for i := range apps {
						if rng.IntN(2) == 0 {
							apps[i] = appVersion(i, v)
						}
					}
				default: // remove one
					for i := range apps {
						delete(apps, i)
						break
					}
				}
				list := slices.Collect(func(yield func(AppState) bool) {
					for _, a := range apps {
						if !yield(a) {
							return
						}
					}
				})
				last = travelled(t, list)
				versions[fmt.Sprint(last)] = true
				if err := own.SetApps(list); err != nil {
					t.Fatal(err)
				}
				msgs = append(msgs, sent(own)...)
			}
			if got := appsOf(own, "owner"); got != nil {
				t.Fatal("an offline node lists itself") // no member entry before Start
			}

			rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
			for _, m := range msgs {
				for range rng.IntN(3) { // lost (a third), once or twice
					rx.handleApps(m)
					if got := appsOf(rx, "owner"); !versions[fmt.Sprint(got)] {
						t.Fatalf("receiver shows a version the owner never had: %v", got)
					}
				}
			}
			rx.mergeRecords(own.ownRecord(), 0)
			if got := appsOf(rx, "owner"); !reflect.DeepEqual(got, last) {
				t.Fatalf("after push/pull the receiver shows\n%v\nwant\n%v", got, last)
			}
			if st := rx.Stats(); st.AppRefused != 0 || st.AppRecords == 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestRecordInOrderNeedsNoPushPull: every broadcast delivered once, in
// order, brings each version in turn; only new messages are passed on.
func TestRecordInOrderNeedsNoPushPull(t *testing.T) {
	own := owner(t, "owner", 7)
	rx := offline(t, "rx")
	joinOffline(rx, "owner", 7)
	steps := [][]AppState{
		manyApps(32, 0),
		append(manyApps(31, 0), appVersion(31, 1)), // one app of 32 changes
		manyApps(3, 2), // 29 removed, 3 changed: a new epoch
		nil,            // none left: a bare header
		manyApps(1, 3),
	}
	for i, apps := range steps {
		if err := own.SetApps(apps); err != nil {
			t.Fatal(err)
		}
		msgs := sent(own)
		if i == 1 && len(msgs) != 1 {
			t.Fatalf("changing one app of 32 sent %d messages, want 1", len(msgs))
		}
		for _, m := range msgs {
			rx.handleApps(m)
		}
		if got, want := appsOf(rx, "owner"), travelled(t, apps); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: receiver shows %v, want %v", i, got, want)
		}
		relayed := sent(rx)
		if len(relayed) != len(msgs) {
			t.Fatalf("step %d: %d messages passed on, want all %d", i, len(relayed), len(msgs))
		}
		for _, m := range msgs {
			rx.handleApps(m)
		}
		if q := rx.appQueue.Len(); q != 0 {
			t.Fatalf("step %d: copies already held were passed on (%d)", i, q)
		}
	}
	// The same state again sends nothing.
	if err := own.SetApps(steps[len(steps)-1]); err != nil || len(sent(own)) != 0 {
		t.Fatalf("an unchanged state was sent again (%v)", err)
	}
}

// TestRecordGenerations: a record is taken for a member only in the
// generation its meta names; a newer generation replaces the record even if
// it holds fewer apps, whatever order things arrive in.
func TestRecordGenerations(t *testing.T) {
	old, next := owner(t, "x", 100), owner(t, "x", 50) // the clock went back
	rx := offline(t, "rx")
	joinOffline(rx, "x", 100)
	if err := old.SetApps(manyApps(5, 0)); err != nil {
		t.Fatal(err)
	}
	for _, m := range sent(old) {
		rx.handleApps(m)
	}
	if got := appsOf(rx, "x"); len(got) != 5 {
		t.Fatalf("shows %d apps, want 5", len(got))
	}
	if err := next.SetApps(manyApps(2, 1)); err != nil {
		t.Fatal(err)
	}
	newMsgs := sent(next)
	for _, m := range newMsgs {
		rx.handleApps(m) // before memberlist says x restarted: not x's generation
	}
	if got := appsOf(rx, "x"); len(got) != 5 {
		t.Fatalf("took another generation's record: %d apps", len(got))
	}
	joinOffline(rx, "x", 50) // x restarted (memberlist's incarnation decides, not the clock)
	if got := appsOf(rx, "x"); got != nil {
		t.Fatalf("the old generation's apps outlived the restart: %v", got)
	}
	for _, m := range append(sent(old), newMsgs...) {
		rx.handleApps(m)
	}
	rx.mergeRecords(old.ownRecord(), 0)
	if got, want := appsOf(rx, "x"), travelled(t, manyApps(2, 1)); !reflect.DeepEqual(got, want) {
		t.Fatalf("shows %v, want the new generation's %v", got, want)
	}
}

// TestRecordsOfNonMembers: a record heard before the node's join is shown
// once it joins; others expire; the record of a node that left or died is
// no longer shown, carried or passed on, and is dropped after orphanTTL
// unless the node refutes first, which brings it back.
func TestRecordsOfNonMembers(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	rx := offline(t, "rx")
	rx.now = func() time.Time { return now }
	early := owner(t, "early", 9)
	if err := early.SetApps(manyApps(3, 0)); err != nil {
		t.Fatal(err)
	}
	earlyMsgs := sent(early)
	for _, m := range earlyMsgs {
		rx.handleApps(m)
	}
	if _, ok := rx.member("early"); ok || len(rx.Members()) != 0 {
		t.Fatal("a record made a member")
	}
	if q := len(sent(rx)); q != len(earlyMsgs) {
		t.Fatalf("passed on %d of %d messages of a node not yet a member", q, len(earlyMsgs))
	}
	joinOffline(rx, "early", 9)
	if got, want := appsOf(rx, "early"), travelled(t, manyApps(3, 0)); !reflect.DeepEqual(got, want) {
		t.Fatalf("joined node shows %v, want %v", got, want)
	}

	// Expiry: a record of a name that never joins is dropped after
	// orphanTTL.
	ghost := owner(t, "ghost", 1)
	if err := ghost.SetApps(manyApps(1, 0)); err != nil {
		t.Fatal(err)
	}
	for _, m := range sent(ghost) {
		rx.handleApps(m)
	}
	now = now.Add(rx.orphanTTL + time.Second)
	for _, m := range earlyMsgs {
		rx.handleApps(m) // anything sweeps
	}
	rx.memMu.Lock()
	_, kept := rx.peers["ghost"]
	orphans := rx.orphans
	rx.memMu.Unlock()
	if kept || orphans != 0 {
		t.Fatalf("ghost record kept (%v), %d orphans", kept, orphans)
	}
	sent(rx)

	// Gone: not listed, not in push/pull, late copies not passed on, and
	// dropped after orphanTTL.
	rx.removeMember("early")
	if _, ok := rx.member("early"); ok {
		t.Fatal("a node that left is listed")
	}
	if recs := rx.pushPullRecords(); len(recs) != 0 {
		t.Fatalf("push/pull carries %d records after the only member left", len(recs))
	}
	if err := early.SetApps(manyApps(3, 1)); err != nil {
		t.Fatal(err)
	}
	for _, m := range append(earlyMsgs, sent(early)...) {
		rx.handleApps(m)
	}
	if n := rx.appQueue.Len(); n != 0 {
		t.Fatalf("passed on %d messages of a node that left", n)
	}
	now = now.Add(rx.orphanTTL + time.Second)
	rx.mergeRecords(nil, 0) // anything sweeps
	rx.memMu.Lock()
	_, kept = rx.peers["early"]
	rx.memMu.Unlock()
	if kept {
		t.Fatal("the record of a node that left outlived orphanTTL")
	}

	// Dead, then refuting with the same generation: the record is back,
	// with what was heard meanwhile.
	dead := owner(t, "dead", 5)
	joinOffline(rx, "dead", 5)
	if err := dead.SetApps(manyApps(4, 1)); err != nil {
		t.Fatal(err)
	}
	for _, m := range sent(dead) {
		rx.handleApps(m)
	}
	rx.removeMember("dead")
	if _, ok := rx.member("dead"); ok {
		t.Fatal("a dead node is listed")
	}
	if err := dead.SetApps(manyApps(4, 2)); err != nil {
		t.Fatal(err)
	}
	for _, m := range sent(dead) {
		rx.handleApps(m)
	}
	joinOffline(rx, "dead", 5)
	if got, want := appsOf(rx, "dead"), travelled(t, manyApps(4, 2)); !reflect.DeepEqual(got, want) {
		t.Fatalf("refuted node shows %v, want %v", got, want)
	}

	// Bounded: past maxOrphans, records of unknown names are not kept.
	for i := range maxOrphans + 10 {
		o := owner(t, fmt.Sprintf("o%d", i), 1)
		if err := o.SetApps(manyApps(1, 0)); err != nil {
			t.Fatal(err)
		}
		for _, m := range sent(o) {
			rx.handleApps(m)
		}
	}
	rx.memMu.Lock()
	orphans = rx.orphans
	rx.memMu.Unlock()
	if orphans > maxOrphans {
		t.Fatalf("%d orphan records kept, bound %d", orphans, maxOrphans)
	}
}

// TestAppRecordRefusals: what breaks the format or a bound is counted and
// changes nothing.
func TestAppRecordRefusals(t *testing.T) {
	own := owner(t, "x", 3)
	if err := own.SetApps(manyApps(4, 0)); err != nil {
		t.Fatal(err)
	}
	good := sent(own)[0]
	whole := own.ownRecord()[0]
	h, parts, err := decodeRecord(whole, true)
	if err != nil {
		t.Fatal(err)
	}

	tooMany := h
	tooMany.count = MaxApps + 1
	bigPart := parts[0]
	bigPart.raw = append(bytes.Clone(bigPart.raw), make([]byte, maxPartBytes)...)
	wrongDigest := h
	wrongDigest.digest[0] ^= 1
	unsorted := []appPart{parts[1], parts[0], parts[2], parts[3]}
	var lenPrefixTooBig []byte
	lenPrefixTooBig = binary.AppendUvarint(append(lenPrefixTooBig, msgApps), 1<<40)

	msgs := map[string][]byte{
		"empty":           {msgApps},
		"truncated":       good[:len(good)-3],
		"trailing bytes":  append(bytes.Clone(good), 0),
		"huge length":     lenPrefixTooBig,
		"33 apps":         encodeAppMsg(tooMany, parts[:1]),
		"two parts":       encodeAppMsg(h, parts[:2]),
		"part too large":  encodeAppMsg(h, []appPart{bigPart}),
		"sequence 0":      encodeAppMsg(recordHeader{node: "x", gen: 3, count: 1}, parts[:1]),
		"no node":         encodeAppMsg(recordHeader{gen: 3, seq: 1, count: 1}, parts[:1]),
		"record too long": append([]byte{msgApps}, make([]byte, maxRecordBytes+1)...),
	}
	records := map[string][]byte{
		"not whole":    encodeRecord(h, parts[:3]),
		"wrong digest": encodeRecord(wrongDigest, parts),
		"unsorted":     encodeRecord(h, unsorted),
	}
	rx := offline(t, "rx")
	joinOffline(rx, "x", 3)
	for name, m := range msgs {
		before := rx.Stats().AppRefused
		rx.handleApps(m)
		if got := rx.Stats().AppRefused; got != before+1 {
			t.Errorf("%s: refused %d, want 1", name, got-before)
		}
	}
	for name, r := range records {
		before := rx.Stats().AppRefused
		rx.mergeRecords([][]byte{r}, 0)
		if got := rx.Stats().AppRefused; got != before+1 {
			t.Errorf("%s: refused %d, want 1", name, got-before)
		}
	}
	if got := appsOf(rx, "x"); got != nil || rx.appQueue.Len() != 0 || rx.Stats().AppRecords != 0 {
		t.Fatalf("refused input changed the record (%v) or was passed on", got)
	}

	// Push/pull bounds: records past the limit, and a record too large,
	// are counted without being decoded.
	pp, err := encodePushPull(nil, [][]byte{whole, make([]byte, maxRecordBytes+1), whole, whole, whole})
	if err != nil {
		t.Fatal(err)
	}
	st, err := decodePushPull(pp, pushPullLimits{inflated: 1 << 20, section: 1 << 10, desired: 1, records: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.records) != 2 || st.recordsRefused != 3 {
		t.Fatalf("decoded %d records, refused %d; want 2 and 3", len(st.records), st.recordsRefused)
	}
	before := rx.Stats()
	rx.mergeRemote(pp)
	if got, want := appsOf(rx, "x"), travelled(t, manyApps(4, 0)); !reflect.DeepEqual(got, want) {
		t.Fatalf("shows %v after push/pull, want %v", got, want)
	}
	after := rx.Stats()
	if got := after.AppRefusedOverCap - before.AppRefusedOverCap; got != 1 || after.AppRefused != before.AppRefused {
		t.Fatalf("push/pull refusals over a cap counted %d (want 1), invalid ones %d (want 0)", got, after.AppRefused-before.AppRefused)
	}
	// A deflate bomb stops at the inflation bound.
	bomb, err := encodePushPull(nil, slices.Repeat([][]byte{make([]byte, maxRecordBytes)}, 64))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodePushPull(bomb, pushPullLimits{inflated: 1 << 20, section: 1 << 10, desired: 1, records: 100}); !errors.Is(err, errOverCap) {
		t.Fatalf("decoding %d bytes that inflate past the bound: %v", len(bomb), err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	var rec selfRecord
	for _, apps := range [][]AppState{manyApps(1, 0), manyApps(4, 1), nil} {
		if _, _, err := rec.update(contentsOf(apps)); err != nil {
			f.Fatal(err)
		}
		h := rec.header("x")
		f.Add(encodeRecord(h, rec.parts), true)
		if len(rec.parts) > 0 {
			f.Add(encodeRecord(h, rec.parts[:1]), false)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, whole bool) {
		h, parts, err := decodeRecord(b, whole)
		if err != nil {
			return
		}
		if h.count > MaxApps || len(parts) > h.count || h.seq < h.epoch {
			t.Fatalf("bounds broken: %+v, %d parts", h, len(parts))
		}
		again, parts2, err := decodeRecord(encodeRecord(h, parts), whole)
		if err != nil || again != h || len(parts2) != len(parts) {
			t.Fatalf("re-encoded record does not decode alike: %v", err)
		}
	})
}

func contentsOf(apps []AppState) map[string][]byte {
	out := make(map[string][]byte, len(apps))
	for _, a := range apps {
		out[a.App] = encodeAppContent(a)
	}
	return out
}

package gossip

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/release"
)

// TestDesiredStateSize measures what one desired state with target and
// previous manifests costs on the wire, against the one-packet limit.
func TestDesiredStateSize(t *testing.T) {
	k := newKey(t)
	state := func(app, version string) release.SignedDesiredState {
		t.Helper()
		now := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
		prev := manifest(t, k, app, version+"-prev")
		d := release.DesiredState{
			App: app, Sequence: 123456, Target: manifest(t, k, app, version), Previous: &prev,
			Plan: release.Plan{Steps: []release.Step{{Count: 1}, {Percent: 10}, {Percent: 50}, {Percent: 100}}}, Step: 1,
			Issued: now, Expires: now.Add(24 * time.Hour),
		}
		sd, err := release.SignDesired(d, k)
		if err != nil {
			t.Fatal(err)
		}
		return sd
	}
	tests := []struct {
		name, app, version string
	}{
		{"typical", "billing-worker", "1.5.0-rc.1"},
		{"longest names", strings.Repeat("a", 63), strings.Repeat("1", 43)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sd := state(tt.app, tt.version)
			js, _ := json.Marshal(sd)
			for _, encrypted := range []bool{false, true} {
				limit := maxBroadcast(encrypted)
				msg, err := encodeDesired(sd, limit)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s: JSON %d bytes; message %d bytes (type %d); limit %d (encrypted %v)",
					tt.name, len(js), len(msg), msg[0], limit, encrypted)
				if len(msg) > limit {
					t.Errorf("does not fit one packet")
				}
				got, err := decodeDesired(msg)
				if err != nil || !sameEnvelope(got, sd) {
					t.Fatalf("round trip: %v", err)
				}
			}
		})
	}
}

// fleetApp is app slot i on node k of a fleet in the middle of rollouts:
// common app names, two releases per app across the fleet, most nodes
// active and healthy, some downloading.
func fleetApp(i, k int) AppState {
	names := []string{"web", "api", "billing-worker", "search-indexer"}
	app := names[i%len(names)]
	if i >= len(names) {
		app = fmt.Sprintf("%s-%d", app, i/len(names))
	}
	v := k % 2
	a := AppState{
		App:       app,
		Version:   fmt.Sprintf("2.%d.%d", 14+i, v),
		ReleaseID: release.IDOf(fmt.Appendf(nil, "%s@%d", app, v)),
		Phase:     PhaseActive,
		Healthy:   true,
		Progress:  1,
	}
	if k%10 == 0 {
		a.Phase, a.Healthy, a.Progress, a.Rate = PhaseDownloading, false, float64(k%100)/100, 48<<20
	}
	return a
}

// TestAppStateSizes measures what an app-state change costs on the wire:
// one message per changed app, passed on by every node that takes it,
// each time up to RetransmitMult × ceil(log10(N+1)) times.
func TestAppStateSizes(t *testing.T) {
	own := owner(t, "web-04321.prod.dc1", uint64(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC).UnixNano()))
	apps := []AppState{fleetApp(0, 1), fleetApp(1, 1), fleetApp(2, 1), fleetApp(3, 1)}
	if err := own.SetApps(apps); err != nil {
		t.Fatal(err)
	}
	sent(own)
	apps[2] = fleetApp(2, 10) // starts downloading
	if err := own.SetApps(apps); err != nil {
		t.Fatal(err)
	}
	msgs := sent(own)
	if len(msgs) != 1 {
		t.Fatalf("one app changed, %d messages", len(msgs))
	}
	size := len(msgs[0])
	// memberlist adds a 1-byte message type and a 2-byte length in a
	// compound packet.
	const perMsg = 3
	for _, n := range []int{1000, 5000} {
		transmits := defaultRetransmitMult * int(math.Ceil(math.Log10(float64(n+1))))
		t.Logf("one app changed: message %d bytes; with %d nodes each sends it %d times: %.1f MB cluster-wide, %d bytes per node",
			size, n, transmits, float64(n*transmits*(size+perMsg))/1e6, transmits*(size+perMsg))
	}

	big := owner(t, strings.Repeat("n", maxNodeName), ^uint64(0))
	if err := big.SetApps([]AppState{bigApp(0, strings.Repeat("x", maxAppError))}); err != nil {
		t.Fatal(err)
	}
	largest := len(sent(big)[0])
	t.Logf("largest app-state message: %d bytes; one encrypted packet holds %d", largest, maxBroadcast(true))
	if largest > maxBroadcast(true) {
		t.Fatal("the largest app-state message does not fit one packet")
	}
}

// fleetNode returns an offline node that knows members-1 other members,
// each with apps apps, as after push/pulls had run. Each member started at
// its own time and has been through a few updates of its own, so records
// differ in generation, sequences and digest as in a real fleet.
func fleetNode(b *testing.B, members, apps int) (*Node, time.Duration) {
	b.Helper()
	rx, err := New(testConfig("web-00000.prod.dc1", trustOf(newKey(b).Public())), zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC).UnixNano()
	var records [][]byte
	for k := 1; k < members; k++ {
		var rec selfRecord
		rec.gen = uint64(start + rng.Int64N(int64(30*24*time.Hour)))
		list := make([]AppState, apps)
		for u := range 1 + rng.IntN(20) { // downloads in progress, then the state now
			for i := range list {
				list[i] = fleetApp(i, k)
				if rng.IntN(2) == 0 {
					list[i].Phase, list[i].Progress, list[i].Rate = PhaseDownloading, float64(u)/20, rng.Int64N(100<<20)
				}
			}
			if _, _, err := rec.update(contentsOf(list)); err != nil {
				b.Fatal(err)
			}
		}
		for i := range list {
			list[i] = fleetApp(i, k)
		}
		if _, _, err := rec.update(contentsOf(list)); err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("web-%05d.prod.dc1", k)
		joinOffline(rx, name, rec.gen)
		records = append(records, encodeRecord(rec.header(name), rec.parts))
	}
	start = time.Now().UnixNano()
	rx.mergeRecords(records, 0)
	took := time.Duration(time.Now().UnixNano() - start)
	if got := rx.Stats().AppRecords; got != uint64(members-1) {
		b.Fatalf("took %d records, want %d", got, members-1)
	}
	return rx, took
}

// BenchmarkPushPullState measures the push/pull state of one node in a
// fleet (every member's app-state record, deflated; no desired state): its
// size, reported as B/state and B/member, and the time to encode it (ns/op),
// to merge it on a node that already holds it (merge-ns), and to take every
// record as new once inflated (new-merge-ns), as a node that joins does.
func BenchmarkPushPullState(b *testing.B) {
	for _, members := range []int{1000, 5000} {
		for _, apps := range []int{1, 4, 32} {
			if members == 1000 && apps == 32 {
				continue
			}
			b.Run(fmt.Sprintf("members=%d/apps=%d", members, apps), func(b *testing.B) {
				n, fresh := fleetNode(b, members, apps)
				raw := 0
				for _, r := range n.pushPullRecords() {
					raw += len(r)
				}
				var state []byte
				for b.Loop() {
					state = n.localState()
				}
				start := time.Now()
				n.mergeRemote(state)
				merge := time.Since(start)
				b.ReportMetric(float64(len(state)), "B/state")
				b.ReportMetric(float64(len(state))/float64(members), "B/member")
				b.ReportMetric(float64(raw)/float64(members), "raw-B/member")
				b.ReportMetric(float64(merge.Nanoseconds()), "merge-ns")
				b.ReportMetric(float64(fresh.Nanoseconds()), "new-merge-ns")
			})
		}
	}
}

// BenchmarkReceiveAppState is a member taking one app-state change of
// another node (decode, merge, re-queue): what a seeder spends per packet
// a node sends it directly (Node.tellSeeders), and the simulator's
// seeder per-packet cost (bench/sim RollbackConfig.SeederCost).
func BenchmarkReceiveAppState(b *testing.B) {
	tx, rx := owner(b, "tx", 1), offline(b, "rx")
	joinOffline(rx, "tx", 1)
	msgs := make([][]byte, 0, b.N)
	for i := range b.N {
		if err := tx.SetApps([]AppState{fleetApp(i, 0)}); err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, sent(tx)...)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for _, m := range msgs {
		rx.handleMsg(m)
	}
	b.StopTimer()
	if st := rx.Stats(); st.AppRecords == 0 || st.AppRefused != 0 {
		b.Fatalf("took %d records, refused %d", st.AppRecords, st.AppRefused)
	}
}

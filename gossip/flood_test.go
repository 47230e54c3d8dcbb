package gossip

import (
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// testClock is a clock the test moves forward; memberlist's goroutines may
// read it while the test does.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// floodRecords is a push/pull carrying count made-up app-state records,
// each a header naming a node of its own.
func floodRecords(tb testing.TB, count int) []byte {
	tb.Helper()
	records := make([][]byte, count)
	for i := range records {
		records[i] = encodeRecord(recordHeader{node: "ghost-" + strconv.Itoa(i), gen: 1, seq: 1, digest: digestOf(nil)}, nil)
	}
	buf, err := encodePushPull(nil, records)
	if err != nil {
		tb.Fatal(err)
	}
	return buf
}

// gossipLines are the lines the node's own code logged (memberlist's are
// left out), as "level message".
func gossipLines(logs *observer.ObservedLogs) []string {
	var out []string
	for _, e := range logs.All() {
		if e.LoggerName == "gossip" {
			out = append(out, e.Level.String()+" "+e.Message+" "+fmt.Sprint(e.ContextMap()))
		}
	}
	return out
}

// TestPushPullFloodBounded merges push/pulls of bogus desired states and
// app-state records: the states past the caps are refused unread (their
// signatures never checked), nothing is accepted, and each cause of
// refusal is logged once a minute, saying how many it held back.
func TestPushPullFloodBounded(t *testing.T) {
	k := newKey(t)
	core, logs := observer.New(zapcore.DebugLevel)
	var clock testClock
	n := startNodePrep(t, testConfig("rx", trustOf(k.Public())), zap.New(core), func(n *Node) { n.now = clock.now })

	tests := []struct {
		name string
		buf  []byte
		// verified is how many states may have their signatures checked,
		// overCap how many are refused unread.
		verified, overCap uint64
	}{
		// 100 000 states take more than the push/pull's 8 MiB of desired
		// states: refused whole, one count, before inflating them.
		{"100k states", floodPushPull(t, floodSize, k.ID()), 0, 1},
		// As many as fit that bound: the first MaxDesiredStates are checked
		// (all claim the trusted key), the rest counted and skipped.
		{"fitting states", floodPushPull(t, floodFitting(), k.ID()), MaxDesiredStates, uint64(floodFitting() - MaxDesiredStates)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for round := range 3 {
				before := n.Stats()
				logs.TakeAll()
				n.mergeRemote(tt.buf)
				st := n.Stats()
				if got := st.Verifications - before.Verifications; got != tt.verified {
					t.Errorf("round %d: %d signature checks, want %d", round, got, tt.verified)
				}
				if got := st.RefusedOverCap - before.RefusedOverCap; got != tt.overCap {
					t.Errorf("round %d: %d refused over a cap, want %d", round, got, tt.overCap)
				}
				if got := st.RefusedInvalid - before.RefusedInvalid; got != tt.verified {
					t.Errorf("round %d: %d refused invalid, want %d", round, got, tt.verified)
				}
				if st.Accepted != 0 || len(n.DesiredAll()) != 0 || n.queue.Len() != 0 {
					t.Fatalf("round %d: accepted %d, holds %d, queued %d", round, st.Accepted, len(n.DesiredAll()), n.queue.Len())
				}
				// The first round of the first flood logs one line per
				// cause; every later one within the minute logs none.
				lines := gossipLines(logs)
				if len(lines) > 2 || (round > 0 && len(lines) > 0) {
					t.Errorf("round %d logged %d lines:\n%s", round, len(lines), strings.Join(lines, "\n"))
				}
			}
		})
	}

	// Made-up records past the records a push/pull may carry are refused
	// unread; the others name no member and are dropped after their
	// header.
	before := n.Stats()
	n.mergeRemote(floodRecords(t, maxPushPullRecords+1000))
	if st := n.Stats(); st.AppRefusedOverCap-before.AppRefusedOverCap != 1000 || st.AppRecords != 0 || st.AppRefused != 0 {
		t.Fatalf("records flood: stats %+v", st)
	}

	// A minute later each cause is logged again, once, with the count it
	// held back.
	logs.TakeAll()
	clock.advance(refusalLogEvery)
	for range 2 {
		n.mergeRemote(tests[1].buf)
	}
	lines := logs.FilterMessage("refused desired state").All()
	if len(lines) != 2 {
		t.Fatalf("after a minute: %d refusal lines, want one per cause:\n%s", len(lines), strings.Join(gossipLines(logs), "\n"))
	}
	for _, e := range lines {
		if s, ok := e.ContextMap()["suppressed"].(uint64); !ok || s == 0 {
			t.Errorf("%v line does not say how many were held back: %v", e.ContextMap()["reason"], e.ContextMap())
		}
	}

	// The node still takes a good state.
	if err := n.Publish(desired(t, k, "web", 1)); err != nil {
		t.Fatal(err)
	}
}

// floodPeer is a bare memberlist member that sends state as its push/pull
// state: what an attacker inside the cluster can send.
type floodPeer struct{ state []byte }

func (p *floodPeer) NodeMeta(int) []byte                 { return nil }
func (p *floodPeer) NotifyMsg([]byte)                    {}
func (p *floodPeer) GetBroadcasts(int, int) [][]byte     { return nil }
func (p *floodPeer) LocalState(bool) []byte              { return p.state }
func (p *floodPeer) MergeRemoteState(buf []byte, _ bool) {}

// TestPushPullFloodEndToEnd joins a member whose push/pull state carries
// bogus desired states to a running node over real memberlist on
// 127.0.0.1: the node checks at most MaxDesiredStates signatures, takes
// nothing and logs a line or two.
func TestPushPullFloodEndToEnd(t *testing.T) {
	k := newKey(t)
	core, logs := observer.New(zapcore.DebugLevel)
	cfg := testConfig("rx", trustOf(k.Public()))
	cfg.PushPullInterval = time.Hour // only the join's push/pull: one flood, whose counts the test reads
	rx := startNodeLogger(t, cfg, zap.New(core))
	if err := rx.Publish(desired(t, k, "web", 1)); err != nil {
		t.Fatal(err)
	}
	logs.TakeAll()

	mc := memberlist.DefaultLANConfig()
	mc.Name, mc.BindAddr, mc.BindPort = "flooder", "127.0.0.1", 0
	mc.Logger = log.New(io.Discard, "", 0)
	mc.ProbeInterval, mc.ProbeTimeout, mc.GossipInterval = 200*time.Millisecond, 100*time.Millisecond, 20*time.Millisecond
	mc.PushPullInterval = 0 // none but the join's
	mc.Delegate = &floodPeer{state: floodPushPull(t, floodFitting(), k.ID())}
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ml.Leave(time.Second)
		_ = ml.Shutdown()
	})
	host, port, _ := net.SplitHostPort(rx.Addr())
	if _, err := ml.Join([]string{net.JoinHostPort(host, port)}); err != nil {
		t.Fatal(err)
	}
	// Counted once the states within the cap have been checked.
	waitFor(t, "the flood is refused", func() bool { return rx.Stats().RefusedOverCap > 0 })

	st := rx.Stats()
	if st.Verifications > 1+MaxDesiredStates { // 1: the state published above
		t.Errorf("%d signature checks, over the cap of %d per push/pull", st.Verifications, MaxDesiredStates)
	}
	if want := uint64(floodFitting() - MaxDesiredStates); st.RefusedOverCap != want {
		t.Errorf("%d refused over the cap, want %d", st.RefusedOverCap, want)
	}
	if st.Accepted != 1 || len(rx.DesiredAll()) != 1 {
		t.Errorf("accepted %d, holds %d; want only the published state", st.Accepted, len(rx.DesiredAll()))
	}
	var refusals []string
	for _, l := range gossipLines(logs) {
		if strings.Contains(l, "refused") {
			refusals = append(refusals, l)
		}
	}
	if len(refusals) > 2 {
		t.Errorf("the flood logged %d refusal lines:\n%s", len(refusals), strings.Join(refusals, "\n"))
	}
	t.Logf("stats %+v; refusal lines:\n%s", st, strings.Join(refusals, "\n"))
}

// TestFloodPushPullEncoding: the hand-written flood is what encodePushPull
// writes for the same states.
func TestFloodPushPullEncoding(t *testing.T) {
	const count = 10
	want := floodStates(count/2, "k1")
	want = append(want, floodStates(count, "0123456789abcdef")[count/2:]...)
	st, err := decodePushPull(floodPushPull(t, count, "k1"), defaultPushPullLimits)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.desired) != count || st.desiredRefused != 0 || len(st.records) != 0 {
		t.Fatalf("decoded %d states, %d refused, %d records", len(st.desired), st.desiredRefused, len(st.records))
	}
	for i := range want {
		if !sameEnvelope(st.desired[i], want[i]) {
			t.Fatalf("state %d: %+v, want %+v", i, st.desired[i], want[i])
		}
	}
}

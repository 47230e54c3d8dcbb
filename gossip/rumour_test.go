package gossip

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/swarmdeploy/swarm/release"
)

// directCluster starts size nodes on one in-memory network with gossip,
// probes and periodic push/pull an hour apart, so that nothing but a direct
// send can carry a state published after it formed. Each node joins every
// earlier one: a join's push/pull exchanges the whole member list, so the
// membership is complete without gossip.
func directCluster(t *testing.T, size int, ring release.Trust, fanout int) []*Node {
	t.Helper()
	network := NewMemNetwork()
	nodes := make([]*Node, size)
	for i := range nodes {
		nodes[i] = startNode(t, directConfig(fmt.Sprintf("node-%02d", i), ring, network, fanout))
		if i > 0 {
			join(t, nodes[i], nodes[:i]...)
		}
	}
	waitFor(t, "every node sees every member", func() bool {
		for _, n := range nodes {
			if n.NumMembers() != size {
				return false
			}
		}
		return true
	})
	return nodes
}

func directConfig(name string, ring release.Trust, network *MemNetwork, fanout int) Config {
	cfg := testConfig(name, ring)
	onMem(network)(&cfg)
	cfg.GossipInterval = time.Hour
	cfg.ProbeInterval = time.Hour
	cfg.ProbeTimeout = time.Second
	cfg.PushPullInterval = time.Hour
	cfg.RumourFanout = fanout
	return cfg
}

func sumStats(nodes []*Node) Stats {
	var s Stats
	for _, n := range nodes {
		st := n.Stats()
		s.Accepted += st.Accepted
		s.Duplicates += st.Duplicates
		s.RefusedUntrusted += st.RefusedUntrusted
		s.RefusedStale += st.RefusedStale
		s.RefusedInvalid += st.RefusedInvalid
		s.DirectSent += st.DirectSent
	}
	return s
}

// TestRumourReachesEveryNodeWithoutGossip: with gossip and push/pull idle,
// a published state still reaches every node, each node sends it on exactly
// once, and copies that arrive later are not sent on.
func TestRumourReachesEveryNodeWithoutGossip(t *testing.T) {
	const size, fanout = 16, 10
	k := newKey(t)
	nodes := directCluster(t, size, trustOf(k.Public()), fanout)

	sd := desired(t, k, "web", 1)
	if err := nodes[0].Publish(sd); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every node holds web seq 1", func() bool { return allHold(nodes, "web", 1) })
	for _, n := range nodes {
		// Still queued everywhere: no broadcast went out, the state came
		// by direct sends alone.
		if q := n.queue.Len(); q != 1 {
			t.Errorf("%s: %d broadcasts queued, want the state still waiting", n.cfg.Name, q)
		}
	}
	// Every node sent it to fanout others once; every copy but the first
	// each node received was a duplicate (nothing is lost in memory).
	waitFor(t, "every copy sent and received", func() bool {
		s := sumStats(nodes)
		return s.DirectSent == size*fanout && s.Duplicates == size*fanout-(size-1)
	})

	// The same state again, by gossip and by direct send: counted as a
	// duplicate, not sent on.
	msg, err := encodeDesired(sd, maxBroadcast(false))
	if err != nil {
		t.Fatal(err)
	}
	before := sumStats(nodes)
	for i, n := range nodes {
		n.handleMsg(msg)
		to := nodes[(i+1)%size]
		if err := n.ml.Load().SendToAddress(memberlist.Address{Addr: to.Addr(), Name: to.cfg.Name}, msg); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the repeated copies counted as duplicates", func() bool {
		return sumStats(nodes).Duplicates == before.Duplicates+2*size
	})
	// And an older one is refused, not sent on.
	if err := nodes[0].Publish(desired(t, k, "web", 2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every node holds web seq 2", func() bool { return allHold(nodes, "web", 2) })
	stale, err := encodeDesired(sd, maxBroadcast(false))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "seq 2 sent once by every node", func() bool { return sumStats(nodes).DirectSent == 2*size*fanout })
	for _, n := range nodes {
		n.handleMsg(stale)
	}
	after := sumStats(nodes)
	if after.Accepted != 2*size || after.RefusedStale != size || after.DirectSent != 2*size*fanout {
		t.Fatalf("after a stale copy to each node: %+v, want %d accepted, %d stale, %d sent",
			after, 2*size, size, 2*size*fanout)
	}
}

// TestRumourRefusesTamperedAndUntrusted: direct sends take the same checks
// as gossip, and a refused state is not sent on.
func TestRumourRefusesTamperedAndUntrusted(t *testing.T) {
	k, rogueKey := newKey(t), newKey(t)
	ring := trustOf(k.Public())
	honest := directCluster(t, 4, ring, 8)

	// The rogue trusts its own key, so it accepts its state and sends it to
	// every member it knows.
	rogue := startNode(t, directConfig("rogue", trustOf(k.Public(), rogueKey.Public()), honest[0].cfg.Network, 8))
	join(t, rogue, honest...)
	waitFor(t, "the rogue knows every honest node", func() bool { return rogue.NumMembers() == len(honest)+1 })
	if err := rogue.Publish(desired(t, rogueKey, "evil", 9)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every honest node refused the rogue state", func() bool {
		for _, n := range honest {
			if n.Stats().RefusedUntrusted != 1 {
				return false
			}
		}
		return true
	})

	// A trusted state with its payload changed after signing, and bytes
	// that are no state at all.
	tampered := desired(t, k, "web", 5)
	tampered.Payload = bytes.Replace(tampered.Payload, []byte(`"seq":5`), []byte(`"seq":6`), 1)
	if bytes.Equal(tampered.Payload, desired(t, k, "web", 5).Payload) {
		t.Fatal("the payload did not change; has its encoding?")
	}
	bad, err := encodeDesired(tampered, maxBroadcast(false))
	if err != nil {
		t.Fatal(err)
	}
	ml := rogue.ml.Load()
	for _, n := range honest {
		for _, msg := range [][]byte{bad, {msgDesired, '{'}} {
			if err := ml.SendToAddress(memberlist.Address{Addr: n.Addr(), Name: n.cfg.Name}, msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "every honest node refused both", func() bool {
		for _, n := range honest {
			if n.Stats().RefusedInvalid != 2 {
				return false
			}
		}
		return true
	})
	for _, n := range honest {
		if st := n.Stats(); st.Accepted != 0 || st.DirectSent != 0 {
			t.Errorf("%s: stats %+v, want nothing accepted or sent", n.cfg.Name, st)
		}
		if len(n.DesiredAll()) != 0 || n.HighestSeq("web@default") != 0 || n.HighestSeq("evil@default") != 0 {
			t.Errorf("%s holds %v", n.cfg.Name, n.DesiredAll())
		}
	}
}

// TestRumourStreamsLargeState: a state too large for any packet still goes
// out directly.
func TestRumourStreamsLargeState(t *testing.T) {
	k := newKey(t)
	nodes := directCluster(t, 3, trustOf(k.Public()), 2)
	sd := desired(t, k, "web", 1)
	js, err := json.Marshal(sd)
	if err != nil {
		t.Fatal(err)
	}
	// Padding JSON accepts: the same signed state, too large for a packet.
	msg := append(append([]byte{msgDesired}, js...), bytes.Repeat([]byte(" "), 2*udpBufferSize)...)
	d, err := nodes[0].cfg.Trust.VerifyDesired(sd)
	if err != nil {
		t.Fatal(err)
	}
	// Node 0 only sends it; its peers accept it and send it on, back to
	// node 0 too, which then accepts it and sends it on: 2 from each.
	nodes[0].rumour(d, msg)
	waitFor(t, "every node holds the state and every copy is counted", func() bool {
		return allHold(nodes, "web", 1) && sumStats(nodes).DirectSent == 2+3*2
	})
}

func TestRumourFanout(t *testing.T) {
	tests := []struct {
		configured, members, want int
	}{
		{-1, 1000, 0},
		{5, 1000, 5},
		{64, 2, 64}, // randomPeers bounds it by the members there are
		{0, 0, minRumourFanout},
		{0, 1, minRumourFanout},
		{0, 16, 6},    // ceil(2.77)+3
		{0, 1000, 10}, // ceil(6.91)+3
		{0, 5000, 12},
		{0, 1_000_000, maxRumourFanout},
	}
	for _, tt := range tests {
		if got := RumourFanout(tt.configured, tt.members); got != tt.want {
			t.Errorf("RumourFanout(%d, %d) = %d, want %d", tt.configured, tt.members, got, tt.want)
		}
	}
}

func TestRandomPeers(t *testing.T) {
	n, err := New(Config{Name: "self", Trust: trustOf(newKey(t).Public())}, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"self"}
	for i := range 20 {
		names = append(names, fmt.Sprintf("m%02d", i))
	}
	for _, name := range names {
		n.members[name] = NodeState{Name: name, Addr: "127.0.0.1:7946"}
	}
	picked := map[string]int{}
	for range 200 {
		got := n.randomPeers(5)
		if len(got) != 5 {
			t.Fatalf("picked %d peers, want 5", len(got))
		}
		seen := map[string]bool{}
		for _, p := range got {
			if p.Name == "self" || seen[p.Name] {
				t.Fatalf("picked %v: self or twice", got)
			}
			seen[p.Name] = true
			picked[p.Name]++
		}
	}
	if len(picked) != 20 {
		t.Errorf("200 draws of 5 picked only %d of 20 members", len(picked))
	}
	all := n.randomPeers(100)
	got := make([]string, len(all))
	for i, p := range all {
		got[i] = p.Name
	}
	slices.Sort(got)
	if !slices.Equal(got, names[1:]) {
		t.Errorf("randomPeers(100) = %v, want every other member", got)
	}
	if n.randomPeers(0) != nil {
		t.Error("randomPeers(0) picked someone")
	}
}

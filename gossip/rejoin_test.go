package gossip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// fastRejoin cuts the rejoin backoff to milliseconds.
func fastRejoin(c *Config) {
	c.RejoinInterval, c.RejoinMaxInterval = 50*time.Millisecond, 200*time.Millisecond
}

// crash stops n's memberlist without a leave message, as kill -9 would,
// so the others declare it dead rather than gone.
func crash(t *testing.T, n *Node) {
	t.Helper()
	if err := n.ml.Swap(nil).Shutdown(); err != nil {
		t.Fatal(err)
	}
	n.Close() // memberlist gone: no leave
}

// seesAll reports whether every node lists want members.
func seesAll(nodes []*Node, want int) bool {
	for _, n := range nodes {
		if n.NumMembers() != want {
			return false
		}
	}
	return true
}

func names(n *Node) string {
	var s []string
	for _, m := range n.Members() {
		s = append(s, m.Name)
	}
	return strings.Join(s, ",")
}

// waitDead waits until no node of others lists name, then a while longer
// than memberlist goes on gossiping to the dead, so only a rejoin can bring
// name back.
func waitDead(t *testing.T, others []*Node, name string) {
	t.Helper()
	waitFor(t, name+" declared dead by every other node", func() bool {
		for _, n := range others {
			if _, ok := n.member(name); ok {
				return false
			}
		}
		return true
	})
	time.Sleep(2 * time.Second) // GossipToTheDeadTime is the push/pull interval, 500ms
}

// TestRejoinRestartedSeeder: three nodes joined through a seeder; the
// seeder crashes and stays down until the others have declared it dead,
// then comes back on its address with no join list. The others rejoin it.
func TestRejoinRestartedSeeder(t *testing.T) {
	nodes := cluster(t, 4, trustOf(newKey(t).Public()), fastRejoin)
	seeder, others := nodes[0], nodes[1:]
	cfg := seeder.cfg
	cfg.BindAddr = seeder.Addr()
	crash(t, seeder)
	waitDead(t, others, cfg.Name)

	back := startNode(t, cfg)
	waitFor(t, "the restarted seeder sees every node again, and they it", func() bool {
		return seesAll(append([]*Node{back}, others...), 4)
	})
	t.Logf("restarted seeder sees %s", names(back))
}

// TestRejoinFromSavedPeers: a seeder that kept the addresses it knew in
// PeersPath, and crashed soon after its first members joined, comes back on
// another port with no join list and finds the cluster; the others take its
// new address for its name.
func TestRejoinFromSavedPeers(t *testing.T) {
	peers := filepath.Join(t.TempDir(), "peers.json")
	nodes := cluster(t, 4, trustOf(newKey(t).Public()), func(c *Config) {
		fastRejoin(c)
		if c.Role == RoleSeeder {
			c.PeersPath = peers
		}
	})
	seeder, others := nodes[0], nodes[1:]
	// The first address learnt is saved at once (the rest within
	// peersSaveEvery): one is enough to find the cluster.
	waitFor(t, "the seeder saves a member's address", func() bool {
		b, _ := os.ReadFile(peers)
		for _, o := range others {
			if strings.Contains(string(b), o.Addr()) {
				return true
			}
		}
		return false
	})
	cfg := seeder.cfg
	crash(t, seeder)
	waitDead(t, others, cfg.Name)

	cfg.BindAddr = "127.0.0.1:0"
	back := startNode(t, cfg)
	if back.Addr() == seeder.Addr() {
		t.Skip("the OS gave the old port again")
	}
	waitFor(t, "the seeder restarted on a new port sees every node, and they it", func() bool {
		if !seesAll(append([]*Node{back}, others...), 4) {
			return false
		}
		for _, o := range others {
			if m, _ := o.member(cfg.Name); m.Addr != back.Addr() {
				return false
			}
		}
		return true
	})
}

// TestRejoinRestartedElsewhereAtOnce: a seeder restarted on another port
// before the others have declared its old address dead is refused as a
// conflict until they do; they then take its new address within a rejoin
// round, not at its next push/pull (here ten minutes away).
func TestRejoinRestartedElsewhereAtOnce(t *testing.T) {
	peers := filepath.Join(t.TempDir(), "peers.json")
	nodes := cluster(t, 4, trustOf(newKey(t).Public()), func(c *Config) {
		fastRejoin(c)
		c.PushPullInterval = 10 * time.Minute
		if c.Role == RoleSeeder {
			c.PeersPath = peers
		}
	})
	seeder, others := nodes[0], nodes[1:]
	waitFor(t, "the seeder saves a member's address", func() bool {
		b, _ := os.ReadFile(peers)
		return strings.Contains(string(b), "127.0.0.1:")
	})
	cfg := seeder.cfg
	crash(t, seeder)
	cfg.BindAddr = "127.0.0.1:0"
	back := startNode(t, cfg)
	waitFor(t, "every node takes the seeder's new address", func() bool {
		for _, o := range others {
			if m, _ := o.member(cfg.Name); m.Addr != back.Addr() {
				return false
			}
		}
		return back.NumMembers() == 4
	})
}

// TestRejoinAfterPartition: two halves of a cluster on the in-memory
// network lose each other, each declares the other dead, and the link
// comes back: the cluster is one again.
func TestRejoinAfterPartition(t *testing.T) {
	network := NewMemNetwork()
	nodes := cluster(t, 6, trustOf(newKey(t).Public()), func(c *Config) {
		onMem(network)(c)
		fastRejoin(c)
	})
	side := map[string]int{}
	for i, n := range nodes {
		side[n.Addr()] = i % 2
	}
	network.partition(func(from, to string) bool { return side[from] != side[to] })
	waitFor(t, "each half declares the other dead", func() bool { return seesAll(nodes, 3) })
	time.Sleep(2 * time.Second) // past gossip to the dead

	network.partition(nil)
	waitFor(t, "the healed cluster is one", func() bool { return seesAll(nodes, 6) })
}

// TestJoinTimeoutBounds: Join keeps trying until its context ends, however
// many attempts that takes: a member that comes up late is joined.
func TestJoinTimeoutBounds(t *testing.T) {
	ring := trustOf(newKey(t).Public())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	late := l.Addr().String()
	l.Close()

	n := startNode(t, testConfig("early", ring))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Join(ctx, []string{late}) }()
	// Longer than the attempts a default join used to stop at (5, from a
	// 20ms backoff: about 0.3s).
	time.Sleep(1500 * time.Millisecond)
	cfg := testConfig("late", ring)
	cfg.BindAddr = late
	startNode(t, cfg)
	if err := <-done; err != nil {
		t.Fatalf("Join = %v, want it to reach the member that came up within the timeout", err)
	}

	// The timeout still ends it.
	n2 := startNode(t, testConfig("nobody", ring))
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if err := n2.Join(ctx2, []string{"127.0.0.1:1"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Join = %v, want the deadline", err)
	}
}

// TestAloneWarns: an agent with no other member says so, with how long;
// a seeder holding nothing to distribute does not.
func TestAloneWarns(t *testing.T) {
	ring := trustOf(newKey(t).Public())
	fast := func(n *Node) { n.aloneEvery = 50 * time.Millisecond }
	core, logs := observer.New(zap.WarnLevel)
	startNodePrep(t, testConfig("lonely", ring), zap.New(core), fast)
	waitFor(t, "a warning that the agent is alone", func() bool {
		for _, e := range logs.FilterMessageSnippet("alone").All() {
			if _, ok := e.ContextMap()["alone_for"]; ok {
				return true
			}
		}
		return false
	})

	core, logs = observer.New(zap.WarnLevel)
	cfg := testConfig("quiet-seeder", ring)
	cfg.Role = RoleSeeder
	startNodePrep(t, cfg, zap.New(core), fast)
	time.Sleep(300 * time.Millisecond)
	if n := logs.FilterMessageSnippet("alone").Len(); n != 0 {
		t.Fatalf("a seeder with nothing to distribute warned %d times that it is alone", n)
	}
}

// TestLogWriterRewrites: memberlist's refuted alive message loses its meta
// dump, and failed fallback pings and conflicting addresses are warnings at
// most once a minute.
func TestLogWriterRewrites(t *testing.T) {
	n, err := New(testConfig("w", trustOf(newKey(t).Public())), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	n.now = func() time.Time { return now }
	core, logs := observer.New(zap.DebugLevel)
	w := newLogWriter(n, zap.New(core))
	meta := strings.Repeat("123 ", 300)
	fmt.Fprintf(w, "[WARN] memberlist: Refuting an alive message for 'agent-1' (127.0.0.1:7946) meta:([%s] VS [%s]), vsn:([1 5 2 0 0 0] VS [1 5 2 0 0 0])\n", meta, meta)
	ping := "[ERR] memberlist: Failed fallback TCP ping: timeout 1s: read tcp 127.0.0.1:1->127.0.0.1:2: i/o timeout\n"
	for range 3 {
		fmt.Fprint(w, ping)
	}
	now = now.Add(61 * time.Second)
	fmt.Fprint(w, ping)
	conflict := "[ERR] memberlist: Conflicting address for seeder. Mine: 127.0.0.1:7946 Theirs: 127.0.0.1:7947 Old state: 0\n"
	fmt.Fprint(w, conflict)
	fmt.Fprint(w, conflict)

	all := logs.AllUntimed()
	if len(all) != 7 {
		t.Fatalf("%d lines, want 7: %v", len(all), all)
	}
	if all[5].Level != zapcore.WarnLevel || all[6].Level != zapcore.DebugLevel {
		t.Errorf("conflicting address lines at %v, %v; want warn then debug", all[5].Level, all[6].Level)
	}
	if e := all[0]; e.Level != zapcore.WarnLevel || e.Message != "Refuting an alive message for 'agent-1' (127.0.0.1:7946)" {
		t.Errorf("refuting line: %v %q", e.Level, e.Message)
	}
	want := []zapcore.Level{zapcore.WarnLevel, zapcore.DebugLevel, zapcore.DebugLevel, zapcore.WarnLevel}
	for i, e := range all[1:5] {
		if e.Level != want[i] || !strings.HasPrefix(e.Message, "Failed fallback TCP ping") {
			t.Errorf("ping line %d: %v %q, want %v", i, e.Level, e.Message, want[i])
		}
	}
	if got := all[4].ContextMap()["suppressed"]; got != uint64(2) {
		t.Errorf("the second warning says %v held back, want 2", got)
	}
}

// TestKnownAddrsBounded: the set forgets an address unseen for
// rejoinForget, keeps Join's, and past maxKnownAddrs makes room with the
// address missing the longest.
func TestKnownAddrsBounded(t *testing.T) {
	k := newKnownAddrs()
	t0 := time.Now()
	k.addJoin([]string{"10.0.0.1:7946"}, t0)
	k.learn("10.0.0.2:7946", false)
	if got := k.missingAddrs(map[string]bool{}, t0); len(got) != 2 {
		t.Fatalf("missing %v, want both", got)
	}
	k.missingAddrs(map[string]bool{}, t0.Add(rejoinForget+time.Second))
	if got := k.missingAddrs(map[string]bool{}, t0.Add(rejoinForget+time.Second)); len(got) != 1 || got[0] != "10.0.0.1:7946" {
		t.Fatalf("after an hour unseen, missing %v, want only the join address", got)
	}

	k = newKnownAddrs()
	k.learn("10.0.0.9:7946", true) // a seeder, gone first
	k.missingAddrs(map[string]bool{}, t0)
	for i := range maxKnownAddrs - 1 {
		k.learn(fmt.Sprintf("10.1.%d.%d:7946", i/256, i%256), false)
	}
	k.missingAddrs(map[string]bool{}, t0.Add(time.Second)) // the agents go missing after the seeder
	k.learn("10.2.0.1:7946", false)
	if k.len() != maxKnownAddrs || k.addrs["10.2.0.1:7946"] == nil || k.addrs["10.0.0.9:7946"] == nil {
		t.Fatalf("full set: %d addresses, new kept %v, seeder kept %v", k.len(), k.addrs["10.2.0.1:7946"] != nil, k.addrs["10.0.0.9:7946"] != nil)
	}
}

// TestRejoinPick: a node tries a few addresses a round, every round in a
// small cluster and rarely in a large one missing one address.
func TestRejoinPick(t *testing.T) {
	miss := []string{"a", "b", "c", "d"}
	half := make([]string, 10000)
	for _, tc := range []struct {
		missing []string
		members int
		draw    float64
		want    int
	}{
		{nil, 1, 0, 0},
		{miss[:1], 3, 0.99, 1},   // three agents and their seeder gone: all try
		{miss, 4, 0.99, 3},       // a partition: every node tries, 3 a round
		{miss[:1], 5000, 0.5, 0}, // one gone of 5000: about 3 nodes try a round
		{miss[:1], 5000, 0.0001, 1},
		{half, 10000, 0.001, 3}, // a partition in halves of 10000: about 32 tries in all
		{half, 10000, 0.002, 0},
	} {
		if got := rejoinPick(tc.missing, tc.members, tc.draw); len(got) != tc.want {
			t.Errorf("rejoinPick(%v, %d, %v) = %v, want %d", tc.missing, tc.members, tc.draw, got, tc.want)
		}
	}
}

package gossip

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// seesApps reports whether every node but the owners themselves shows
// want[name] as name's apps, exactly.
func seesApps(nodes []*Node, want map[string][]AppState) bool {
	for _, n := range nodes {
		for name, apps := range want {
			if name == n.cfg.Name {
				continue
			}
			m, ok := n.member(name)
			if !ok || !reflect.DeepEqual(m.Apps, apps) {
				return false
			}
		}
	}
	return true
}

func diffApps(nodes []*Node, want map[string][]AppState) string {
	var b strings.Builder
	for _, n := range nodes {
		for name, apps := range want {
			if m, _ := n.member(name); name != n.cfg.Name && !reflect.DeepEqual(m.Apps, apps) {
				fmt.Fprintf(&b, "%s sees %d apps of %s (want %d); ", n.cfg.Name, len(m.Apps), name, len(apps))
			}
		}
	}
	return b.String()
}

func waitApps(t *testing.T, what string, nodes []*Node, want map[string][]AppState) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !seesApps(nodes, want) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s: %s", what, diffApps(nodes, want))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClusterThirtyTwoApps: every node of five runs 32 apps and every other
// node sees all of them exactly; a change of one app of 32 reaches everyone
// (as one message: TestRecordInOrderNeedsNoPushPull); a 33rd app is refused
// and changes nothing.
func TestClusterThirtyTwoApps(t *testing.T) {
	nodes := cluster(t, 5, trustOf(newKey(t).Public()), nil)
	want := map[string][]AppState{}
	for i, n := range nodes {
		apps := manyApps(MaxApps, 100*i)
		if err := n.SetApps(apps); err != nil {
			t.Fatal(err)
		}
		want[n.cfg.Name] = travelled(t, apps)
	}
	waitApps(t, "every node sees every other node's 32 apps", nodes, want)
	for _, n := range nodes {
		if st := n.Stats(); st.AppRefused != 0 {
			t.Errorf("%s refused %d app-state messages", n.cfg.Name, st.AppRefused)
		}
	}

	x := nodes[2]
	apps := manyApps(MaxApps, 200)
	apps[17] = appVersion(17, 999)
	if err := x.SetApps(apps); err != nil {
		t.Fatal(err)
	}
	want[x.cfg.Name] = travelled(t, apps)
	waitApps(t, "every node sees the change of one app", nodes, want)

	x.self.mu.Lock()
	seq, raw := x.self.seq, x.self.raw
	x.self.mu.Unlock()
	err := x.SetApps(append(slices.Clone(apps), appVersion(MaxApps, 0)))
	if !errors.Is(err, ErrTooManyApps) || !strings.Contains(err.Error(), "33 apps, the limit is 32") {
		t.Fatalf("a 33rd app: %v, want ErrTooManyApps naming 33 and 32", err)
	}
	x.self.mu.Lock()
	seqAfter, rawAfter := x.self.seq, x.self.raw
	x.self.mu.Unlock()
	if seqAfter != seq || !bytes.Equal(rawAfter, raw) {
		t.Fatalf("the refused update changed the record (sequence %d → %d)", seq, seqAfter)
	}
	if self, _ := x.member(x.cfg.Name); !reflect.DeepEqual(self.Apps, want[x.cfg.Name]) {
		t.Fatal("the refused update changed what the node shows of itself")
	}
	if !seesApps(nodes, want) {
		t.Fatalf("the refused update changed what others see: %s", diffApps(nodes, want))
	}
}

// TestLateJoinerGetsAppsByPushPull: with no periodic push/pull, the one a
// join does brings every member's apps to a node that joins after their
// broadcasts have ended.
func TestLateJoinerGetsAppsByPushPull(t *testing.T) {
	ring := trustOf(newKey(t).Public())
	slow := func(c *Config) { c.PushPullInterval = time.Hour }
	nodes := cluster(t, 3, ring, slow)
	want := map[string][]AppState{}
	for i, n := range nodes {
		apps := manyApps(4*(i+1), i)
		if err := n.SetApps(apps); err != nil {
			t.Fatal(err)
		}
		want[n.cfg.Name] = travelled(t, apps)
	}
	waitApps(t, "the cluster sees every node's apps", nodes, want)
	waitFor(t, "the cluster's app-state broadcasts are done", func() bool {
		for _, n := range nodes {
			if n.appQueue.Len() != 0 {
				return false
			}
		}
		return true
	})

	cfg := testConfig("late", ring)
	slow(&cfg)
	late := startNode(t, cfg)
	join(t, late, nodes[2])
	waitApps(t, "the late joiner sees every node's apps", []*Node{late}, want)
	if st := late.Stats(); st.AppRecords < 3 {
		t.Fatalf("late joiner took %d records, want 3", st.AppRecords)
	}
}

// TestRestartedNodeReplacesRecord: a node that leaves disappears with its
// record everywhere; restarted under the same name, from another address
// and with fewer apps, it is seen with the new address and only the new
// apps.
func TestRestartedNodeReplacesRecord(t *testing.T) {
	ring := trustOf(newKey(t).Public())
	nodes := clusterPrep(t, 4, ring, nil, func(n *Node) { n.orphanTTL = 300 * time.Millisecond })
	x := nodes[3]
	name := x.cfg.Name
	if err := x.SetApps(manyApps(5, 1)); err != nil {
		t.Fatal(err)
	}
	rest := nodes[:3]
	waitApps(t, "everyone sees x's 5 apps", rest, map[string][]AppState{name: travelled(t, manyApps(5, 1))})
	oldAddr := x.Addr()

	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "x and its record are gone everywhere", func() bool {
		for _, n := range rest {
			if _, ok := n.member(name); ok {
				return false
			}
			for _, rec := range n.pushPullRecords() {
				if h, _, _ := decodeRecord(rec, true); h.node == name {
					return false
				}
			}
			n.memMu.Lock()
			_, held := n.peers[name]
			n.memMu.Unlock()
			if held {
				return false
			}
		}
		return true
	})
	for _, n := range rest {
		if n.NumMembers() != 3 {
			t.Fatalf("%s lists %d members after x left", n.cfg.Name, n.NumMembers())
		}
	}

	y := startNode(t, testConfig(name, ring))
	if y.Addr() == oldAddr {
		t.Fatalf("the restarted node got the same address %s; the test wants another", oldAddr)
	}
	join(t, y, nodes[0])
	fewer := manyApps(2, 2)
	if err := y.SetApps(fewer); err != nil {
		t.Fatal(err)
	}
	want := travelled(t, fewer)
	waitFor(t, "everyone sees the restarted node at its new address with its 2 apps", func() bool {
		for _, n := range rest {
			m, ok := n.member(name)
			if !ok || m.Addr != y.Addr() || !reflect.DeepEqual(m.Apps, want) {
				return false
			}
		}
		return true
	})
}

// TestLossyAppGossipConverges: on an in-memory network where every node
// loses half the app-state broadcasts it is sent, two nodes change, add
// and remove apps many times; no node ever shows a version of their apps
// they did not have, and every node ends with their last ones.
func TestLossyAppGossipConverges(t *testing.T) {
	var lost atomic.Int64
	lossy := func(n *Node) {
		n.dropMsg = func(msg []byte) bool {
			if len(msg) > 0 && msg[0] == msgApps && rand.IntN(2) == 0 {
				lost.Add(1)
				return true
			}
			return false
		}
	}
	nodes := clusterPrep(t, 8, trustOf(newKey(t).Public()), onMem(NewMemNetwork()), lossy)
	owners := nodes[:2]

	// valid holds every version each owner had, as others would show it.
	var mu sync.Mutex
	valid := map[string]map[string]bool{}
	for _, o := range owners {
		valid[o.cfg.Name] = map[string]bool{fmt.Sprint([]AppState(nil)): true}
	}
	var bad atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			for _, n := range nodes {
				for _, o := range owners {
					if o == n {
						continue
					}
					m, _ := n.member(o.cfg.Name)
					mu.Lock()
					ok := valid[o.cfg.Name][fmt.Sprint(m.Apps)]
					mu.Unlock()
					if !ok {
						bad.Store(fmt.Sprintf("%s showed %s with apps %v", n.cfg.Name, o.cfg.Name, m.Apps))
					}
				}
			}
		}
	})

	final := map[string][]AppState{}
	rng := rand.New(rand.NewPCG(1, 2))
	for v := range 30 {
		for k, o := range owners {
			apps := map[int]AppState{}
			for _, a := range final[o.cfg.Name] {
				var i int
				fmt.Sscanf(a.App, "app-%d", &i)
				apps[i] = a
			}
			switch r := rng.IntN(10); {
			case r < 7 || len(apps) < 2:
				i := rng.IntN(12)
				apps[i] = appVersion(i, 1000*k+v)
			default:
				for i := range apps {
					delete(apps, i)
					break
				}
			}
			list := make([]AppState, 0, len(apps))
			for _, a := range apps {
				list = append(list, a)
			}
			shown := travelled(t, list)
			mu.Lock()
			valid[o.cfg.Name][fmt.Sprint(shown)] = true
			mu.Unlock()
			if err := o.SetApps(list); err != nil {
				t.Fatal(err)
			}
			final[o.cfg.Name] = shown
		}
		time.Sleep(15 * time.Millisecond)
	}
	waitApps(t, "every node shows each owner's last apps", nodes, final)
	close(stop)
	wg.Wait()
	if b := bad.Load(); b != nil {
		t.Fatal(b)
	}
	if lost.Load() == 0 {
		t.Fatal("no app-state broadcast was lost; the test did not test loss")
	}
	t.Logf("%d app-state broadcasts lost", lost.Load())
}

// TestAppStateGoesStraightToSeeders: with gossip, probes and push/pull all
// an hour apart, the only way an agent's change reaches the seeder is the
// packet it sends the seeder directly, and it does, change after change;
// the other agent, not a seeder, hears nothing.
func TestAppStateGoesStraightToSeeders(t *testing.T) {
	k := newKey(t)
	ring := trustOf(k.Public())
	quiet := func(name string, role Role) Config {
		c := testConfig(name, ring)
		c.Role = role
		c.GossipInterval, c.ProbeInterval, c.PushPullInterval = time.Hour, time.Hour, time.Hour
		c.RumourFanout = -1
		return c
	}
	sc := quiet("seeder", RoleSeeder)
	sc.SigningKey = k
	seeder := startNode(t, sc)
	agent := startNode(t, quiet("agent", RoleAgent))
	other := startNode(t, quiet("other", RoleAgent))
	join(t, agent, seeder)
	join(t, other, seeder)
	join(t, agent, other)
	waitFor(t, "the agent knows the seeder's role", func() bool {
		m, ok := agent.member("seeder")
		return ok && m.Role == RoleSeeder
	})
	for v := range 3 {
		apps := manyApps(2, v)
		if err := agent.SetApps(apps); err != nil {
			t.Fatal(err)
		}
		waitApps(t, fmt.Sprintf("the seeder sees version %d", v), []*Node{seeder}, map[string][]AppState{"agent": travelled(t, apps)})
	}
	if got := agent.Stats().SeederSent; got != 6 {
		t.Fatalf("agent sent %d app states to seeders, want 6 (2 apps × 3 changes)", got)
	}
	if apps := appsOf(other, "agent"); apps != nil {
		t.Fatalf("a non-seeder got the agent's apps without gossip: %v", apps)
	}
}

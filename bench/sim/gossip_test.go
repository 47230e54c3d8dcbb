package sim

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestGossipSpread(t *testing.T) {
	p100 := map[int]float64{}
	for _, n := range []int{1, 2, 10, 100, 1000, 10000} {
		p99, all := GossipSpread(n, GossipModel{}, 1)
		if p99 <= 0 || p99 > all {
			t.Errorf("n=%d: p99 %v, p100 %v", n, p99, all)
		}
		p100[n] = all
	}
	// Push gossip reaches N in O(log N) rounds: a hundredfold more nodes
	// costs a few rounds, not a hundredfold.
	if p100[10000] >= 3*p100[100] {
		t.Errorf("p100: %v s at 100 nodes, %v s at 10000", p100[100], p100[10000])
	}
	if p100[10000] <= p100[10] {
		t.Errorf("p100: %v s at 10 nodes, %v s at 10000: should grow", p100[10], p100[10000])
	}
	if p99, all := GossipSpread(0, GossipModel{}, 1); p99 != 0 || all != 0 {
		t.Errorf("n=0: %v %v", p99, all)
	}
}

func TestGossipSpreadParameters(t *testing.T) {
	broadcast := GossipModel{Interval: 200 * time.Millisecond, Fanout: 3, Latency: time.Millisecond, RumourFanout: -1}
	with := func(change func(*GossipModel)) float64 {
		m := broadcast
		change(&m)
		p99, _ := GossipSpread(2000, m, 4)
		return p99
	}
	base := with(func(*GossipModel) {})
	if again := with(func(*GossipModel) {}); again != base {
		t.Errorf("same seed: %v then %v", base, again)
	}
	if slow := with(func(m *GossipModel) { m.Interval = time.Second }); slow <= base {
		t.Errorf("1s interval %v, 200ms %v: want slower", slow, base)
	}
	if wide := with(func(m *GossipModel) { m.Fanout = 8 }); wide >= base {
		t.Errorf("fanout 8 %v, fanout 3 %v: want faster", wide, base)
	}
	if far := with(func(m *GossipModel) { m.Latency = 100 * time.Millisecond }); far <= base {
		t.Errorf("100ms hops %v, 1ms hops %v: want slower", far, base)
	}
}

// TestGossipRumour checks the direct sends: with them a state reaches 99%
// of 2000 nodes in a few stream hops rather than gossip rounds, the last
// node still within a round or two, and a wider rumour is no slower.
func TestGossipRumour(t *testing.T) {
	broadcast, _ := GossipSpread(2000, GossipModel{RumourFanout: -1}, 4)
	p99, all := GossipSpread(2000, GossipModel{}, 4)
	hop := float64(rumourHops) * defaultGossipLatency.Seconds()
	// ln 2000 / ln 11 ≈ 3.2 hops reach nearly everyone; allow twice that.
	if p99 > 8*hop {
		t.Errorf("rumour: 99%% after %.4fs, more than 8 stream hops (%.4fs)", p99, 8*hop)
	}
	if p99 >= broadcast/10 {
		t.Errorf("rumour: 99%% after %.4fs, broadcast alone %.4fs: want ten times faster", p99, broadcast)
	}
	if all > 2*defaultGossipInterval.Seconds() {
		t.Errorf("rumour: 100%% after %.3fs, want within two gossip rounds", all)
	}
	if wide, _ := GossipSpread(2000, GossipModel{RumourFanout: 30}, 4); wide > p99 {
		t.Errorf("fan-out 30: 99%% after %.4fs, default %.4fs", wide, p99)
	}
}

// TestGossipReachesEveryone checks that push/pull catches the nodes push
// gossip misses: with one send per member, push gossip dies out early.
func TestGossipReachesEveryone(t *testing.T) {
	gp := gossipParams{interval: 0.2, latency: 0.001, pushPull: 30, fanout: 1, transmits: 1}
	acc := acceptTimes(500, gp, rand.New(rand.NewPCG(1, 2)))
	last := 0.0
	for i, a := range acc {
		if math.IsInf(a, 1) || a <= 0 {
			t.Fatalf("node %d accepted at %v", i, a)
		}
		last = max(last, a)
	}
	if last < 10*gp.interval {
		t.Errorf("last node accepted at %.2fs: push gossip alone should not have reached everyone", last)
	}
}

func TestRetransmitLimit(t *testing.T) {
	for _, tc := range []struct{ members, want int }{{1, 4}, {9, 4}, {10, 8}, {99, 8}, {100, 12}, {1000, 16}, {9999, 16}, {10000, 20}} {
		if got := retransmitLimit(tc.members); got != tc.want {
			t.Errorf("retransmitLimit(%d) = %d, want %d", tc.members, got, tc.want)
		}
	}
	if got := pushPullScale(30, 32); got != 30 {
		t.Errorf("pushPullScale(30, 32) = %v", got)
	}
	if got := pushPullScale(30, 1000); got != 30*6 {
		t.Errorf("pushPullScale(30, 1000) = %v, want 180", got)
	}
}

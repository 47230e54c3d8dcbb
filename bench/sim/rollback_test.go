package sim

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/swarmdeploy/swarm/bench"
	"github.com/swarmdeploy/swarm/gossip"
)

// simulateRollback runs the model and returns its engine, for per-node
// checks.
func simulateRollback(t *testing.T, cfg RollbackConfig) *rollbackEngine {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := newRollbackEngine(cfg)
	if err := e.run(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestRollbackOneNode checks the model against what one node must do: the
// seeder's rumour reaches it in one stream hop, it accepts and switches
// back; its active state replaces the staged one still queued and reaches the
// seeder at the node's next gossip tick.
func TestRollbackOneNode(t *testing.T) {
	cfg := RollbackConfig{Nodes: 1, Hook: 300 * time.Millisecond, Seed: 3}
	e := simulateRollback(t, cfg)
	cfg, g := e.cfg, e.cfg.Gossip
	want := rumourHops*g.Latency.Seconds() + g.Accept.Seconds() + (cfg.Switch + cfg.Hook).Seconds()
	if math.Abs(e.backAt[0]-want) > 1e-9 {
		t.Errorf("back after %.6fs, want %.6fs", e.backAt[0], want)
	}
	if lo, hi := e.backAt[0]+g.Latency.Seconds(), e.backAt[0]+g.Interval.Seconds()+g.Latency.Seconds(); e.seenAt[0] < lo-1e-12 || e.seenAt[0] > hi+1e-12 {
		t.Errorf("seen after %.3fs, want within [%.3f, %.3f]", e.seenAt[0], lo, hi)
	}
}

// TestRollbackBounds checks per node what no model of this system may
// break: a node is back no sooner than one hop, its accept, the switch and
// the hook after the decision, and the seeder sees it no sooner than that.
func TestRollbackBounds(t *testing.T) {
	tests := []struct {
		name string
		cfg  RollbackConfig
	}{
		{"defaults", RollbackConfig{Nodes: 300}},
		{"zero latency and accept", RollbackConfig{Nodes: 300, Gossip: GossipModel{Latency: time.Nanosecond, Accept: time.Nanosecond}}},
		{"slow hook", RollbackConfig{Nodes: 300, Hook: 2 * time.Second}},
		{"no rumour", RollbackConfig{Nodes: 300, Gossip: GossipModel{RumourFanout: -1}}},
		{"some moved", RollbackConfig{Nodes: 300, Moved: 7}},
		{"wide states", RollbackConfig{Nodes: 300, StateBytes: 600}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := simulateRollback(t, tt.cfg)
			c := e.cfg
			hop := min(c.Gossip.Latency, rumourHops*c.Gossip.Latency).Seconds()
			bound := hop + c.Gossip.Accept.Seconds() + (c.Switch + c.Hook).Seconds()
			for j := range c.Moved {
				if e.backAt[j] < bound-1e-12 || math.IsInf(e.backAt[j], 0) {
					t.Fatalf("node %d back after %vs, below the bound %vs", j, e.backAt[j], bound)
				}
				if e.seenAt[j] < e.backAt[j] || math.IsInf(e.seenAt[j], 0) {
					t.Fatalf("node %d seen after %vs, back after %vs", j, e.seenAt[j], e.backAt[j])
				}
			}
			for j := range c.Nodes {
				if math.IsInf(e.accAt[j], 0) || e.accAt[j] < hop+c.Gossip.Accept.Seconds()-1e-12 {
					t.Fatalf("node %d accepted at %vs", j, e.accAt[j])
				}
			}
		})
	}
}

// TestRollbackParameters checks the direction of each knob on the fleet
// time and on when the seeder has seen every moved node back by gossip
// alone (NoDirect; TestRollbackDirect covers the direct sends).
func TestRollbackParameters(t *testing.T) {
	base := RollbackConfig{Nodes: 300, Seed: 5, NoDirect: true}
	run := func(change func(*RollbackConfig)) (back, seen float64) {
		c := base
		change(&c)
		res, err := SimulateRollback(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		return res.Back.Max, res.Seen.Max
	}
	back0, seen0 := run(func(*RollbackConfig) {})
	if b, s := run(func(*RollbackConfig) {}); b != back0 || s != seen0 {
		t.Errorf("same seed: %v/%v then %v/%v", back0, seen0, b, s)
	}
	tests := []struct {
		name   string
		change func(*RollbackConfig)
		faster bool // seen sooner than the base; else later
	}{
		{"fanout 8", func(c *RollbackConfig) { c.Gossip.Fanout = 8 }, true},
		{"1s interval", func(c *RollbackConfig) { c.Gossip.Interval = time.Second }, false},
		{"states 3× as large", func(c *RollbackConfig) { c.StateBytes = 3 * DefaultStateBytes }, false},
		{"a tenth of the nodes", func(c *RollbackConfig) { c.Nodes = 30 }, true},
		{"a tenth moved", func(c *RollbackConfig) { c.Moved = 30 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, seen := run(tt.change)
			if tt.faster != (seen < seen0) {
				t.Errorf("seen after %.2fs, base %.2fs; want faster=%v", seen, seen0, tt.faster)
			}
		})
	}
	// A hook adds its run time to every node's return and nothing else.
	back, _ := run(func(c *RollbackConfig) { c.Hook = 2 * time.Second })
	if d := back - back0; math.Abs(d-2) > base.Gossip.withDefaults().Interval.Seconds() {
		t.Errorf("a 2s hook moved the fleet time by %.3fs", d)
	}
}

func TestRollbackResult(t *testing.T) {
	res, err := SimulateRollback(context.Background(), RollbackConfig{Nodes: 50, Moved: 10, Hook: time.Second, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Nodes != 50 || res.Moved != 10 || res.Kind != "sim" || res.HookS != 1 || res.FleetS != res.Back.Max {
		t.Errorf("result %+v", res)
	}
	for _, s := range []struct {
		name          string
		p50, p99, max float64
	}{{"accept", res.Accept.P50, res.Accept.P99, res.Accept.Max}, {"back", res.Back.P50, res.Back.P99, res.Back.Max}, {"seen", res.Seen.P50, res.Seen.P99, res.Seen.Max}} {
		if !(0 < s.p50 && s.p50 <= s.p99 && s.p99 <= s.max) {
			t.Errorf("%s: p50 %v p99 %v max %v", s.name, s.p50, s.p99, s.max)
		}
	}
	if res.Back.P50 < 1 || res.Seen.P50 < res.Back.P50 {
		t.Errorf("back %+v, seen %+v", res.Back, res.Seen)
	}
}

func TestRollbackConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  RollbackConfig
		flag string
	}{
		{RollbackConfig{}, "--nodes"},
		{RollbackConfig{Nodes: MaxRollbackNodes + 1}, "--nodes"},
		{RollbackConfig{Nodes: 5, Moved: 6}, "--moved"},
		{RollbackConfig{Nodes: 5, Moved: -1}, "--moved"},
		{RollbackConfig{Nodes: 5, Hook: -time.Second}, "--hook-time"},
		{RollbackConfig{Nodes: 5, StateBytes: 1400}, "--state-bytes"},
		{RollbackConfig{Nodes: 5, Gossip: GossipModel{Fanout: -1}}, "--gossip-fanout"},
		{RollbackConfig{Nodes: 5, Gossip: GossipModel{RumourFanout: 65}}, "--rumour-fanout"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.flag) {
			t.Errorf("%+v: %v, want an error naming %s", tt.cfg, err, tt.flag)
		}
	}
	c := RollbackConfig{Nodes: 5}
	if err := c.Validate(); err != nil || c.Moved != 5 || c.Switch != defaultSwitch || c.StateBytes != DefaultStateBytes {
		t.Errorf("defaults: %+v, %v", c, err)
	}
}

func TestQueueHeap(t *testing.T) {
	var h []uint64
	for _, x := range []uint64{9, 3, 7, 1, 8, 2, 2, 6} {
		h = heapPush(h, x)
	}
	var got []uint64
	for len(h) > 0 {
		var x uint64
		h, x = heapPop(h)
		got = append(got, x)
	}
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			t.Fatalf("popped %v", got)
		}
	}
	if len(got) != 8 {
		t.Fatalf("popped %v", got)
	}
}

// TestRollbackDirect: the nodes' direct sends bring the seeder every node
// back within the spread of their delays, far sooner than gossip alone;
// a seeder whose queue overflows drops packets and still sees everyone,
// later, by gossip.
func TestRollbackDirect(t *testing.T) {
	run := func(c RollbackConfig) bench.RollbackResult {
		t.Helper()
		res, err := SimulateRollback(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	direct := run(RollbackConfig{Nodes: 1000, Seed: 2})
	alone := run(RollbackConfig{Nodes: 1000, Seed: 2, NoDirect: true})
	spread := gossip.DirectSpread(1001).Seconds()
	if direct.Seen.Max > direct.Back.Max+spread+0.01 || direct.SeederDropped != 0 {
		t.Errorf("direct: seen max %.3fs with back max %.3fs and spread %.3fs, %d dropped", direct.Seen.Max, direct.Back.Max, spread, direct.SeederDropped)
	}
	if alone.Seen.Max < 10*direct.Seen.Max {
		t.Errorf("gossip alone: seen max %.3fs, direct %.3fs", alone.Seen.Max, direct.Seen.Max)
	}
	slow := run(RollbackConfig{Nodes: 1000, Seed: 2, SeederCost: 10 * time.Millisecond, SeederQueue: 4})
	if slow.SeederDropped == 0 || slow.Seen.Max <= direct.Seen.Max {
		t.Errorf("slow seeder: %d dropped, seen max %.3fs (direct %.3fs)", slow.SeederDropped, slow.Seen.Max, direct.Seen.Max)
	}
}

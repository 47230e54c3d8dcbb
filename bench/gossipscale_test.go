package bench

import (
	"context"
	"encoding/json"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

func TestGossipScale(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// At 50 nodes "99% of members" is all of them, and gossip alone can
	// leave a pair unknown: a short push/pull repairs it within the bound.
	cfg := GossipScaleConfig{Nodes: 50, Seed: 1, PushPullInterval: time.Second, SettleTimeout: 20 * time.Second, SpreadTimeout: 20 * time.Second}
	res, err := RunGossipScale(ctx, cfg, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Accepted != cfg.Nodes || res.Nodes != cfg.Nodes {
		t.Errorf("%d of %d nodes accepted the state (%s)", res.Accepted, res.Nodes, res.Notes)
	}
	if !(res.Reach99S > 0 && res.Reach99S <= res.Reach100S) {
		t.Errorf("reach 99%% = %vs, 100%% = %vs: want 0 < 99%% ≤ 100%%", res.Reach99S, res.Reach100S)
	}
	// Every node sends the state on once, to at most 12 others (the gossip
	// package's largest default fan-out).
	if res.DirectSent == 0 || res.DirectSent > uint64(12*cfg.Nodes) {
		t.Errorf("%d direct sends for %d nodes", res.DirectSent, cfg.Nodes)
	}
	if res.JoinS <= 0 || res.MembersMinFrac < 0.99 || res.JoinFailures != 0 {
		t.Errorf("membership: join %vs, least known %v, %d join failures", res.JoinS, res.MembersMinFrac, res.JoinFailures)
	}
	if res.Delivered == 0 || res.CPUSeconds <= 0 || res.PeakRSSMiB <= 0 || res.Goroutines <= before || res.WallS <= 0 {
		t.Errorf("costs not measured: %+v", res)
	}

	// Every node's goroutines end once RunGossipScale returns; memberlist's
	// tickers notice their shutdown asynchronously, so poll.
	deadline := time.Now().Add(20 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after the run, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGossipScalePublishEarly publishes while the cluster is still joining.
func TestGossipScalePublishEarly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := GossipScaleConfig{Nodes: 30, Seed: 2, PublishEarly: true, PushPullInterval: time.Second, SpreadTimeout: 20 * time.Second}
	res, err := RunGossipScale(ctx, cfg, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != cfg.Nodes || res.SettleS != 0 || !strings.Contains(res.Notes, "before membership settled") {
		t.Errorf("%d of %d accepted, settle %vs, notes %q", res.Accepted, cfg.Nodes, res.SettleS, res.Notes)
	}
}

func TestGossipScaleRefusesNoNodes(t *testing.T) {
	if _, err := RunGossipScale(context.Background(), GossipScaleConfig{}, nil, nil); err == nil {
		t.Fatal("a run of 0 nodes was accepted")
	}
}

// TestGossipScaleLong measures larger clusters: SWARM_TEST_LONG=1, sizes in
// SWARM_GOSSIP_SCALE_NODES (default "500,1000"), one JSON line each. Above
// 500 nodes they start 8 a second (SWARM_GOSSIP_SCALE_RATE overrides; 0
// starts them all at once), which keeps 2 cores below saturation. It stops
// at the first size that does not converge. SWARM_GOSSIP_SCALE_EARLY=1
// publishes before membership settles (GossipScaleConfig.PublishEarly) and
// SWARM_GOSSIP_SCALE_FANOUT sets the rumour fan-out (-1: off), to compare
// the spread with and without direct sends while a cluster joins.
func TestGossipScaleLong(t *testing.T) {
	if os.Getenv("SWARM_TEST_LONG") == "" {
		t.Skip("set SWARM_TEST_LONG=1 to run")
	}
	sizes := os.Getenv("SWARM_GOSSIP_SCALE_NODES")
	if sizes == "" {
		sizes = "500,1000"
	}
	rate := -1.0
	if s := os.Getenv("SWARM_GOSSIP_SCALE_RATE"); s != "" {
		var err error
		if rate, err = strconv.ParseFloat(s, 64); err != nil || rate < 0 {
			t.Fatalf("SWARM_GOSSIP_SCALE_RATE %q: want nodes per second", s)
		}
	}
	fanout := 0
	if s := os.Getenv("SWARM_GOSSIP_SCALE_FANOUT"); s != "" {
		var err error
		if fanout, err = strconv.Atoi(s); err != nil {
			t.Fatalf("SWARM_GOSSIP_SCALE_FANOUT %q: want an integer", s)
		}
	}
	early := os.Getenv("SWARM_GOSSIP_SCALE_EARLY") == "1"
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			t.Fatalf("SWARM_GOSSIP_SCALE_NODES: %v", err)
		}
		cfg := GossipScaleConfig{Nodes: n, Seed: 1, JoinRate: rate, RumourFanout: fanout, PublishEarly: early}
		if rate < 0 {
			cfg.JoinRate = 0
			if n > 500 {
				cfg.JoinRate = 8
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		res, err := RunGossipScale(ctx, cfg, nil, func(stage string, done, total int) {
			if (stage == "start" || stage == "close") && (done == total || done%500 == 0) {
				t.Logf("%s %d/%d", stage, done, total)
			}
		})
		cancel()
		js, _ := json.Marshal(res)
		t.Logf("%s", js)
		if err != nil {
			t.Fatalf("%d nodes: %v", n, err)
		}
		if res.Accepted != n {
			t.Fatalf("%d nodes: only %d accepted", n, res.Accepted)
		}
	}
}

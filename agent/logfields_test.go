package agent

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/swarmdeploy/swarm/release"
)

// TestLogLinesNameTheNodeOnce: every line of the agent, its gossip and
// memberlist's within it carries "node" once, and an agent started with no
// --join says it waits for others.
func TestLogLinesNameTheNodeOnce(t *testing.T) {
	k, err := release.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := release.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	a, err := New(Config{
		DataDir: t.TempDir(), Name: "solo", GossipAddr: "127.0.0.1:0", TorrentAddr: "127.0.0.1:0",
		Trust:  release.Trust{Release: release.NewKeyring(rk.Public()), Rollout: release.NewKeyring(k.Public())},
		Gossip: fastGossip(),
	}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for logs.FilterMessageSnippet("no --join").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no warning that an agent without --join waits for others")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	gossipLines := 0
	for _, e := range logs.AllUntimed() {
		n := 0
		for _, f := range e.Context {
			if f.Key == "node" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s %q carries node %d times", e.LoggerName, e.Message, n)
		}
		if e.LoggerName == "agent.gossip" || e.LoggerName == "agent.gossip.memberlist" {
			gossipLines++
		}
	}
	if gossipLines == 0 {
		t.Fatal("no gossip line logged: the test checks nothing")
	}
}

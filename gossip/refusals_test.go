package gossip

import (
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/release"
)

// TestRefusalsRemembered: a node remembers why it refused the newest state
// of an app of its environment, forgets it once it accepts a state at
// least as new, and ignores refused states no newer than the one it holds
// (a lagging peer's) and those of other environments.
func TestRefusalsRemembered(t *testing.T) {
	a, b := newKey(t), newKey(t)
	n, err := New(testConfig("agent", trustOf(a.Public())), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	refusal := func() string {
		t.Helper()
		rs := n.Refusals()
		switch len(rs) {
		case 0:
			return ""
		case 1:
			return rs[0].Reason
		}
		t.Fatalf("refusals: %+v", rs)
		return ""
	}
	if err := n.accept(desired(t, a, "web", 1), fromGossip); err != nil {
		t.Fatal(err)
	}
	// Another seeder key: refused, remembered.
	if n.accept(desired(t, b, "web", 2), fromGossip) == nil || refusal() != RefusedUntrustedKey {
		t.Fatalf("state of an unpinned key: refusal %q", refusal())
	}
	// The pinned key's next state clears it.
	if err := n.accept(desired(t, a, "web", 3), fromGossip); err != nil || refusal() != "" {
		t.Fatalf("accepted seq 3: %v, refusal %q", err, refusal())
	}
	// Not news: a refused state below the one held.
	_ = n.accept(desired(t, b, "web", 2), fromGossip)
	if r := refusal(); r != "" {
		t.Fatalf("refused an old state: refusal %q", r)
	}
	// A release key signing a desired state.
	rk := releaseKeyOf(a.ID())
	sd := desired(t, a, "web", 4)
	d, _ := sd.Unverified()
	wrong, err := release.SignDesired(d, rk)
	if err != nil {
		t.Fatal(err)
	}
	if n.accept(wrong, fromGossip) == nil || refusal() != RefusedWrongRole {
		t.Fatalf("state signed by a release key: refusal %q", refusal())
	}
	// A sequence too far ahead.
	if n.accept(desired(t, a, "web", 4+release.MaxSequenceJump), fromGossip) == nil || refusal() != RefusedSequenceJump {
		t.Fatalf("sequence jump: refusal %q", refusal())
	}
	// A state issued later with a lower sequence: a seeder whose store was
	// reset.
	d.Sequence, d.Issued = 2, d.Issued.Add(time.Hour)
	reset, err := release.SignDesired(d, a)
	if err != nil {
		t.Fatal(err)
	}
	if n.accept(reset, fromGossip) == nil || refusal() != RefusedOlderSequence {
		t.Fatalf("older sequence: refusal %q", refusal())
	}
	// Another environment's state is not this node's concern.
	if err := n.accept(desired(t, a, "web", 5), fromGossip); err != nil || refusal() != "" {
		t.Fatalf("accepted seq 5: %v, refusal %q", err, refusal())
	}
	d.Env, d.Sequence = "prod", 9
	other, err := release.SignDesired(d, b)
	if err != nil {
		t.Fatal(err)
	}
	if n.accept(other, fromGossip) == nil || refusal() != "" {
		t.Fatalf("another environment's refusal is remembered: %q", refusal())
	}
	// Forgotten once not heard again for refusalTTL.
	_ = n.accept(desired(t, b, "web", 6), fromGossip)
	now := time.Now()
	n.now = func() time.Time { return now.Add(refusalTTL + time.Second) }
	if r := refusal(); r != "" {
		t.Fatalf("refusal kept past its TTL: %q", r)
	}
}

// TestRefusalsBounded: made-up apps cannot grow the refusals past
// maxRefusals.
func TestRefusalsBounded(t *testing.T) {
	a, b := newKey(t), newKey(t)
	n, err := New(testConfig("agent", trustOf(a.Public())), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxRefusals + 10 {
		_ = n.accept(desired(t, b, "app"+string(rune('a'+i%26))+string(rune('a'+i/26)), 1), fromGossip)
	}
	if got := len(n.Refusals()); got != maxRefusals {
		t.Fatalf("%d refusals remembered, want %d", got, maxRefusals)
	}
}

package swarm

import (
	"testing"
	"time"
)

// A source handed to anacrolix is not handed again for a while (from
// firstRegive, doubling up to regiveAfter): agents
// pass their peer list on every tick, and refilling anacrolix's pool each
// time made it reshuffle connections without end.
func TestAddSourcesGivesEachAddressOnce(t *testing.T) {
	c := newClient(t, Config{Dir: t.TempDir(), ListenAddr: "127.0.0.1:0"})
	e := newEntry(newBundle(t, 64<<10).m, func() {})
	e.originsOpen = true // OriginUse{}: origins from the start
	src := Sources{Origins: []string{"127.0.0.1:9"}, Peers: []string{"127.0.0.1:10", "127.0.0.1:11"}}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.addSourcesLocked(e, src)
	if got := len(e.pending); got != 3 {
		t.Fatalf("first call: %d pending sources, want 3", got)
	}
	c.addSourcesLocked(e, src)
	if got := len(e.pending); got != 3 {
		t.Fatalf("the same sources again: %d pending, want still 3", got)
	}
	c.addSourcesLocked(e, Sources{Peers: []string{"127.0.0.1:10", "127.0.0.1:12"}})
	if got := len(e.pending); got != 4 {
		t.Fatalf("one new peer: %d pending, want 4", got)
	}
	// Long enough ago, an address is given again (a closed connection is
	// redialled only when anacrolix is told the address anew).
	e.given["127.0.0.1:9"] = time.Now().Add(-regiveAfter - time.Second)
	c.addSourcesLocked(e, src)
	if got := len(e.pending); got != 5 {
		t.Fatalf("after regiveAfter: %d pending, want 5", got)
	}
	// Each regive doubles the wait, from firstRegive up to regiveAfter.
	if got, want := e.regive["127.0.0.1:9"], 2*firstRegive; got != want {
		t.Fatalf("wait after one regive = %v, want %v", got, want)
	}
	e.given["127.0.0.1:9"] = time.Now().Add(-firstRegive - 100*time.Millisecond)
	c.addSourcesLocked(e, src)
	if got := len(e.pending); got != 5 {
		t.Fatalf("regiven within the doubled wait: %d pending, want 5", got)
	}
	e.given["127.0.0.1:9"] = time.Now().Add(-2*firstRegive - 100*time.Millisecond)
	c.addSourcesLocked(e, src)
	if got := len(e.pending); got != 6 {
		t.Fatalf("after the doubled wait: %d pending, want 6", got)
	}
	// Held off the origins (a node that is no feeder), an origin is
	// remembered but not given.
	e.originsOpen = false
	c.addSourcesLocked(e, Sources{Origins: []string{"127.0.0.1:13"}})
	if got := len(e.pending); got != 6 || e.origins[0] != "127.0.0.1:13" {
		t.Fatalf("origins held back: %d pending (want 6), origins %v", got, e.origins)
	}
}

package swarm

import (
	"context"
	"os"
	"testing"
)

// A peer whose data fails the piece hashes is dropped and banned, the
// download completes from the origin, and a counter and a log line say so.
func TestCorruptPeerIsBanned(t *testing.T) {
	b := newBundle(t, 2<<20)
	origin := newOrigin(t, b, Config{})

	bad := corruptSeeder(t, b)

	c, logs := newWatchedClient(t, Config{DisablePEX: true})

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	done := make(chan error, 1)
	// Only the bad peer at first, so that it certainly serves some pieces.
	go func() { done <- c.Fetch(ctx, b.m, Sources{Peers: []string{bad.Addr()}}) }()
	waitFor(t, "the corrupt peer to be banned", func() bool { return c.Stats().PeersBanned > 0 })
	c.AddSources(b.m.ReleaseID, Sources{Origins: []string{origin.Addr()}})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(BundlePath(c.cfg.Dir, b.m.ReleaseID))
	if err != nil || string(got) != string(b.data) {
		t.Fatalf("bundle after the fetch: err %v, equal %v", err, string(got) == string(b.data))
	}
	s := c.Stats()
	if s.PeersBanned != 1 || s.BadPieces == 0 {
		t.Errorf("stats %+v: want one peer banned and bad pieces counted", s)
	}
	if s.BytesFromOrigin == 0 {
		t.Errorf("stats %+v: the good bytes should have come from the origin", s)
	}
	lines := logs.FilterMessageSnippet("banned a peer").All()
	if len(lines) != 1 {
		for _, l := range lines {
			t.Log(l.ContextMap())
		}
		t.Fatalf("%d ban log lines, want 1", len(lines))
	}
	if ip := lines[0].ContextMap()["peer_ip"]; ip != "127.0.0.2" {
		t.Errorf("ban logged for %v, want 127.0.0.2", ip)
	}
}

// corruptSeeder seeds a verified copy of b, then overwrites its file in
// place, so that it serves pieces that fail their hashes while claiming to
// hold them all. It listens on 127.0.0.2: anacrolix bans an IP, not a port,
// and the others are on 127.0.0.1.
func corruptSeeder(t *testing.T, b bundle) *Client {
	t.Helper()
	bad := newClient(t, Config{DisablePEX: true, ListenAddr: "127.0.0.2:0"})
	store(t, bad.cfg.Dir, b)
	if err := bad.Seed(b.m); err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, len(b.data))
	for i := range junk {
		junk[i] = b.data[i] ^ 0x5a
	}
	if err := os.WriteFile(BundlePath(bad.cfg.Dir, b.m.ReleaseID), junk, 0o644); err != nil {
		t.Fatal(err)
	}
	return bad
}

package swarm

import (
	"context"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
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

// A fetch that banned a peer stops taking a busy swarm as a reason to stay
// off the origin: what it lacks may be what only the banned peer offered.
// Here the banned peer is its only one and the swarm always looks busy;
// before, the fetch waited starveLimit fallbacks (30 s) before it asked the
// origin, now one fallback (5 s).
func TestBanEndsWaitOnBusySwarm(t *testing.T) {
	b := newBundle(t, 2<<20)
	origin := newOrigin(t, b, Config{})
	bad := corruptSeeder(t, b)
	c, logs := newWatchedClient(t, Config{DisablePEX: true})

	const fallback = 5 * time.Second
	var busy atomic.Int64
	use := OriginUse{Fallback: fallback, SwarmProgress: func() float64 { return float64(busy.Add(1)) }}
	// Well before starveLimit fallbacks, generous after one.
	ctx, cancel := context.WithTimeout(context.Background(), starveLimit*fallback*2/3)
	defer cancel()
	err := c.FetchWith(ctx, b.m, Sources{Origins: []string{origin.Addr()}, Peers: []string{bad.Addr()}}, use)
	if err != nil {
		t.Fatalf("fetch after a ban, with the swarm busy: %v", err)
	}
	checkFetched(t, c, b)
	if s := c.Stats(); s.PeersBanned != 1 || s.BytesFromOrigin == 0 {
		t.Errorf("stats %+v: want the corrupt peer banned and the bundle from the origin", s)
	}
	asked := logs.FilterMessageSnippet("asking the origin").All()
	if len(asked) == 0 || asked[0].ContextMap()["banned_a_peer"] != true {
		t.Errorf("fallback log lines %v: want one that says the fetch banned a peer", asked)
	}
}

// A fetch told by OriginUse.Reassign, after it banned a feeder, to take that
// feeder's share becomes a feeder mid-way: it fetches the share from the
// origin, and the rest from the other feeder. Nobody waits for the
// fallback (ten minutes here), and the origin sends each share once. The
// first answer is no share, as from a node whose view of the fleet was
// still partial when the ban came: the fetch asks again.
func TestReassignTakesABannedFeedersShare(t *testing.T) {
	b := newBundle(t, 8<<20)
	origin := newOrigin(t, b, Config{})
	bad := corruptSeeder(t, b) // share 1 of 2, which it never sends
	feeder := newClient(t, Config{DisablePEX: true})
	c := newClient(t, Config{DisablePEX: true})

	var mu sync.Mutex
	var asked [][]string
	use := OriginUse{Fallback: 10 * time.Minute, Reassign: func(banned []string) (int, int) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, banned)
		if len(asked) > 1 && slices.Contains(banned, "127.0.0.2") {
			return 1, 2
		}
		return 0, 0
	}}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	src := Sources{Origins: []string{origin.Addr()}, Peers: []string{bad.Addr(), feeder.Addr(), c.Addr()}}
	var wg sync.WaitGroup
	var feederErr error
	wg.Go(func() {
		feederErr = feeder.FetchWith(ctx, b.m, src, OriginUse{Share: 0, Of: 2, Fallback: 10 * time.Minute})
	})
	err := c.FetchWith(ctx, b.m, src, use)
	wg.Wait()
	if err != nil || feederErr != nil {
		t.Fatalf("fetches: reassigned %v, feeder %v", err, feederErr)
	}
	checkFetched(t, c, b)
	checkFetched(t, feeder, b)
	mu.Lock()
	t.Logf("Reassign asked with %v", asked)
	if len(asked) < 2 || !slices.Contains(asked[0], "127.0.0.2") {
		t.Errorf("Reassign asked with %v: want the corrupt peer's IP, twice at least", asked)
	}
	mu.Unlock()
	half := b.m.BundleSize/2 + 2*b.m.PieceLength
	if s := c.Stats(); s.BytesFromOrigin == 0 || s.BytesFromOrigin > half {
		t.Errorf("the reassigned fetch got %d bytes from the origin, want its share (about %d)", s.BytesFromOrigin, b.m.BundleSize/2)
	}
	sent := origin.Stats().BytesSent
	t.Logf("origin sent %.3f copies", float64(sent)/float64(b.m.BundleSize))
	if sent > b.m.BundleSize+b.m.BundleSize/10 {
		t.Errorf("origin sent %d bytes for a %d-byte bundle: more than 1.1 copies", sent, b.m.BundleSize)
	}
}

// A share that Reassign gave ends when it answers no share (a node ranked
// before this one in a fuller view took it): the fetch leaves the origins
// and fetches the rest from peers. The origin sends slowly here, so that the
// second answer comes before the share is complete.
func TestReassignEndsTheShareItGave(t *testing.T) {
	b := newBundle(t, 8<<20)
	origin := newOrigin(t, b, Config{UploadRate: 512 << 10})
	bad := corruptSeeder(t, b)
	good := newClient(t, Config{DisablePEX: true})
	store(t, good.cfg.Dir, b)
	if err := good.Seed(b.m); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	c := newClientLogging(t, Config{DisablePEX: true}, zap.New(core))

	var calls atomic.Int64
	use := OriginUse{Fallback: 10 * time.Minute, Reassign: func([]string) (int, int) {
		if calls.Add(1) == 1 {
			return 1, 2
		}
		return 0, 0
	}}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- c.FetchWith(ctx, b.m, Sources{Origins: []string{origin.Addr()}, Peers: []string{bad.Addr()}}, use)
	}()
	waitFor(t, "the share to end", func() bool { return logs.FilterMessageSnippet("no longer an origin feeder").Len() > 0 })
	c.AddSources(b.m.ReleaseID, Sources{Peers: []string{good.Addr()}})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkFetched(t, c, b)
	took := logs.FilterMessageSnippet("origin feeder in place of a banned peer").Len()
	left := logs.FilterMessageSnippet("no longer an origin feeder").Len()
	if took != 1 || left != 1 {
		t.Errorf("the fetch took a share %d times and left it %d times, want once each", took, left)
	}
	s := c.Stats()
	t.Logf("%d bytes from the origin, %d from peers; Reassign asked %d times", s.BytesFromOrigin, s.BytesFromPeers, calls.Load())
	if s.BytesFromOrigin == 0 || s.BytesFromOrigin > b.m.BundleSize/2+2*b.m.PieceLength {
		t.Errorf("%d bytes from the origin: want part of one share", s.BytesFromOrigin)
	}
}

package swarm

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"sync"
	"testing"
)

// sharedClient starts a client in shared mode over the origin's store.
func sharedClient(t *testing.T, origin *Client, cfg Config) *Client {
	t.Helper()
	cfg.SharedDir = origin.cfg.Dir
	return newClient(t, cfg)
}

// checkSharedFetched checks a shared-mode client's fetch: complete, nothing
// stored in its own dir, no piece buffer left.
func checkSharedFetched(t *testing.T, c *Client, b bundle) {
	t.Helper()
	if got, want := c.BundlePath(b.m.ReleaseID), BundlePath(c.cfg.SharedDir, b.m.ReleaseID); got != want {
		t.Errorf("BundlePath = %s, want the shared copy %s", got, want)
	}
	for _, p := range []string{BundlePath(c.cfg.Dir, b.m.ReleaseID), BundlePath(c.cfg.Dir, b.m.ReleaseID) + partSuffix} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("shared-mode client stored %s (stat: %v)", p, err)
		}
	}
	have, total, ok := c.Progress(b.m.ReleaseID)
	if !ok || have != b.m.BundleSize || total != b.m.BundleSize {
		t.Errorf("Progress = %d, %d, %v; want %d, %[4]d, true", have, total, ok, b.m.BundleSize)
	}
	if n := c.shared.buffered.Load(); n != 0 {
		t.Errorf("%d bytes still buffered after the fetch", n)
	}
}

func TestSharedFetchAndServe(t *testing.T) {
	b := newBundle(t, 6<<20)
	// A capped origin makes the shared clients trade pieces, so that they
	// serve each other from the shared copy.
	origin := newOrigin(t, b, Config{UploadRate: 4 << 20})
	const n = 3
	cs := make([]*Client, n)
	addrs := make([]string, n)
	for i := range cs {
		cs[i] = sharedClient(t, origin, Config{})
		addrs[i] = cs[i].Addr()
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, c := range cs {
		wg.Go(func() { errs[i] = c.Fetch(ctx, b.m, Sources{Origins: []string{origin.Addr()}, Peers: addrs}) })
	}
	wg.Wait()
	var fromPeers int64
	for i, c := range cs {
		if errs[i] != nil {
			t.Fatalf("shared client %d: %v", i, errs[i])
		}
		checkSharedFetched(t, c, b)
		s := c.Stats()
		if s.BytesFromOrigin+s.BytesFromPeers != b.m.BundleSize {
			t.Errorf("client %d stats %+v: origin + peers should be %d", i, s, b.m.BundleSize)
		}
		fromPeers += s.BytesFromPeers
		t.Logf("client %d: %+v, peak buffered %d KiB", i, s, c.shared.peak.Load()>>10)
	}
	if fromPeers == 0 {
		t.Errorf("shared clients got nothing from each other")
	}

	// A normal client that only knows one shared client gets the right
	// bytes: pieces are served from the shared copy.
	d := newClient(t, Config{DisablePEX: true})
	fetch(t, d, b.m, Sources{Peers: []string{cs[0].Addr()}})
	checkFetched(t, d, b)
}

// A peer that serves corrupt bytes fails the piece check in shared mode: the
// received bytes are what is hashed, not the shared copy.
func TestSharedRejectsCorruptPieces(t *testing.T) {
	b := newBundle(t, 2<<20)
	origin := newOrigin(t, b, Config{})

	bad := corruptSeeder(t, b)

	c := sharedClient(t, origin, Config{DisablePEX: true})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Fetch(ctx, b.m, Sources{Peers: []string{bad.Addr()}}) }()
	waitFor(t, "a corrupt piece to fail its check", func() bool { return c.Stats().BadPieces > 0 })
	if have, _, _ := c.Progress(b.m.ReleaseID); have != 0 {
		t.Fatalf("%d bytes of corrupt pieces counted as verified", have)
	}

	// The origin brings good bytes.
	c.AddSources(b.m.ReleaseID, Sources{Origins: []string{origin.Addr()}})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkSharedFetched(t, c, b)
	if s := c.Stats(); s.BytesFromOrigin == 0 {
		t.Errorf("stats %+v: nothing from the origin", s)
	}
}

// Seed in shared mode serves the shared copy without a fetch.
func TestSharedSeed(t *testing.T) {
	b := newBundle(t, 1<<20)
	origin := newOrigin(t, b, Config{})
	s := sharedClient(t, origin, Config{})
	if err := s.Seed(b.m); err != nil {
		t.Fatal(err)
	}
	d := newClient(t, Config{DisablePEX: true})
	fetch(t, d, b.m, Sources{Peers: []string{s.Addr()}})
	checkFetched(t, d, b)
}

func TestSharedDirIsNotOwnDir(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, SharedDir: dir + "/"}
	if err := cfg.Validate(); err == nil {
		t.Fatal("Validate accepted a shared dir equal to the client's dir")
	}
}

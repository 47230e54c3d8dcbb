package swarm

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/swarmdeploy/swarm/release"
)

// capTimeout bounds a capped fetch: 24 MiB at 2 MiB/s is 12 s when the cap
// holds; the rest is room for the race detector on a busy host.
const capTimeout = 3 * time.Minute

// bytesRead is every byte c has read from its peer connections, protocol
// included: anacrolix counts them as its connections return them.
func bytesRead(c *Client) int64 {
	c.mu.Lock()
	cl := c.cl
	c.mu.Unlock()
	cs := cl.ConnStats()
	return cs.BytesRead.Int64()
}

// checkUnderCap fails the test if c read more than cap bytes/s over the
// interval since start, beyond the limiter's burst and a small tolerance.
// It is an upper bound only: a slow machine makes the fetch slower, never
// faster, so it cannot make the check fail.
func checkUnderCap(t *testing.T, what string, got int64, start time.Time, capBps int64) {
	t.Helper()
	elapsed := time.Since(start)
	// The tolerance is for bytes the limiters do not see: anacrolix's
	// upload limiter counts payload, not the 13-byte header of each 64 KiB
	// chunk (0.02 %), haves, keepalives or the info dictionary. 1 % is
	// well above those and far below the overshoot this is for (16–26 %).
	allowed := float64(capBps)*elapsed.Seconds() + rateBurst
	limit := int64(allowed * 1.01)
	t.Logf("%s: %.2f MiB in %.2f s = %.2f MiB/s; cap %.2f MiB/s, allowed %.2f MiB",
		what, float64(got)/(1<<20), elapsed.Seconds(), float64(got)/(1<<20)/elapsed.Seconds(),
		float64(capBps)/(1<<20), float64(limit)/(1<<20))
	if got > limit {
		t.Errorf("%s: read %d bytes in %v under a cap of %d bytes/s: %d over the %d allowed (cap × time + burst + 1 %%)",
			what, got, elapsed, capBps, got-limit, limit)
	}
}

// idlePeers starts n clients that fetch b from c alone and keep their
// connections to c open while c fetches: they have nothing c needs, so
// c's reads on those connections wait for their occasional requests,
// haves and keepalives. Their fetches end with the test.
func idlePeers(t *testing.T, n int, c *Client, m release.Manifest) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for range n {
		p := newClient(t, Config{DisablePEX: true})
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.Fetch(ctx, m, Sources{Peers: []string{c.Addr()}})
		}()
	}
}

// TestDownloadCapHoldsWithManyPeers fetches under a 2 MiB/s download cap
// while other peers hold connections to the fetching client, as every
// agent in a fleet does. anacrolix's own limiter reserves each read at the
// time the read began: a read that waited on a quiet connection moves the
// limiter's clock back, and the next read is credited that time again.
// With 5–10 agents a 1 MiB/s cap averaged 1.26 MiB/s.
func TestDownloadCapHoldsWithManyPeers(t *testing.T) {
	const capBps = 2 << 20
	b := newBundle(t, 24<<20)
	cfg := Config{DisablePEX: true}
	origin := newOrigin(t, b, cfg)
	cfg.DownloadRate = capBps
	c := newClient(t, cfg)
	idlePeers(t, 4, c, b.m)

	start := time.Now()
	fetchWatched(t, c, b.m, Sources{Origins: []string{origin.Addr()}}, capTimeout)
	checkUnderCap(t, "download", bytesRead(c), start, capBps)
	checkFetched(t, c, b)
}

// bytesWritten is every byte c has written to its peer connections,
// protocol included.
func bytesWritten(c *Client) int64 {
	c.mu.Lock()
	cl := c.cl
	c.mu.Unlock()
	cs := cl.ConnStats()
	return cs.BytesWritten.Int64()
}

// TestUploadCapHoldsWithManyLeechers has an origin capped at 2 MiB/s serve
// three leechers at once: what it writes, protocol included, stays within
// the cap. anacrolix reserves each chunk on the upload limiter before it
// sends it and counts payload only; the rest (message headers, haves,
// keepalives, the info dictionary) is far below the tolerance.
func TestUploadCapHoldsWithManyLeechers(t *testing.T) {
	const capBps = 2 << 20
	b := newBundle(t, 8<<20)
	origin := newOrigin(t, b, Config{DisablePEX: true, UploadRate: capBps})
	start := time.Now()
	var wg sync.WaitGroup
	for range 3 {
		l := newClient(t, Config{DisablePEX: true})
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), capTimeout)
			defer cancel()
			if err := l.Fetch(ctx, b.m, Sources{Origins: []string{origin.Addr()}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	checkUnderCap(t, "upload", bytesWritten(origin), start, capBps)
}

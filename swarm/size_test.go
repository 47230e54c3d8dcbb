package swarm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"

	"github.com/swarmdeploy/swarm/release"
)

// largeTimeout bounds a fetch of a release of hundreds of MiB: generous
// enough for the race detector on a busy 2-core host, short enough that a
// stall fails the test instead of hanging it.
const largeTimeout = 3 * time.Minute

// fetchWatched fetches m into c within timeout and fails the test with the
// most bytes it ever held if the fetch does not complete.
func fetchWatched(t testing.TB, c *Client, m release.Manifest, src Sources, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Fetch(ctx, m, src) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var most int64
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("fetch of %d MiB: %v; it held at most %d MiB", m.BundleSize>>20, err, most>>20)
			}
			return
		case <-tick.C:
			if have, _, ok := c.Progress(m.ReleaseID); ok {
				most = max(most, have)
			}
		}
	}
}

// TestFetchLargeAlone fetches a release far past the ~30 MiB at which one
// node alone with the origin used to stop for good (see
// clampRequestWindow).
func TestFetchLargeAlone(t *testing.T) {
	b := newBundle(t, 160<<20)
	origin := newOrigin(t, b, Config{})
	l := newClient(t, Config{})
	fetchWatched(t, l, b.m, Sources{Origins: []string{origin.Addr()}}, largeTimeout)
	checkFetched(t, l, b)
}

// TestAnacrolixUploadStallsPastItsBudget shows the library behaviour that
// clampRequestWindow works around: a leecher with swarm's configuration
// but without the clamp keeps more requests in flight than the uploader's
// budget, and the connection stops for good, usually after some 30 MiB;
// with the clamp the same fetch completes. The stall depends on the order
// in which the uploader picks requests, so the unclamped fetch gets up to
// three tries to show it. If it never does, anacrolix no longer stalls
// there and the clamp may be dropped.
func TestAnacrolixUploadStallsPastItsBudget(t *testing.T) {
	b := newBundle(t, 256<<20)
	origin := newOrigin(t, b, Config{})
	stalled := false
	for try := 1; try <= 3 && !stalled; try++ {
		done, have := leechRaw(t, b.m, origin.Addr(), false)
		if !done {
			stalled = true
			t.Logf("without the clamp the fetch stopped at %d of %d MiB (try %d)", have>>20, b.m.BundleSize>>20, try)
		}
	}
	if !stalled {
		t.Errorf("without the clamp the fetch completed three times: anacrolix no longer stalls past the upload budget")
	}
	if done, have := leechRaw(t, b.m, origin.Addr(), true); !done {
		t.Errorf("with the clamp the fetch stopped at %d of %d MiB", have>>20, b.m.BundleSize>>20)
	}
}

// stallAfter is how long leechRaw waits without a new byte before it calls
// the fetch stalled. The clamped fetch never pauses this long.
const stallAfter = 5 * time.Second

// leechRaw fetches m from origin with a bare anacrolix client configured as
// a swarm Client configures it, with or without clampRequestWindow, and
// reports whether it completed before stalling, and how many bytes it had.
func leechRaw(t *testing.T, m release.Manifest, origin string, clamp bool) (done bool, have int64) {
	t.Helper()
	c, err := New(Config{Dir: t.TempDir(), ListenAddr: "127.0.0.1:0"}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := c.clientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !clamp {
		cc.Callbacks.ReadExtendedHandshake = nil
	}
	cl, err := torrent.NewClient(cc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, err := range cl.Close() {
			t.Error(err)
		}
		cc.DefaultStorage.(storage.ClientImplCloser).Close()
	}()
	var ih metainfo.Hash
	if err := ih.FromHexString(m.InfoHash); err != nil {
		t.Fatal(err)
	}
	tor, _ := cl.AddTorrentOpt(torrent.AddTorrentOpts{InfoHash: ih, ChunkSize: chunkSize})
	tor.AddPeers([]torrent.PeerInfo{{Addr: torrent.StringAddr(origin), Source: torrent.PeerSourceDirect, Trusted: true}})
	select {
	case <-tor.GotInfo():
	case <-time.After(testTimeout):
		t.Fatal("no info dictionary from the origin")
	}
	tor.DownloadAll()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-tor.Complete().On():
			return true, tor.BytesCompleted()
		case now := <-tick.C:
			if n := tor.BytesCompleted(); n > have {
				have, last = n, now
			} else if now.Sub(last) > stallAfter {
				return false, have
			}
		}
	}
}

// longTest skips the test unless SWARM_TEST_LONG is set (make test-long).
func longTest(t *testing.T) {
	t.Helper()
	if os.Getenv("SWARM_TEST_LONG") == "" {
		t.Skip("set SWARM_TEST_LONG=1 (make test-long) to run")
	}
}

// longTimeout bounds a fetch of a GiB under the race detector.
const longTimeout = 15 * time.Minute

// TestFetchGiBAlone fetches 1 GiB with one node alone with the origin,
// uncapped and with the origin's upload capped.
func TestFetchGiBAlone(t *testing.T) {
	longTest(t)
	b := newBundle(t, 1<<30)
	for _, rate := range []int64{0, 128 << 20} {
		t.Run(fmt.Sprintf("origin-rate-%d", rate), func(t *testing.T) {
			origin := newOrigin(t, b, Config{UploadRate: rate})
			l := newClient(t, Config{})
			fetchWatched(t, l, b.m, Sources{Origins: []string{origin.Addr()}}, longTimeout)
			checkFetched(t, l, b)
		})
	}
}

// TestFeederShareOverQuarterGiB gives each of two feeders a share of
// 512 MiB from the origin.
func TestFeederShareOverQuarterGiB(t *testing.T) {
	longTest(t)
	checkFeeders(t, 1<<30, longTimeout)
}

// TestFetchDiskFullIsAnError fetches a release onto a filesystem too small
// for it: the fetch fails with ENOSPC at once, before a byte is fetched (the
// part file's space is reserved first), as a DiskFullError that says how
// much it needs; no part file is left; the client keeps working, and the
// process does not die of SIGBUS, as it did when anacrolix's storage wrote
// through a memory mapping. It needs root to mount a small tmpfs.
func TestFetchDiskFullIsAnError(t *testing.T) {
	dir := smallDisk(t, 8<<20)
	b := newBundle(t, 32<<20)
	origin := newOrigin(t, b, Config{})
	l := newClient(t, Config{Dir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	err := l.Fetch(ctx, b.m, Sources{Origins: []string{origin.Addr()}})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fetch of 32 MiB onto 8 MiB: %v, want an error wrapping ENOSPC", err)
	}
	t.Logf("fetch of 32 MiB onto 8 MiB: %v", err)
	var full *DiskFullError
	if !errors.As(err, &full) || full.Need != b.m.BundleSize || full.Free > 8<<20 || full.Dir != dir {
		t.Fatalf("error %v (%+v): want a DiskFullError needing %d bytes on %s", err, full, b.m.BundleSize, dir)
	}
	if got := l.Stats().BytesFromOrigin; got != 0 {
		t.Errorf("%d bytes fetched before the full disk showed; want none", got)
	}
	if _, err := os.Stat(BundlePath(dir, b.m.ReleaseID) + partSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("part file after a reservation that did not fit: %v, want none", err)
	}
	// The client still serves: a release that fits is fetched.
	small := newBundle(t, 1<<20)
	o2 := newOrigin(t, small, Config{})
	if err := os.RemoveAll(filepath.Join(dir, b.m.ReleaseID.Hex())); err != nil {
		t.Fatal(err)
	}
	time.Sleep(closeGrace + 200*time.Millisecond) // the failed fetch's file closes, its space comes back
	fetch(t, l, small.m, Sources{Origins: []string{o2.Addr()}})
	checkFetched(t, l, small)
}

// smallDisk mounts a tmpfs of size bytes for the test, or skips the test
// where it cannot (not root, no tmpfs).
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("mount a %d-byte tmpfs: %v", size, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/swarm"
)

func TestTwoDigits(t *testing.T) {
	for _, tt := range []struct{ in, want int64 }{
		{0, 0}, {99, 99}, {100, 100}, {104, 100}, {105, 110}, {2_345_678, 2_300_000}, {2_350_000, 2_400_000},
	} {
		if got := twoDigits(tt.in); got != tt.want {
			t.Errorf("twoDigits(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// rateCapTimeout bounds each fetch in TestRateAfterRestartIsWithinTheCap:
// 16 MiB at 2 MiB/s is 8 s when the cap holds.
const rateCapTimeout = 2 * time.Minute

// capBundle writes size random bytes as a release bundle into an origin's
// store and returns their manifest.
func capBundle(t *testing.T, dir string, size int64) release.Manifest {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	pl := release.PieceLengthFor(size)
	ih, err := swarm.Metainfo(bytes.NewReader(data), size, pl, swarm.InfoName("web", "1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	m := release.Manifest{App: "web", Version: "1.0.0", ReleaseID: release.IDOf(data), BundleSize: size,
		UnpackedSize: size, InfoHash: ih, PieceLength: pl, Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	p := swarm.BundlePath(dir, m.ReleaseID)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return m
}

func startSwarm(t *testing.T, cfg swarm.Config) *swarm.Client {
	t.Helper()
	cfg.ListenAddr = "127.0.0.1:0"
	c, err := swarm.New(cfg, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRateAfterRestartIsWithinTheCap restarts a download capped at 2 MiB/s
// on its half-complete partial file: the rate the agent reports counts the
// bytes it fetches, not the pieces it finds on disk, and so stays within
// the cap (a restarted agent used to report 3.3 MiB/s under 2 MiB/s).
func TestRateAfterRestartIsWithinTheCap(t *testing.T) {
	const capBps = 2 << 20
	originDir, dir := t.TempDir(), t.TempDir()
	m := capBundle(t, originDir, 16<<20)
	origin := startSwarm(t, swarm.Config{Dir: originDir, Origin: true})
	if err := origin.Seed(m); err != nil {
		t.Fatal(err)
	}
	src := swarm.Sources{Origins: []string{origin.Addr()}}

	// The first run stops once half the bundle is verified.
	first := startSwarm(t, swarm.Config{Dir: dir, DownloadRate: capBps})
	ctx, cancel := context.WithTimeout(context.Background(), rateCapTimeout)
	done := make(chan error, 1)
	go func() { done <- first.Fetch(ctx, m, src) }()
	var half int64
	for half < m.BundleSize/2 {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("first fetch ended before half the bundle: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		half, _, _ = first.Progress(m.ReleaseID)
	}
	cancel()
	<-done
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	second := startSwarm(t, swarm.Config{Dir: dir, DownloadRate: capBps})
	a := &Agent{cfg: Config{Now: time.Now}, torrent: second}
	st := appState{App: m.App, ReleaseID: m.ReleaseID}
	rate := func() int64 {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.rateLocked(st)
	}
	ctx, cancel = context.WithTimeout(context.Background(), rateCapTimeout)
	defer cancel()
	// Like an agent that has just restarted, the fetch starts before
	// gossip has named the origin: the partial file's pieces are checked
	// once the origin sends the info dictionary, more than rateWindow
	// after the first report.
	go func() { done <- second.Fetch(ctx, m, swarm.Sources{}) }()
	var most int64
	sourcesAt := time.Now().Add(2 * rateWindow)
	// As report does: every tick, once the client knows the release.
	for fetching := true; fetching; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			fetching = false
		case <-time.After(100 * time.Millisecond):
		}
		if !sourcesAt.IsZero() && time.Now().After(sourcesAt) {
			second.AddSources(m.ReleaseID, src)
			sourcesAt = time.Time{}
		}
		if _, _, ok := second.Progress(m.ReleaseID); ok {
			most = max(most, rate())
		}
	}
	fetched, _ := second.Fetched(m.ReleaseID)
	t.Logf("resumed with %.1f MiB verified; fetched %.1f MiB more; highest reported rate %.2f MiB/s",
		float64(half)/(1<<20), float64(fetched)/(1<<20), float64(most)/(1<<20))
	if missing := m.BundleSize - half; fetched > missing {
		t.Errorf("restart fetched %d bytes; only %d were missing", fetched, missing)
	}
	// Over a window of at least rateWindow (1 s) the cap lets through
	// capBps plus the limiter's 256 KiB burst; anacrolix may count up to
	// its 128 KiB read buffer and a 64 KiB chunk of the bytes read before
	// the window in it; twoDigits rounds by at most 2.5 %.
	limit := int64(capBps+(256+128+64)<<10) * 1025 / 1000
	if most > limit {
		t.Errorf("reported rate reached %d bytes/s under a cap of %d (at most %d allowed)", most, capBps, limit)
	}
}

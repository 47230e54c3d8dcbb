package bench

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
)

// An agent stopped mid-download starts again where it was: after the
// restart it fetches about what it was missing, not the whole bundle, and it
// installs only the verified whole.
func TestResumeAfterKill(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const size = 8 << 20
	// A slow origin and no other agent: the download takes seconds.
	c, err := NewCluster(ctx, ClusterConfig{Dir: t.TempDir(), OriginUploadRate: 1 << 20}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	first, err := c.AddAgent("resumer", AgentOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := c.Publish(ctx, makeApp(t, "1.0.0", size), "hello", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	// Progress and rate reach the seeder's status through gossip.
	waitFor(ctx, t, "the seeder's status to show the download's progress and rate", func() bool {
		for _, n := range c.Seeder.Status().Nodes {
			for _, a := range n.Apps {
				if n.Name == "resumer" && a.Phase == string(gossip.PhaseDownloading) && a.Progress > 0 && a.RateBps > 0 {
					return true
				}
			}
		}
		return false
	})
	var had, total int64
	waitFor(ctx, t, "a third of the bundle verified", func() bool {
		had, total, _ = first.DownloadProgress("hello")
		return total > 0 && had >= total/3
	})
	// had is what it held just before the stop, a lower bound of what it
	// held at the stop.
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	if ph, _, _ := first.AppPhase("hello"); ph != gossip.PhaseDownloading {
		t.Fatalf("stopped in phase %s; the test needs it mid-download", ph)
	}
	if had >= total {
		t.Fatalf("the download finished before the stop (%d of %d)", had, total)
	}

	again, err := c.AddAgent("resumer", AgentOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitActive(ctx, "hello", pub.ReleaseID, []*Node{again}); err != nil {
		t.Fatal(err)
	}
	st := again.TorrentStats()
	fetched := st.BytesFromOrigin + st.BytesFromPeers
	missing := total - had // at most
	// Pieces in flight at the stop were not verified and come again: allow
	// a few pieces' worth above what was missing.
	slack := 4 * release.PieceLengthFor(total)
	t.Logf("held %d of %d at the stop; fetched %d after the restart (missing %d)", had, total, fetched, missing)
	if fetched > missing+slack {
		t.Errorf("fetched %d bytes after the restart, but only %d were missing", fetched, missing)
	}
	if fetched == 0 {
		t.Errorf("fetched nothing after the restart, yet the bundle was incomplete")
	}
}

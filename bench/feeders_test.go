package bench

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// With two origin feeders, eight agents get the release while the origin
// sends it about once; with the naive policy every agent pulls from the
// origin. Byte counts are compared, never times.
func TestOriginFeedersKeepOriginNearOneCopy(t *testing.T) {
	const size = 4 << 20
	run := func(t *testing.T, feeders int) (originCopies float64) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		c, err := NewCluster(ctx, ClusterConfig{
			Dir: t.TempDir(), Agents: 8, OriginFeeders: feeders,
			// Slow nodes make agents trade pieces rather than all finishing
			// from the origin at once.
			AgentUploadRate: 1 << 20, OriginUploadRate: 8 << 20,
		}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		pub, err := c.Publish(ctx, makeApp(t, "1.0.0", size), "hello", "1.0.0")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WaitActive(ctx, "hello", pub.ReleaseID, c.Agents()); err != nil {
			t.Fatal(err)
		}
		bundle := bundleSize(t, c, pub.ReleaseID)
		return float64(c.Seeder.TorrentStats().BytesSent) / float64(bundle)
	}
	var feeders, naive float64
	t.Run("feeders", func(t *testing.T) { feeders = run(t, 2) })
	t.Run("naive", func(t *testing.T) { naive = run(t, -1) })
	t.Logf("origin sent %.2f copies with 2 feeders, %.2f with every agent on the origin", feeders, naive)
	if feeders > 1.3 {
		t.Errorf("with feeders the origin sent %.2f copies, want about one", feeders)
	}
	if naive <= feeders {
		t.Errorf("the naive policy sent %.2f copies, no more than the feeders' %.2f", naive, feeders)
	}
}

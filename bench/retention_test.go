package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/swarm"
)

// Four releases in a row reach an agent that keeps 2 releases: it ends
// with the current and the previous bundle only, still active on the
// current release. (The disk watermark, --min-free, now also holds a
// download that would go below it: agent/diskfull_test.go tests it on a
// small disk.)
func TestBundleRetention(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	c, err := NewCluster(ctx, ClusterConfig{Dir: dir}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	byKeep, err := c.AddAgent("keep-2", AgentOptions{Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	nodes := []*Node{byKeep}

	var ids []release.ID
	for i := 1; i <= 4; i++ {
		v := fmt.Sprintf("1.0.%d", i)
		pub, err := c.Publish(ctx, makeApp(t, v, 256<<10), "hello", v)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WaitActive(ctx, "hello", pub.ReleaseID, nodes); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, pub.ReleaseID)
	}
	want := []release.ID{ids[2], ids[3]} // previous and current
	slices.Sort(want)
	for _, n := range nodes {
		bundles := filepath.Join(dir, n.Name(), "bundles")
		held := func() []release.ID {
			var out []release.ID
			for _, id := range ids {
				if _, err := os.Stat(swarm.BundlePath(bundles, id)); err == nil {
					out = append(out, id)
				}
			}
			slices.Sort(out)
			return out
		}
		waitFor(ctx, t, n.Name()+" keeps only the previous and current bundles", func() bool {
			return slices.Equal(held(), want)
		})
		if m, ok, err := n.Current("hello"); err != nil || !ok || m.ReleaseID != ids[3] {
			t.Errorf("%s: current %v %v %v, want %s", n.Name(), m.ReleaseID, ok, err, ids[3])
		}
	}
}

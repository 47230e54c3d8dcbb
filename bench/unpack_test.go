package bench

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
)

// slowBundles opens bundles for unpacking at about 12 KiB/s while slow is
// set (agent.Config.OpenBundle): a release of 4 MiB then unpacks for
// minutes, longer than the tests wait, as a huge one would; every read
// still returns within milliseconds.
type slowBundles struct{ slow atomic.Bool }

func (s *slowBundles) open(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &trickle{f: f, s: s}, nil
}

type trickle struct {
	f *os.File
	s *slowBundles
}

func (t *trickle) Read(p []byte) (int, error) {
	if t.s.slow.Load() {
		time.Sleep(5 * time.Millisecond)
		p = p[:min(len(p), 64)]
	}
	return t.f.Read(p)
}

func (t *trickle) Close() error { return t.f.Close() }

// unpacking reports whether node's installer is unpacking version of app:
// its temporary directory is there.
func unpacking(t *testing.T, c *Cluster, node, app, version string) bool {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(c.cfg.Dir, node, "releases", app))
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), ".tmp-"+version+"-") {
			return true
		}
	}
	return false
}

// leftovers lists what is left under node's releases/app that loading the
// app would have to clean up: temporary names.
func leftovers(t *testing.T, c *Cluster, node, app string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(c.cfg.Dir, node, "releases", app))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") || strings.HasPrefix(e.Name(), "current.tmp-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestSlowUnpackDoesNotHoldOtherApps: while one app's release unpacks for a
// long time, and its target is replaced mid-unpack, another app's release
// still rolls out and activates on the same node (issue 13: a slow unpack
// held up every other app's rollout).
func TestSlowUnpackDoesNotHoldOtherApps(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := NewCluster(ctx, ClusterConfig{Dir: t.TempDir()}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	sb := &slowBundles{}
	sb.slow.Store(true)
	n, err := c.AddAgent("slow-node", AgentOptions{OpenBundle: sb.open})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := c.Publish(ctx, makeApp(t, "1.0.0", 4<<20), "big", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "big 1.0.0 unpacking", func() bool { return unpacking(t, c, n.Name(), "big", "1.0.0") })
	// A new target mid-unpack: the agent retires the unpacking worker.
	big2, err := c.Publish(ctx, makeApp(t, "2.0.0", 4<<20), "big", "2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "big 2.0.0 unpacking, 1.0.0's unpack gone", func() bool {
		return unpacking(t, c, n.Name(), "big", "2.0.0") && !unpacking(t, c, n.Name(), "big", "1.0.0")
	})

	small, err := c.Publish(ctx, makeApp(t, "1.0.0", 1<<10), "small", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitActive(ctx, "small", small.ReleaseID, []*Node{n}); err != nil {
		t.Fatal(err)
	}
	if ph, id, _ := n.AppPhase("big"); ph != gossip.PhaseInstalling || id != big2.ReleaseID || !unpacking(t, c, n.Name(), "big", "2.0.0") {
		t.Fatalf("big is %s on %s, want still unpacking 2.0.0: the test did not hold it long enough", ph, id.Short())
	}

	sb.slow.Store(false)
	if err := c.WaitActive(ctx, "big", big2.ReleaseID, []*Node{n}); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, c, n.Name(), "big"); len(left) != 0 {
		t.Errorf("left behind under releases/big: %q", left)
	}
}

// TestAgentStopMidUnpack: an agent stopped (SIGTERM cancels Run's context)
// while it unpacks a release stops promptly, leaves the active release,
// the installer's state and its own persisted state as they were and no
// half-unpacked tree, and once restarted installs the release cleanly.
func TestAgentStopMidUnpack(t *testing.T) {
	shim := testShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hook, runs := countingHook(t)
	c, err := NewCluster(ctx, ClusterConfig{Dir: t.TempDir(), Hook: hook, Shim: shim}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	sb := &slowBundles{}
	n, err := c.AddAgent("node", AgentOptions{OpenBundle: sb.open})
	if err != nil {
		t.Fatal(err)
	}
	v1, err := c.Publish(ctx, makeApp(t, "1.0.0", 1<<20), "web", "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitActive(ctx, "web", v1.ReleaseID, []*Node{n}); err != nil {
		t.Fatal(err)
	}
	appDir := filepath.Join(c.cfg.Dir, n.Name(), "releases", "web")
	state := func() string {
		b, err := os.ReadFile(filepath.Join(appDir, "state.json"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	current := func() string {
		target, err := os.Readlink(filepath.Join(appDir, "current"))
		if err != nil {
			t.Fatal(err)
		}
		return target
	}
	state1, current1 := state(), current()

	sb.slow.Store(true)
	v2, err := c.Publish(ctx, makeApp(t, "2.0.0", 4<<20), "web", "2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "web 2.0.0 unpacking", func() bool { return unpacking(t, c, n.Name(), "web", "2.0.0") })
	// Node.Stop cancels Run's context, as SIGTERM does, and waits for Run.
	// The unpack has stopped once its temporary tree is gone; issue 13
	// asks for that within a second of the cancel.
	stopped := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		for unpacking(t, c, n.Name(), "web", "2.0.0") && time.Since(start) < time.Minute {
			time.Sleep(time.Millisecond)
		}
		stopped <- time.Since(start)
	}()
	if err := n.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	took := time.Since(start)
	unpackStopped := <-stopped
	t.Logf("unpack stopped and cleaned up %v after the cancel; Run returned after %v", unpackStopped, took)
	if unpackStopped > time.Second {
		t.Errorf("the unpack went on for %v after the agent's context ended; want within 1s", unpackStopped)
	}

	if got := current(); got != current1 {
		t.Errorf("current -> %s after the stop, was %s", got, current1)
	}
	if got := state(); got != state1 {
		t.Errorf("installer state changed by the interrupted install:\n%s\nwas\n%s", got, state1)
	}
	if left := leftovers(t, c, n.Name(), "web"); len(left) != 0 {
		t.Errorf("the interrupted unpack left %q", left)
	}
	if got := countLines(t, runs); got != 1 {
		t.Errorf("hook ran %d times, want once (for 1.0.0)", got)
	}

	sb.slow.Store(false)
	again, err := c.AddAgent(n.Name(), AgentOptions{OpenBundle: sb.open})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if err := c.WaitActive(ctx, "web", v2.ReleaseID, []*Node{again}); err != nil {
		t.Fatal(err)
	}
	var st struct {
		Current, Previous *release.Manifest
	}
	if err := json.Unmarshal([]byte(state()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Current == nil || st.Current.ReleaseID != v2.ReleaseID || st.Previous == nil || st.Previous.ReleaseID != v1.ReleaseID {
		t.Errorf("installer state after the restart: %s; want current 2.0.0, previous 1.0.0", state())
	}
	if got := countLines(t, runs); got != 2 {
		t.Errorf("hook ran %d times, want twice", got)
	}
	if left := leftovers(t, c, n.Name(), "web"); len(left) != 0 {
		t.Errorf("left behind after the restart: %q", left)
	}
}

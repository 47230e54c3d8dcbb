package agent_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/swarmdeploy/swarm/bench"
	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/internal/disktest"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/seeder"
	"github.com/swarmdeploy/swarm/swarm"
)

// Agents on a disk too small for a release: they never crash, say "disk
// full" and what they need, keep running the release they run, and finish
// by themselves once there is room. Each test runs a seeder and one agent
// in this process on 127.0.0.1 (bench.Cluster); those with a small disk
// mount a tmpfs and need root.

// diskCluster starts a seeder; logs records the agents' info lines.
func diskCluster(t *testing.T, cfg bench.ClusterConfig) (*bench.Cluster, *observer.ObservedLogs) {
	t.Helper()
	cfg.Dir = t.TempDir()
	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(zapcore.NewTee(core, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Core()))
	c, err := bench.NewCluster(t.Context(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, logs
}

// agentDir is the data dir bench.Cluster gives the agent named name.
func agentDir(t *testing.T, c *bench.Cluster, name string) string {
	t.Helper()
	return filepath.Join(filepath.Dir(c.OriginBundlesDir()), "..", name)
}

// appTree writes an app of size bytes of incompressible data.
func appTree(t *testing.T, version string, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app-"+version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(dir, "payload.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func publish(t *testing.T, c *bench.Cluster, version string, size int) release.ID {
	t.Helper()
	pub, err := c.Publish(t.Context(), appTree(t, version, size), "hello", version)
	if err != nil {
		t.Fatal(err)
	}
	return pub.ReleaseID
}

// publishTolerant publishes a release whose rollout tolerates one failed
// node: a node that fails for want of disk counts as failed, and with the
// default budget of none the rollout would roll back at once.
func publishTolerant(t *testing.T, c *bench.Cluster, version string, size int) release.ID {
	t.Helper()
	plan := &release.Plan{MaxFailures: release.Budget{Count: 1}}
	pub, err := c.PublishWith(t.Context(), appTree(t, version, size), "hello", version, seeder.PublishOptions{Plan: plan})
	if err != nil {
		t.Fatal(err)
	}
	return pub.ReleaseID
}

func waitActive(t *testing.T, c *bench.Cluster, n *bench.Node, id release.ID, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	if err := c.WaitActive(ctx, "hello", id, []*bench.Node{n}); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds, or fails the test after within.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitDiskFull waits for n to report release id failed for want of disk,
// and checks its error says so with the need figure.
func waitDiskFull(t *testing.T, n *bench.Node, id release.ID, need string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var msg string
	for {
		ph, rid, _ := n.AppPhase("hello")
		msg = n.AppError("hello")
		if ph == gossip.PhaseFailed && rid == id && strings.HasPrefix(msg, "disk full: need "+need+",") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("phase %s on %s, error %q: want failed on %s with \"disk full: need %s, …\"", ph, rid.Short(), msg, id.Short(), need)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(msg, " free on ") || !strings.Contains(msg, "(--min-free ") {
		t.Fatalf("error %q: want \"disk full: need %s, … free on … (--min-free …)\"", msg, need)
	}
	if len(msg) > 200 {
		t.Errorf("error of %d bytes does not fit gossip's 200", len(msg))
	}
	t.Logf("the agent says: %s", msg)
}

// needOf is what release id needs on n's disk, as the agent says it: its
// bundle less the bytes of it already there, and its unpacked size.
func needOf(t *testing.T, n *bench.Node, id release.ID, there int64) string {
	t.Helper()
	var m release.Manifest
	eventually(t, time.Minute, "the agent learns the release", func() bool {
		d, ok := n.Desired("hello")
		if !ok {
			return false
		}
		var err error
		m, err = d.Target.Unverified()
		return err == nil && m.ReleaseID == id
	})
	return swarm.SizeText(m.BundleSize-there+m.UnpackedSize, true)
}

// fetched is how many bundle bytes n received.
func fetched(n *bench.Node) int64 {
	s := n.TorrentStats()
	return s.BytesFromOrigin + s.BytesFromPeers
}

// checkIntact checks that the agent still runs release id and that its
// state files read back.
func checkIntact(t *testing.T, n *bench.Node, dir string, id release.ID) {
	t.Helper()
	if m, ok, err := n.Current("hello"); err != nil || !ok || m.ReleaseID != id {
		t.Errorf("current release %s %v %v, want %s still active", m.ReleaseID.Short(), ok, err, id.Short())
	}
	for _, name := range []string{"agent.json", "desired.json"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !json.Valid(b) {
			t.Errorf("%s: %v, valid JSON %v", name, err, json.Valid(b))
		}
	}
}

// TestReleaseBiggerThanTheDisk: a release bigger than the agent's disk
// fails at once, before a byte is fetched, with "disk full" and the bytes it
// needs (bundle and unpacked); the release the agent runs stays active and its state files
// intact. Once the disk grows, the agent fetches and installs the release by
// itself, without a new publish (the rollout tolerates the failure).
func TestReleaseBiggerThanTheDisk(t *testing.T) {
	c, _ := diskCluster(t, bench.ClusterConfig{})
	dir := agentDir(t, c, "small")
	resize := disktest.MountSmall(t, dir, 24<<20)
	n, err := c.AddAgent("small", bench.AgentOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v1 := publish(t, c, "1.0.0", 1<<20)
	waitActive(t, c, n, v1, time.Minute)
	before := fetched(n)

	v2 := publishTolerant(t, c, "2.0.0", 32<<20)
	waitDiskFull(t, n, v2, needOf(t, n, v2, 0))
	if got := fetched(n) - before; got != 0 {
		t.Errorf("%d bytes of the release fetched before the full disk showed; want none", got)
	}
	checkIntact(t, n, dir, v1)

	resize(128 << 20)
	waitActive(t, c, n, v2, 2*time.Minute)
}

// TestRestartWithPartFileOnAFullDisk: an agent restarted with half a
// release in its part file, on a disk with no room for the rest, does not
// crash: it fails the release with "disk full" and what the rest needs.
// Once space is freed it resumes by itself, says how many pieces it kept,
// and fetches only the rest.
func TestRestartWithPartFileOnAFullDisk(t *testing.T) {
	c, logs := diskCluster(t, bench.ClusterConfig{})
	dir := agentDir(t, c, "node")
	disktest.MountSmall(t, dir, 48<<20)
	n, err := c.AddAgent("node", bench.AgentOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v1 := publish(t, c, "1.0.0", 1<<20)
	waitActive(t, c, n, v1, time.Minute)

	// v2 comes to a full disk; the agent is killed; its part file holds the
	// first half of v2, as a fetch killed half way leaves it.
	filler := filepath.Join(dir, "filler")
	disktest.Fill(t, filler)
	v2 := publishTolerant(t, c, "2.0.0", 16<<20)
	bundle, err := os.ReadFile(swarm.BundlePath(c.OriginBundlesDir(), v2))
	if err != nil {
		t.Fatal(err)
	}
	waitDiskFull(t, n, v2, needOf(t, n, v2, 0))
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	part := swarm.BundlePath(filepath.Join(dir, "bundles"), v2) + ".part"
	if err := os.MkdirAll(filepath.Dir(part), 0o755); err != nil {
		t.Fatal(err)
	}
	half := len(bundle) / 2
	if err := os.WriteFile(part, bundle[:half], 0o644); err != nil {
		t.Fatal(err)
	}
	disktest.Fill(t, filler)
	var st syscall.Stat_t
	if err := syscall.Stat(part, &st); err != nil {
		t.Fatal(err)
	}

	n, err = c.AddAgent("node", bench.AgentOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitDiskFull(t, n, v2, needOf(t, n, v2, st.Blocks*512)) // the file system holds whole pages
	checkIntact(t, n, dir, v1)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitActive(t, c, n, v2, 2*time.Minute)
	resumed := logs.FilterMessageSnippet("resumed download").All()
	if len(resumed) != 1 {
		t.Fatalf("%d lines say the download resumed, want 1", len(resumed))
	}
	t.Logf("the agent says: %s", resumed[0].Message)
	kept, _ := resumed[0].ContextMap()["bytes"].(int64)
	if kept == 0 || kept > int64(half) {
		t.Errorf("resumed with %d bytes kept, want some of the %d in the part file", kept, half)
	}
	if got, most := fetched(n), int64(len(bundle))-kept; got > most {
		t.Errorf("fetched %d bytes after the restart; only %d were missing", got, most)
	}
}

// TestMinFreeHoldsADownload: with --min-free more than the disk can ever
// spare, the agent does not start the download (no byte fetched, no part
// file) and says "disk full" with the watermark.
func TestMinFreeHoldsADownload(t *testing.T) {
	c, _ := diskCluster(t, bench.ClusterConfig{})
	n, err := c.AddAgent("node", bench.AgentOptions{MinFreeBytes: 1 << 50})
	if err != nil {
		t.Fatal(err)
	}
	v1 := publish(t, c, "1.0.0", 1<<20)
	waitDiskFull(t, n, v1, needOf(t, n, v1, 0))
	if msg := n.AppError("hello"); !strings.HasSuffix(msg, "(--min-free 1024.0 TiB)") {
		t.Errorf("error %q does not name the watermark", msg)
	}
	if got := fetched(n); got != 0 {
		t.Errorf("%d bytes fetched; want none", got)
	}
	part := swarm.BundlePath(filepath.Join(agentDir(t, c, "node"), "bundles"), v1) + ".part"
	if _, err := os.Stat(part); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("part file: %v, want none", err)
	}
}

// TestSupersededDownloadIsDropped: with --keep 1, the part file of a
// release replaced by a newer target while it downloads is removed, with
// one line that says so.
func TestSupersededDownloadIsDropped(t *testing.T) {
	c, logs := diskCluster(t, bench.ClusterConfig{AgentDownloadRate: 2 << 20})
	n, err := c.AddAgent("node", bench.AgentOptions{Keep: 1})
	if err != nil {
		t.Fatal(err)
	}
	v1 := publish(t, c, "1.0.0", 256<<10)
	waitActive(t, c, n, v1, time.Minute)

	v2 := publish(t, c, "2.0.0", 32<<20)
	eventually(t, time.Minute, "the agent fetches v2", func() bool {
		ph, id, _ := n.AppPhase("hello")
		have, _, _ := n.DownloadProgress("hello")
		return ph == gossip.PhaseDownloading && id == v2 && have > 0
	})
	part := swarm.BundlePath(filepath.Join(agentDir(t, c, "node"), "bundles"), v2) + ".part"
	if _, err := os.Stat(part); err != nil {
		t.Fatalf("part file of the download under way: %v", err)
	}

	v3 := publish(t, c, "3.0.0", 256<<10)
	waitActive(t, c, n, v3, time.Minute)
	eventually(t, 30*time.Second, "the superseded part file is removed", func() bool {
		_, err := os.Stat(filepath.Dir(part))
		return errors.Is(err, fs.ErrNotExist)
	})
	dropped := logs.FilterMessage("dropped superseded download").All()
	if len(dropped) != 1 {
		t.Fatalf("%d lines say the superseded download was dropped, want 1", len(dropped))
	}
	f := dropped[0].ContextMap()
	if f["version"] != "2.0.0" || f["release_id"] != string(v2) || f["bytes"].(int64) <= 0 {
		t.Errorf("dropped line %v: want version 2.0.0, release %s and its bytes", f, v2.Short())
	}
}

// TestRetentionMakesRoomForADownload: a release that does not fit next to
// the bundles an agent keeps (--keep 10) is fetched all the same once
// retention removed the oldest bundle it may (not the current, previous or
// desired ones).
func TestRetentionMakesRoomForADownload(t *testing.T) {
	c, logs := diskCluster(t, bench.ClusterConfig{})
	dir := agentDir(t, c, "node")
	// Each release takes 8 MiB (4 MiB bundle, 4 MiB unpacked): the fourth
	// fits only without the first one's bundle.
	disktest.MountSmall(t, dir, 30<<20)
	n, err := c.AddAgent("node", bench.AgentOptions{Keep: 10})
	if err != nil {
		t.Fatal(err)
	}
	var ids []release.ID
	for i := 1; i <= 4; i++ {
		id := publish(t, c, fmt.Sprintf("1.0.%d", i), 4<<20)
		waitActive(t, c, n, id, time.Minute)
		ids = append(ids, id)
	}
	bundles := filepath.Join(dir, "bundles")
	if _, err := os.Stat(filepath.Dir(swarm.BundlePath(bundles, ids[0]))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the oldest bundle: %v, want it removed", err)
	}
	for _, id := range ids[1:] {
		if _, err := os.Stat(swarm.BundlePath(bundles, id)); err != nil {
			t.Errorf("bundle %s: %v", id.Short(), err)
		}
	}
	if got := len(logs.FilterMessage("retention: removed bundle").All()); got != 1 {
		t.Errorf("%d bundles removed, want 1", got)
	}
	if got := len(logs.FilterMessageSnippet("disk full").All()); got != 0 {
		t.Errorf("%d lines say the disk is full; retention should have made room first", got)
	}
}

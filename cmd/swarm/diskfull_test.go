package main

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmdeploy/swarm/internal/disktest"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/swarm"
)

// TestAgentRestartOnFullDisk runs a seeder and an agent process whose data
// dir is a small tmpfs (root only). A release that does not fit fails the
// app with "disk full" in `swarm status`; the agent, killed with SIGKILL
// and restarted with half the release in its part file on a disk still
// full, stays up and says the same; once space is freed it resumes the
// part file by itself and the release becomes active.
func TestAgentRestartOnFullDisk(t *testing.T) {
	c := startSeeder(t)
	data := filepath.Join(c.dir, "agent")
	disktest.MountSmall(t, data, 48<<20) // unmounted after the agent's cleanup stopped it
	startAgent := func() *daemon {
		addrs := filepath.Join(c.dir, "agent.addrs")
		os.Remove(addrs)
		d := startDaemon(t, "agent", "--data", data, "--name", "agent", "--join", c.gossip,
			"--trust-release", c.pub, "--trust-rollout", c.rpub, "--gossip-key-file", c.gkey,
			"--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0", "--addr-file", addrs)
		readAddrs(t, d, addrs)
		return d
	}
	d := startAgent()
	if r := run(t, time.Minute, "publish", repo(t, "testdata", "apps", "hello", "v1"), "--app", "hello", "--version", "1.0.0",
		"--key", c.key, "--seeder", c.api); r.code != 0 {
		t.Fatalf("publish 1.0.0: %d %s", r.code, r.stderr)
	}
	waitApp(t, c, func(a appStatus) bool { return a.Version == "1.0.0" && a.Phase == "active" })

	// 2.0.0 (16 MiB) comes to a disk with 1 MiB free; its rollout tolerates
	// the one failed node.
	filler := filepath.Join(data, "filler")
	disktest.Fill(t, filler)
	src := filepath.Join(t.TempDir(), "v2")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 16<<20)
	rand.Read(payload)
	if err := os.WriteFile(filepath.Join(src, "payload.bin"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, time.Minute, "publish", src, "--app", "hello", "--version", "2.0.0", "--key", c.key, "--seeder", c.api,
		"--max-failures", "1", "--json")
	if r.code != 0 {
		t.Fatalf("publish 2.0.0: %d %s", r.code, r.stderr)
	}
	var pub struct {
		ReleaseID release.ID `json:"release_id"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &pub); err != nil {
		t.Fatalf("publish --json: %v\n%s", err, r.stdout)
	}
	diskFull := func(a appStatus) bool {
		return a.Version == "2.0.0" && a.Phase == "failed" && strings.HasPrefix(a.Error, "disk full: need ")
	}
	a := waitApp(t, c, diskFull)
	t.Logf("status says: %s", a.Error)

	// SIGKILL; the part file holds the first half, as a fetch killed half
	// way leaves it; the disk is still full.
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	err := <-d.done
	d.done <- err // for the cleanup
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	bundle, err := os.ReadFile(swarm.BundlePath(filepath.Join(c.dir, "store", "releases"), pub.ReleaseID))
	if err != nil {
		t.Fatal(err)
	}
	part := swarm.BundlePath(filepath.Join(data, "bundles"), pub.ReleaseID) + ".part"
	if err := os.MkdirAll(filepath.Dir(part), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(part, bundle[:len(bundle)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	disktest.Fill(t, filler)

	d = startAgent()
	first := a.Error
	// The restarted agent counts what the part file holds: it needs less.
	a = waitApp(t, c, func(a appStatus) bool { return diskFull(a) && a.Error != first })
	select {
	case err := <-d.done:
		t.Fatalf("the restarted agent exited: %v\n%s", err, d.Logs())
	default:
	}
	t.Logf("after the restart status says: %s", a.Error)
	if logs := d.Logs(); strings.Contains(logs, "panic") || strings.Contains(logs, "fatal error") {
		t.Fatalf("the restarted agent crashed:\n%s", logs)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitApp(t, c, func(a appStatus) bool { return a.Version == "2.0.0" && a.Phase == "active" })
	if logs := d.Logs(); !strings.Contains(logs, "resumed download: ") {
		t.Errorf("no line says how much of the part file was resumed:\n%s", logs)
	}
}

// appStatus is what `swarm status --json` says of one app on one node.
type appStatus struct {
	App     string `json:"app"`
	Version string `json:"version"`
	Phase   string `json:"phase"`
	Error   string `json:"error"`
}

// waitApp polls `swarm status --json` until the app hello on the only node
// satisfies ok, and returns it.
func waitApp(t *testing.T, c cluster, ok func(appStatus) bool) appStatus {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		r := run(t, 10*time.Second, "status", "--seeder", c.api, "--json")
		var st struct {
			Nodes []struct {
				Apps []appStatus `json:"apps"`
			} `json:"nodes"`
		}
		if r.code == 0 && json.Unmarshal([]byte(r.stdout), &st) == nil {
			for _, n := range st.Nodes {
				for _, a := range n.Apps {
					if a.App == "hello" && ok(a) {
						return a
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90s, status:\n%s%s", r.stdout, r.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

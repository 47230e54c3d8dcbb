package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPublishReachesNobody: a publish to a seeder that no agent of the
// environment has joined warns on stderr, and with --wait fails (exit 1)
// saying why; once an agent has joined, the warning is gone.
func TestPublishReachesNobody(t *testing.T) {
	c := startSeeder(t)
	publish := func(version, dir string, extra ...string) result {
		args := []string{"publish", repo(t, "testdata", "apps", "hello", dir), "--app", "hello", "--version", version,
			"--key", c.key, "--seeder", c.api}
		return run(t, time.Minute, append(args, extra...)...)
	}
	const warning = "warning: no agent in env default is reachable from the seeder"

	r := publish("1.0.0", "v1")
	if r.code != 0 || !strings.Contains(r.stderr, warning) {
		t.Fatalf("publish to nobody: exit %d, stderr lacks %q:\n%s", r.code, warning, r.stderr)
	}
	errLine(t, publish("2.0.0", "v2", "--wait", "--wait-timeout", "2s"), exitFailure,
		"no agent in env default is reachable", "--join")

	name := "agent-1"
	d := startDaemon(t, "agent", "--data", filepath.Join(c.dir, name), "--name", name, "--join", c.gossip,
		"--trust-release", c.pub, "--trust-rollout", c.rpub, "--gossip-key-file", c.gkey,
		"--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0", "--addr-file", filepath.Join(c.dir, name+".addrs"))
	readAddrs(t, d, filepath.Join(c.dir, name+".addrs"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := run(t, 10*time.Second, "rollout", "status", "hello", "--seeder", c.api, "--json")
		if r.code == 0 && !strings.Contains(r.stdout, `"nodes": 0`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the seeder does not count the agent after 30s:\n%s\n%s", r.stdout, r.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := publish("3.0.0", "v3"); r.code != 0 || strings.Contains(r.stderr, warning) {
		t.Fatalf("publish with an agent joined: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

// TestWaitEndsWhenEveryNodeRefuses: agents that trust another rollout key
// refuse every desired state the seeder signs. publish --wait and status
// --wait do not wait out their timeouts on them: the rollout stalls after
// --refusal-grace and both exit 1 saying the nodes refused it and why.
func TestWaitEndsWhenEveryNodeRefuses(t *testing.T) {
	c := startSeeder(t, "--refusal-grace", "1s")
	other := filepath.Join(c.dir, "other")
	if r := run(t, 10*time.Second, "keygen", "--role", "rollout", "--out", other); r.code != 0 {
		t.Fatalf("keygen: %d %s", r.code, r.stderr)
	}
	name := "agent-1"
	d := startDaemon(t, "agent", "--data", filepath.Join(c.dir, name), "--name", name, "--join", c.gossip,
		"--trust-release", c.pub, "--trust-rollout", filepath.Join(other, "rollout.pub"), "--gossip-key-file", c.gkey,
		"--gossip", "127.0.0.1:0", "--torrent", "127.0.0.1:0", "--addr-file", filepath.Join(c.dir, name+".addrs"))
	readAddrs(t, d, filepath.Join(c.dir, name+".addrs"))

	r := run(t, 2*time.Minute, "publish", repo(t, "testdata", "apps", "hello", "v1"), "--app", "hello", "--version", "1.0.0",
		"--key", c.key, "--seeder", c.api, "--wait", "--wait-timeout", "90s")
	// The timeout's message would say "not finished after 90s".
	errLine(t, r, exitFailure, "stalled", "refused the desired state: untrusted key", name)
	errLine(t, run(t, time.Minute, "status", "--seeder", c.api, "--wait", "--timeout", "50s"), exitFailure,
		"stalled", "refused the desired state: untrusted key", "swarm rollout resume hello")
}

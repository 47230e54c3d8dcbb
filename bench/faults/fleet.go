package faults

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/bench"
	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/seeder"
)

// The daemons' fixed ports: every node has an address of its own, so they
// need not be chosen by the OS, and a restarted daemon is where it was.
const (
	gossipPort  = "7946"
	torrentPort = "6881"
	apiAddr     = "127.0.0.1:7700" // in the seeder's namespace
)

// app is the app every scenario publishes.
const app = "faults"

// stopGrace is how long a stopped daemon may take before it is killed.
const stopGrace = 5 * time.Second

// startTimeout bounds a daemon's start and the agents' join.
const startTimeout = time.Minute

// poll is how often waits look again.
const poll = 200 * time.Millisecond

// agentProc is one agent: its namespace, its data and its current life.
type agentProc struct {
	node    *Node
	data    string
	hookLog string
	log     string
	proc    *proc
	lives   int
	env     []string
	// missing is how many bytes of the release it lacked when it was
	// published (or when it started, if later).
	missing int64
}

// fleet is a seeder and agents in a Lab, with the keys they share.
type fleet struct {
	cfg  Config
	lab  *Lab
	log  *zap.Logger
	dir  string
	logs string
	hook string

	keys      string
	key       *release.PrivateKey
	token     string
	seederArg []string // the seeder's flags, without --join
	seederN   *Node
	seeder    *proc
	fwd       *forwarder
	client    *seeder.Client
	agents    []*agentProc

	bundle    *seeder.Bundle
	releaseID release.ID
}

// newFleet makes the lab's nodes, keys and hook; it starts nothing.
func newFleet(ctx context.Context, cfg Config, lab *Lab, dir string, log *zap.Logger) (*fleet, error) {
	f := &fleet{cfg: cfg, lab: lab, log: log, dir: dir, logs: filepath.Join(dir, "logs"), keys: filepath.Join(dir, "keys")}
	for _, d := range []string{f.logs, f.keys, filepath.Join(dir, "hooks")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	var err error
	if f.hook, err = writeHook(dir); err != nil {
		return nil, err
	}
	for _, role := range []string{"release", "rollout"} {
		if err := run(ctx, cfg.Binary, "keygen", "--role", role, "--out", f.keys); err != nil {
			return nil, fmt.Errorf("keygen: %w", err)
		}
	}
	if f.key, err = release.LoadPrivateKey(filepath.Join(f.keys, "release.key")); err != nil {
		return nil, fmt.Errorf("load key: %w", err)
	}
	gk, err := gossip.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(f.keys, "gossip.key"), []byte(gk+"\n"), 0o600); err != nil {
		return nil, err
	}
	if f.token, err = seeder.GenerateToken(); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(f.keys, "api-token"), []byte(f.token+"\n"), 0o600); err != nil {
		return nil, err
	}
	if f.seederN, err = lab.AddNode(ctx, "seeder", 2); err != nil {
		return nil, err
	}
	for i := range cfg.Agents {
		name := fmt.Sprintf("agent-%02d", i+1)
		n, err := lab.AddNode(ctx, name, 11+i)
		if err != nil {
			return nil, err
		}
		a := &agentProc{node: n, data: filepath.Join(dir, name), hookLog: filepath.Join(dir, "hooks", name+".log"), log: filepath.Join(f.logs, name+".log")}
		f.agents = append(f.agents, a)
	}
	f.seederArg = []string{"seeder", "--store", filepath.Join(dir, "store"), "--key", filepath.Join(f.keys, "rollout.key"),
		"--trust-release", filepath.Join(f.keys, "release.pub"), "--api-token-file", filepath.Join(f.keys, "api-token"),
		"--name", "seeder", "--gossip", f.seederN.Addr + ":" + gossipPort, "--torrent", f.seederN.Addr + ":" + torrentPort,
		"--api", apiAddr, "--gossip-key-file", filepath.Join(f.keys, "gossip.key"), "--addr-file", filepath.Join(dir, "seeder.addrs")}
	if f.fwd, err = newForwarder(f.seederN.NSPath(), apiAddr); err != nil {
		return nil, err
	}
	if f.client, err = seeder.NewClient("http://"+f.fwd.Addr(), seeder.ClientOptions{Token: f.token}); err != nil {
		return nil, err
	}
	return f, nil
}

// close stops every daemon and the forwarder.
func (f *fleet) close() {
	for _, a := range f.agents {
		if a.proc != nil {
			a.proc.stop(stopGrace)
		}
	}
	if f.seeder != nil {
		f.seeder.stop(stopGrace)
	}
	if f.fwd != nil {
		f.fwd.Close()
	}
	if f.bundle != nil {
		f.bundle.Close()
	}
}

// startSeeder starts the seeder (joining join, if given) and waits for its
// API.
func (f *fleet) startSeeder(ctx context.Context, join ...string) error {
	args := f.seederArg
	if len(join) > 0 {
		args = append(append([]string{}, args...), "--join", strings.Join(join, ","))
	}
	os.Remove(filepath.Join(f.dir, "seeder.addrs"))
	p, err := startProc("seeder", f.seederN.NS, filepath.Join(f.logs, "seeder.log"), nil, f.cfg.Binary, args...)
	if err != nil {
		return err
	}
	f.seeder = p
	if err := waitFile(ctx, p, filepath.Join(f.dir, "seeder.addrs")); err != nil {
		return err
	}
	deadline := time.Now().Add(startTimeout)
	for {
		_, err := f.status(ctx)
		if err == nil {
			return nil
		}
		if p.Exited() {
			return p.failure()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the seeder's API did not answer within %s: %w", startTimeout, err)
		}
		if err := sleep(ctx, poll); err != nil {
			return err
		}
	}
}

// startAgent starts one life of agent a and waits for its address file.
func (f *fleet) startAgent(ctx context.Context, a *agentProc) error {
	addrs := filepath.Join(f.dir, a.node.Name+".addrs")
	os.Remove(addrs)
	args := []string{"agent", "--data", a.data, "--name", a.node.Name, "--join", f.seederN.Addr + ":" + gossipPort,
		"--trust-release", filepath.Join(f.keys, "release.pub"), "--trust-rollout", filepath.Join(f.keys, "rollout.pub"),
		"--gossip", a.node.Addr + ":" + gossipPort, "--torrent", a.node.Addr + ":" + torrentPort,
		"--gossip-key-file", filepath.Join(f.keys, "gossip.key"), "--addr-file", addrs,
		"--hook", f.hook, "--hook-env", "FAULT_HOOK_LOG", "--hook-env", "FAULT_HOOK_SLEEP"}
	env := append([]string{"FAULT_HOOK_LOG=" + a.hookLog}, a.env...)
	p, err := startProc(a.node.Name, a.node.NS, a.log, env, f.cfg.Binary, args...)
	if err != nil {
		return err
	}
	a.proc = p
	a.lives++
	return waitFile(ctx, p, addrs)
}

// startAgents starts the agents given (every one when none are) and waits
// until the seeder lists them.
func (f *fleet) startAgents(ctx context.Context, which ...*agentProc) error {
	if len(which) == 0 {
		which = f.agents
	}
	for _, a := range which {
		if err := f.startAgent(ctx, a); err != nil {
			return err
		}
	}
	return f.waitMembers(ctx, which)
}

// waitMembers waits until the seeder's status lists every agent in which,
// then a little for the agents' views of each other to settle (feeders are
// chosen from each agent's view).
func (f *fleet) waitMembers(ctx context.Context, which []*agentProc) error {
	deadline := time.Now().Add(startTimeout)
	for {
		if err := f.checkAlive(); err != nil {
			return err
		}
		st, err := f.status(ctx)
		if err == nil {
			seen := map[string]bool{}
			for _, n := range st.Nodes {
				seen[n.Name] = true
			}
			missing := 0
			for _, a := range which {
				if !seen[a.node.Name] {
					missing++
				}
			}
			if missing == 0 {
				return sleep(ctx, 2*time.Second)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the seeder saw %d of %d agents join within %s", len(which)-missing, len(which), startTimeout)
			}
		} else if time.Now().After(deadline) {
			return err
		}
		if err := sleep(ctx, poll); err != nil {
			return err
		}
	}
}

// checkAlive fails when a daemon the harness did not kill has exited.
func (f *fleet) checkAlive() error {
	if f.seeder != nil && f.seeder.Exited() && !f.seeder.killed {
		return f.seeder.failure()
	}
	for _, a := range f.agents {
		if a.proc != nil && a.proc.Exited() && !a.proc.killed {
			return a.proc.failure()
		}
	}
	return nil
}

// status reads the seeder's cluster status, within 5 seconds.
func (f *fleet) status(ctx context.Context) (seeder.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := f.client.Status(ctx)
	if err != nil {
		return st, fmt.Errorf("seeder status: %w", err)
	}
	return st, nil
}

// pack makes the scenario's release: SizeBytes of seeded random bytes.
func (f *fleet) pack() error {
	payload := filepath.Join(f.dir, "payload.bin")
	if err := bench.WriteRandomFile(payload, f.cfg.SizeBytes, f.cfg.Seed); err != nil {
		return err
	}
	defer os.Remove(payload)
	b, err := seeder.Pack(seeder.PackOptions{Source: payload, App: app, Version: "1.0.0", Key: f.key, TempDir: f.dir})
	if err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	f.bundle = b
	return nil
}

// publish hands the release to the seeder with plan (nil: every node at
// once, failures tolerated: the scenarios test recovery, not the
// controller's rollback).
func (f *fleet) publish(ctx context.Context, plan *release.Plan) error {
	if plan == nil {
		plan = &release.Plan{}
	}
	plan.MaxFailures = release.Budget{Ratio: 1}
	plan.NoAutoRollback = true
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	res, err := f.client.PublishBundle(ctx, f.bundle, nil, seeder.PublishOptions{Plan: plan})
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	f.releaseID = res.ReleaseID
	return nil
}

// current is the release directory an agent's current link names, or "".
func (a *agentProc) current() string {
	t, err := os.Readlink(filepath.Join(a.data, "releases", app, "current"))
	if err != nil {
		return ""
	}
	return filepath.Base(t)
}

// onRelease reports whether the agent's current release is the published
// one (the installer names the directory <version>-<short id>).
func (f *fleet) onRelease(a *agentProc) bool {
	c := a.current()
	return c != "" && c == f.releaseDir()
}

// releaseDir is the directory name the installer gives the release.
func (f *fleet) releaseDir() string { return f.bundle.Manifest.Dir() }

// waitFile waits for a daemon's address file, failing at once if it exits.
func waitFile(ctx context.Context, p *proc, path string) error {
	deadline := time.Now().Add(startTimeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if p.Exited() {
			return p.failure()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s wrote no %s within %s: %s", p.name, path, startTimeout, lastLines(p.log, 1))
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// errConverge marks a run that did not converge by its deadline.
var errConverge = errors.New("did not converge")

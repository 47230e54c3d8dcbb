package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/gossip"
	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/seeder"
)

// RollbackRunConfig shapes one RunRollback.
type RollbackRunConfig struct {
	// Nodes is how many agents run; at least 1 (2 for Auto).
	Nodes int
	// Dir is the scratch directory; required. The caller removes it.
	Dir string
	// Auto has the controller decide: v2 rolls out with a first step of
	// Canaries nodes and a long bake, its health check passes at
	// activation and fails on every later run, and the controller rolls
	// back once the canaries report unhealthy. Without it v2 goes to every
	// node at once and the rollback is the operator's command through the
	// seeder's API.
	Auto bool
	// Canaries is the auto variant's first step; default 2.
	Canaries int
	// HealthInterval is how often agents run the health check in the auto
	// variant (two failures make a node unhealthy); default 500ms.
	HealthInterval time.Duration
	// Gossip is the timing every node uses; zero = FastGossip(), or
	// LargeGossip() above 100 nodes.
	Gossip gossip.Config
	// ControlInterval is the seeder's controller period; zero = its
	// default (500ms).
	ControlInterval time.Duration
	// Shim is the agents' hook shim (ClusterConfig.Shim); empty = the
	// running executable.
	Shim string
}

// rollbackPayload is the size of each release's payload file: the rollback
// moves no bytes, so the release only has to exist.
const rollbackPayload = 64 << 10

// rollbackHook is every agent's hook: it logs "<release dir> <verb>", so
// the run can check that each moved node ran it as "rollback". It is the
// per-node cost of a tiny hook (a fork and exec of /bin/sh).
const rollbackHook = `#!/bin/sh
echo "$SWARM_RELEASE_DIR $1" >> %s
`

// rollbackHealth passes for 1.0.0 and for 2.0.0's first check (at
// activation), and fails every later check of 2.0.0.
const rollbackHealth = `#!/bin/sh
[ "$SWARM_VERSION" = 2.0.0 ] || exit 0
n=$(cat "$SWARM_RELEASE_DIR/.checks" 2>/dev/null || echo 0)
n=$((n+1))
echo $n > "$SWARM_RELEASE_DIR/.checks"
[ "$n" -le 1 ] || { echo "2.0.0 is sick"; exit 1; }
`

// RunRollback measures one fleet rollback on a seeder and cfg.Nodes agents
// in this process (real gossip, BitTorrent, installer and hook): it
// publishes 1.0.0 to every agent, then 2.0.0 (to all at once, or as a
// canary step with Auto), then rolls back, by the operator's command or the
// controller's decision, and waits until every node that moved to 2.0.0 is
// active on 1.0.0 again, the seeder's gossip view shows it and the
// rollout's status reads rolled-back.
//
// Times are seconds from the decision, the Issued time the seeder signed
// into the rollback's desired state (one clock: everything runs in this
// process): Accept when each agent first saw 1.0.0 as the target again
// (every agent), Back when each moved agent recorded 1.0.0 active, Seen
// when the seeder's view of the node first showed it (sampled every 5ms),
// and ReportedS when the rollout status first read rolled-back. The host's
// CPU is measured from the decision to the end. progress, if not nil, is
// told the stage and how far it is.
func RunRollback(ctx context.Context, cfg RollbackRunConfig, log *zap.Logger, progress func(stage string, done, total int)) (RollbackResult, error) {
	switch {
	case cfg.Dir == "":
		return RollbackResult{}, errors.New("rollback: Dir is required")
	case cfg.Nodes < 1 || (cfg.Auto && cfg.Nodes < 2):
		return RollbackResult{}, fmt.Errorf("rollback: --nodes %d: need at least 1 agent, 2 with --auto", cfg.Nodes)
	case cfg.Canaries < 0 || cfg.Canaries >= max(cfg.Nodes, 2):
		return RollbackResult{}, fmt.Errorf("rollback: --canaries %d: need from 1 to --nodes - 1", cfg.Canaries)
	}
	if cfg.Canaries == 0 {
		cfg.Canaries = min(2, cfg.Nodes-1)
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = 500 * time.Millisecond
	}
	if cfg.Gossip.GossipInterval == 0 && cfg.Gossip.ProbeInterval == 0 {
		cfg.Gossip = FastGossip()
		if cfg.Nodes > largeCluster {
			cfg.Gossip = LargeGossip()
		}
	}
	if progress == nil {
		progress = func(string, int, int) {}
	}
	began := time.Now()
	r := RollbackResult{Kind: KindReal, Nodes: cfg.Nodes, Trigger: "manual"}
	if cfg.Auto {
		r.Trigger = "auto"
	}

	hookLog := filepath.Join(cfg.Dir, "hook.log")
	hook := filepath.Join(cfg.Dir, "hook.sh")
	health := ""
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return r, fmt.Errorf("rollback: %w", err)
	}
	if err := os.WriteFile(hook, fmt.Appendf(nil, rollbackHook, hookLog), 0o755); err != nil {
		return r, fmt.Errorf("rollback: %w", err)
	}
	if cfg.Auto {
		health = filepath.Join(cfg.Dir, "health.sh")
		if err := os.WriteFile(health, []byte(rollbackHealth), 0o755); err != nil {
			return r, fmt.Errorf("rollback: %w", err)
		}
	}
	var srcs [2]string
	for i, v := range []string{"1.0.0", "2.0.0"} {
		srcs[i] = filepath.Join(cfg.Dir, "src-"+v)
		if err := os.MkdirAll(srcs[i], 0o755); err != nil {
			return r, fmt.Errorf("rollback: %w", err)
		}
		if err := WriteRandomFile(filepath.Join(srcs[i], "payload.bin"), rollbackPayload, uint64(i+1)); err != nil {
			return r, fmt.Errorf("rollback: %w", err)
		}
	}

	progress("starting", 0, cfg.Nodes)
	c, err := NewCluster(ctx, ClusterConfig{
		Dir: filepath.Join(cfg.Dir, "cluster"), Hook: hook, HealthCheck: health,
		SharedStorage: true, Gossip: cfg.Gossip, ControlInterval: cfg.ControlInterval,
		HealthInterval: cfg.HealthInterval, HealthFailures: 2, Shim: cfg.Shim,
	}, log)
	if err != nil {
		return r, fmt.Errorf("rollback: start cluster: %w", err)
	}
	defer c.Close()
	if err := addAgents(ctx, c, cfg.Nodes); err != nil {
		return r, fmt.Errorf("rollback: %w", err)
	}
	nodes := c.Agents()
	if least := waitMembership(ctx, nodes, cfg.Nodes+1); least < cfg.Nodes+1 {
		r.Notes = joinNotes(r.Notes, fmt.Sprintf("membership had not converged: an agent knew %d of %d members", least, cfg.Nodes+1))
	}

	// 1.0.0 everywhere, as the seeder sees it.
	all := release.Plan{Strategy: release.StrategyAllAtOnce}
	progress("1.0.0", 0, cfg.Nodes)
	v1, err := c.PublishWith(ctx, srcs[0], benchApp, "1.0.0", seeder.PublishOptions{Plan: &all})
	if err != nil {
		return r, fmt.Errorf("rollback: publish 1.0.0: %w", err)
	}
	if err := waitAllActive(ctx, nodes, v1.ReleaseID, func(n, total int) { progress("1.0.0", n, total) }); err != nil {
		return r, fmt.Errorf("rollback: 1.0.0: %w", err)
	}
	if err := waitRollout(ctx, c, release.RolloutComplete); err != nil {
		return r, fmt.Errorf("rollback: 1.0.0: %w", err)
	}

	w := newRollbackWatch(c, nodes, v1.ReleaseID)
	plan := all
	if cfg.Auto {
		plan = release.Plan{Steps: []release.Step{{Count: cfg.Canaries}, {Percent: 100}}, Bake: time.Hour}
	}
	progress("2.0.0", 0, cfg.Nodes)
	v2, err := c.PublishWith(ctx, srcs[1], benchApp, "2.0.0", seeder.PublishOptions{Plan: &plan})
	if err != nil {
		return r, fmt.Errorf("rollback: publish 2.0.0: %w", err)
	}
	w.bad = v2.ReleaseID
	var busy0 float64
	if !cfg.Auto {
		if err := waitAllActive(ctx, nodes, v2.ReleaseID, func(n, total int) { progress("2.0.0", n, total) }); err != nil {
			return r, fmt.Errorf("rollback: 2.0.0: %w", err)
		}
		// The seeder must see every node on 2.0.0 before the decision, or
		// a stale view of 1.0.0 would count as seen back.
		if err := waitRollout(ctx, c, release.RolloutComplete); err != nil {
			return r, fmt.Errorf("rollback: 2.0.0: %w", err)
		}
		w.sample(time.Now()) // every node has moved, and the seeder knows
		busy0 = machineBusySeconds()
		progress("rollback", 0, cfg.Nodes)
		if _, err := c.Client.RollbackTo(ctx, benchApp, "", ""); err != nil {
			return r, fmt.Errorf("rollback: rollback command: %w", err)
		}
	}
	werr := w.run(ctx, func(stage string, done, total int) {
		if stage == "rollback" && busy0 == 0 {
			busy0 = machineBusySeconds()
		}
		progress(stage, done, total)
	})
	end := time.Now()
	busy1 := machineBusySeconds()
	if werr != nil {
		return r, fmt.Errorf("rollback: %w", werr)
	}
	r.Start = w.decision
	if busy0 > 0 && busy1 >= 0 {
		r.HostCPUFrac, r.HostBound = hostCPU(busy1-busy0, end.Sub(w.decision).Seconds(), hostCores())
	}

	since := func(t time.Time) float64 { return t.Sub(w.decision).Seconds() }
	var accept, back, seen []float64
	var moved []string
	for i, n := range nodes {
		if at, ok := n.TargetSeenAt(benchApp, v1.ReleaseID); ok {
			accept = append(accept, since(at))
		}
		if !w.moved[i] {
			continue
		}
		moved = append(moved, n.Name())
		at, ok := n.PhaseEnteredAt(benchApp, v1.ReleaseID, gossip.PhaseActive)
		if !ok {
			return r, fmt.Errorf("rollback: %s is back on 1.0.0 but recorded no time for it", n.Name())
		}
		back = append(back, since(at))
		seen = append(seen, since(w.seenAt[i]))
		r.PerNode = append(r.PerNode, RollbackNode{Name: n.Name(), BackS: since(at), SeenS: since(w.seenAt[i])})
	}
	r.Moved = len(moved)
	r.Accept, r.Back, r.Seen = SpreadOf(accept), SpreadOf(back), SpreadOf(seen)
	r.FleetS = r.Back.Max
	r.ReportedS = since(w.reported)
	if ran := hookRuns(hookLog, "1.0.0", "rollback"); !subset(moved, ran) {
		return r, fmt.Errorf("rollback: the hook ran as rollback on %d of %d moved nodes", len(ran), len(moved))
	}
	r.Notes = joinNotes(r.Notes, fmt.Sprintf("gossip interval %v, probe %v, push/pull %v; hook: /bin/sh appending one line; "+
		"the hook ran as rollback on every moved node", cfg.Gossip.GossipInterval, cfg.Gossip.ProbeInterval, cfg.Gossip.PushPullInterval))
	r.WallS = time.Since(began).Seconds()
	return r, nil
}

// rollbackWatch follows a rollback to release good from samples of the
// agents, the seeder's gossip view and the rollout status.
type rollbackWatch struct {
	c     *Cluster
	nodes []*Node
	good  release.ID
	bad   release.ID

	decision time.Time // the rollback state's Issued; zero until seen
	moved    []bool    // the node ran bad
	left     []bool    // the seeder's view showed the node off good
	seenAt   []time.Time
	reported time.Time
}

func newRollbackWatch(c *Cluster, nodes []*Node, good release.ID) *rollbackWatch {
	return &rollbackWatch{c: c, nodes: nodes, good: good,
		moved: make([]bool, len(nodes)), left: make([]bool, len(nodes)), seenAt: make([]time.Time, len(nodes))}
}

// watchEvery is how often the watch samples.
const watchEvery = 5 * time.Millisecond

// run samples until the rollback is decided and then complete: every moved
// node active on good, seen so by the seeder, and the status rolled-back.
func (w *rollbackWatch) run(ctx context.Context, progress func(stage string, done, total int)) error {
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	for {
		now := time.Now()
		done := w.sample(now)
		if w.decision.IsZero() {
			progress("waiting for the decision", 0, len(w.nodes))
		} else {
			progress("rollback", done, w.count())
			if done == w.count() && !w.reported.IsZero() {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if w.decision.IsZero() {
				return fmt.Errorf("no rollback was decided: %w", ctx.Err())
			}
			return fmt.Errorf("%d of %d moved nodes back and seen: %w", done, w.count(), ctx.Err())
		case <-tick.C:
		}
	}
}

func (w *rollbackWatch) count() int {
	k := 0
	for _, m := range w.moved {
		if m {
			k++
		}
	}
	return k
}

// sample looks once and returns how many moved nodes are back and seen.
func (w *rollbackWatch) sample(now time.Time) int {
	if w.decision.IsZero() {
		if d, ok := w.c.Seeder.Desired(benchApp, ""); ok && d.Rollback {
			if m, err := d.Target.Unverified(); err == nil && m.ReleaseID == w.good {
				w.decision = d.Issued
			}
		}
	}
	view := map[string]seeder.AppStatus{}
	for _, ns := range w.c.Seeder.Status().Nodes {
		for _, a := range ns.Apps {
			if a.App == benchApp {
				view[ns.Name] = a
			}
		}
	}
	done := 0
	for i, n := range w.nodes {
		if ph, id, _ := n.AppPhase(benchApp); id == w.bad && ph == gossip.PhaseActive {
			w.moved[i] = true
		}
		a := view[n.Name()]
		onGood := a.ReleaseID == w.good && a.Phase == string(gossip.PhaseActive)
		if !onGood {
			w.left[i] = true
		}
		if w.moved[i] && w.left[i] && onGood && w.seenAt[i].IsZero() && !w.decision.IsZero() {
			w.seenAt[i] = now
		}
		if w.moved[i] && !w.seenAt[i].IsZero() {
			if ph, id, _ := n.AppPhase(benchApp); id == w.good && ph == gossip.PhaseActive {
				done++
			}
		}
	}
	if !w.decision.IsZero() && w.reported.IsZero() {
		if st, err := w.c.Seeder.Rollout(benchApp, ""); err == nil && st.State == release.RolloutRolledBack {
			w.reported = now
		}
	}
	return done
}

// waitRollout waits until the bench app's rollout reads want, bounded by
// ctx and two minutes.
func waitRollout(ctx context.Context, c *Cluster, want release.RolloutState) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		st, err := c.Seeder.Rollout(benchApp, "")
		if err == nil && st.State == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rollout is %q, not %q: %w", st.State, want, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// hookRuns lists the nodes whose hook log has verb for version of the bench
// app. Lines are "<release dir> <verb>", the release dir
// .../<node>/releases/<app>/<version>-<short id>.
func hookRuns(logPath, version, verb string) []string {
	b, _ := os.ReadFile(logPath)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		dir, v, ok := strings.Cut(line, " ")
		if !ok || v != verb || !strings.Contains(dir, "/releases/"+benchApp+"/"+version+"-") {
			continue
		}
		node := filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(dir))))
		if !slices.Contains(out, node) {
			out = append(out, node)
		}
	}
	return out
}

// subset reports whether every element of a is in b.
func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func joinNotes(notes, more string) string {
	if notes == "" {
		return more
	}
	return notes + "; " + more
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmdeploy/swarm/bench"
	"github.com/swarmdeploy/swarm/bench/report"
	"github.com/swarmdeploy/swarm/bench/sim"
)

type benchRollbackOptions struct {
	nodes, runs     int
	sim, auto       bool
	canaries        int
	seed            uint64
	dir, out        string
	json            bool
	timeout         time.Duration
	interval        time.Duration // --gossip-interval, both modes
	pushPull        time.Duration // --push-pull-interval, both modes
	simCfg          sim.RollbackConfig
	fanout, rumour  int
	latency, accept time.Duration
}

func newBenchRollbackCmd(ios streams, g *globalOptions) *cobra.Command {
	o := &benchRollbackOptions{}
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Measure a fleet rollback: decision → every moved node back on the previous release",
		Long: `rollback times a fleet rollback from the decision (the seeder signing the
desired state whose target is the previous release) until every node that
had moved to the bad release runs the previous one again ("back"; the last
of them is the fleet time), and until the seeder's gossip view shows each of
them back ("seen").

Real (default): a seeder and --nodes agents in this process, real gossip,
BitTorrent, installer and a tiny /bin/sh hook. It publishes 1.0.0 to every
agent, then 2.0.0 to all at once, and rolls back with the rollback command
through the seeder's API. With --auto, 2.0.0 goes to --canaries nodes first,
its health check fails after activation and the controller rolls back by
itself. Gossip timing is that of 'bench real' (200ms gossip, 2s probes, 15s
push/pull) unless --gossip-interval or --push-pull-interval say otherwise.
"status" is when the rollout status first read rolled-back (no node left
on the bad release). host busy is the machine's CPU over the rollback.

--sim: the simulator's model of the same rollback at any size up to 20000
(memberlist's LAN defaults; see the flags).`,
		Example: `  swarm bench rollback --nodes 20
  swarm bench rollback --nodes 100 --runs 3 --json --out rollback.jsonl
  swarm bench rollback --nodes 20 --auto --canaries 2
  swarm bench rollback --sim --nodes 5000
  swarm bench rollback --sim --nodes 5000 --hook-time 2s --moved 50`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return benchRollbackRun(cmd.Context(), ios, g, o, cmd.Flag("log-level").Changed)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.nodes, "nodes", 20, "number of agents (or simulated nodes)")
	f.IntVar(&o.runs, "runs", 1, "repeat the measurement this many times (a fresh cluster, or the next seed, each)")
	f.BoolVar(&o.sim, "sim", false, "simulate instead of running real agents")
	f.BoolVar(&o.auto, "auto", false, "real: let the controller roll back canaries whose health check fails, instead of the rollback command")
	f.IntVar(&o.canaries, "canaries", 2, "real, --auto: nodes in the first step of the bad release")
	f.Uint64Var(&o.seed, "seed", 1, "sim: seed of the first run")
	f.StringVar(&o.dir, "dir", "", "real: scratch directory (default: a new temporary one, removed afterwards)")
	f.BoolVar(&o.json, "json", false, "print one JSON object per run instead of the table")
	f.StringVar(&o.out, "out", "", "also append the results to this file (JSON Lines)")
	f.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up after this long")
	f.DurationVar(&o.interval, "gossip-interval", 0, "memberlist's gossip interval (0 = 200ms)")
	f.DurationVar(&o.pushPull, "push-pull-interval", 0, "memberlist's push/pull interval before its scaling with cluster size (0 = 15s real, 30s sim)")
	f.IntVar(&o.simCfg.Moved, "moved", 0, "sim: nodes that ran the bad release (0 = all)")
	f.DurationVar(&o.simCfg.Hook, "hook-time", 0, "sim: how long the rollback hook runs on each node")
	f.DurationVar(&o.simCfg.Switch, "switch", 0, "sim: a node's own switch back without hook (0 = 2.7ms, BenchmarkSwitchBack)")
	f.IntVar(&o.simCfg.StateBytes, "state-bytes", 0, fmt.Sprintf("sim: one app-state broadcast in bytes (0 = %d)", sim.DefaultStateBytes))
	f.IntVar(&o.fanout, "gossip-fanout", 0, "sim: members each gossip round sends to (0 = 3)")
	f.IntVar(&o.rumour, "rumour-fanout", 0, "sim: members a node sends a new desired state to directly (0 = the agents' default, -1 = none)")
	f.DurationVar(&o.latency, "gossip-latency", 0, "sim: one network hop (0 = 1ms)")
	f.DurationVar(&o.accept, "gossip-accept", 0, "sim: time to verify and persist a new desired state (0 = 1.25ms)")
	f.BoolVar(&o.simCfg.NoDirect, "no-direct", false, "sim: nodes do not send their state changes straight to the seeder (gossip alone)")
	f.DurationVar(&o.simCfg.SeederCost, "seeder-cost", 0, "sim: the seeder's time per direct packet (0 = 10µs)")
	f.IntVar(&o.simCfg.SeederQueue, "seeder-queue", 0, "sim: direct packets the seeder queues before dropping (0 = 1024)")
	return cmd
}

func benchRollbackRun(ctx context.Context, ios streams, g *globalOptions, o *benchRollbackOptions, logLevelSet bool) error {
	if o.runs < 1 {
		return usageErrorf("bench rollback: --runs %d: need at least one run", o.runs)
	}
	if o.interval < 0 || o.pushPull < 0 {
		return usageErrorf("bench rollback: --gossip-interval and --push-pull-interval must not be negative")
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var rs []bench.RollbackResult
	if o.sim {
		c := o.simCfg
		c.Nodes = o.nodes
		c.Gossip = sim.GossipModel{Interval: o.interval, PushPull: o.pushPull, Fanout: o.fanout, RumourFanout: o.rumour, Latency: o.latency, Accept: o.accept}
		if err := c.Validate(); err != nil {
			return usageErrorf("bench rollback --sim: %v", err)
		}
		for i := range o.runs {
			c.Seed = o.seed + uint64(i)
			r, err := sim.SimulateRollback(ctx, c)
			if err != nil {
				return fmt.Errorf("bench rollback --sim: %w", err)
			}
			rs = append(rs, r)
		}
		return emitRollback(ios, o, rs)
	}

	if o.simOnlyFlags() {
		return usageErrorf("bench rollback: --moved, --hook-time, --switch, --state-bytes, --gossip-fanout, --rumour-fanout, --gossip-latency and --gossip-accept shape the simulator; add --sim")
	}
	switch {
	case o.nodes < 1 || (o.auto && o.nodes < 2):
		return usageErrorf("bench rollback: --nodes %d: need at least 1 agent, 2 with --auto", o.nodes)
	case o.auto && (o.canaries < 1 || o.canaries >= o.nodes):
		return usageErrorf("bench rollback: --canaries %d: need from 1 to --nodes - 1", o.canaries)
	}
	if err := checkBenchFiles(bench.Params{Nodes: o.nodes, MaxConns: 1}); err != nil {
		return err
	}
	log, err := benchLogger(g, ios, logLevelSet)
	if err != nil {
		return err
	}
	gc := benchGossip()
	if o.interval > 0 {
		gc.GossipInterval = o.interval
	}
	if o.pushPull > 0 {
		gc.PushPullInterval = o.pushPull
	}
	for i := range o.runs {
		dir := o.dir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "swarm-rollback-"); err != nil {
				return fmt.Errorf("bench rollback: %w", err)
			}
		} else {
			dir = fmt.Sprintf("%s/run-%d", dir, i+1)
		}
		pl := newProgressLine(ios, fmt.Sprintf("rollback N=%d run %d/%d", o.nodes, i+1, o.runs))
		began := time.Now()
		r, err := bench.RunRollback(ctx, bench.RollbackRunConfig{
			Nodes: o.nodes, Dir: dir, Auto: o.auto, Canaries: o.canaries, Gossip: gc,
		}, log, func(stage string, done, total int) {
			pl.update(bench.ProcsProgress{Stage: stage, Active: done, Total: total, Progress: fraction(done, total), Elapsed: time.Since(began)})
		})
		pl.finish()
		if o.dir == "" {
			os.RemoveAll(dir)
		}
		if err != nil {
			return fmt.Errorf("bench rollback N=%d: %w", o.nodes, err)
		}
		rs = append(rs, r)
	}
	return emitRollback(ios, o, rs)
}

// simOnlyFlags reports whether a flag only the simulator reads was set.
func (o *benchRollbackOptions) simOnlyFlags() bool {
	c := o.simCfg
	return c.Moved != 0 || c.Hook != 0 || c.Switch != 0 || c.StateBytes != 0 ||
		o.fanout != 0 || o.rumour != 0 || o.latency != 0 || o.accept != 0
}

func fraction(done, total int) float64 {
	if total <= 0 {
		return 0
	}
	return float64(done) / float64(total)
}

// emitRollback appends rs to --out and prints them as JSON or a table.
func emitRollback(ios streams, o *benchRollbackOptions, rs []bench.RollbackResult) error {
	if o.out != "" {
		for _, r := range rs {
			if err := appendJSONLine(o.out, r); err != nil {
				return fmt.Errorf("bench rollback: --out: %w", err)
			}
		}
	}
	if o.json {
		enc := json.NewEncoder(ios.Out)
		for _, r := range rs {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Fprint(ios.Out, report.RollbackTable(rs))
	return nil
}

package main

import (
	"context"
	"encoding/json"

	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/swarmdeploy/swarm/bench"
	"github.com/swarmdeploy/swarm/bench/report"
	"github.com/swarmdeploy/swarm/bench/sim"
	"github.com/swarmdeploy/swarm/gossip"
)

// benchOptions are the flags every `swarm bench` run shares.
type benchOptions struct {
	nodes                    int
	size                     string
	nodeUp, nodeDown, origin string
	maxPeers, maxConns       int
	feeders                  int // --origin-feeders: -1 auto, 0 naive
	seed                     uint64
	json                     bool
	out                      string // append results here (JSON Lines)
	timeout                  time.Duration
}

func (o *benchOptions) register(cmd *cobra.Command, nodes int, size, up, down, origin string) {
	f := cmd.Flags()
	f.IntVar(&o.nodes, "nodes", nodes, "number of nodes")
	f.StringVar(&o.size, "size", size, "bundle size, e.g. 64MiB, 1GiB")
	f.StringVar(&o.nodeUp, "node-up", up, "each node's upload rate, e.g. 2MiB (per second), 1Gbit")
	f.StringVar(&o.nodeDown, "node-down", down, "each node's download rate")
	f.StringVar(&o.origin, "origin-up", origin, "the origin's upload rate")
	f.IntVar(&o.maxPeers, "max-peers", 20, "peers each node is told of")
	f.IntVar(&o.maxConns, "max-conns", 50, "connections per node per torrent")
	f.IntVar(&o.feeders, "origin-feeders", -1,
		"origin policy: nodes that fetch from the origin, each a share of the pieces, while the rest fetch from peers; 0 = every node uses the origin (naive), -1 = enough to take the origin's rate")
	f.Uint64Var(&o.seed, "seed", 1, "seed for payload bytes and random choices")
	f.BoolVar(&o.json, "json", false, "print one JSON object per result instead of a summary")
	f.StringVar(&o.out, "out", "", "also append results to this file (JSON Lines; read by 'swarm bench report')")
	f.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
}

// parseRateFlags sets p's rates from --node-up, --node-down and
// --origin-up. With noCap a rate may be 0 (no cap); without, every rate
// must be positive, as T* needs them all.
func parseRateFlags(cmd, nodeUp, nodeDown, origin string, noCap bool, p *bench.Params) error {
	for _, r := range []struct {
		flag, v string
		dst     *int64
	}{{"--node-up", nodeUp, &p.NodeUp}, {"--node-down", nodeDown, &p.NodeDown}, {"--origin-up", origin, &p.OriginUp}} {
		n, err := parseRate(r.v)
		switch {
		case noCap && (err != nil || n < 0):
			return usageErrorf("%s: %s %q: give a rate such as 50MiB or 1Gbit (per second), or 0 for none", cmd, r.flag, r.v)
		case !noCap && (err != nil || n <= 0):
			return usageErrorf("%s: %s %q: give a positive rate such as 2MiB or 1Gbit (per second); T* needs every rate", cmd, r.flag, r.v)
		}
		*r.dst = n
	}
	return nil
}

// parseFeedersFlag sets p.OriginFeeders from --origin-feeders: a count, 0
// for none, or -1 for bench.AutoFeeders (which needs p's rates set).
func parseFeedersFlag(cmd string, feeders int, p *bench.Params) error {
	switch {
	case feeders == -1:
		p.OriginFeeders = bench.AutoFeeders(*p)
	case feeders < -1:
		return usageErrorf("%s: --origin-feeders %d: give a count, 0 for none, or -1 for automatic", cmd, feeders)
	default:
		p.OriginFeeders = feeders
	}
	return nil
}

// params turns the flags into bench.Params, refusing bad input before
// anything starts.
func (o *benchOptions) params() (bench.Params, error) {
	p := bench.Params{Nodes: o.nodes, MaxPeers: o.maxPeers, MaxConns: o.maxConns, Seed: o.seed}
	if o.nodes <= 0 {
		return p, usageErrorf("bench: --nodes %d: need at least one node", o.nodes)
	}
	var err error
	if p.SizeBytes, err = parseBytes(o.size); err != nil {
		return p, usageErrorf("bench: --size: %v; give a positive size such as 64MiB", err)
	}
	if p.SizeBytes <= 0 {
		return p, usageErrorf("bench: --size %q: give a positive size such as 64MiB", o.size)
	}
	if err := parseRateFlags("bench", o.nodeUp, o.nodeDown, o.origin, false, &p); err != nil {
		return p, err
	}
	if err := parseFeedersFlag("bench", o.feeders, &p); err != nil {
		return p, err
	}
	if err := p.Validate(); err != nil {
		return p, usageErrorf("bench: %w", err)
	}
	return p, nil
}

func newBenchCmd(ios streams, g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure distribution: real in-process clusters, the simulator, gossip at scale",
		Long: `bench measures what swarm exists for: origin egress that stays flat while the
fleet grows, and completion close to the peer-to-peer lower bound
T* = max(F/u_s, F/d_min, N·F/(u_s + Σu_i)) (Kumar and Ross, 2006).

  real      a seeder and N real agents in this process, and the same N
            downloading from one HTTP server (the central baseline)
  procs     a seeder and N agents as separate processes: cost per agent
            process, and aria2c beside them
  sim       the piece-level simulator of the same policy, for thousands of nodes
  gossip    N real memberlist nodes over an in-memory network
  rollback  a fleet rollback on real agents, or simulated (--sim)
  faults    faults injected into rollouts of processes in network namespaces (root)
  report    tables and plots from saved results`,
		Example: `  swarm bench real --nodes 50 --size 64MiB --node-up 2MiB --origin-up 20MiB
  swarm bench procs --nodes 5 --size 256MiB --aria2c
  swarm bench sim --nodes 5000 --size 1GiB --node-up 1Gbit --node-down 1Gbit --origin-up 10Gbit
  swarm bench gossip --nodes 1000
  swarm bench rollback --nodes 100
  swarm bench rollback --sim --nodes 5000
  swarm bench report --in results.jsonl --plots docs/bench --markdown BENCHMARKS.md`,
	}
	cmd.AddCommand(newBenchRealCmd(ios, g), newBenchProcsCmd(ios, g), newBenchSimCmd(ios), newBenchGossipCmd(ios, g), newBenchRollbackCmd(ios, g), newBenchFaultsCmd(ios, g), newBenchReportCmd(ios))
	for _, c := range cmd.Commands() {
		c.Args = wrapArgs(c.Args)
	}
	return cmd
}

type benchRealOptions struct {
	benchOptions
	shared  bool
	central bool
	dir     string
	profile string // write a CPU profile of the swarm run here
}

func newBenchRealCmd(ios streams, g *globalOptions) *cobra.Command {
	o := &benchRealOptions{}
	cmd := &cobra.Command{
		Use:   "real",
		Short: "Run a real seeder and N agents in this process, and the central baseline",
		Example: `  swarm bench real --nodes 100 --size 64MiB --node-up 2MiB --node-down 20MiB --origin-up 20MiB
  swarm bench real --nodes 25 --size 16MiB --json --out results.jsonl`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return benchRealRun(cmd.Context(), ios, g, o, cmd.Flag("log-level").Changed)
		},
	}
	o.register(cmd, 25, "64MiB", "2MiB", "20MiB", "20MiB")
	cmd.Flags().BoolVar(&o.shared, "shared-storage", true, "agents read one shared verified copy (memory stays flat; bytes still cross TCP and are hash-checked)")
	cmd.Flags().BoolVar(&o.central, "central", true, "also run the central HTTP baseline with the same caps")
	cmd.Flags().StringVar(&o.dir, "dir", "", "scratch directory (default: a new temporary one, removed afterwards)")
	cmd.Flags().StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of the swarm run to this file (go tool pprof)")
	return cmd
}

func benchRealRun(ctx context.Context, ios streams, g *globalOptions, o *benchRealOptions, logLevelSet bool) error {
	p, err := o.params()
	if err != nil {
		return err
	}
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "swarm-bench-"); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(dir)
	}
	if err := checkBenchDisk(dir, p, o.shared); err != nil {
		return err
	}
	if err := checkBenchFiles(p); err != nil {
		return err
	}
	log, err := benchLogger(g, ios, logLevelSet)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	if o.profile != "" {
		stop, err := startCPUProfile(o.profile)
		if err != nil {
			return err
		}
		defer stop()
	}
	bar := newCountBar(ios, p.Nodes, fmt.Sprintf("swarm N=%d", p.Nodes))
	res, err := bench.RunReal(ctx, bench.RealConfig{Params: p, Dir: filepath.Join(dir, "swarm"), SharedStorage: o.shared, Gossip: benchGossip()}, log,
		func(done, _ int) { _ = bar.Set(done) })
	_ = bar.Finish()
	if err != nil {
		return fmt.Errorf("bench real: %w", err)
	}
	results := []bench.Result{res}
	if o.central {
		payload := filepath.Join(dir, "central.bin")
		if err := bench.WriteRandomFile(payload, p.SizeBytes, p.Seed); err != nil {
			return fmt.Errorf("bench central: %w", err)
		}
		bar := newCountBar(ios, p.Nodes, fmt.Sprintf("central N=%d", p.Nodes))
		cres, err := bench.RunCentral(ctx, p, payload, func(done, _ int) { _ = bar.Set(done) })
		_ = bar.Finish()
		if err != nil {
			return fmt.Errorf("bench central: %w", err)
		}
		results = append(results, cres)
	}
	return emitResults(ios, &o.benchOptions, results)
}

func newBenchSimCmd(ios streams) *cobra.Command {
	o := &benchOptions{}
	var maxRequests, simPieces, rumourFanout int
	var gossipLatency, gossipAccept time.Duration
	var profile string
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate the same transfer policy for thousands of nodes",
		Example: `  swarm bench sim --nodes 5000
  swarm bench sim --nodes 20000 --size 1GiB --node-up 1Gbit --node-down 1Gbit --origin-up 10Gbit --json`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := o.params()
			if err != nil {
				return err
			}
			cfg := sim.Config{
				Params: p, MaxRequests: maxRequests, MaxSimPieces: simPieces,
				Gossip: sim.GossipModel{RumourFanout: rumourFanout, Latency: gossipLatency, Accept: gossipAccept},
			}
			if err := cfg.Validate(); err != nil {
				return usageErrorf("bench sim: %v", err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			if profile != "" {
				stop, err := startCPUProfile(profile)
				if err != nil {
					return err
				}
				defer stop()
			}
			bar := newCountBar(ios, p.Nodes, fmt.Sprintf("sim N=%d", p.Nodes))
			res, err := sim.Run(ctx, cfg, func(done, _ int) { _ = bar.Set(done) })
			_ = bar.Finish()
			if err != nil {
				return fmt.Errorf("bench sim: %w", err)
			}
			return emitResults(ios, o, []bench.Result{res})
		},
	}
	o.register(cmd, 5000, "1GiB", "1Gbit", "1Gbit", "10Gbit")
	cmd.Flags().IntVar(&maxRequests, "max-requests", 0, "pieces a node downloads at once (0 = the simulator's default)")
	cmd.Flags().IntVar(&simPieces, "sim-pieces", 0, fmt.Sprintf("simulate at most this many pieces, grouping real ones (0 = %d): fewer run faster and come out later (BENCHMARKS.md, \"Simulator speed\", has the trade)", sim.DefaultMaxSimPieces))
	cmd.Flags().IntVar(&rumourFanout, "rumour-fanout", 0, "members a node sends a new desired state to directly (0 = the agents' default, -1 = none: broadcast and push/pull only)")
	cmd.Flags().DurationVar(&gossipLatency, "gossip-latency", 0, "one network hop of the gossip model (0 = 1ms)")
	cmd.Flags().DurationVar(&gossipAccept, "gossip-accept", 0, "time a node takes to verify and persist a new desired state (0 = 1.25ms, BenchmarkAcceptNewState)")
	cmd.Flags().StringVar(&profile, "cpuprofile", "", "write a CPU profile of the simulation to this file (go tool pprof)")
	return cmd
}

func newBenchGossipCmd(ios streams, g *globalOptions) *cobra.Command {
	var nodes int
	var joinRate float64
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "gossip",
		Short: "Spread one desired state over N real memberlist nodes in this process",
		Example: `  swarm bench gossip --nodes 1000
  swarm bench gossip --nodes 500 --json`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodes < 2 {
				return usageErrorf("bench gossip: --nodes %d: need at least 2 nodes", nodes)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			var bar *progressbar.ProgressBar
			stage := ""
			res, err := bench.RunGossipScale(ctx, bench.GossipScaleConfig{Nodes: nodes, JoinRate: joinRate}, zap.NewNop(), func(s string, done, total int) {
				if s != stage {
					if bar != nil {
						_ = bar.Finish()
					}
					bar, stage = newCountBar(ios, total, s), s
				}
				_ = bar.Set(done)
			})
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return fmt.Errorf("bench gossip: %w", err)
			}
			if asJSON {
				return json.NewEncoder(ios.Out).Encode(res)
			}
			p99, p100 := sim.GossipSpread(nodes, sim.GossipModel{}, 1)
			fmt.Fprint(ios.Out, report.GossipTable([]report.GossipRow{{Nodes: nodes, Real99: res.Reach99S, Real100: res.Reach100S, Sim99: p99, Sim100: p100, IdleCores: res.CPUIdleCores}}))
			return nil
		},
	}
	cmd.Flags().IntVar(&nodes, "nodes", 500, "number of gossip nodes")
	cmd.Flags().Float64Var(&joinRate, "join-rate", 0, "nodes started per second (0 = all within one gossip interval); slower starts let 1000+ nodes settle on a small machine")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "give up after this long")
	return cmd
}

func emitResults(ios streams, o *benchOptions, rs []bench.Result) error {
	if o.out != "" {
		f, err := os.OpenFile(o.out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("bench: --out: %w", err)
		}
		if err := report.WriteJSON(f, rs...); err != nil {
			f.Close()
			return fmt.Errorf("bench: --out: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("bench: --out: %w", err)
		}
	}
	if o.json {
		return report.WriteJSON(ios.Out, rs...)
	}
	for _, r := range rs {
		if err := report.Text(ios.Out, r); err != nil {
			return err
		}
		fmt.Fprintln(ios.Out)
	}
	if len(rs) > 1 {
		fmt.Fprint(ios.Out, report.Table(rs))
	}
	return nil
}

// checkBenchDisk refuses a real run that cannot fit on the scratch disk:
// the origin's bundle, the payload, and per node either a bundle (unless
// storage is shared) and an unpacked release.
func checkBenchDisk(dir string, p bench.Params, shared bool) error {
	perNode := p.SizeBytes // the unpacked release
	if !shared {
		perNode += p.SizeBytes
	}
	return checkDisk("bench", dir, p, 3*p.SizeBytes+int64(p.Nodes)*perNode)
}

// checkDisk refuses a run that needs more than the free space on dir.
func checkDisk(cmd, dir string, p bench.Params, need int64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("%s: scratch dir %s: %w", cmd, dir, err)
	}
	if free := int64(st.Bavail) * st.Bsize; need > free {
		return usageErrorf("%s: --nodes %d × --size %s needs about %s on %s, only %s free; use fewer nodes, a smaller size or --dir on a bigger disk",
			cmd, p.Nodes, humanBytes(p.SizeBytes), humanBytes(need), dir, humanBytes(free))
	}
	return nil
}

// filesPerAgent is an upper bound on one in-process agent's descriptors
// besides its BitTorrent connections: listeners, gossip sockets, files.
const filesPerAgent = 10

// checkBenchFiles refuses a real run that would run out of file
// descriptors: every agent holds up to --max-conns established connections
// and as many again being dialled or accepted, each one descriptor, and both
// ends live in this process. anacrolix/torrent v1.59.1 panics in a goroutine
// swarm cannot recover when a read fails for want of a descriptor.
func checkBenchFiles(p bench.Params) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil // not knowable here; the run will say if it fails
	}
	conns := p.MaxConns
	if conns == 0 {
		conns = 50
	}
	need := uint64(p.Nodes) * uint64(2*conns+filesPerAgent)
	if need <= lim.Cur {
		return nil
	}
	fit := (int(lim.Cur)/p.Nodes - filesPerAgent) / 2
	if fit < 1 {
		return usageErrorf("bench: --nodes %d needs about %d file descriptors and the limit is %d; run fewer nodes or raise ulimit -n",
			p.Nodes, need, lim.Cur)
	}
	return usageErrorf("bench: --nodes %d with --max-conns %d needs about %d file descriptors and the limit is %d; use --max-conns %d or less, or raise ulimit -n",
		p.Nodes, conns, need, lim.Cur, fit)
}

// newCountBar is a progress bar of nodes done, on stderr when it is a
// terminal.
func newCountBar(ios streams, total int, what string) *progressbar.ProgressBar {
	if f, ok := ios.Err.(*os.File); !ok || !isTerminal(f) {
		return progressbar.NewOptions(total, progressbar.OptionSetWriter(discard{}))
	}
	return progressbar.NewOptions(total,
		progressbar.OptionSetWriter(ios.Err),
		progressbar.OptionSetDescription(fmt.Sprintf("%-16s", what)),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(ios.Err) }),
	)
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// benchGossip is the gossip timing of real bench runs: memberlist's LAN
// gossip interval (which the simulator's gossip model assumes too), with
// probes slow enough that a loaded 2-core machine does not declare healthy
// agents dead.
func benchGossip() gossip.Config {
	return gossip.Config{
		GossipInterval:   200 * time.Millisecond,
		ProbeInterval:    2 * time.Second,
		ProbeTimeout:     time.Second,
		PushPullInterval: 15 * time.Second,
	}
}

// startCPUProfile writes a CPU profile to path until the returned stop is
// called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("bench: --cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: --cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

type benchProcsOptions struct {
	nodes                    int
	size                     string
	nodeUp, nodeDown, origin string
	maxConns, feeders        int
	seed                     uint64
	aria2c                   bool
	bin, dir, out            string
	json                     bool
	timeout, stall           time.Duration
}

func newBenchProcsCmd(ios streams, g *globalOptions) *cobra.Command {
	o := &benchProcsOptions{}
	cmd := &cobra.Command{
		Use:   "procs",
		Short: "Run a seeder and N agents as separate processes and measure each one's cost",
		Long: `procs runs this binary as 'swarm seeder' and N × 'swarm agent', each its own
OS process on 127.0.0.1 with ports the OS chooses, publishes a random
single-file app of --size and waits until every agent runs it. It reports
the time from the publish to the last agent active and to the last agent's
install (the fetch alone), one agent's MiB/s, the seeder's BitTorrent
payload ÷ bundle size (origin ÷ F), and per agent process its CPU seconds
per GiB (all of it, and up to its install) and peak RSS, measured from
/proc, not attributed. host-bound says whether the machine's cores were
the limit (above 85% busy, every process counted).

With --aria2c, after the agents it stops them and lets aria2c fetch the same
release from the same seeder alone, for comparison.

A process that exits early, a timeout or a stall (--stall-timeout without
progress) ends the run with one error line and a non-zero exit; every
process started is stopped and the scratch directory removed.`,
		Example: `  swarm bench procs --nodes 5 --size 32MiB
  swarm bench procs --nodes 1 --size 256MiB --aria2c --json --out .bench/size/procs.jsonl
  swarm bench procs --nodes 20 --size 1GiB --node-up 50MiB --node-down 100MiB --origin-up 100MiB`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return benchProcsRun(cmd.Context(), ios, g, o, cmd.Flag("log-level").Changed)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.nodes, "nodes", 5, "number of agent processes")
	f.StringVar(&o.size, "size", "32MiB", "payload size, e.g. 32MiB, 1GiB")
	f.StringVar(&o.nodeUp, "node-up", "0", "each agent's upload cap per second, e.g. 50MiB, 1Gbit (0 = none)")
	f.StringVar(&o.nodeDown, "node-down", "0", "each agent's download cap per second (0 = none)")
	f.StringVar(&o.origin, "origin-up", "0", "the seeder's upload cap per second (0 = none)")
	f.IntVar(&o.maxConns, "max-conns", 0, "BitTorrent connections per release and process (0 = the daemons' default)")
	f.IntVar(&o.feeders, "origin-feeders", -1, "agents that fetch from the origin, each a share of the pieces (0 = every agent, -1 = automatic)")
	f.Uint64Var(&o.seed, "seed", 1, "seed of the payload's bytes")
	f.BoolVar(&o.aria2c, "aria2c", false, "then fetch the same release with aria2c from the seeder alone (aria2c must be on PATH)")
	f.StringVar(&o.bin, "bin", "", "swarm binary to run (default: this one)")
	f.StringVar(&o.dir, "dir", "", "scratch directory (default: a new temporary one, removed afterwards)")
	f.BoolVar(&o.json, "json", false, "print the result as one JSON object instead of a summary")
	f.StringVar(&o.out, "out", "", "also append the result to this file (JSON Lines; read by 'swarm bench report --procs')")
	f.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
	f.DurationVar(&o.stall, "stall-timeout", 2*time.Minute, "give up when no agent progressed for this long")
	return cmd
}

// params turns the procs flags into bench.Params; rates may be 0 (no cap).
func (o *benchProcsOptions) params() (bench.Params, error) {
	p := bench.Params{Nodes: o.nodes, MaxConns: o.maxConns, Seed: o.seed}
	if o.nodes <= 0 {
		return p, usageErrorf("bench procs: --nodes %d: need at least one agent", o.nodes)
	}
	var err error
	if p.SizeBytes, err = parseBytes(o.size); err != nil || p.SizeBytes <= 0 {
		return p, usageErrorf("bench procs: --size %q: give a positive size such as 32MiB", o.size)
	}
	if err := parseRateFlags("bench procs", o.nodeUp, o.nodeDown, o.origin, true, &p); err != nil {
		return p, err
	}
	if err := parseFeedersFlag("bench procs", o.feeders, &p); err != nil {
		return p, err
	}
	if o.maxConns < 0 {
		return p, usageErrorf("bench procs: --max-conns %d must not be negative", o.maxConns)
	}
	if o.stall <= 0 || o.timeout <= 0 {
		return p, usageErrorf("bench procs: --timeout and --stall-timeout must be positive")
	}
	return p, nil
}

func benchProcsRun(ctx context.Context, ios streams, g *globalOptions, o *benchProcsOptions, logLevelSet bool) error {
	p, err := o.params()
	if err != nil {
		return err
	}
	bin := o.bin
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return fmt.Errorf("bench procs: find this binary: %w; give --bin", err)
		}
	}
	aria2c := ""
	if o.aria2c {
		if aria2c, err = exec.LookPath("aria2c"); err != nil {
			return usageErrorf("bench procs: --aria2c: no aria2c on PATH; install it (apt-get install -y aria2)")
		}
	}
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "swarm-procs-"); err != nil {
			return fmt.Errorf("bench procs: %w", err)
		}
		defer os.RemoveAll(dir)
	}
	if err := checkProcsDisk(dir, p, o.aria2c); err != nil {
		return err
	}
	log, err := benchLogger(g, ios, logLevelSet)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	pl := newProgressLine(ios, fmt.Sprintf("procs N=%d %s", p.Nodes, humanBytes(p.SizeBytes)))
	res, err := bench.RunProcs(ctx, bench.ProcsConfig{Binary: bin, Params: p, Dir: dir, Aria2c: aria2c, StallTimeout: o.stall}, log, pl.update)
	pl.finish()
	if err != nil {
		logs := bench.LogsDir(dir)
		if o.dir == "" { // the scratch directory goes; its logs stay
			if kept, kerr := os.MkdirTemp("", "swarm-procs-logs-"); kerr == nil && os.Rename(logs, filepath.Join(kept, "logs")) == nil {
				logs = filepath.Join(kept, "logs")
			}
		}
		return fmt.Errorf("bench procs N=%d %s: %w; the processes' logs are in %s", p.Nodes, humanBytes(p.SizeBytes), err, logs)
	}
	if o.out != "" {
		if err := appendJSONLine(o.out, res); err != nil {
			return fmt.Errorf("bench procs: --out: %w", err)
		}
	}
	if o.json {
		return json.NewEncoder(ios.Out).Encode(res)
	}
	return report.ProcsText(ios.Out, res)
}

// appendJSONLine appends v as one JSON line to path.
func appendJSONLine(path string, v any) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if err := json.NewEncoder(f).Encode(v); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// checkProcsDisk refuses a process-level run that cannot fit on the scratch
// disk: the payload, the packed bundle and the seeder's copy, per agent a
// bundle and an unpacked release, and aria2c's copy.
func checkProcsDisk(dir string, p bench.Params, aria2c bool) error {
	need := 3*p.SizeBytes + int64(p.Nodes)*2*p.SizeBytes
	if aria2c {
		need += p.SizeBytes
	}
	return checkDisk("bench procs", dir, p, need)
}

// progressLine shows a run's progress on stderr: redrawn in place on a
// terminal, otherwise a line when the stage changes and every 10 seconds.
type progressLine struct {
	w        io.Writer
	what     string
	terminal bool
	stage    string
	last     time.Time
	drawn    bool
}

func newProgressLine(ios streams, what string) *progressLine {
	f, ok := ios.Err.(*os.File)
	return &progressLine{w: ios.Err, what: what, terminal: ok && isTerminal(f)}
}

func (l *progressLine) update(p bench.ProcsProgress) {
	now := time.Now()
	if p.Stage == l.stage && now.Sub(l.last) < 10*time.Second && !(l.terminal && now.Sub(l.last) >= 200*time.Millisecond) {
		return
	}
	l.stage, l.last = p.Stage, now
	var line string
	switch p.Stage {
	case "starting":
		line = fmt.Sprintf("%s: starting, %d of %d agents up", l.what, p.Active, p.Total)
	case "swarm":
		line = fmt.Sprintf("%s: swarm, %d of %d agents active, mean progress %.0f%%, %.0fs", l.what, p.Active, p.Total, 100*p.Progress, p.Elapsed.Seconds())
	default:
		line = fmt.Sprintf("%s: %s, %.0f%%, %.0fs", l.what, p.Stage, 100*p.Progress, p.Elapsed.Seconds())
	}
	if l.terminal {
		fmt.Fprintf(l.w, "\r\033[K%s", line)
		l.drawn = true
		return
	}
	fmt.Fprintln(l.w, line)
}

func (l *progressLine) finish() {
	if l.drawn {
		fmt.Fprintln(l.w)
	}
}

// benchLogger is a harness run's logger: none unless --log-level was given.
// Hundreds of agents on two cores make memberlist complain about slow
// probes; a run prints only its result (errors still end it with one line).
func benchLogger(g *globalOptions, ios streams, logLevelSet bool) (*zap.Logger, error) {
	if !logLevelSet {
		return zap.NewNop(), nil
	}
	return newLogger(g, ios.Err)
}

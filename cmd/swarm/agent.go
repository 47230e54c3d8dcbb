package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmdeploy/swarm/agent"
)

type agentOptions struct {
	data, name, hook, health string
	env                      string
	healthInterval           time.Duration
	healthFailures           int
	gossip, torrent          string
	join, hookEnv            []string
	trust                    trustFlags
	joinTimeout, hookTimeout time.Duration
	healthTimeout            time.Duration
	keep, maxConns, feeders  int
	fallback                 time.Duration
	minFree                  string
	uploadRate, downloadRate string
	addrFile                 string
	gossipKey                gossipKeyOptions
}

func newAgentCmd(ios streams, g *globalOptions) *cobra.Command {
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent --data DIR --join HOST:PORT --trust-release PUBFILE --trust-rollout PUBFILE --gossip-key-file FILE",
		Short: "Run the node daemon: follow desired state, download, install, report",
		Long: `agent joins the gossip cluster, follows the desired state of every app,
downloads each target release from its peers and the origin, verifies it,
runs the local hook (argv: HOOK install), switches DIR/releases/<app>/current
atomically and gossips its state.

It pins keys by role: desired states must be signed by a --trust-rollout key
(the seeder's), manifests by --release-threshold of the --trust-release keys.
A key given in both roles is refused.

Hooks and health checks get a clean environment: a fixed PATH, SWARM_APP,
SWARM_VERSION, SWARM_RELEASE_ID, SWARM_RELEASE_DIR, SWARM_PREVIOUS_DIR and
only the variables named with --hook-env. A run that fails, times out or is
stopped has every process it started killed, also those that left its
process group; each run keeps at most 1 MiB of output in the hook log.`,
		Example: `  swarm agent --data /var/lib/swarm --join seeder.example:7946 \
    --trust-release /etc/swarm/release.pub --trust-rollout /etc/swarm/rollout.pub \
    --gossip-key-file /etc/swarm/gossip.key --hook /etc/swarm/install \
    --hook-env HTTPS_PROXY --hook-env LANG \
    --gossip 0.0.0.0:7946 --torrent 0.0.0.0:6881`,
		RunE: func(cmd *cobra.Command, _ []string) error { return agentRun(cmd, ios, g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.data, "data", "", "data directory: bundles, releases, state (required)")
	f.StringSliceVar(&o.join, "join", nil, "gossip addresses to join, comma-separated host:port (without it the node waits for others to join it, and rejoins the addresses it knew before a restart)")
	o.trust.add(f, "public key file(s) of the rollout keys whose signed desired states are accepted: the seeder's rollout.pub (repeatable, required)")
	f.StringVar(&o.hook, "hook", "", "install hook executable, run before a release becomes current")
	f.StringVar(&o.health, "health-check", "", "health check executable, run after the switch; failure restores the previous release")
	f.DurationVar(&o.healthInterval, "health-interval", 10*time.Second, "run the health check this often after activation (negative: only after activation)")
	f.IntVar(&o.healthFailures, "health-failures", 3, "consecutive failed checks that make the node report the app unhealthy")
	f.StringVar(&o.env, "env", "default", "environment this node belongs to (staging, prod...); it follows that environment's rollouts")
	f.StringVar(&o.name, "name", "", "node name in the cluster (default: hostname)")
	f.StringVar(&o.gossip, "gossip", "0.0.0.0:7946", "gossip listen address host:port")
	f.StringVar(&o.torrent, "torrent", "0.0.0.0:6881", "BitTorrent listen address host:port")
	f.DurationVar(&o.joinTimeout, "join-timeout", 60*time.Second, "give up if no --join address answers within this time (once joined, the node rejoins lost members on its own)")
	f.StringArrayVar(&o.hookEnv, "hook-env", nil, "pass this variable of the agent's environment to hooks and health checks (repeatable); they get nothing else of it but PATH and SWARM_*")
	f.DurationVar(&o.hookTimeout, "hook-timeout", 5*time.Minute, "kill the hook, and every process it started, after this long")
	f.DurationVar(&o.healthTimeout, "health-timeout", time.Minute, "kill the health check after this long")
	f.IntVar(&o.keep, "keep", 3, "releases kept on disk per app (bundles keep seeding); current and previous are never removed")
	f.StringVar(&o.minFree, "min-free", "0", "disk watermark: below this much free space, remove older bundles first; a download starts only if it leaves this much free, e.g. 5GiB (0 = none)")
	f.IntVar(&o.maxConns, "max-conns", 50, "BitTorrent connections per release")
	f.IntVar(&o.feeders, "origin-feeders", 4, "nodes that fetch each release from the origin, each a share of its pieces; the rest fetch from peers (0 = every node uses the origin)")
	f.DurationVar(&o.fallback, "origin-fallback", 10*time.Second, "a node that is no feeder asks the origin, for a quarter of this at a time, after this long starved: no verified piece, no connected peer with one it lacks, and the swarm's gossiped progress flat (or 6× this with no piece at all)")
	f.StringVar(&o.uploadRate, "upload-rate", "0", "upload cap in bytes/s, e.g. 20MiB (0 = none)")
	f.StringVar(&o.downloadRate, "download-rate", "0", "download cap in bytes/s (0 = none)")
	f.StringVar(&o.addrFile, "addr-file", "", "write the real listen addresses here once started (key=value lines)")
	o.gossipKey.addFlags(f)
	return cmd
}

func agentRun(cmd *cobra.Command, ios streams, g *globalOptions, o *agentOptions) error {
	if o.data == "" {
		return usageErrorf("agent: --data DIR is required")
	}
	if len(o.trust.release) == 0 || len(o.trust.rollout) == 0 {
		return usageErrorf("agent: --trust-release PUBFILE and --trust-rollout PUBFILE are required: the release keys' release.pub and the seeder's rollout.pub")
	}
	if err := checkAddrFlags("--gossip", o.gossip, "--torrent", o.torrent); err != nil {
		return err
	}
	join, err := parseJoin(o.join)
	if err != nil {
		return err
	}
	up, err := byteRate("--upload-rate", o.uploadRate)
	if err != nil {
		return err
	}
	down, err := byteRate("--download-rate", o.downloadRate)
	if err != nil {
		return err
	}
	minFree, err := parseBytes(o.minFree)
	if err != nil || minFree < 0 {
		return usageErrorf("agent: --min-free %q: use a size such as 0 (none), 500MiB, 5GiB", o.minFree)
	}
	if o.maxConns <= 0 {
		return usageErrorf("agent: --max-conns %d: need at least 1", o.maxConns)
	}
	if o.feeders < 0 || o.fallback <= 0 {
		return usageErrorf("agent: --origin-feeders %d --origin-fallback %v: need a count ≥ 0 and a positive duration", o.feeders, o.fallback)
	}
	feeders := o.feeders
	if feeders == 0 {
		feeders = -1 // agent.Config: negative = none
	}
	trust, err := o.trust.load("agent")
	if err != nil {
		return err
	}
	keyFile, err := o.gossipKey.check("agent")
	if err != nil {
		return err
	}
	log, err := newLogger(g, ios.Err)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // stderr sync errors are not actionable
	a, err := agent.New(agent.Config{
		DataDir: o.data, Name: o.name, Env: o.env, Join: join, JoinTimeout: o.joinTimeout, Trust: trust,
		GossipAddr: o.gossip, TorrentAddr: o.torrent,
		Hook: o.hook, HealthCheck: o.health, HookTimeout: o.hookTimeout, HealthTimeout: o.healthTimeout, HookEnv: o.hookEnv,
		HealthInterval: o.healthInterval, HealthFailures: o.healthFailures,
		Keep: o.keep, MinFreeBytes: minFree, UploadRate: up, DownloadRate: down, MaxConns: o.maxConns,
		OriginFeeders: feeders, OriginFallback: o.fallback, GossipKeyFile: keyFile,
	}, log)
	if err != nil {
		return usageErrorf("%w", err)
	}
	o.gossipKey.warnInsecure(log)
	if err := a.Start(); err != nil {
		return err
	}
	defer reloadOnHangup(cmd.Context(), log, a.ReloadGossipKeys)()
	if err := writeAddrFile(o.addrFile, [][2]string{{"gossip", a.GossipAddr()}, {"torrent", a.TorrentAddr()}, {"name", a.Name()}}); err != nil {
		a.Close()
		return err
	}
	return a.Run(cmd.Context())
}

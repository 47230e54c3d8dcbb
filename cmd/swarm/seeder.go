package main

import (
	"github.com/spf13/cobra"

	"github.com/swarmdeploy/swarm/release"
	"github.com/swarmdeploy/swarm/seeder"
)

type seederOptions struct {
	store, key, name     string
	gossip, torrent, api string
	join                 []string
	trust                trustFlags
	uploadRate, addrFile string
	maxConns             int
}

func newSeederCmd(ios streams, g *globalOptions) *cobra.Command {
	o := &seederOptions{}
	cmd := &cobra.Command{
		Use:   "seeder --store DIR --key ROLLOUT.KEY --trust-release PUBFILE",
		Short: "Run the origin daemon: release store, signing, seeding, HTTP API",
		Long: `seeder keeps the release store, accepts 'swarm publish' on its HTTP API,
seeds every stored release over BitTorrent, signs the desired state of each
app and gossips it to the agents. Its API listens on 127.0.0.1 by default.

--key is the rollout key ('swarm keygen --role rollout'): it signs desired
states and nothing else. Releases must be signed by --release-threshold of
the --trust-release keys; one with fewer is stored and starts rolling out
when 'swarm sign' brings the last signature.`,
		Example: `  swarm seeder --store /var/lib/swarm/store --key /etc/swarm/rollout.key \
    --trust-release /etc/swarm/release.pub \
    --gossip 0.0.0.0:7946 --torrent 0.0.0.0:6881 --api 127.0.0.1:7700`,
		RunE: func(cmd *cobra.Command, _ []string) error { return seederRun(cmd, ios, g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.store, "store", "", "release store directory (required)")
	f.StringVar(&o.key, "key", "", "rollout key file that signs desired states (required, mode 0600)")
	f.StringVar(&o.name, "name", "", "node name in the cluster (default seeder-<hostname>)")
	f.StringVar(&o.gossip, "gossip", "0.0.0.0:7946", "gossip listen address host:port")
	f.StringVar(&o.torrent, "torrent", "0.0.0.0:6881", "BitTorrent listen address host:port")
	f.StringVar(&o.api, "api", "127.0.0.1:7700", "HTTP API listen address host:port")
	o.trust.add(f, "public key file(s) of other seeders' rollout keys whose desired states are accepted (this seeder's own is always)")
	f.StringSliceVar(&o.join, "join", nil, "gossip addresses of other members to join, comma-separated")
	f.StringVar(&o.uploadRate, "upload-rate", "0", "origin upload cap in bytes/s, e.g. 100MiB (0 = none)")
	f.IntVar(&o.maxConns, "max-conns", 50, "BitTorrent connections per release: the origin's upload slots")
	f.StringVar(&o.addrFile, "addr-file", "", "write the real listen addresses here once started (key=value lines)")
	return cmd
}

func seederRun(cmd *cobra.Command, ios streams, g *globalOptions, o *seederOptions) error {
	if o.store == "" {
		return usageErrorf("seeder: --store DIR is required")
	}
	if o.key == "" {
		return usageErrorf("seeder: --key FILE is required: the rollout key; create one with 'swarm keygen --role rollout --out DIR'")
	}
	if len(o.trust.release) == 0 {
		return usageErrorf("seeder: --trust-release PUBFILE is required: the public key of each release key (release.pub) whose manifests it accepts")
	}
	if err := checkAddrFlags("--gossip", o.gossip, "--torrent", o.torrent, "--api", o.api); err != nil {
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
	if o.maxConns <= 0 {
		return usageErrorf("seeder: --max-conns %d: need at least 1", o.maxConns)
	}
	trust, err := o.trust.load("seeder")
	if err != nil {
		return err
	}
	key, err := release.LoadPrivateKey(o.key)
	if err != nil {
		return usageErrorf("seeder: %w", err)
	}
	log, err := newLogger(g, ios.Err)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // stderr sync errors are not actionable
	s, err := seeder.New(seeder.Config{
		StoreDir: o.store, Key: key, Trust: trust, Name: o.name,
		GossipAddr: o.gossip, TorrentAddr: o.torrent, APIAddr: o.api,
		Join: join, UploadRate: up, MaxConns: o.maxConns,
	}, log)
	if err != nil {
		return usageErrorf("%w", err)
	}
	if err := s.Start(); err != nil {
		return err
	}
	if err := writeAddrFile(o.addrFile, [][2]string{
		{"api", s.APIURL()}, {"gossip", s.GossipAddr()}, {"torrent", s.TorrentAddr()},
	}); err != nil {
		s.Close()
		return err
	}
	return s.Run(cmd.Context())
}

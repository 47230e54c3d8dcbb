package main

import (
	"time"

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
	desiredTTL           time.Duration
	joinTimeout          time.Duration
	refusalGrace         time.Duration

	tokenFile                    string
	tlsCert, tlsKey, tlsClientCA string
	insecureAPI                  bool
	maxBundleSize                string
	gossipKey                    gossipKeyOptions
}

func newSeederCmd(ios streams, g *globalOptions) *cobra.Command {
	o := &seederOptions{}
	cmd := &cobra.Command{
		Use:   "seeder --store DIR --key ROLLOUT.KEY --trust-release PUBFILE --gossip-key-file FILE --api-token-file FILE",
		Short: "Run the origin daemon: release store, signing, seeding, HTTP API",
		Long: `seeder keeps the release store, accepts 'swarm publish' on its HTTP API,
seeds every stored release over BitTorrent, signs the desired state of each
app and gossips it to the agents. Its API listens on 127.0.0.1 by default.

--key is the rollout key ('swarm keygen --role rollout'): it signs desired
states and nothing else. Releases must be signed by --release-threshold of
the --trust-release keys; one with fewer is stored and starts rolling out
when 'swarm sign' brings the last signature.

Its gossip is encrypted with the keys of --gossip-key-file
(make one with 'swarm gossip-key generate').

Every API request but /healthz needs the bearer token of --api-token-file
(make one with 'swarm api-token generate') or, with --tls-client-ca, a
client certificate that CA issued. The seeder refuses to start with
neither, and refuses an --api address that is not loopback without
--tls-cert and --tls-key; --insecure-api lifts both refusals.`,
		Example: `  swarm api-token generate --out /etc/swarm/api-token
  swarm seeder --store /var/lib/swarm/store --key /etc/swarm/rollout.key \
    --trust-release /etc/swarm/release.pub \
    --gossip-key-file /etc/swarm/gossip.key --api-token-file /etc/swarm/api-token \
    --gossip 0.0.0.0:7946 --torrent 0.0.0.0:6881 --api 127.0.0.1:7700
  swarm seeder --store /var/lib/swarm/store --key /etc/swarm/rollout.key --trust-release /etc/swarm/release.pub \
    --gossip-key-file /etc/swarm/gossip.key --api 0.0.0.0:7700 \
    --tls-cert seeder.crt --tls-key seeder.key --tls-client-ca clients-ca.crt`,
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
	f.StringSliceVar(&o.join, "join", nil, "gossip addresses of other members to join, comma-separated (optional: agents join the seeder, and it rejoins the addresses it knew before a restart)")
	f.DurationVar(&o.joinTimeout, "join-timeout", 60*time.Second, "with --join: give up if no member answers within this time")
	f.StringVar(&o.uploadRate, "upload-rate", "0", "origin upload cap in bytes/s, e.g. 100MiB (0 = none)")
	f.IntVar(&o.maxConns, "max-conns", 50, "BitTorrent connections per release: the origin's upload slots")
	f.StringVar(&o.addrFile, "addr-file", "", "write the real listen addresses here once started (key=value lines)")
	f.StringVar(&o.tokenFile, "api-token-file", "", "file holding the API's bearer token (mode 0600; 'swarm api-token generate --out FILE')")
	f.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate (chain): serve the API over https")
	f.StringVar(&o.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	f.StringVar(&o.tlsClientCA, "tls-client-ca", "", "PEM CA certificate(s): a client certificate they issued authenticates (needs --tls-cert)")
	f.BoolVar(&o.insecureAPI, "insecure-api", false, "allow an API without authentication, or without TLS off loopback")
	f.StringVar(&o.maxBundleSize, "max-bundle-size", "64GiB", "largest bundle a publish may send; larger ones are refused (413)")
	o.gossipKey.addFlags(f)
	f.DurationVar(&o.desiredTTL, "desired-ttl", 24*time.Hour, "how long a signed desired state stays valid; the seeder re-signs each once half of it is left, and agents holding an expired one report stale and take no new target")
	f.DurationVar(&o.refusalGrace, "refusal-grace", 30*time.Second, "how long every node a rollout step waits on may refuse its desired state (a key they do not trust) before the rollout stalls, saying why")
	return cmd
}

// apiSecurity reads the seeder's API token and TLS files into cfg.
func (o *seederOptions) apiSecurity(cfg *seeder.Config) error {
	if o.tokenFile != "" {
		tok, err := seeder.ReadTokenFile(o.tokenFile)
		if err != nil {
			return usageErrorf("seeder: --api-token-file: %w", err)
		}
		cfg.APIToken = tok
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return usageErrorf("seeder: --tls-cert and --tls-key go together: give both, or neither for plain http")
	}
	if o.tlsCert != "" {
		c, err := seeder.LoadCertificate(o.tlsCert, o.tlsKey)
		if err != nil {
			return usageErrorf("seeder: --tls-cert: %w", err)
		}
		cfg.APICert = &c
	}
	if o.tlsClientCA != "" {
		pool, err := seeder.LoadCertPool(o.tlsClientCA)
		if err != nil {
			return usageErrorf("seeder: --tls-client-ca: %w", err)
		}
		cfg.APIClientCAs = pool
	}
	n, err := parseBytes(o.maxBundleSize)
	if err != nil || n <= 0 {
		return usageErrorf("seeder: --max-bundle-size %q: use a positive size such as 512MiB or 64GiB", o.maxBundleSize)
	}
	cfg.MaxBundleSize, cfg.InsecureAPI = n, o.insecureAPI
	return nil
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
	if o.refusalGrace <= 0 {
		return usageErrorf("seeder: --refusal-grace %s: must be positive", o.refusalGrace)
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
	keyFile, err := o.gossipKey.check("seeder")
	if err != nil {
		return err
	}
	cfg := seeder.Config{
		StoreDir: o.store, Key: key, Trust: trust, Name: o.name,
		GossipAddr: o.gossip, TorrentAddr: o.torrent, APIAddr: o.api,
		Join: join, JoinTimeout: o.joinTimeout, UploadRate: up, MaxConns: o.maxConns, GossipKeyFile: keyFile,
		DesiredTTL: o.desiredTTL, RefusalGrace: o.refusalGrace,
	}
	if err := o.apiSecurity(&cfg); err != nil {
		return err
	}
	log, err := newLogger(g, ios.Err)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // stderr sync errors are not actionable
	s, err := seeder.New(cfg, log)
	if err != nil {
		return usageErrorf("%w", err)
	}
	o.gossipKey.warnInsecure(log)
	if err := s.Start(); err != nil {
		return err
	}
	defer reloadOnHangup(cmd.Context(), log, s.ReloadGossipKeys)()
	if err := writeAddrFile(o.addrFile, [][2]string{
		{"api", s.APIURL()}, {"gossip", s.GossipAddr()}, {"torrent", s.TorrentAddr()},
	}); err != nil {
		s.Close()
		return err
	}
	return s.Run(cmd.Context())
}
